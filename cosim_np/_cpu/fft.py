"""Window-kernel dot products by blocked overlap-save FFT (``method="fft"``).

Only the dots come from here; the window norms stay on the exact blocked sums
of ``_cpu.sliding``, and that kernel also finishes the cosines.

Each block of ``nfft`` samples is scaled by a power of two (exact) before its
transform, so nothing overflows, and the dots stay in those block units: scaling the
input by ``2**j`` changes no bit.  Non-finite samples are zeroed in the transformed copy (the norms mark
their windows NaN), so one NaN cannot spread beyond its block's rounding.
The FFT's error in a dot is bounded by :func:`error_bound` from the block's
norm and that of its outputs, so the kernel can recompute directly any
window for which that bound is not small against the window's own norm
(near loud bursts).
"""

import importlib
import math

import numpy as np

from .._core import config
from . import blocks, scratch

_ducc0_fft = None  # the module once imported; False when it is not installed


def _ducc0():
    """``ducc0.fft``, imported on first use (it takes a few ms), or None."""
    global _ducc0_fft
    if _ducc0_fft is None:
        try:
            _ducc0_fft = importlib.import_module("ducc0.fft")
        except ImportError:
            _ducc0_fft = False
    return _ducc0_fft or None


def engine():
    """The library the FFT method transforms with now: ``"ducc0"`` or ``"numpy"``."""
    if config.FFT_ENGINE not in ("auto", "ducc0", "numpy"):
        raise ValueError("cosim_np._core.config.FFT_ENGINE must be 'auto', 'ducc0' or 'numpy'; "
                         f"got {config.FFT_ENGINE!r}.")
    if config.FFT_ENGINE == "numpy":
        return "numpy"
    if _ducc0() is None:
        if config.FFT_ENGINE == "ducc0":
            raise ImportError("cosim_np._core.config.FFT_ENGINE = 'ducc0' but ducc0 is not installed "
                              "(pip install 'cosim_np[fft]').")
        return "numpy"
    return "ducc0"


def _forward(blocks, spectrum, use_ducc0):
    """``spectrum = rfft(blocks)`` along the last axis, into ``spectrum``."""
    if use_ducc0:
        _ducc0().r2c(blocks, axes=(-1,), out=spectrum, nthreads=1)
    else:
        np.fft.rfft(blocks, axis=-1, out=spectrum)


def _inverse(product, out, use_ducc0):
    """``out = irfft(product)`` (normalised by ``1/nfft``, exact: a power of
    two) along the last axis; ``product`` may be overwritten."""
    if use_ducc0:
        _ducc0().c2r(product, axes=(-1,), lastsize=out.shape[-1], forward=False, inorm=2,
                     out=out, nthreads=1, allow_overwriting_input=True)
    else:
        np.fft.irfft(product, n=out.shape[-1], axis=-1, out=out)


def fft_length(span, single=False):
    """FFT length (a power of two) for a kernel reaching ``span`` samples:
    about 8 spans, so that most of each block is output; a single kernel
    (``single``: one kernel of one channel) of at least
    ``SINGLE_KERNEL_MIN_SPAN`` up to 16 spans while they fit in
    ``CACHED_FFT`` samples (its one inverse transform per block then still
    works in cache, and the longer step saves transforms).  No longer than
    ``CACHED_FFT`` while ``SHORT_BLOCK_SPANS`` spans fit in it: longer blocks
    leave the cache, cost as much per output on noise, and mix more quiet
    windows with loud stretches (benchmarks/RESULTS.md); nor longer than
    ``MAX_CACHED_FFT`` unless the kernel itself needs more."""
    target = max(512, 8 * (span + 1))
    if single and span >= config.SINGLE_KERNEL_MIN_SPAN:
        target = max(target, min(16 * (span + 1), config.CACHED_FFT))
    if config.SHORT_BLOCK_SPANS * (span + 1) <= config.CACHED_FFT:
        target = min(target, config.CACHED_FFT)
    target = max(min(target, config.MAX_CACHED_FFT), 2 * (span + 1))
    return 1 << (target - 1).bit_length()


def short_fft_length(span):
    """The shortest blocks that cost little more per output than
    ``fft_length``'s (about ``config.SHORT_BLOCK_SPANS`` spans, a power of
    two): for segments whose loud and quiet stretches longer blocks would
    mix (``_cpu.drivers.run_fft``)."""
    target = max(512, config.SHORT_BLOCK_SPANS * (span + 1))
    return 1 << (target - 1).bit_length()


