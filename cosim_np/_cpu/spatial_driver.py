"""The CPU backend of the sliding functions over several axes (images,
volumes): lay a planned call (``_core.spatial``) out, cut it into bands of
output rows, and run the kernels of ``_cpu.spatial`` band by band.

The signal is seen in the computing layout ``(B, C, n_1 + pads, ..., n_r +
pads)`` with each axis's zeros (a copy, unless it is that already and
``out`` cannot overlap it).  A band is a run of windows along the first
sliding axis: its window sums (one axis at a time) and its dots (by loops,
matrix products or FFTs) are computed while its rows are in cache, and its
results are written straight into the result, in the caller's layout and
the result's dtype.  Bands start at fixed places
whatever the thread count, so the result is bit-identical for any number
of threads.
"""

import contextlib
import copy
import math

import numba
import numpy as np

from .._core import config, spatial
from .._core import sliding as plans
from .._core.scalars import KERNEL_NORMAL, SAFE_MAX, SAFE_MIN
from . import blas, blocks, powers, scratch, threads
from . import fft as transforms
from . import spatial as kernels
from .centered import CENTERED_SAFE_MIN
from .drivers import (
    _times_power_of_two,
    cast_result,
    fft_error_budget,
    fill_unit_kernels,
    signal_in_range,
    use_products,
)
from .drivers import sliding_cosine_grad as one_axis_grad
from .sliding import _cosine, sharpen_kernel

# A float64 signal with magnitudes outside [SAFE_MIN, SAFE_MAX] (whose squares
# could leave the float64 range) is scaled by a power of two into it (exact:
# every output keeps the bits it has unscaled); where they span more binades
# than that range, its largest at SAFE_MAX, and the windows that then hold
# only samples below the range (all far below the signal's largest), whose
# squares could underflow, are recomputed one by one.  (Samples below the
# range beside one within it add squares far below that one's rounding.)
# Elements summed side by side per call of the window kernels along an axis
# that is not the last (a few rows of an image: their scans stay in cache).
INNER_BLOCK = 512


@scratch.one_call
def windowed_norm(x, plan, out):
    """The norms of a planned ``windowed_norm`` call over several axes
    (``_core.spatial.SpatialNormPlan``)."""
    plan, taps = spatial.compacted(plan, x.shape)
    geo = plan.geometry
    padded, scale, tiny = _layout_signal(x, geo, None, plans.compute_dtype(plan.out_dtype),
                                         out, taps, plan.center)
    r = len(geo.axes)
    order = spatial.layout_axes(x.ndim, geo.axes, None)
    moved, rows_view, finish = _result(out, plan.final_shape, plan.out_dtype, order, r, False)

    def band(i0, i1, q0, q1):
        for b0, b1 in _batch_blocks(padded, geo, i0, i1):
            sums = _band_sums(padded[b0:b1], geo, plan.center, i0, i1)
            kernels.finish_norms(sums.reshape(b1 - b0, q1 - q0, -1), scale, plan.center,
                                 rows_view[b0:b1, q0:q1, 0])

    _run_bands(geo, band, padded.shape[0] * padded.shape[1])
    if tiny is not None:
        for index, window in _tiny_windows(tiny, geo):
            moved[_moved_index(index, moved, r, 0)] = _rescaled_norm(window, plan.center)
    return finish()


@scratch.one_call
def sliding_cosine(x, plan, method, out):
    """The cosines of a planned ``sliding_cosine`` call over several axes
    (``_core.spatial.SpatialPlan``): the dots by loops, or as matrix
    products for banks and multi-channel kernels where
    ``_cpu.drivers.use_products`` says so, or by FFT (``method``)."""
    r = len(plan.geometry.axes)
    bands = _Bands(x, plan, method, out)
    moved, rows_view, finish = _result(out, plan.final_shape, plan.out_dtype, plan.result_axes,
                                       r, spatial.has_kernel_axis(plan))
    bands.run(lambda q0, q1: rows_view[:, q0:q1])
    for index, values in bands.rescaled():
        moved[_moved_index(index, moved, r, slice(None))] = values
    return finish()


