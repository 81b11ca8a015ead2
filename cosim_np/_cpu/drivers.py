"""CPU drivers of the sliding cosine and the windowed norms: split a planned
problem over threads and segments, and call the Numba kernels of
``_cpu.sliding`` (and, for ``method="fft"``, the transforms of ``_fft``).

Arrays arrive planned by the public module: ``piece`` is ``(B, C, N)`` of the
compute dtype, C-contiguous, and its windows land at ``offset`` of the
``(B, K, L)`` result.
"""

import numpy as np

from .. import _fft, _scratch, _threads
from . import blocks
from . import sliding as kernels

# method="auto" chooses by a cost model fitted on the CI machine (one
# thread, float32, n = 10**6..10**7; benchmarks/bench_sliding.py --methods
# direct fft), in ns per output:
#   direct: 2.5 (norms, finish) + 0.04 per product (K * C * m products);
#   fft:    1.5 + 3 per input channel (block copy, forward transform)
#           + 4 per kernel (product, inverse transform, finish)
#           + 1 per channel-kernel pair when C > 1 (spectral products).
# Below FFT_MIN_TAPS taps per window (m * C) the direct method is used.
FFT_MIN_TAPS = 128
DIRECT_NS = (2.5, 0.04)
FFT_NS = (1.5, 3.0, 4.0, 1.0)

# Windows per FFT segment (divided among the kernels of a bank): their sums
# of squares, block plan and dots are kept at once.
SEGMENT_WINDOWS = 1 << 18


def _direct_dot_ns(m, nchan, nker):
    return DIRECT_NS[1] * nker * nchan * m


def _fft_dot_ns(nchan, nker):
    _, per_channel, per_kernel, per_pair = FFT_NS
    return per_channel * nchan + per_kernel * nker + (per_pair * nchan * nker if nchan > 1 else 0.0)


def choose_method(method, m, nchan, nker):
    """``"direct"`` or ``"fft"`` for ``method`` (``"auto"`` by the cost model)."""
    if method != "auto":
        return method
    if m * nchan < FFT_MIN_TAPS:
        return "direct"
    direct = DIRECT_NS[0] + _direct_dot_ns(m, nchan, nker)
    fft = FFT_NS[0] + _fft_dot_ns(nchan, nker)
    return "fft" if fft < direct else "direct"


def fft_error_budget(out_dtype, taps, exponent):
    """The largest FFT error in a window's dot, relative to the window's own
    norm, that leaves its result as accurate as the direct method's: that
    method's own float64 bound, ``4 (taps + 4) eps``; for float32 and float16
    results, a sixteenth of the output's rounding unit (divided by the
    sharpening exponent, which multiplies errors near ``|s| = 1``) when that
    is larger.  Windows whose bound exceeds it get their dots directly."""
    budget = 4.0 * (taps + 4) * np.finfo(np.float64).eps
    if np.dtype(out_dtype).itemsize < 8:
        budget = max(budget, float(np.finfo(out_dtype).eps) / 16 / max(1.0, exponent))
    return budget