def kernel_spectra(khat, dilation, nfft):
    """``conj(rfft(dilated kernel))``, shape ``(K, C, nfft//2 + 1)``, and each
    kernel's spectral peak ``max_f sqrt(sum_c |K_c(f)|**2)``: no block's
    outputs have a larger L2 norm than it times the block's."""
    nker, nchan, m = khat.shape
    dilated = np.zeros((nker, nchan, nfft))
    dilated[:, :, : (m - 1) * dilation + 1 : dilation] = np.nan_to_num(khat)
    spectra = np.conj(np.fft.rfft(dilated, axis=-1))
    # (with room for the spectrum's own rounding)
    peaks = np.sqrt(np.max(np.sum(np.abs(spectra) ** 2, axis=1), axis=-1)) * (1 + 1e-6)
    return spectra, peaks


class Workspace:
    """Buffers for the transforms of one thread, allocated once and reused:
    fresh arrays of a megabyte per transform cost more in page faults than the
    transforms themselves.  (This is why NumPy's pocketfft is called with
    ``out=`` rather than ``scipy.fft``'s, which has no ``out``.  Transforms are
    single-threaded here: threads run whole segments.)"""

    def __init__(self, nchan, nker, nfft):
        library = engine()
        self.ducc0 = library == "ducc0"
        self.per_chunk = max(1, config.CHUNK_SAMPLES[library] // (nfft * max(nchan, nker)))
        nfreq = nfft // 2 + 1
        # named by length: a call may use several (see _cpu.drivers._FlaggedRuns)
        self.blocks = scratch.empty(f"fft blocks {nfft}", (nchan, self.per_chunk, nfft))
        self.spectrum = scratch.empty(f"fft spectrum {nfft}", (nchan, self.per_chunk, nfreq),
                                       complex)
        self.product = scratch.empty(f"fft product {nfft}", (self.per_chunk, nker, nfreq), complex)


def block_count(nwin, span, nfft):
    """Blocks of ``nfft`` samples that overlap-save needs for ``nwin`` windows."""
    return -(-nwin // (nfft - span))


def fft_dots(rows, w0, w1, khat, dilation, nfft, spectra, dots, limits, work, plan):
    """Dots of the windows ``w0 .. w1-1`` of the blocks ``chosen`` (``plan =
    (step, chosen, counts, whole, exponents, loud, noise, quietest, references,
    c_block, c_output, peaks)``, see ``_cpu.blocks.assign_slots``: the first
    ``counts[b]`` of row ``b`` transformed, the ``whole[b]`` after them
    scattered sample by sample; ``loud`` None where no block has loud
    samples) of ``rows``
    (``(B, C, N)``) with every kernel (``khat``, unit norm, and its
    ``spectra``), written to ``dots`` (``(B, >= blocks, K, nfft)`` float64, reused
    across calls so that it stays in cache), with the buffers of ``work`` (a
    :class:`Workspace`).

    Window ``i`` lies in block ``g = (i - w0) // step``; when ``chosen[b, j] ==
    g`` its dot with kernel ``k`` is ``dots[b, j, k, i - w0 - g * step]``.  The inverse
    transforms write there directly, into contiguous memory (NumPy's take
    longer to write into a strided ``out``); the rest of each block is wrapped
    around and never read.  The dots are left in the units of their block,
    ``2**exponents[b, g]``: every consumer then shifts exponents only
    (exact), whichever path a window takes.  ``limits[b, j, k]`` is set to
    the flagging limit of each block and kernel (``_cpu.blocks.block_limits``,
    from the norm of the transform's outputs, before the loud samples are
    added)."""
    (step, chosen, counts, whole, exponents, loud, noise, quietest, references, c_block, c_output,
     peaks) = plan
    no_loud = np.zeros(exponents.shape[1], dtype=np.int64)
    per_chunk = work.per_chunk
    for b in range(rows.shape[0]):
        for j0 in range(0, counts[b], per_chunk):
            count = min(per_chunk, counts[b] - j0)
            chunk = work.blocks[:, :count]
            spectrum = work.spectrum[:, :count]
            product = work.product[:count]
            these = chosen[b, j0 : j0 + count]
            blocks.prepare_blocks(rows[b], w0, w1 + (khat.shape[2] - 1) * dilation, these, step,
                                  chunk, exponents[b], no_loud if loud is None else loud[b],
                                  references[b])
            _forward(chunk, spectrum, work.ducc0)  # (C, G, F)
            blocks.spectral_products(spectrum, spectra, product)  # (G, K, F)
            _inverse(product, dots[b, j0 : j0 + count], work.ducc0)
            blocks.block_limits(dots[b, j0 : j0 + count], noise[b],
                                    no_loud if loud is None else loud[b], quietest[b], these,
                                    c_block, c_output, peaks, limits[b, j0 : j0 + count])
            if loud is not None:  # (compiled on its first use only)
                blocks.scatter_loud(rows[b], w0, w1, these, step, khat, dilation, exponents[b],
                                    loud[b], references[b], dots[b, j0 : j0 + count])
        if whole[b]:  # no sample transformed: every one scattered, no window flagged
            slots = slice(counts[b], counts[b] + whole[b])
            dots[b, slots, :, :step] = 0.0
            limits[b, slots] = 0.0
            blocks.scatter_loud(rows[b], w0, w1, chosen[b, slots], step, khat, dilation,
                                exponents[b], loud[b], references[b], dots[b, slots])


def error_bound(nfft, nchan):
    """``(c_block, c_output)``: the FFT's error in a window's dot is at most
    ``c_block * ||block|| + c_output * ||output||`` (in block units), where
    ``||block||`` is the L2 norm of the scaled block (all channels) and
    ``||output||`` that of the inverse transform's ``nfft`` outputs for the
    kernel.

    With ``a = log2(nfft) * eps`` bounding each transform's error relative to
    its input (in the L2 norm), a unit kernel (``||K_hat|| = sqrt(nfft)``): the
    block's transform errs by ``a ||block||`` in every dot (Cauchy-Schwarz
    against the kernel's spectrum, whichever its peak), the kernel's by as
    much, the ``C`` spectral products and their sums by ``(C + 2) u``
    ``||block||``, and the inverse by ``a ||output||`` at most in any one
    output.  The output's norm is measured rather than bounded by the
    kernel's spectral peak: for a kernel whose spectrum has a tall peak (a
    smooth template) the bound is then several times smaller, and fewer
    windows are recomputed directly."""
    eps = float(np.finfo(np.float64).eps)
    per_transform = math.log2(nfft) * eps
    return 2.0 * per_transform + (nchan + 2) * eps / 2, per_transform


def forward_nd(blocks, spectrum, use_ducc0):
    """``spectrum = rfftn(blocks)`` over every axis but the first, into
    ``spectrum``."""
    axes = tuple(range(1, blocks.ndim))
    if use_ducc0:
        _ducc0().r2c(blocks, axes=axes, out=spectrum, nthreads=1)
    else:
        spectrum[...] = np.fft.rfftn(blocks, axes=axes)


def inverse_nd(product, out, use_ducc0):
    """``out = irfftn(product)`` over every axis but the first (normalised by
    the transform's size); ``product`` may be overwritten."""
    axes = tuple(range(1, out.ndim))
    if use_ducc0:
        _ducc0().c2r(product, axes=axes, lastsize=out.shape[-1], forward=False, inorm=2,
                     out=out, nthreads=1, allow_overwriting_input=True)
    else:
        out[...] = np.fft.irfftn(product, s=out.shape[1:], axes=axes)


def kernel_spectra_nd(khat, dilation, shape):
    """``conj(rfftn(dilated kernel))`` of each kernel and channel of ``khat``
    ``(K, C, m_1, ..., m_r)`` in a block of ``shape`` (one length per axis):
    ``(K, C, F)`` with the frequencies flattened."""
    nker, nchan = khat.shape[:2]
    # kept between calls, as the bands' arrays (the spectra live for one call)
    dilated = scratch.empty("kernel spectra input", (nker, nchan) + tuple(shape))
    dilated.fill(0.0)
    dilated[(slice(None),) * 2 + tuple(slice(0, (m - 1) * d + 1, d)
                                       for m, d in zip(khat.shape[2:], dilation))] = \
        np.nan_to_num(khat)
    flat = dilated.reshape((nker * nchan,) + tuple(shape))
    spectra = scratch.empty("kernel spectra", flat.shape[:-1] + (shape[-1] // 2 + 1,), complex)
    forward_nd(flat, spectra, engine() == "ducc0")
    return np.conjugate(spectra, out=spectra).reshape(nker, nchan, -1)


def fast_length(n):
    """The smallest length of at least ``n`` whose FFT is fast (2, 3 and 5
    its only prime factors)."""
    import scipy.fft

    return scipy.fft.next_fast_len(int(n), real=True)