@scratch.one_call
def score_slabs(x, plan, method, max_bytes, overlap=0):
    """The cosines of a planned ``sliding_cosine`` call over several axes a
    slab of output rows along the first sliding axis at a time: yields
    ``(b0, i0, i1, slab)``, ``slab`` ``(nb, K, i1 - i0, nout_2, ...,
    nout_r)`` holding the windows ``[i0, i1)`` along that axis of batch
    indices ``[b0, b0 + nb)`` (float32 or float64, rounded to the call's
    result dtype), bit for bit those of :func:`sliding_cosine` (a slab is a
    run of whole bands, each computed as there, and a window's cosine is its
    batch index's own).  A slab of scores holds at most ``max_bytes`` (at
    least one band of one batch index): every batch index at once where one
    band of each fits, else a block of them at a time, all of a block's
    slabs before the next block's.  A slab's first rows repeat the last
    ``overlap`` of the slab before of its block (fewer at the start); it is
    reused: each is read before the next is asked for."""
    geo = plan.geometry
    bands = _Bands(x, plan, method, None)
    nbatch, nker = bands.padded.shape[0], plan.khat.shape[0]
    dtype = _computing_dtype(plan.out_dtype)
    per_row = math.prod(geo.nout[1:-1])  # output rows per window along axis 0
    row_bytes = nker * per_row * geo.nout[-1] * dtype.itemsize  # (of one batch index)
    block = min(nbatch, max(1, max_bytes // max(1, bands.rows * row_bytes)))
    # (bands of one length: find_matches takes no stride, see _FFTPlan)
    step = bands.rows * max(1, max_bytes // max(1, bands.rows * row_bytes * block))
    step = min(step, geo.nout[0])
    buffer = np.empty((block, nker, (overlap + step) * per_row, geo.nout[-1]), dtype)
    for b0 in range(0, nbatch, block):
        b1 = min(b0 + block, nbatch)
        part = bands if b1 - b0 == nbatch else bands.batches(b0, b1)
        for i0, i1, slab in _block_slabs(part, plan, buffer[: b1 - b0], step, overlap):
            yield b0, i0, i1, slab


def _block_slabs(bands, plan, buffer, step, overlap):
    """:func:`score_slabs` of the batch indices of ``bands``: ``(i0, i1,
    slab)``, each slab in ``buffer``."""
    geo = plan.geometry
    per_row = math.prod(geo.nout[1:-1])
    view = buffer.transpose(0, 2, 1, 3)  # (B, Q, K, nout_r), as the bands write
    shape = buffer.shape[:2] + (-1,) + geo.nout[1:]
    kept = used = 0  # rows repeated from the slab before; rows it held
    for i0 in range(0, geo.nout[0], step):
        i1 = min(i0 + step, geo.nout[0])
        if kept:  # the last rows of the slab before, to the front
            buffer[:, :, : kept * per_row] = buffer[:, :, (used - kept) * per_row : used * per_row]
        base = (i0 - kept) * per_row
        bands.run(lambda q0, q1: view[:, q0 - base : q1 - base], i0, i1)
        used = kept + i1 - i0
        slab = buffer[:, :, : used * per_row].reshape(shape)
        for index, values in bands.rescaled(i0, i1):
            slab[(index[0], slice(None), index[1] - i0 + kept) + index[2:]] = values
        if plan.out_dtype != buffer.dtype:  # (float16: the result's own rounding)
            rows = slab[:, :, kept:]
            rows[...] = rows.astype(plan.out_dtype)
        yield i0 - kept, i1, slab
        kept = min(overlap, used)


class _Bands:
    """A planned ``sliding_cosine`` call over several axes, laid out and
    ready to compute band by band: :meth:`run` writes the cosines of runs
    of whole bands, :meth:`rescaled` gives those of the windows it leaves
    to be recomputed one by one (float64 samples whose squares could
    underflow)."""

    def __init__(self, x, plan, method, out):
        plan, taps = spatial.compacted(plan, x.shape)
        geo = plan.geometry
        self.plan = plan
        self.padded, scale, self.tiny = _layout_signal(
            x, geo, plan.channel_axis, plans.compute_dtype(plan.out_dtype), out, taps,
            plan.center)
        self.nker = plan.khat.shape[0]
        self.row_offsets, self.tap_rows = _row_offsets(self.padded.shape, geo)
        self.signal_rows = self.padded.reshape(-1, self.padded.shape[-1])
        self.khat = plan.khat.reshape(self.nker, -1, geo.m[-1])
        with np.errstate(over="ignore"):  # (a floor past the range in these units: inf)
            self.floor = float(np.ldexp(plan.floor, -scale))
        self.exponent = powers.kernel_exponent(plan.exponent, plan.out_dtype)
        self.fft = _FFTPlan(plan, self.padded.shape) if _use_fft(method, plan) else None
        self.products = self.fft is None and use_products(geo.m[-1], self.khat.shape[1],
                                                          self.nker)
        self.loops = self.fft is None and not self.products
        self.nslot = _slot_count(self.tap_rows) if self.loops else 0
        # (the centered loops' weights of a row's sums, and where their taps lie)
        self.ones, self.row_taps = np.ones(geo.m[-1]), np.arange(geo.m[-1]) * geo.d[-1]
        self.rows = _band_rows(geo, None if self.fft is None else self.fft.band_rows)

    def band(self, i0, i1, q0, q1, out):
        """The cosines of band ``[i0, i1)`` (output rows ``[q0, q1)``) into
        ``out`` ``(B, q1 - q0, K, nout_r)``."""
        plan, geo, padded = self.plan, self.plan.geometry, self.padded
        signal_rows, rows = self.signal_rows, self.row_offsets
        if self.fft is not None or self.products:
            for b0, b1 in _batch_blocks(padded, geo, i0, i1):
                # (a window holding NaN or inf has an M2 of NaN, its sum of
                # squares NaN or inf, and either makes its cosine NaN)
                sums = _band_sums(padded[b0:b1], geo, plan.center, i0, i1).reshape(
                    b1 - b0, q1 - q0, -1)
                if self.fft is not None:
                    self.fft.cosines(padded[b0:b1], signal_rows, rows[b0:b1], self.tap_rows,
                                     self.khat, i0, i1, q0, q1, sums, self.floor, out[b0:b1])
                else:
                    _product_cosines(signal_rows, rows[b0:b1], self.tap_rows, self.khat, plan, q0,
                                     q1, sums, self.floor, out[b0:b1])
            return
        # (the loops sum the squares, or M2s, of the rows they read)
        scratch_arrays = (np.empty((self.nker, geo.nout[-1])), np.empty((2, geo.nout[-1])),
                          np.empty(geo.nout[-1]), np.empty(self.khat.shape[1], np.int64),
                          np.empty(self.khat.shape[1] * geo.m[-1], np.int64))
        own_sums = ((np.empty(geo.nout[-1]), self.ones,
                     scratch.empty("spatial row M2s", (self.nslot, geo.nout[-1])),
                     signal_rows.dtype == np.float64, self.row_taps) if plan.center else 0)
        kernels.spatial_cosines(signal_rows, rows[:, q0:q1], self.tap_rows, self.khat,
                                plan.kernel_state, geo.d[-1], geo.stride[-1], own_sums,
                                self.floor, plan.fill, self.exponent,
                                _kept_rows(signal_rows, self.nslot, geo.nout[-1]),
                                scratch_arrays, out)

    def batches(self, b0, b1):
        """The call restricted to batch indices ``[b0, b1)`` (a window's
        cosine is its batch index's own: the same bits)."""
        part = copy.copy(self)
        part.padded = self.padded[b0:b1]
        part.signal_rows = part.padded.reshape(-1, part.padded.shape[-1])
        part.row_offsets, part.tap_rows = _row_offsets(part.padded.shape, self.plan.geometry)
        if self.tiny is not None:
            part.tiny = tuple(array[b0:b1] for array in self.tiny)
        return part

    def run(self, out_rows, i0=0, i1=None):
        """Every band of the windows ``[i0, i1)`` along the first sliding
        axis (``i0`` where a band starts), over threads; ``out_rows(q0,
        q1)``: where output rows ``[q0, q1)`` go, ``(B, q1 - q0, K, nout_r)``."""
        geo = self.plan.geometry
        with blas.single_threaded() if self.products else contextlib.nullcontext():
            _run_bands(geo, lambda b0, b1, q0, q1: self.band(b0, b1, q0, q1, out_rows(q0, q1)),
                       self.padded.shape[0] * self.nker * self.khat.shape[1], self.rows, i0,
                       geo.nout[0] if i1 is None else i1)

    def rescaled(self, i0=0, i1=None):
        """``(index, values)`` of the windows ``[i0, i1)`` along the first
        sliding axis left to be recomputed: ``index`` ``(b, i_1, ..., i_r)``,
        ``values`` the sharpened cosines of every kernel."""
        if self.tiny is None:
            return
        geo = self.plan.geometry
        for index, window in _tiny_windows(self.tiny, geo, i0,
                                           geo.nout[0] if i1 is None else i1):
            yield index, _rescaled_cosines(window, self.plan)


def _slot_count(tap_rows):
    """The slots of ``_cpu.spatial.spatial_cosines``'s kept rows: an odd
    count, at least twice the rows an output row reads (so that the rows of
    nearby output rows rarely share a slot), for which those rows all have
    slots of their own (their sums of squares are added after the last is
    read)."""
    for nslot in range(2 * tap_rows.size + 1, 2 * tap_rows.size + 129, 2):
        if np.unique(tap_rows % nslot).size == tap_rows.size:
            return nslot
    return int(tap_rows.max()) + 1  # (as many slots as the rows an output row spans)


def _kept_rows(signal_rows, nslot, nout):
    """This thread's ``kept`` scratch of ``_cpu.spatial.spatial_cosines``."""
    width = signal_rows.shape[1] if signal_rows.dtype != np.float64 else 0
    return (scratch.empty("spatial rows", (nslot, width)),
            scratch.empty("spatial row squares", (nslot, nout)),
            scratch.empty("spatial row tags", nslot, np.int64))


def _product_cosines(signal_rows, rows, tap_rows, khat, plan, q0, q1, sums, floor, out):
    """The band's cosines (output rows ``[q0, q1)``, into ``out`` ``(B, q1 -
    q0, K, nout_r)``) with the dots of every kernel as matrix products
    (BLAS, float64) of the windows laid out as columns, a few output rows
    at a time (``config.PRODUCT_ELEMENTS`` elements of columns)."""
    geo = plan.geometry
    nker, ntap, m = khat.shape
    nout = geo.nout[-1]
    flat = khat.reshape(nker, ntap * m)
    exponent = powers.kernel_exponent(plan.exponent, plan.out_dtype)
    step = max(1, config.PRODUCT_ELEMENTS // (ntap * m * nout))
    columns = np.empty((ntap * m, step * nout))
    dots = np.empty((nker, step * nout))
    for b in range(rows.shape[0]):
        for r0 in range(q0, q1, step):
            r1 = min(r0 + step, q1)
            width = (r1 - r0) * nout
            kernels.window_columns(signal_rows, rows[b, r0:r1], tap_rows, m, geo.d[-1],
                                   geo.stride[-1], nout, columns[:, :width])
            np.matmul(flat, columns[:, :width], out=dots[:, :width])
            kernels.finish_rows(dots[:, :width].reshape(nker, r1 - r0, nout),
                                sums[b, r0 - q0 : r1 - q0], floor, plan.fill, plan.kernel_state,
                                exponent, out[b, r0 - q0 : r1 - q0])


@scratch.one_call
def sliding_cosine_grad(x, plan, taps, grad_output, method, sharpness, want_sharpness=True,
                        forward=None, unscale=0):
    """``(signal, kernel, sharpness, noise_floor)`` gradients of a planned
    ``sliding_cosine_grad`` call over several axes (``plan``, the kernel's
    ``taps`` and ``grad_output`` from ``_core.spatial.plan_sliding_grad``).

    A window over ``r`` axes is a window along the last one of the stack of
    the rows it reads (its channels and the taps of the other axes: the
    multi-channel windows of one axis), so each run of output rows is laid
    out as those stacks and handed to the one-axis gradients
    (``_cpu.drivers.sliding_cosine_grad``, with the kernel as ``(K, C * T,
    m_r)``); the stacks' gradients are added back to the rows they came
    from, and the kernel's, sharpness's and noise floor's, linear in the
    sums over windows, are added over the runs.  ``forward``: the forward's
    unsharpened result in the caller's layout (where ``sharpness`` is 1 and
    the last axis's stride 1), whose cosines the runs then take instead of
    computing them again.  ``unscale``: as ``_cpu.drivers.sliding_cosine_grad``'s."""
    plan, compact = spatial.compacted(plan, x.shape)
    geo = plan.geometry
    r = len(geo.axes)
    padded = _padded(x, geo, plan.channel_axis, plans.compute_dtype(plan.out_dtype), None,
                     compact)
    nbatch, n_last = padded.shape[0], padded.shape[-1]
    # the runs' one-axis gradients then find no sample out of range
    padded, floor, shift = signal_in_range(padded, plan.floor)
    shift = shift or 0
    rows, tap_rows = _row_offsets(padded.shape, geo)
    rows = rows.reshape(nbatch, -1)
    nker = taps.shape[0]
    kernel_rows = taps.reshape(nker, -1, geo.m[-1])

    def as_runs(array):  # the caller's layout as (B, Q, K, nout_r), a view where it can be
        array = computing_layout(np.asarray(array), plan.result_axes, r,
                                 spatial.has_kernel_axis(plan))
        return array.reshape(nbatch, nker, -1, geo.nout[-1]).transpose(0, 2, 1, 3)

    g = as_runs(grad_output)
    if forward is not None and (plan.exponent != 1.0 or geo.stride[-1] != 1):
        forward = None  # (the cosines cannot be read off a sharpened or strided result)
    cosines = None if forward is None else as_runs(forward)
    signal_rows = padded.reshape(-1, n_last)
    grad_rows = np.zeros(signal_rows.shape)
    # runs of output rows of one batch index: grad_output and the cosines
    # are then views (Q, K, nout_r) of the caller's arrays
    per_run = max(1, config.SPATIAL_GRAD_ELEMENTS // (tap_rows.size * n_last))
    starts = range(0, rows.shape[1], per_run)
    found = [None] * (nbatch * len(starts))  # each run's sums for plans.finish_grad
    run_plans = [None]  # (the runs' plans all finish the same kernel)

    def image(b, stacks):
        for j, q0 in enumerate(starts):
            these = rows[b, q0 : q0 + per_run]
            here = stacks[: these.size]
            kernels.gather_stacks(signal_rows, these, tap_rows, here)
            run_plan = plans.plan_sliding_grad(
                here, kernel_rows, g[b, q0 : q0 + per_run], -1, "valid", method, geo.d[-1],
                sharpness, floor, plan.fill, fill_unit_kernels, plan.center, geo.stride[-1])
            grad, totals = one_axis_grad(here, run_plan, method, want_sharpness,
                                         None if cosines is None else cosines[b, q0 : q0 + per_run],
                                         finish=False)
            kernels.add_stacks(grad, these, tap_rows, grad_rows)
            found[b * len(starts) + j] = totals
            run_plans[0] = run_plan

    def images(start, stop):
        # (the rows of one image are only ever added to by its own thread)
        stacks = np.empty((min(per_run, rows.shape[1]), tap_rows.size, n_last))
        saved = threads.thread_count()
        if stop - start < nbatch:  # one of several parts: this thread alone (a thread-local setting)
            numba.set_num_threads(1)
        try:
            for b in range(start, stop):
                image(b, stacks)
        finally:
            numba.set_num_threads(saved)

    # images side by side where there are several (the runs' own serial
    # steps then overlap too), else the runs in turn, each on every thread
    threads.run_split(nbatch, images)
    # the runs' sums added in the runs' order (the same bits for any
    # threads), then finished once: finished parts of ±inf added gave NaN
    sums, along, log_sum, c_sum = (np.zeros((nker, kernel_rows[0].size)), np.zeros(nker),
                                   0.0, 0.0)
    for run_sums, run_along, run_log_sum, run_c_sum in found:
        sums += run_sums
        along += run_along
        log_sum += run_log_sum
        c_sum += run_c_sum
    grad_kernel, grad_sharpness, grad_floor = (
        plans.finish_grad(run_plans[0], sums, along, log_sum, c_sum, unscale) if found else
        (np.zeros(kernel_rows.shape), 0.0, 0.0))
    inside = tuple(slice(left, size - right)
                   for size, (left, right) in zip(padded.shape[2:], geo.pads))
    grad = grad_rows.reshape(padded.shape)[(slice(None),) * 2 + inside]
    for a, runs in enumerate(compact):
        if runs is not None:
            grad = plans.expand_along(grad, 2 + a, runs, x.shape[geo.axes[a]])
    order = spatial.layout_axes(x.ndim, geo.axes, plan.channel_axis)
    grad = np.moveaxis(grad.reshape(tuple(x.shape[i] for i in order)), tuple(range(x.ndim)),
                       order)
    # (a gradient past the range of float64, or of the result's dtype, is ±inf, as it is)
    with np.errstate(over="ignore"):
        grad = _times_power_of_two(grad, shift + unscale)
        grad_floor = _times_power_of_two(grad_floor, shift)
        return (grad.astype(plan.out_dtype),
                grad_kernel.reshape(taps.shape).astype(plan.out_dtype), grad_sharpness,
                float(grad_floor))


# ---------------------------------------------------------------------------
# layouts


def computing_layout(array, result_axes, r, kernel_axis):
    """An array in the caller's layout of a result (``result_axes``, ``r``
    sliding axes) seen in the computing layout ``(batch..., K, nout_1, ...,
    nout_r)``: a view, with a K axis of 1 added where ``kernel_axis`` is
    False."""
    moved = np.moveaxis(array, result_axes, tuple(range(array.ndim)))
    return moved if kernel_axis else np.expand_dims(moved, moved.ndim - r)


def _padded(x, geo, channel_axis, dtype, out, compact):
    """The signal laid out ``(B, C, n_1 + pads, ...)``, C-contiguous, of
    ``dtype``, each axis padded with its mode's zeros, or laid out compact
    where ``compact`` (``_core.spatial.compacted``'s taps) says so: a copy
    unless the signal is all that already and ``out`` cannot overlap it."""
    order = spatial.layout_axes(x.ndim, geo.axes, channel_axis)
    moved = np.moveaxis(x, order, tuple(range(x.ndim)))
    r = len(geo.axes)
    nchan = x.shape[channel_axis] if channel_axis is not None else 1
    moved = moved.reshape((-1, nchan) + moved.shape[x.ndim - r:])
    for a, taps in enumerate(compact):
        if taps is not None:
            moved = plans.compact_along(moved, 2 + a, taps, geo.m[a] * geo.nwin[a])
    if (any(left or right for left, right in geo.pads) or moved.dtype != dtype
            or not moved.flags.c_contiguous
            or (out is not None and np.may_share_memory(out, x))):
        padded = np.zeros(moved.shape[:2] + tuple(n + left + right for n, (left, right)
                                                  in zip(moved.shape[2:], geo.pads)), dtype)
        padded[(slice(None),) * 2 + tuple(slice(left, left + n) for n, (left, _)
                                          in zip(moved.shape[2:], geo.pads))] = moved
        return padded
    return moved  # the signal itself: nothing to pad, convert or move


def _layout_signal(x, geo, channel_axis, dtype, out, compact, center):
    """``(padded, scale, tiny)``: the signal laid out ``(B, C, n_1 + pads,
    ...)`` (C-contiguous, ``dtype``, each axis padded with its mode's zeros
    or compact, see :func:`_padded`; a copy unless the signal is all that
    already and ``out`` cannot overlap it) and scaled by ``2**-scale`` (see
    ``SAFE_MIN`` above); ``tiny`` is None, or ``(unscaled padded float64
    signal, masks (float64) of the samples below the range and of those
    within or above it)``: the windows holding some of the first and none of
    the second are to be recomputed."""
    padded = _padded(x, geo, channel_axis, dtype, out, compact)
    if dtype != np.float64:
        return padded, 0, None  # float32 squares in float64 neither overflow nor underflow
    largest, smallest = blocks.magnitude_range(padded.reshape(padded.shape[:2] + (-1,)))
    least = CENTERED_SAFE_MIN if center else SAFE_MIN
    if largest == 0.0 or (least <= smallest and largest <= SAFE_MAX):
        return padded, 0, None
    # the magnitudes centred in the range (in binades), else the largest at its top
    shift = -((math.frexp(largest)[1] + math.frexp(smallest)[1]) // 2)
    if not (least <= math.ldexp(smallest, shift) and math.ldexp(largest, shift) <= SAFE_MAX):
        shift = math.frexp(SAFE_MAX)[1] - 1 - math.frexp(largest)[1]
    scaled = _times_power_of_two(padded, shift)
    if least <= math.ldexp(smallest, shift):
        return scaled, -shift, None
    magnitude = np.abs(scaled)
    below = (magnitude < least) & (padded != 0.0)  # (scaled to 0 too)
    return scaled, -shift, (padded, below.astype(np.float64),
                            (magnitude >= least).astype(np.float64))


def _result(out, final_shape, out_dtype, result_axes, r, kernel_axis):
    """``(moved, rows_view, finish)``: the result seen in the computing
    layout ``(batch..., K, nout_1, ..., nout_r)`` (a K axis of 1 added where
    the caller's result has none) and as ``(B, Q, K, nout_r)`` (``Q`` output
    rows per batch index), which the kernels fill, and ``finish()``, which
    returns the result in the caller's layout and dtype (``out`` if given).
    The kernels write into ``out`` itself where its dtype is the one they
    write and the view needs no copy; else into a C-ordered array."""
    dtype = _computing_dtype(out_dtype)
    final = out if (out is not None and out.dtype == dtype) else np.empty(final_shape, dtype)
    moved = computing_layout(final, result_axes, r, kernel_axis)
    batch, nout = moved.shape[: moved.ndim - r - 1], moved.shape[moved.ndim - r:]
    shape = (int(np.prod(batch)), moved.shape[-r - 1], int(np.prod(nout[:-1])), nout[-1])
    view = moved.view()
    try:
        view.shape = shape  # (raises where the view would need a copy)
    except AttributeError:
        written = np.empty(moved.shape, dtype)

        def finish():
            np.copyto(moved, written)
            return cast_result(final, out, out_dtype)

        return written, written.reshape(shape).transpose(0, 2, 1, 3), finish
    return moved, view.transpose(0, 2, 1, 3), lambda: cast_result(final, out, out_dtype)


def _computing_dtype(out_dtype):
    """The dtype the kernels write a result of ``out_dtype`` in."""
    return np.dtype(np.float32) if out_dtype.itemsize <= 4 else np.dtype(np.float64)


def _moved_index(index, moved, r, kernel):
    """The index into the computing layout of window ``index`` ``(b, i_1, ...,
    i_r)`` (``b`` over the flattened batch axes) and kernel ``kernel``."""
    batch = moved.shape[: moved.ndim - r - 1]
    return tuple(int(i) for i in np.unravel_index(index[0], batch)) + (kernel,) + index[1:]


# ---------------------------------------------------------------------------
# bands and window sums


def _band_rows(geo, rows=None):
    """Windows a band holds along the first sliding axis: ``rows``, or
    ``_core.spatial.band_windows``; or where each band starts (an array:
    strided FFT bands, see :class:`_FFTPlan`)."""
    return spatial.band_windows(geo) if rows is None else rows


def _run_bands(geo, band, weight, rows=None, first=0, last=None):
    """``band(i0, i1, q0, q1)`` for runs ``[i0, i1)`` of the windows along
    the first sliding axis (output rows ``[q0, q1)`` of each batch index),
    over threads: the bands of ``_band_rows(geo, rows)`` windows that start
    from ``first`` (where one starts) up to ``last``.  Bands start at the
    same places whatever the range and thread count."""
    nout0 = geo.nout[0] if last is None else last
    rows = _band_rows(geo, rows)
    per_row = math.prod(geo.nout[1:-1])  # output rows per window along axis 0
    if isinstance(rows, np.ndarray):
        starts = [int(i0) for i0 in rows if first <= i0 < nout0]
        rows = -(-(nout0 - first) // max(1, len(starts)))  # (a typical band's)
    else:
        starts = list(range(first, nout0, rows))
    ends = starts[1:] + [nout0]

    def work(start, stop):
        for i0, i1 in zip(starts[start:stop], ends[start:stop]):
            band(i0, i1, i0 * per_row, i1 * per_row)

    threads.run_split(len(starts), work, max(1, config.MIN_WINDOWS_PER_THREAD
                                             // max(1, rows * per_row * geo.nout[-1] * weight)))


def _batch_blocks(padded, geo, i0, i1):
    """``(b0, b1)``: the batch indices of ``padded`` in blocks whose samples
    under the windows ``[i0, i1)`` along the first sliding axis number at
    most ``config.SPATIAL_BAND_SAMPLES`` (at least one index a block): a
    band's float64 statistics are a few arrays of that many elements,
    whatever the batch (a window's sums are its batch index's own)."""
    nbatch = padded.shape[0]
    _, start, stop = _band_slab(geo, i0, i1)
    samples = padded.shape[1] * (stop - start) * math.prod(padded.shape[3:])
    step = max(1, config.SPATIAL_BAND_SAMPLES // max(1, samples))
    return [(b0, min(b0 + step, nbatch)) for b0 in range(0, nbatch, step)]


def _band_slab(geo, i0, i1):
    """``(first, start, stop)``: the samples ``[start, stop)`` along the
    first sliding axis whose window sums :func:`_band_sums` takes for the
    windows ``[i0, i1)``, from a multiple of that axis's blocks (a window's
    sums do not depend on the band, nor so on the stride), the first window
    ``first`` samples in."""
    s0 = geo.stride[0]
    first = (i0 * s0) % (geo.m[0] * geo.d[0])
    return first, i0 * s0 - first, (i1 - 1) * s0 + (geo.m[0] - 1) * geo.d[0] + 1


def _band_sums(padded, geo, center, i0, i1):
    """``(B, i1 - i0, nout_2, ...)`` float64: for the windows ``[i0, i1)``
    along the first sliding axis, each window's sum of squares over all its
    channels, or with ``center`` its M2 (sum of squared deviations from its
    mean), one axis at a time (``_cpu.spatial``)."""
    nbatch, nchan = padded.shape[:2]
    first, start, stop = _band_slab(geo, i0, i1)
    slab = padded[:, :, start:stop]
    band_geo = geo._replace(nout=(i1 - i0,) + geo.nout[1:])
    flat = slab.reshape((nbatch * nchan,) + slab.shape[2:])
    if center:
        # the samples: groups of one, each its own reference, read by the
        # first pass in place where they are C-ordered (one compiled kind per
        # float dtype)
        samples = flat
        if flat.dtype not in (np.float32, np.float64) or not flat.flags.c_contiguous:
            samples = scratch.empty("spatial band samples", flat.shape)
            samples[...] = flat
        refs, means, m2s = samples, None, None
        count = 1.0
        for a in range(len(geo.axes)):
            refs, means, m2s = _axis_pass(means, m2s, count, a, band_geo, first if a == 0 else 0,
                                          refs=refs, keep_refs=nchan > 1 or a < len(geo.axes) - 1)
            count *= geo.m[a]
        if nchan == 1:
            return m2s
        shape = (nbatch, nchan, -1)
        merged_means = np.empty((nbatch, m2s[0].size))
        merged = np.empty_like(merged_means)
        kernels.merge_channels(refs.reshape(shape), means.reshape(shape), m2s.reshape(shape),
                               count, merged_means, merged)
        return merged
    sums = flat
    for a in range(len(geo.axes)):
        sums = _axis_pass(sums, None, 0.0, a, band_geo, first if a == 0 else 0, square=a == 0)
    if nchan == 1:
        return sums
    sums = sums.reshape(nbatch, nchan, -1)
    total = sums[:, 0].copy()
    for c in range(1, nchan):  # (adds of squares: nothing cancels)
        total += sums[:, c]
    return total


def _axis_pass(values, m2s, count, a, geo, first, square=False, refs=None, keep_refs=True):
    """Windows along spatial axis ``a`` of ``values`` ``(BC, n_1, ...)``: their
    sums (of their squares with ``square``), or with ``refs`` the merged
    statistics ``(refs, means, m2s)`` of groups of ``count`` samples, each
    group's mean ``values`` its distance from its reference ``refs`` (a
    union's reference is its first group's; ``values`` and ``m2s`` None:
    the groups are the samples ``refs``; without ``keep_refs``, the
    references returned are None), from sample ``first`` of the axis on."""
    shape = refs.shape if refs is not None else values.shape
    outer = math.prod(shape[: a + 1])
    n, inner = shape[a + 1], math.prod(shape[a + 2 :])
    m, d, stride, nout = geo.m[a], geo.d[a], geo.stride[a], geo.nout[a]
    new_shape = shape[: a + 1] + (nout,) + shape[a + 2 :]
    moments = refs is not None
    src = values.reshape(outer, n, inner) if values is not None else None
    m2s = m2s.reshape(outer, n, inner) if m2s is not None else None
    dst_refs = None
    if moments:
        refs = refs.reshape(outer, n, inner)
        if keep_refs:  # (each window's reference: its first group's)
            dst_refs = scratch.empty(f"spatial axis pass {a} references", (outer, nout, inner))
            dst_refs[...] = refs[:, first : first + (nout - 1) * stride + 1 : stride]
            dst_refs = dst_refs.reshape(new_shape)
    # kept between bands and calls, a pair of arrays per axis (each pass
    # reads the one before it)
    dst = scratch.empty(f"spatial axis pass {a}", (outer, nout, inner))
    dst_m2 = scratch.empty(f"spatial axis pass {a} M2s", dst.shape) if moments else None
    if inner == 1:  # the last axis: runs of taps level by level along each row
        dst = dst[:, :, 0]
        if moments:
            if src is None:  # (a first axis that is the last one but for length-1 axes)
                # the samples as groups of one: each its own reference, at
                # a distance 0 from it, of no spread (NaN where not finite)
                refs = refs.astype(np.float64)
                src = np.zeros_like(refs)
                with np.errstate(invalid="ignore"):
                    m2s = refs - refs
            row_refs, row_means, row_m2s = (
                np.ascontiguousarray(v[:, first:, 0]) for v in (refs, src, m2s))
            kernels.row_window_moments(
                row_refs, row_means, row_m2s, count, 0, outer, m, d, stride, dst, dst_m2[:, :, 0],
                *np.empty((4, 2, n - first)))
        else:
            src = src[:, first:, 0]
            if first:
                src = np.ascontiguousarray(src)
            if m <= config.SPATIAL_ROW_DIRECT_TAPS:
                kernels.direct_row_sums(src, 0, outer, m, d, stride, square, dst)
            else:
                kernels.row_window_sums(src, 0, outer, m, d, stride, square, dst,
                                        *np.empty((3, n - first)))
    else:
        chunk = m * d
        width = min(inner, INNER_BLOCK)
        scans = scratch.empty("spatial axis scans", ((2, 2) if moments else (2,)) + (chunk, width))
        for o in range(outer):
            for q0 in range(0, inner, INNER_BLOCK):
                q1 = min(q0 + INNER_BLOCK, inner)
                if moments:
                    kernels.window_moments(refs, src, m2s, count, o, o + 1, q0, q1, m, d, first,
                                           stride, dst, dst_m2, scans[0], scans[1])
                else:
                    kernels.window_sums(src, o, o + 1, q0, q1, m, d, first, stride, square, dst,
                                        scans[0], scans[1])
    if not moments:
        return dst.reshape(new_shape)
    return dst_refs, dst.reshape(new_shape), dst_m2.reshape(new_shape)


def _row_offsets(padded_shape, geo):
    """``(rows, tap_rows)`` of ``_cpu.spatial.spatial_cosines``: ``rows[b,
    q]``, the first row (of the padded signal seen as rows along its last
    axis) that output row ``q`` of batch index ``b`` reads, and each
    kernel row's offset from it."""
    lead = padded_shape[:-1]  # (B, C, n_1 .. n_{r-1})
    strides = np.cumprod((1,) + lead[::-1][:-1])[::-1]  # rows per step of each leading axis
    r = len(geo.axes)
    starts = [np.arange(geo.nout[a]) * geo.stride[a] * strides[2 + a] for a in range(r - 1)]
    taps = [np.arange(lead[1]) * strides[1]] + [
        np.arange(geo.m[a]) * geo.d[a] * strides[2 + a] for a in range(r - 1)]
    rows = np.add.outer(np.arange(lead[0], dtype=np.int64) * strides[0], _outer_sum(starts))
    return rows, _outer_sum(taps)


def _outer_sum(vectors):
    total = np.zeros(1, dtype=np.int64)
    for vector in vectors:
        total = np.add.outer(total, vector.astype(np.int64)).ravel()
    return total


# ---------------------------------------------------------------------------
# dots by FFT


def _use_fft(method, plan):
    """Whether the dots come from FFTs: ``method``, or for ``"auto"`` the cost
    model (``config.SPATIAL_FFT_TAPS``: from that many taps per window and
    kernel on, the transforms cost less than the direct dots)."""
    if method != "auto":
        return method == "fft"
    return plan.khat[0].size >= config.SPATIAL_FFT_TAPS


class _FFTPlan:
    """Overlap-save over bands: each band's input rows (every other axis
    whole) zero-padded to a block of ``shape``, transformed (float64; the
    signal is already within range: float32 values, or float64 ones scaled
    by a power of two, see :func:`_layout_signal`), multiplied by the
    kernels' spectra and transformed back; a window whose FFT error bound
    is not small against its own norm gets its dot directly
    (``_cpu.fft.error_bound``, and the budget of the 1-D path,
    ``_cpu.drivers.fft_error_budget``)."""

    def __init__(self, plan, padded_shape):
        geo = plan.geometry
        self.plan = plan
        spans = [(m - 1) * d for m, d in zip(geo.m, geo.d)]
        s0 = geo.stride[0]
        # The blocks are those of the call without a stride (so are the
        # bits: a strided window is computed in the block it has there).
        windows = padded_shape[2] - spans[0]  # (without a stride)
        length = max(config.SPATIAL_FFT_ROWS, 4 * (spans[0] + 1))
        if padded_shape[2] <= length:
            # A first axis no longer than a band: one band of it all, no
            # longer than it (a 33-row image took blocks of 256 rows, eight
            # times the transforms it needs).
            length = transforms.fast_length(padded_shape[2])
            self.block_windows = windows
        else:
            length = transforms.fast_length(length)
            bands = -(-windows // max(1, length - spans[0]))
            if bands > 1 and bands % 2:
                # one band fewer, each a little longer: an even count, which
                # two threads share evenly.  The count follows from the
                # shapes alone, so the bits do not depend on the thread count.
                need = -(-windows // (bands - 1))
                length = transforms.fast_length(need + spans[0])
            self.block_windows = max(1, length - spans[0])  # windows a block holds
        if self.block_windows % s0 == 0:
            self.band_rows = self.block_windows // s0  # output rows a band holds
        else:  # where each band starts: its first window in block j on (a
            # stride past a block's windows leaves some blocks none)
            blocks = -(-windows // self.block_windows)
            self.band_rows = np.unique(-(-np.arange(blocks) * self.block_windows // s0))
        self.shape = (length,) + tuple(transforms.fast_length(n) for n in padded_shape[3:])
        self.spectra = transforms.kernel_spectra_nd(plan.khat, geo.d, self.shape)
        nchan = plan.khat.shape[1]
        self.c_block, self.c_output = transforms.error_bound(math.prod(self.shape), nchan)
        self.budget = fft_error_budget(plan.out_dtype, plan.khat[0].size, plan.exponent)
        self.exponent = powers.kernel_exponent(plan.exponent, plan.out_dtype)
        self.use_ducc0 = transforms.engine() == "ducc0"

    def cosines(self, padded, signal_rows, rows, tap_rows, khat, i0, i1, q0, q1, sums, floor,
                out):
        """The cosines of band ``[i0, i1)`` (output rows ``[q0, q1)``) into
        ``out`` ``(B, q1 - q0, K, nout_r)``."""
        plan, geo = self.plan, self.plan.geometry
        nker, nchan = khat.shape[0], padded.shape[1]
        first = i0 * geo.stride[0]  # (window; its block starts at a multiple of block_windows)
        start = first - first % self.block_windows
        stop = min(padded.shape[2], start + self.shape[0])
        freq = self.shape[:-1] + (self.shape[-1] // 2 + 1,)
        # kept between bands and calls (fresh pages cost more than the
        # transforms' passes over them); each load zeroes what the band's
        # samples do not fill
        block = scratch.empty("spatial fft block", (nchan,) + self.shape)
        spectrum = scratch.empty("spatial fft spectrum", (nchan,) + freq, complex)
        # one channel and one kernel: the product in place of the spectrum
        in_place = nker == 1 and nchan == 1
        product = (spectrum if in_place
                   else scratch.empty("spatial fft product", (nker,) + freq, complex))
        # the inverse transforms overwrite the block where it has room
        dots = (block[:nker] if nker <= nchan
                else scratch.empty("spatial fft dots", (nker,) + self.shape))
        picks = (slice(None), slice(first - start, first - start + (i1 - i0) * geo.stride[0],
                                    geo.stride[0])) + tuple(
            slice(0, count * s, s) for count, s in zip(geo.nout[1:], geo.stride[1:]))
        # the block's rows that the band's samples go to
        block_rows = _outer_sum([np.arange(nchan) * math.prod(self.shape[:-1]),
                                 np.arange(stop - start) * math.prod(self.shape[1:-1])]
                                + [np.arange(n) * math.prod(self.shape[a + 2:-1])
                                   for a, n in enumerate(padded.shape[3:-1])])
        flat_block = block.reshape(-1, self.shape[-1])
        n_last = padded.shape[-1]
        acc = np.empty(geo.nout[-1])
        for b in range(padded.shape[0]):
            values = padded[b, :, start:stop].reshape(-1, n_last)
            _zero_padding(block, (nchan, stop - start) + padded.shape[3:])
            sumsq = kernels.load_block(values, block_rows, flat_block, plan.center)
            block_norm = math.sqrt(sumsq)
            transforms.forward_nd(block, spectrum, self.use_ducc0)
            if in_place:
                blocks.spectral_product_in_place(spectrum.reshape(-1), self.spectra.reshape(-1))
            else:
                blocks.spectral_products(spectrum.reshape(nchan, 1, -1), self.spectra,
                                         product.reshape(1, nker, -1))
            transforms.inverse_nd(product, dots, self.use_ducc0)
            flat = dots.reshape(nker, -1)
            output_norms = np.sqrt(np.einsum("ki,ki->k", flat, flat))
            bounds = self.c_block * block_norm + self.c_output * output_norms
            window = dots[picks]
            if window.ndim > 3:  # (volumes: a copy)
                window = window.reshape(nker, q1 - q0, -1)
            kernels.fft_cosines(window, bounds, self.budget, sums[b],
                                signal_rows, rows[b, q0:q1], tap_rows, khat, geo.d[-1],
                                geo.stride[-1], floor, plan.fill, plan.kernel_state,
                                self.exponent, acc, out[b])


def _zero_padding(block, filled):
    """Zero what lies beyond ``filled`` (a length per axis, the first
    whole) along each axis of ``block``: the overlap-save block's padding,
    where a kept block may hold an earlier band's samples or the inverse
    transforms written over it."""
    for axis in range(1, block.ndim):
        index = [slice(None)] * block.ndim
        index[axis] = slice(filled[axis], None)
        block[tuple(index)] = 0.0


# ---------------------------------------------------------------------------
# windows far below the largest sample


def _tiny_windows(tiny, geo, i0=0, i1=None):
    """``(index, window)`` for each window (of ``[i0, i1)`` along the first
    sliding axis) holding samples whose squares could underflow and none
    within the range (``tiny``, see :func:`_layout_signal`): ``index``
    ``(b, i_1, ..., i_r)`` and ``window`` its samples ``(C, m_1, ..., m_r)``
    (float64, unscaled)."""
    padded, below, within = tiny
    i1 = geo.nout[0] if i1 is None else i1
    shape = (padded.shape[0], i1 - i0) + geo.nout[1:]
    # (a copy: the sums are scratch, which the next call reuses)
    counts = _band_sums(below, geo, False, i0, i1).reshape(shape).copy()
    counts[_band_sums(within, geo, False, i0, i1).reshape(shape) != 0.0] = 0.0
    for index in zip(*np.nonzero(counts)):
        index = (index[0], index[1] + i0) + index[2:]
        b, starts = index[0], index[1:]
        view = padded[(b, slice(None)) + tuple(
            slice(i * s, i * s + (m - 1) * d + 1, d)
            for i, s, m, d in zip(starts, geo.stride, geo.m, geo.d))]
        yield tuple(int(i) for i in index), view


def _rescaled_norm(window, center):
    """The norm of one window (centered: less its mean), scaled by its
    largest magnitude so that no square underflows."""
    if not np.isfinite(window).all():
        return np.nan if (center or np.isnan(window).any()) else np.inf
    largest = np.max(np.abs(window))
    scaled = window / largest
    if center:
        scaled = scaled - scaled.mean()
    return largest * math.sqrt(np.sum(scaled * scaled))


def _rescaled_cosines(window, plan):
    """The sharpened cosines of one window with every kernel of ``plan``,
    the window first scaled by its largest magnitude."""
    nker = plan.khat.shape[0]
    if not np.isfinite(window).all():
        return np.full(nker, np.nan)
    largest = np.max(np.abs(window))
    scaled = window / largest
    dots = plan.khat.reshape(nker, -1) @ scaled.ravel()
    if plan.center:
        scaled = scaled - scaled.mean()
    sumsq = float(np.sum(scaled * scaled))
    with np.errstate(over="ignore"):  # a floor far above the window: s -> 0
        denominator = math.sqrt(sumsq) + plan.floor / largest
    result = np.array([_cosine(dots[k], sumsq, denominator, plan.fill, plan.kernel_state[k])
                       for k in range(nker)])
    if plan.exponent != 1.0:
        sharpened = np.empty(nker)
        exponent = powers.kernel_exponent(plan.exponent, plan.out_dtype)
        if isinstance(exponent, tuple):  # (a float32 result: the kernels' power)
            powers.narrow_powers(result, exponent[0], sharpened)
        else:
            sharpen_kernel(result, exponent, sharpened)
        keep = (plan.kernel_state == KERNEL_NORMAL) & (sumsq != 0.0)
        result = np.where(keep, sharpened, result)
    return result