def _unsafe_flags(rows, nwin, tile):
    return np.zeros((rows, max(1, -(-nwin // tile))), dtype=np.bool_)


def run_windowed_norm(piece, m, d, result, offset):
    """``result[b, offset + i]``: the norm of window ``i`` of ``piece``."""
    span = (m - 1) * d

    def work(start, stop):
        tile, bufs = kernels.make_buffers(m, d)
        kernels.windowed_norm_kernel(piece, start, stop, m, d, tile, bufs, result, offset)

    _threads.run_segments(piece.shape[-1] - span, kernels.tile_length(m, d), work)


def run_direct(piece, khat, kernel_state, d, exponent, floor, fill, result, offset):
    """Sliding cosines by direct dots, with the kernel for the shape at hand."""
    nker, nchan, m = khat.shape
    span = (m - 1) * d
    tile = kernels.tile_length(m, d)
    fused = nchan == 1 and m <= kernels.FUSED_TAPS
    short = (fused and nker == 1 and m <= kernels.DIRECT_SUM_TAPS
             and (exponent == 1.0 or kernel_state[0] != kernels.KERNEL_NORMAL))

    def work(start, stop):
        _, bufs = kernels.make_buffers(m, d)
        unsafe = _unsafe_flags(piece.shape[0], stop - start, tile)
        if short:
            kernels.short_kernel(piece, start, stop, khat, kernel_state, d, floor, fill, tile, bufs,
                                 result, offset, unsafe)
        else:
            kernel = kernels.fused_kernel if fused else kernels.direct_kernel
            kernel(piece, start, stop, khat, kernel_state, d, exponent, floor, fill, tile, bufs,
                   result, offset, unsafe)
        if unsafe.any():
            kernels.fix_out_of_range(piece, start, stop, khat, kernel_state, d, exponent, floor, fill,
                                     tile, bufs, result, offset, unsafe, fused)

    _threads.run_segments(piece.shape[-1] - span, tile, work)


class _BlockLength:
    """The FFT path's set-up for one block length ``nfft``, shared by the threads."""

    def __init__(self, khat, d, nfft, budget):
        nker, nchan, m = khat.shape
        self.nfft = nfft
        self.step = nfft - (m - 1) * d
        self.spectra = _fft.kernel_spectra(khat, d, nfft)
        self.c_block, self.c_output = (factor / budget for factor in _fft.error_bound(nfft, nchan))
        # The plan estimates the outputs' norm by the block's (white noise).
        self.estimate = self.c_block + self.c_output
        # A block is transformed while the direct dots of its flagged windows
        # cost less than the transform saves.
        share = 1.0 - _fft_dot_ns(nchan, nker) / _direct_dot_ns(m, nchan, nker)
        self.max_flagged = int(self.step * max(0.0, share))


class _SegmentPlan:
    """One thread's arrays for planning and transforming a segment of windows
    in blocks of one length."""

    def __init__(self, length, rows, nchan, nker, longest, span, windows):
        self.length = length
        nfft = length.nfft
        most = _fft.block_count(longest, span, nfft)
        self.relative = _scratch.empty(f"relative sums of squares {nfft}", (rows, windows))
        self.dots = _scratch.empty(f"fft dots {nfft}", (rows, most, nker, nfft))
        self.limits = np.empty((rows, most, nker))
        self.exponents = np.empty((rows, most), dtype=np.int64)
        self.noise = np.empty((rows, most))
        self.loud = np.empty((rows, most), dtype=np.int64)
        self.flagged_counts = np.empty((rows, most), dtype=np.int64)
        self.slots = np.empty((rows, most), dtype=np.int64)
        self.chosen = np.empty((rows, most), dtype=np.int64)
        self.counts = np.empty(rows, dtype=np.int64)
        self.workspace = _fft.Workspace(nchan, nker, nfft)

    def plan(self, piece, w0, w1, m, d, tile, sumsq, unsafe):
        """Plan the segment of windows ``w0 .. w1-1``; returns how many
        windows' dots it leaves to the direct method."""
        length = self.length
        blocks.plan_blocks(piece, w0, w1, length.step, length.nfft, m, d, tile, sumsq, unsafe,
                           length.estimate, self.exponents, self.noise, self.loud, self.relative,
                           self.flagged_counts)
        nblocks = _fft.block_count(w1 - w0, (m - 1) * d, length.nfft)
        return blocks.assign_slots(self.flagged_counts, nblocks, length.max_flagged, self.slots,
                                   self.chosen, self.counts, w1 - w0, length.step)

    def transform(self, piece, w0, w1, khat, d):
        """The dots of the blocks planned; returns the kernel's ``fft`` tuple."""
        length = self.length
        _fft.fft_dots(piece, w0, w1, khat, d, length.nfft, length.spectra, self.dots, self.limits,
                      self.workspace, (length.step, self.chosen, self.counts, self.exponents,
                                       self.loud, self.noise, length.c_block, length.c_output))
        return (self.dots, self.slots, self.exponents, self.relative, w0, length.step, self.limits)


# Short blocks (about 4 spans, _fft.fft_length(short=True)) cost about this
# much more per window than long ones; a segment takes them when they leave
# fewer windows to the direct method by more than that.
SHORT_BLOCK_OVERHEAD = 0.1


def run_fft(piece, khat, kernel_state, d, exponent, floor, fill, result, offset, budget):
    """Sliding cosines with dots by overlap-save FFT, a segment at a time
    (bounded memory, in cache).

    Each segment: the window sums of squares (exactly as the direct method
    sums them); a plan that sends to the direct method every block in which
    too many windows would be flagged (their FFT error bound exceeds
    ``budget`` times their norm: a loud sample nearby) to pay for its
    transform; the transforms of the others; the cosines, with the flagged
    windows' dots recomputed directly.  A segment whose long blocks would
    leave many windows to the direct method is planned again in short
    blocks, which mix fewer loud and quiet stretches, and takes the cheaper
    plan.  Segments are whole tiles, so the plans, and with them every result
    bit, are the same for any thread count."""
    nker, nchan, m = khat.shape
    span = (m - 1) * d
    rows = piece.shape[0]
    tile = kernels.tile_length(m, d)
    lengths = [_BlockLength(khat, d, _fft.fft_length(span, single=nker == 1 and nchan == 1),
                            budget)]
    short = _fft.fft_length(span, short=True)
    if short < lengths[0].nfft:
        lengths.append(_BlockLength(khat, d, short, budget))
    # windows left to the direct method that short blocks cost, per window transformed
    overhead = SHORT_BLOCK_OVERHEAD * _fft_dot_ns(nchan, nker) / _direct_dot_ns(m, nchan, nker)
    segment = tile * max(1, SEGMENT_WINDOWS // (tile * nker))
    chains = m > kernels.DIRECT_SUM_TAPS and m * d >= kernels.CHAIN_CHUNK
    segment_sumsq = kernels.segment_chain_sumsq if chains else kernels.segment_sumsq

    def work(start, stop):
        _, bufs = kernels.make_buffers(m, d)
        longest = min(segment, stop - start)
        windows = -(-longest // tile) * tile
        sumsq = _scratch.empty("segment sums of squares", (rows, windows))
        plans = [_SegmentPlan(length, rows, nchan, nker, longest, span, windows)
                 for length in lengths]
        for w0 in range(start, stop, segment):
            w1 = min(stop, w0 + segment)
            unsafe = _unsafe_flags(rows, windows, tile)
            segment_sumsq(piece, w0, w1, m, d, tile, bufs, sumsq, unsafe)
            plan = plans[0]
            direct = plan.plan(piece, w0, w1, m, d, tile, sumsq, unsafe)
            saving = overhead * (w1 - w0) * rows  # what short blocks must save, at least
            if len(plans) > 1 and direct > saving:
                if plans[1].plan(piece, w0, w1, m, d, tile, sumsq, unsafe) + saving < direct:
                    plan = plans[1]
            fft = plan.transform(piece, w0, w1, khat, d)
            kernels.fft_kernel(piece, w1, khat, kernel_state, d, exponent, floor, fill, tile, sumsq,
                               fft, result, offset)
            if unsafe.any():
                kernels.fft_fix_out_of_range(piece, w1, khat, kernel_state, d, exponent, floor, fill,
                                             tile, sumsq, fft, result, offset, unsafe)

    _threads.run_segments(piece.shape[-1] - span, segment, work)
