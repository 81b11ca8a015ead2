"""The CPU backend of the sliding functions: lay a planned call
(``_core.sliding``) out as rows, split it over threads and segments, and
call the Numba kernels of ``_cpu.sliding`` (and, for ``method="fft"``, the
transforms of ``_cpu.fft``).

The entry points (:func:`sliding_cosine`, :func:`windowed_norm`,
:func:`sharpen`, :func:`sliding_cosine_grad`) take checked arguments and
plans.  Inside, a signal is
``piece``: ``(B, C, N)`` of the compute dtype, C-contiguous, whose windows
land at ``offset`` of the ``(B, K, L)`` result.
"""

import functools
import math

import numpy as np

from .._core import config
from .._core import sliding as plans
from .._core.scalars import KERNEL_ZERO
from . import blas, blocks, centered, powers, products, scratch, threads
from . import fft as transforms
from . import grad as gradients
from . import sliding as kernels

# The plans' unit kernels, compiled (``_core.sliding.unit_kernels``).
fill_unit_kernels = kernels.fill_unit_kernels

# ---------------------------------------------------------------------------
# entry points


def sharpen(array, exponent, out_dtype, out):
    """``sign(s) * |s| ** exponent`` of every element of ``array``, split
    among the threads, each element converted to float64 and rounded once:
    float32 results by the vectorised power of :mod:`._cpu.powers`, the
    others by libm's (float16 ones too: the powers of so few bits are often
    exact ties of their rounding, which libm's exact power rounds to even)."""
    narrow = out_dtype == np.float32
    stored = np.float32 if narrow else np.float64
    values = np.ascontiguousarray(array, dtype=stored).reshape(-1)
    # in place (``out`` the values' own memory) is safe element by element;
    # an ``out`` overlapping them elsewhere would overwrite values not yet read
    direct = (out is not None and out.dtype == stored and out.flags.c_contiguous
              and (not np.may_share_memory(out, values) or out.ctypes.data == values.ctypes.data))
    result = out.reshape(-1) if direct else np.empty(values.size, dtype=stored)
    if exponent == 1.0:  # s itself, NaN and signed zeros included
        result[:] = values
    elif narrow:
        threads.run_split(values.size, lambda start, stop: powers.sharpen_narrow(
            values[start:stop], exponent, result[start:stop], config.SHARPEN_BLOCK),
            config.MIN_WINDOWS_PER_THREAD)
    else:
        threads.run_split(values.size, lambda start, stop: kernels.sharpen_kernel(
            values[start:stop], exponent, result[start:stop]), config.MIN_WINDOWS_PER_THREAD)
    if direct:
        return out
    result = result.reshape(array.shape)
    # a power past the largest float16 rounds to inf, as it should: no warning
    with np.errstate(over="ignore"):
        if out is not None:
            np.copyto(out, result, casting="unsafe")
            return out
        result = result.astype(out_dtype, copy=False)
    return result if array.ndim else result[()]


@scratch.one_call
def windowed_norm(x, plan, out):
    """The norms of a planned ``windowed_norm`` call (``plans.NormPlan``)."""
    rows, lead = _as_rows(x, plan.ax, None, plans.compute_dtype(plan.out_dtype))
    rows, plan, _ = plans.compacted(rows, plan, plan.m)
    # written in out where it is the result's layout, as sliding_cosine's
    # (a memory map of norms larger than memory was a temporary first)
    target = None if (out is None or np.may_share_memory(out, rows)) else (
        _out_view(out, rows.dtype, (rows.shape[0], plan.nout), plan.ax, None, False))
    result = np.empty((rows.shape[0], plan.nout), dtype=rows.dtype) if target is None else target

    def run(piece, into, offset):
        run_windowed_norm(piece, plan.m, plan.d, into.reshape(into.shape[0], -1), offset,
                          plan.center)

    if plan.stride == 1:
        for piece, offset in _pieces(rows, plan.pad_left, plan.pad_right, plan.span):
            run(piece, result, offset)
    else:  # (every norm costs O(1): none is worth leaving out)
        _strided(rows, plan, 1, kernels.tile_length(plan.m, plan.d), run, result[:, None])
    if target is not None:
        return out
    return _deliver(result.reshape(lead + (plan.nout,)), plan.ax, None, False, plan.out_dtype, out)


def _strided(rows, plan, nker, tile, run, result):
    """Every ``plan.stride``-th window of ``rows`` into ``result`` ``(B, K,
    ceil(L / stride))``, by ``run(piece, into, offset)``, which writes the
    windows of ``piece`` into ``into[..., offset:]``.  Every window is
    computed, so that each has the bits it has without a stride (which the
    Dask blocks, computing theirs without one, then give too; the products
    could leave windows out, but a product's bits depend on the shape of its
    block), a block of the FFT path's segments at a time: blocks start on
    segments of the pieces, whole tiles, as the threads' parts do, and the
    call holds one block's scores, not every window's."""
    stride, span = plan.stride, plan.span
    step = segment_length(tile, nker)
    block = np.empty((rows.shape[0], nker, min(step, plan.nwin)), dtype=rows.dtype)
    for piece, offset in _pieces(rows, plan.pad_left, plan.pad_right, span):
        windows = piece.shape[-1] - span
        for w0 in range(0, windows, step):
            count = min(step, windows - w0)
            run(piece[..., w0 : w0 + count + span], block, 0)
            first = -(offset + w0) % stride  # the block's first window kept
            kept = block[..., first:count:stride]
            at = (offset + w0 + first) // stride
            result[..., at : at + kept.shape[-1]] = kept


@scratch.one_call
def sliding_cosine(x, plan, method, out):
    """The cosines of a planned ``sliding_cosine`` call (``plans.SlidingPlan``)."""
    nker, nchan, m = plan.khat.shape
    is_bank = bool(plan.bank_shape)
    rows, lead = _as_rows(x, plan.ax, plan.channel_axis, plans.compute_dtype(plan.out_dtype))
    rows, plan, _ = plans.compacted(rows, plan, m)
    shape = (rows.shape[0], nker, plan.nout)
    target = None if out is None or np.may_share_memory(out, rows) else _out_view(
        out, rows.dtype, shape, plan.ax, plan.channel_axis, is_bank)
    result = np.empty(shape, dtype=rows.dtype) if target is None else target
    chosen = choose_method(method, m, nchan, nker, rows.shape[0], plan.nwin, plan.span)
    budget = fft_error_budget(plan.out_dtype, m * nchan, plan.exponent)
    exponent = powers.kernel_exponent(plan.exponent, result.dtype)
    args = (plan.khat, plan.kernel_state, plan.d, exponent, plan.floor, plan.fill)
    def run(piece, into, offset):
        if chosen == "fft" and piece.shape[-1] - plan.span > 0:
            run_fft(piece, *args, into, offset, budget, plan.center)
        else:
            run_direct(piece, *args, into, offset, plan.center)

    if plan.stride == 1:
        for piece, offset in _pieces(rows, plan.pad_left, plan.pad_right, plan.span):
            run(piece, result, offset)
    else:
        _strided(rows, plan, nker, kernels.tile_length(m, plan.d), run, result)
    if target is not None:
        return out
    # the kernels' layout: lead + bank + (L,)
    moved = lead + ((nker,) if is_bank or plan.channel_axis is not None else ()) + (plan.nout,)
    return _deliver(result.reshape(moved), plan.ax, plan.channel_axis, is_bank, plan.out_dtype, out)


@scratch.one_call
def sliding_cosine_grad(x, grad_plan, method, want_sharpness=True, forward=None, finish=True,
                        unscale=0):
    """``(signal, kernel, sharpness, noise_floor)`` gradients of a planned
    ``sliding_cosine_grad`` call (``plans.SlidingGradPlan``), see
    ``_cpu.grad``.  A tile of windows at a time: the windows (less their
    means with ``center``) as the columns of a matrix (as the forward's
    products lay them out), the cosines from its product with the kernels, the per-window coefficients, and the two sums
    over kernels and over windows as products too (BLAS, float64).  Rows
    with samples of magnitude outside ``[SAFE_MIN, SAFE_MAX]`` take the
    forward's exact cosines instead (by ``method``), whose squares and dots
    never leave the float64 range.  ``want_sharpness=False`` skips the
    sharpness's gradient (its logarithms), returning 0.  ``forward``: the
    forward's unsharpened result for every window (``stride`` 1), in the
    caller's layout, taken instead of the product that would compute it
    again.  ``unscale``: ``grad_output`` was divided by ``2**unscale``; the
    gradients are multiplied back (see ``plans.finish_grad``).
    ``finish=False``: the signal's gradient and the sums
    ``plans.finish_grad`` takes (``sums, along, log_sum, c_sum``), for a
    caller that adds up several calls' sums before it finishes them once
    (the images' runs: finished kernel gradients of ±inf added gave NaN)."""
    plan = grad_plan.forward
    nker, nchan, m = plan.khat.shape
    is_bank = bool(plan.bank_shape)
    rows, lead = _as_rows(x, plan.ax, plan.channel_axis, plans.compute_dtype(plan.out_dtype))
    n = rows.shape[-1]
    rows, plan, compact = plans.compacted(rows, plan, m)
    exponent, floor, d = plan.exponent, plan.floor, plan.d
    count, nwin = rows.shape[0], plan.nwin
    if plan.pad_left or plan.pad_right or rows.dtype != np.float64:
        padded = np.zeros((count, nchan, rows.shape[-1] + plan.pad_left + plan.pad_right))
        padded[..., plan.pad_left : plan.pad_left + rows.shape[-1]] = rows
    else:  # (only read)
        padded = rows
    # Samples whose squares could leave the float64 range: scaled into it
    # where a power of two brings them there (the same scaled samples for any
    # scaling: the same bits), the gradients with respect to the signal and
    # the noise floor scaled back at the end
    padded, floor, shift = signal_in_range(padded, floor)
    norms = np.empty((count, nwin))
    run_windowed_norm(padded, m, d, norms, 0, plan.center)
    exact = None
    if forward is None and shift is None:
        # the products of windows with unit kernels could leave the float64 range
        exact = np.empty((count, nker, nwin))
        args = (plan.khat, plan.kernel_state, d, 1.0, floor, 0.0)
        if choose_method(method, m, nchan, nker, count, nwin, plan.span) == "fft":
            run_fft(padded, *args, exact, 0, fft_error_budget(np.float64, m * nchan, 1.0),
                    plan.center)
        else:
            run_direct(padded, *args, exact, 0, plan.center)
    # grad_output in the kernels' layout
    kernel_axes, caller_axes = plans.moved_axes(plan.ax, plan.channel_axis, is_bank)
    # (a view where no axis moves: the tiles convert what they read)
    g = np.reshape(moveaxis(grad_plan.grad_output, caller_axes, kernel_axes),
                   (count, nker, plan.nout))
    if forward is not None:
        exact = np.reshape(moveaxis(forward, caller_axes, kernel_axes), (count, nker, nwin))
    left_out = None
    stride = plan.stride
    if stride > 1:
        # The windows left out pass on no gradient, though they hold NaN:
        # g 0 (each tile's), a norm of 0 (coefficients 0) and columns of zeros.
        left_out = np.arange(nwin) % stride != 0
        norms[:, left_out] = 0.0
    live = plan.kernel_state != KERNEL_ZERO
    flat = plan.khat.reshape(nker, nchan * m)
    # (each window's mean with center; without, no columns: the windows as they are)
    means = np.zeros_like(norms) if plan.center else np.empty((count, 0))
    grad = np.zeros_like(padded)
    # A tile holds the windows whose columns fill GRAD_TILE_ELEMENTS: a part
    # of one row, or whole short rows side by side (far fewer calls, and
    # products large enough to run well).  Each group of rows sums its share
    # of the sums over windows apart, added in group order at the end:
    # groups are fixed, so the bits do not depend on the thread count.
    most = max(1, config.GRAD_TILE_ELEMENTS // (nchan * m))
    tile = min(most, nwin)
    per_group = max(1, most // max(1, nwin))
    groups = -(-count // per_group)
    sums = np.zeros((groups, nker, nchan * m))
    along = np.zeros((groups, nker))
    scalars = np.zeros((groups, 2))  # the sums of g out ln|s| and of c
    width = tile * per_group  # windows a tile, at most

    def work(start, stop):
        # NaN and inf samples: their windows' products are NaN, as they should
        # be, not warnings (in each thread: NumPy's error state is per thread)
        with np.errstate(invalid="ignore", over="ignore"):
            # a tile's arrays, allocated once: fresh ones would be fresh pages each time
            windows = np.empty(nchan * m * width)
            per_kernel = [np.empty(nker * width) for _ in range(4)]
            shares = np.empty(nchan * m * width)
            spread = np.empty((per_group, nwin))  # c summed over the kernels
            for group in range(start, stop):
                b = group * per_group
                nrows = min(per_group, count - b)
                rows_here = slice(b, b + nrows)
                if plan.center:
                    gradients.window_means(padded[rows_here], m, d, means[rows_here])
                for t0 in range(0, nwin, tile):
                    size = min(tile, nwin - t0)
                    total = nrows * size
                    # the windows (less their means) as columns, row after row
                    here = windows[: nchan * m * total].reshape(nchan * m, total)
                    cosines, g_t, a_t, c_t = (buffer[: nker * total].reshape(nker, total)
                                              for buffer in per_kernel)
                    products.window_columns(padded, b, nrows, t0, size, m, d,
                                            means[rows_here, t0 : t0 + size].reshape(-1), here)
                    if left_out is not None:
                        here.reshape(nchan * m, nrows, size)[:, :, left_out[t0 : t0 + size]] = 0.0
                    norm = norms[rows_here, t0 : t0 + size].reshape(-1)
                    if exact is None:
                        np.matmul(flat, here, out=cosines)
                        with np.errstate(divide="ignore", invalid="ignore"):
                            np.divide(cosines, norm + floor, out=cosines)
                    else:
                        np.copyto(cosines.reshape(nker, nrows, size),
                                  exact[rows_here, :, t0 : t0 + size].transpose(1, 0, 2))
                    g_here = g_t.reshape(nker, nrows, size)
                    if stride == 1:
                        np.copyto(g_here, g[rows_here, :, t0 : t0 + size].transpose(1, 0, 2))
                    else:  # (the kept windows' g, 0 elsewhere)
                        g_here[...] = 0.0
                        first = -(-t0 // stride) * stride  # (the tile's first window kept)
                        kept = slice(first // stride, -(-(t0 + size) // stride))
                        np.copyto(g_here[:, :, first - t0 :: stride],
                                  g[rows_here, :, kept].transpose(1, 0, 2))
                    logs, cs = gradients.coefficients(cosines, norm, g_t, exponent, floor, live,
                                                      want_sharpness, a_t, c_t, along[group])
                    scalars[group] += (logs, cs)
                    # the sum over kernels of a khat: each window's share of its samples
                    share = shares[: nchan * m * total].reshape(nchan * m, total)
                    np.matmul(flat.T, a_t, out=share)
                    gradients.scatter_windows(share, b, nrows, t0, m, d, grad)
                    sums[group] += a_t @ here.T  # the sum over windows of a (w - mean)
                    np.sum(c_t.reshape(nker, nrows, size), axis=0, out=spread[:nrows, t0 : t0 + size])
                # (a window of norm 0 has c 0: it adds nothing)
                gradients.spread_term(padded[rows_here], spread[:nrows], norms[rows_here],
                                      means[rows_here], m, d, grad[rows_here])

    # groups side by side, one BLAS thread each
    with blas.single_threaded():
        threads.run_split(groups, work)
    log_sum, c_sum = np.sum(scalars, axis=0)
    along = np.sum(along, axis=0)
    sums = np.sum(sums, axis=0)
    if compact is None:
        grad = grad[..., plan.pad_left : plan.pad_left + n]
    else:
        grad = plans.expand_along(grad, -1, compact, n)
    if plan.channel_axis is None:
        grad_signal = moveaxis(grad.reshape(lead + (n,)), -1, plan.ax)
    else:
        grad_signal = moveaxis(grad.reshape(lead + (nchan, n)), (-2, -1),
                               (plan.channel_axis, plan.ax))
    unscale = unscale if finish else 0  # (unfinished: the caller's to apply)
    with np.errstate(over="ignore"):  # (a sum past float64's range is ±inf, as it is)
        grad_signal = _times_power_of_two(grad_signal, (shift or 0) + unscale).astype(
            plan.out_dtype)
        c_sum = float(_times_power_of_two(np.float64(c_sum), shift or 0))
    if not finish:
        return grad_signal, (sums, along, log_sum, c_sum)
    return (grad_signal,) + plans.finish_grad(grad_plan, sums, along, log_sum, c_sum, unscale)


def sharpen_rows(s, exponents):
    """In place: ``s[b, k] = sign(s) |s| ** exponents[k]`` for unsharpened
    cosines ``s`` ``(B, K, L)`` (C-contiguous, float32 or float64), rows
    split over the threads; float32 rows by the vectorised powers of
    ``_cpu.powers``."""
    nker, length = s.shape[1], s.shape[2]
    single = s.dtype == np.float32

    def work(start, stop):
        if single:
            bits = s.view(np.int32)
            row = np.empty(length)
            scales = np.empty(length, dtype=np.int64)
        for r in range(start, stop):
            b, k = divmod(r, nker)
            if single:
                powers.sharpen_float32(s[b, k], bits[b, k], exponents[k], row, scales)
                s[b, k] = row
            else:  # (in place)
                kernels.sharpen_kernel(s[b, k], exponents[k], s[b, k])

    threads.run_split(s.shape[0] * nker, work)


def sharpen_rows_grad(s, out, g, exponents, want_log):
    """The backward of :func:`sharpen_rows` (``out`` its result, ``g`` the
    gradient of the loss with respect to it): ``(grad_s, log_sums)``, the
    gradient with respect to ``s`` (of its dtype) and per kernel the sums of
    ``g out ln|s|`` (``dL/dP_k``; zeros without ``want_log``), summed in
    row order (the same bits for any thread count)."""
    nrows, nker, length = s.shape
    grad = np.empty(s.shape, s.dtype)
    log_sums = np.zeros((nrows, nker))
    single = s.dtype == np.float32

    def work(start, stop):
        logs = np.empty(length if want_log else 0)
        bits = s.view(np.int32) if single else None
        for r in range(start, stop):
            b, k = divmod(r, nker)
            if want_log and single:
                powers.log_float32(s[b, k], bits[b, k], logs)
            elif want_log:
                gradients.log_row(s[b, k], logs)
            log_sums[b, k] = gradients.sharpen_row_grad(s[b, k], out[b, k], g[b, k],
                                                        exponents[k], logs, grad[b, k])

    threads.run_split(nrows * nker, work)
    return grad, np.sum(log_sums, axis=0)


# ---------------------------------------------------------------------------
# layout: the caller's axes to the kernels' rows and back


def moveaxis(array, source, destination):
    """``np.moveaxis``, or ``array`` itself when no axis would move: its
    argument checks cost tens of microseconds once a long signal has pushed
    the interpreter out of the caches, on every call."""
    source = source if isinstance(source, tuple) else (source,)
    destination = destination if isinstance(destination, tuple) else (destination,)
    if all(s % array.ndim == t % array.ndim for s, t in zip(source, destination)):
        return array
    return np.moveaxis(array, source, destination)


def _as_rows(signal, axis, channel_axis, compute_dtype):
    """View ``signal`` as C-contiguous ``(B, C, n)`` of ``compute_dtype``.

    Returns the array and the leading (batch) shape."""
    if channel_axis is None:
        moved = moveaxis(signal, axis, -1)
        lead = moved.shape[:-1]
        rows = moved.reshape(-1, 1, moved.shape[-1])
    else:
        moved = moveaxis(signal, (channel_axis, axis), (-2, -1))
        lead = moved.shape[:-2]
        rows = moved.reshape((-1,) + moved.shape[-2:])
    return np.ascontiguousarray(rows, dtype=compute_dtype), lead


def _pieces(rows, pad_left, pad_right, span):
    """Split a padded 'valid' problem into pieces that each run unpadded.

    Yields ``(array, offset)``: the windows of ``array`` land at output
    ``offset``.  Only the first and last ``span`` samples are copied with their
    zero padding; the interior runs on the signal itself."""
    n = rows.shape[-1]
    if pad_left == 0 and pad_right == 0:
        yield rows, 0
        return
    if n <= span:
        yield np.pad(rows, ((0, 0), (0, 0), (pad_left, pad_right))), 0
        return
    if pad_left:
        yield np.pad(rows[..., :span], ((0, 0), (0, 0), (pad_left, 0))), 0
    yield rows, pad_left
    if pad_right:
        tail = np.pad(rows[..., n - span :], ((0, 0), (0, 0), (0, pad_right)))
        yield tail, pad_left + n - span


def _deliver(result, ax, channel_axis, is_bank, out_dtype, out):
    """Move the kernel's ``(lead..., [K,] L)`` layout back to the caller's axes,
    cast to the output dtype and fill ``out`` if given.

    A bank's K axis goes just before ``axis``; a multi-channel kernel's C_out
    axis replaces the signal's channel axis."""
    return cast_result(moveaxis(result, *plans.moved_axes(ax, channel_axis, is_bank)), out,
                       out_dtype)


def cast_result(result, out, out_dtype):
    """``result`` as ``out_dtype``, or copied into ``out`` where it is not
    ``out`` itself; a norm past float16's range is inf, as documented, and
    a cosine below its subnormals 0, without NumPy's warnings (under a
    user's ``np.seterr``)."""
    with np.errstate(over="ignore", under="ignore"):
        if out is None:
            return result.astype(out_dtype, copy=False)
        if result is not out:
            np.copyto(out, result, casting="unsafe")
        return out


def _out_view(out, dtype, shape, ax, channel_axis, is_bank):
    """``out`` seen in the kernel's ``(B, K, L)`` layout (the inverse of the
    axis moves of ``_deliver``), when that view is C-contiguous and of the
    compute dtype: the kernels then write the result in place, sparing a
    copy (not when ``out`` overlaps the signal: windows read later would
    see results).  ``None`` otherwise."""
    if out.dtype != dtype:
        return None
    kernel_axes, caller_axes = plans.moved_axes(ax, channel_axis, is_bank)
    view = moveaxis(out, caller_axes, kernel_axes)
    if not view.flags.c_contiguous:
        return None
    return view.reshape(shape)


# ---------------------------------------------------------------------------
# choosing the method

def _direct_dot_ns(m, nchan, nker):
    return config.DIRECT_NS[1] * nker * nchan * m


def _fft_dot_ns(nchan, nker):
    _, per_channel, per_kernel, per_pair = config.FFT_NS
    return per_channel * nchan + per_kernel * nker + (per_pair * nchan * nker if nchan > 1 else 0.0)


def _transforms_pay(planned, all_direct):
    """Whether dots planned to cost ``planned`` ns save enough over direct
    dots at ``all_direct`` ns to be worth a plan's passes: below the model's
    accuracy they do not (``config.FFT_MARGIN``)."""
    return planned <= config.FFT_MARGIN * all_direct


def choose_method(method, m, nchan, nker, rows, nwin, span):
    """``"direct"`` or ``"fft"`` for ``method`` (``"auto"`` by the cost model)
    for a call of ``rows`` rows of ``nwin`` windows spanning ``span + 1``
    samples: the FFT where it costs less, its fixed cost per call and the
    whole blocks that each row takes included (a row of 101 windows took a
    block of 4096 samples at ``m = 200``), and where the FFT path's plan
    would transform Gaussian noise (``run_fft`` gives a segment direct dots
    where transforms do not pay, ``_transforms_pay``)."""
    if method != "auto":
        return method
    if m * nchan < config.FFT_MIN_TAPS:
        return "direct"
    direct_dots = _direct_dot_ns(m, nchan, nker)
    fft_dots = _fft_dot_ns(nchan, nker)
    direct = rows * nwin * (config.DIRECT_NS[0] + direct_dots)
    nfft = transforms.fft_length(span, single=nker == 1 and nchan == 1)
    transformed = rows * transforms.block_count(nwin, span, nfft) * (nfft - span)
    fft = config.FFT_CALL_NS + transformed * (config.FFT_NS[0] + fft_dots)
    return "fft" if fft < direct and _transforms_pay(fft_dots, direct_dots) else "direct"


def fft_error_budget(out_dtype, taps, exponent):
    """The largest FFT error in a window's dot, relative to the window's own
    norm, that leaves its result as accurate as the direct method's: that
    method's own float64 bound, ``4 (taps + 4) eps``; for float32 and float16
    results, a sixteenth of the output's rounding unit (divided by the
    sharpening exponent, which multiplies errors near ``|s| = 1``) when that
    is larger.  An exponent below 1 magnifies errors near ``s = 0`` without
    limit: the float64 bound then, for every dtype.  Windows whose bound
    exceeds it get their dots directly."""
    budget = 4.0 * (taps + 4) * np.finfo(np.float64).eps
    if np.dtype(out_dtype).itemsize < 8 and exponent >= 1.0:
        budget = max(budget, float(np.finfo(out_dtype).eps) / 16 / max(1.0, exponent))
    return budget


def _unsafe_flags(rows, nwin, tile):
    return np.zeros((rows, max(1, -(-nwin // tile))), dtype=np.bool_)


def run_windowed_norm(piece, m, d, result, offset, center=False):
    """``result[b, offset + i]``: the norm of window ``i`` of ``piece`` (with
    ``center``, of the window less its mean)."""
    span = (m - 1) * d

    def work(start, stop):
        if center:
            tile, bufs = centered.make_buffers(m, d, piece.shape[1], stop - start)
            m2 = scratch.empty("tile centered M2", min(tile, stop - start))

            def norms(samples, w0, w1, out, at, unsafe):
                centered.norm_kernel(samples, w0, w1, m, d, tile, bufs, m2, out, at, unsafe)

            def fix(unsafe):
                centered.norms_out_of_range(piece, start, stop, m, d, tile, bufs, m2, result,
                                            offset, unsafe)
        else:
            tile, bufs = kernels.make_buffers(m, d, stop - start)
            scan = kernels.rows_scan(m, d, piece.shape[-1] - span)

            def norms(samples, w0, w1, out, at, unsafe):
                kernels.windowed_norm_kernels[scan](samples, w0, w1, m, d, tile, bufs, out, at,
                                                    unsafe)

            def fix(unsafe):
                kernels.norms_out_of_range[scan](piece, start, stop, m, d, tile, bufs, result,
                                                 offset, unsafe)

        unsafe = _unsafe_flags(piece.shape[0], stop - start, tile)
        norms(piece, start, stop, result, offset, unsafe)
        if not unsafe.any():
            return

        def scaled_norms(samples, floor, shift):
            scaled = np.empty((piece.shape[0], stop - start))
            flags = _unsafe_flags(piece.shape[0], stop - start, tile)
            norms(samples, 0, stop - start, scaled, 0, flags)
            if not flags.any():
                result[:, offset + start : offset + stop] = _times_power_of_two(scaled, -shift)
            return flags

        flags = _scaled_into_range(piece, start, stop, span, 0.0, scaled_norms)
        if flags is None or flags.any():
            fix(unsafe)

    threads.run_segments(piece.shape[-1] - span, kernels.tile_length(m, d), work,
                         piece.shape[0] * piece.shape[1])


def _scaled_into_range(piece, start, stop, span, floor, run):
    """Where a thread's kernel flagged tiles of its part ``[start, stop)``
    holding samples whose squares could leave the float64 range (their
    windows are otherwise recomputed one at a time, rescaled): ``run(samples,
    floor, shift)`` on the part scaled into range by ``_in_range`` (the same
    bits: every operation is exact under power-of-two scaling), its windows
    through the loops again, many times faster.  Returns the tiles that run
    left flagged (none: every window done), or None where no power of two
    brings the part in range (``run`` not called: the part is then taken as
    it is)."""
    in_range = _in_range(piece[:, :, start : stop + span], floor)
    return None if in_range is None else run(*in_range)


def run_direct(piece, khat, kernel_state, d, exponent, floor, fill, result, offset, center=False):
    """Sliding cosines by direct dots, with the kernel for the shape at hand
    (``center``: the windows' centered norms, ``khat`` centered)."""
    nker, nchan, m = khat.shape
    span = (m - 1) * d
    tile = kernels.tile_length(m, d)
    if use_products(m, nchan, nker):
        _run_products(piece, khat, kernel_state, d, exponent, floor, fill, result, offset, center)
        return
    fused = not center and nchan == 1 and m <= config.FUSED_TAPS
    # (a float32 result's sharpening may be (P,), never 1.0)
    plain = nker == 1 and (exponent == 1.0 or kernel_state[0] != kernels.KERNEL_NORMAL)
    short = fused and plain and m <= kernels.DIRECT_SUM_TAPS
    if fused:
        kernel = (kernels.fused_bank_kernel if nker > 1 else
                  kernels.fused_kernel if plain else kernels.sharpened_fused_kernel)
    elif not center:
        kernel = kernels.direct_kernels[kernels.rows_scan(m, d, piece.shape[-1] - span)]

    def work(start, stop):
        if center:
            _, bufs = centered.make_buffers(m, d, nchan, stop - start)
            m2 = scratch.empty("tile centered M2", min(tile, stop - start))
        else:
            _, bufs = kernels.make_buffers(m, d, stop - start)

        def run(samples, w0, w1, floor, at):
            """The windows' cosines, and the flags of the tiles holding samples
            whose squares could leave the float64 range (left to be fixed)."""
            unsafe = _unsafe_flags(samples.shape[0], w1 - w0, tile)
            if center:
                centered.direct_kernel(samples, w0, w1, khat, kernel_state, d, exponent, floor,
                                       fill, tile, bufs, m2, result, at, unsafe)
            elif short:
                kernels.short_kernels[m](samples, w0, w1, khat, kernel_state, d, floor, fill,
                                         tile, bufs, result, at, unsafe)
            else:
                kernel(samples, w0, w1, khat, kernel_state, d, exponent, floor, fill, tile,
                       bufs, result, at, unsafe)
            return unsafe

        unsafe = run(piece, start, stop, floor, offset)
        if not unsafe.any():
            return
        # (the cosines need not be scaled back)
        flags = _scaled_into_range(piece, start, stop, span, floor,
                                   lambda samples, floor, _: run(samples, 0, stop - start, floor,
                                                                 offset + start))
        if flags is not None:
            if not flags.any():
                return
            unsafe = run(piece, start, stop, floor, offset)  # (the scaled run's cosines replaced)
        if center:
            centered.fix_out_of_range(piece, start, stop, khat, kernel_state, d, exponent, floor,
                                      fill, tile, bufs, m2, result, offset, unsafe)
        else:
            kernels.fix_out_of_range(piece, start, stop, khat, kernel_state, d, exponent, floor,
                                     fill, tile, bufs, result, offset, unsafe, fused)

    threads.run_segments(piece.shape[-1] - span, tile, work, _weight(piece, khat))


def _weight(piece, khat):
    """What a window of ``piece`` costs against one of one row, one channel
    and one kernel (``threads.run_segments``)."""
    return piece.shape[0] * khat.shape[0] * khat.shape[1]


def use_products(m, nchan, nker):
    """Whether the direct method takes its dots as matrix products
    (``_cpu.products``) rather than by the loops: where the costs of
    ``config.PRODUCT_NS`` and ``config.LOOP_NS`` say they are cheaper (or as
    ``config.DIRECT_DOTS`` says)."""
    if config.DIRECT_DOTS != "auto":
        if config.DIRECT_DOTS not in ("loops", "products"):
            raise ValueError("cosim_np._core.config.DIRECT_DOTS must be 'auto', 'loops' or "
                             f"'products'; got {config.DIRECT_DOTS!r}.")
        return config.DIRECT_DOTS == "products"
    taps = nchan * m
    loops = config.LOOP_NS[0] + config.LOOP_NS[1] * nker * taps
    per_window, per_tap, per_product = config.PRODUCT_NS
    return per_window + per_tap * taps + per_product * nker * taps < loops


def _run_products(piece, khat, kernel_state, d, exponent, floor, fill, result, offset, center):
    """``run_direct`` with the dots as matrix products (``_cpu.products``): a
    tile's sums of squares (centered: M2s) as the loops take them, then
    blocks of ``config.PRODUCT_ELEMENTS // (C m)`` of its windows at fixed
    offsets in the tile, each one product with the kernels, on one BLAS
    thread per thread of ours (a product's bits depend on the shape of its
    block: every split of the windows at tiles gives the same blocks)."""
    nker, nchan, m = khat.shape
    taps = nchan * m
    flat = np.ascontiguousarray(khat.reshape(nker, taps))
    tile = kernels.tile_length(m, d)
    block = max(1, min(tile, config.PRODUCT_ELEMENTS // taps))
    tile_sumsq = products.tile_sumsq(m, d)

    def work(start, stop):
        _, bufs = (centered.make_buffers(m, d, nchan, stop - start) if center else
                   kernels.make_buffers(m, d, stop - start))
        sumsq = scratch.empty("tile centered M2", min(tile, stop - start)) if center else bufs[2]
        columns = scratch.empty("product columns", taps * block)
        dots = scratch.empty("product dots", nker * block)
        shared = np.empty(block if nker > 1 else 0)
        spare = np.empty(block)
        scales = np.zeros(block, dtype=np.int64)
        sums = np.zeros(block)
        rescaled = np.zeros(block, dtype=np.bool_)
        no_means = np.empty(0)  # (the raw windows: the kernels are centered)
        # The part's samples, from its first flagged tile on scaled into
        # range where a power of two brings it there (as ``run_direct``
        # does; windows rescaled one by one cost many times more).
        samples, first, part_floor, scaled = piece, 0, floor, False

        def statistics(i0, nwin):
            if center:
                return products.tile_m2(samples, b, i0 - first, nwin, m, d, bufs, sumsq)
            return tile_sumsq(samples, b, i0 - first, nwin, m, d, bufs)

        for b in range(piece.shape[0]):
            for i0 in range(start, stop, tile):
                nwin = min(tile, stop - i0)
                unsafe = statistics(i0, nwin)
                if unsafe and not scaled:
                    scaled = True
                    in_range = _in_range(piece[:, :, start : stop + (m - 1) * d], floor)
                    if in_range is not None:
                        samples, part_floor, _ = in_range
                        first = start
                        unsafe = statistics(i0, nwin)
                for t0 in range(0, nwin, block):
                    count = min(block, nwin - t0)
                    these = sumsq[t0 : t0 + count]
                    here = columns[: taps * count].reshape(taps, count)
                    at = i0 + t0 - first
                    products.window_columns(samples, b, 1, at, count, m, d, no_means, here)
                    if unsafe:
                        products.rescale_columns(samples, b, at, count, m, d, these, center,
                                                 here, scales, sums, rescaled)
                    out = dots[: nker * count].reshape(nker, count)
                    with np.errstate(invalid="ignore", over="ignore"):  # (NaN/inf windows)
                        np.matmul(flat, here, out=out)
                    products.finish_block(out, these, count, exponent, part_floor, fill,
                                          kernel_state, shared, unsafe, scales, sums, rescaled,
                                          spare, result, b, offset + i0 + t0)

    with blas.single_threaded():
        threads.run_segments(piece.shape[-1] - (m - 1) * d, tile, work, _weight(piece, khat))


class _BlockLength:
    """The FFT path's set-up for one block length ``nfft``, shared by the threads."""

    def __init__(self, khat, d, nfft, budget):
        nker, nchan, m = khat.shape
        self.khat, self.d = khat, d
        self.nfft = nfft
        self.step = nfft - (m - 1) * d
        self.c_block, self.c_output = (factor / budget for factor in transforms.error_bound(nfft, nchan))
        # The plan estimates the outputs' norm by the block's (white noise).
        self.estimate = self.c_block + self.c_output
        # The transforms' cost per window transformed: the cost model's for
        # fft_length's blocks; for others, its share that grows with the
        # transforms' operations in proportion, plus a fixed cost per block.
        reference = transforms.fft_length((m - 1) * d, single=nker == 1 and nchan == 1)
        flops = nfft * np.log2(nfft) / self.step
        reference_flops = reference * np.log2(reference) / (reference - (m - 1) * d)
        per_block = config.FFT_BLOCK_NS * (1.0 / self.step - 1.0 / (reference - (m - 1) * d))
        grows = config.FFT_FLOPS_SHARE
        self.fft_ns = (_fft_dot_ns(nchan, nker) * (1.0 - grows + grows * flops / reference_flops)
                       + per_block)
        # No window is flagged whose sum of squares is at least this share of
        # the largest among the windows that start in its block's samples: a
        # block holds no more energy than d * (ceil(nfft / (m d)) + 1) of
        # them, which cover it.
        self.even_share = self.estimate ** 2 * d * (-(-nfft // (m * d)) + 1)
        # A block is transformed while the direct dots of its flagged windows
        # cost less than the transform saves.
        transformed_share = self.fft_ns / _direct_dot_ns(m, nchan, nker)
        self.max_flagged = int(self.step * max(0.0, 1.0 - transformed_share))
        # A block with fewer non-zero samples (of all channels) than this
        # times its windows adds them to the dots one by one for less than
        # its transform.
        self.sparse_share = transformed_share * nchan / blocks.SCATTER_COST

    def transforms_ns(self, windows, rows):
        """The cost model's time for the dots of ``windows`` windows of
        ``rows`` rows, every one transformed in these blocks."""
        return windows * rows * self.fft_ns

    def may_miss(self, sumsq, windows, direct_ns):
        """Whether a segment's plan in these blocks could miss
        (``_SegmentPlan.missed``), from its sums of squares alone: whether
        the direct dots of the windows it could flag (``blocks.flag_bound``)
        would cost more than ``config.REPLAN_AFTER`` of its transforms."""
        flagged = blocks.flag_bound(sumsq, windows, self.step, self.nfft, self.even_share)
        return flagged * direct_ns > config.REPLAN_AFTER * self.transforms_ns(windows, sumsq.shape[0])

    @functools.cached_property
    def kernel_spectra(self):
        """``transforms.kernel_spectra`` at this length: on a plan's first
        transform, not before (a length that is only planned costs no kernel
        transforms; two threads may both compute it, to the same arrays)."""
        return transforms.kernel_spectra(self.khat, self.d, self.nfft)


class _SegmentPlan:
    """One thread's arrays for planning and transforming a segment of windows
    in blocks of one length."""

    def __init__(self, length, rows, nchan, nker, longest, span, windows, use="segment"):
        self.length = length
        nfft = length.nfft
        most = transforms.block_count(longest, span, nfft)
        self.relative = scratch.empty(f"{use} relative sums of squares {nfft}", (rows, windows))
        self.dots = scratch.empty(f"{use} fft dots {nfft}", (rows, most, nker, nfft))
        self.limits = np.empty((rows, most, nker))
        self.exponents = np.empty((rows, most), dtype=np.int64)
        self.noise = np.empty((rows, most))
        self.loud = np.empty((rows, most), dtype=np.int64)
        self.flagged_counts = np.empty((rows, most), dtype=np.int64)
        self.quietest = np.empty((rows, most))
        self.references = np.empty((rows, most))
        self.slots = np.empty((rows, most), dtype=np.int64)
        self.chosen = np.empty((rows, most), dtype=np.int64)
        self.counts = np.empty(rows, dtype=np.int64)
        self.whole = np.empty(rows, dtype=np.int64)
        self.workspace = transforms.Workspace(nchan, nker, nfft)

    def plan(self, piece, w0, w1, m, d, tile, sumsq, unsafe, direct_ns, center):
        """Plan the segment of windows ``w0 .. w1-1``; returns its estimated
        cost in ns (the transforms, and the dots left to the direct method at
        ``direct_ns`` a window)."""
        length = self.length
        self.nblocks = transforms.block_count(w1 - w0, (m - 1) * d, length.nfft)
        self.windows = w1 - w0
        # the arguments of the plan's kernels: the segment, and the plan itself
        self.segment = (piece, w0, w1, length.step, length.nfft, m, d)
        self.state = (length.estimate, self.exponents, self.noise, self.loud, self.relative,
                      self.flagged_counts, self.quietest, self.references)
        safe = not unsafe.any()
        if center and safe:
            blocks.block_references(*self.segment, self.references)
        else:
            self.references[:, : self.nblocks] = 0.0
        sparse = blocks.plan_blocks(*self.segment, sumsq, safe, center, length.sparse_share,
                                    *self.state)
        # each step below compiles on its first use only
        if not safe:
            blocks.relative_out_of_range(piece, w0, w1, length.step, m, d, tile, sumsq, unsafe,
                                         length.estimate, self.exponents, self.noise,
                                         self.relative, self.flagged_counts, self.quietest,
                                         center)
        self.any_loud = sparse > 0
        return self.cost(direct_ns)

    def missed(self, cost):
        """Whether the plan's ``cost`` exceeds its transforms alone by more
        than ``config.REPLAN_AFTER`` (on noise a plan costs about that; where
        loud and quiet stretches mix, more)."""
        ideal = self.length.transforms_ns(self.windows, self.relative.shape[0])
        return cost > (1 + config.REPLAN_AFTER) * ideal

    def leave_out_loud(self, direct_ns):
        """Plan again with loud samples left out of the transforms where that
        pays (``blocks.leave_out_loud``: spikes); returns the new cost."""
        blocks.leave_out_loud(*self.segment, *self.state)
        self.any_loud = bool(self.loud[:, : self.nblocks].any())
        return self.cost(direct_ns)

    def cost(self, direct_ns):
        transformed, direct = self.assign(self.length.max_flagged)
        return transformed * self.length.fft_ns + direct * direct_ns

    def assign(self, max_flagged):
        """``blocks.assign_slots`` for this plan: ``(transformed, direct)``."""
        return blocks.assign_slots(self.flagged_counts, self.nblocks, max_flagged, self.slots,
                                   self.chosen, self.counts, self.windows, self.length.step,
                                   self.loud, self.whole)

    def transform(self, piece, w0, w1, khat, d):
        """The dots of the blocks planned; returns the kernel's ``fft`` tuple."""
        length = self.length
        spectra, peaks = length.kernel_spectra
        transforms.fft_dots(piece, w0, w1, khat, d, length.nfft, spectra, self.dots,
                            self.limits, self.workspace,
                            (length.step, self.chosen, self.counts, self.whole, self.exponents,
                             self.loud if self.any_loud else None, self.noise, self.quietest,
                             self.references, length.c_block, length.c_output, peaks))
        return (self.dots, self.slots, self.exponents, self.relative, w0, length.step, self.limits)


class _FlaggedRuns:
    """Long runs of flagged windows, transformed again away from the loud
    stretches that flagged them: the windows of every such run of a segment
    (of every row), with their samples, are copied side by side into one row
    of their own, quietest runs first, which is planned, transformed and
    finished as a segment is (a block whose windows would mostly be flagged
    even so takes direct dots).  One per call, shared by the threads."""

    def __init__(self, khat, d, length, direct_ns):
        self.khat, self.d, self.length = khat, d, length
        self.direct_ns = direct_ns
        self.span = (khat.shape[2] - 1) * d
        # a run pays when its flagged windows pay for its own windows and the
        # two spans before the next run (``saving``): it holds at least
        # min_flagged of them
        saved = config.RUN_SHARE * direct_ns - length.fft_ns
        self.enabled = direct_ns >= config.RUN_MIN_RATIO * length.fft_ns and saved > 0
        self.min_flagged = int(2 * self.span * length.fft_ns / saved) + 1 if self.enabled else 0

    def saving(self, windows, flagged):
        """What transforming ``windows`` windows (and up to two spans more
        before the next run, see ``blocks.run_positions``) saves over
        ``config.RUN_SHARE`` of ``flagged`` direct dots."""
        return config.RUN_SHARE * flagged * self.direct_ns - (windows + 2 * self.span) * self.length.fft_ns

    def find(self, plan, fft, w0, w1):
        """The runs of the segment ``w0 .. w1-1`` that pay, as rows ``(row,
        start, stop, count, loudness)`` (``blocks.flagged_runs``) in the order
        they are to be laid side by side, or None; their windows are no
        longer flagged in ``plan``."""
        if not self.enabled:
            return None
        # (the plan's estimates: no two blocks side by side hold a run that pays)
        flagged = np.where(plan.slots[:, : plan.nblocks] >= 0,
                           plan.flagged_counts[:, : plan.nblocks], 0)
        if np.max(flagged[:, :-1] + flagged[:, 1:] if plan.nblocks > 1 else flagged,
                  initial=0) < self.min_flagged:
            return None
        rows = plan.relative.shape[0]
        runs = np.empty((rows * (-(-(w1 - w0) // self.min_flagged) + 1), 5), dtype=np.int64)
        gap = max(kernels.RUN_GAP, self.span)
        runs = runs[: blocks.flagged_runs(fft, w1, gap, self.min_flagged, runs)]
        saved = self.saving(runs[:, 2] - runs[:, 1], runs[:, 3])
        runs = runs[saved > 0]
        if np.sum(saved[saved > 0]) < config.RUNS_CALL_NS:
            return None
        for b, start, stop, _, _ in runs:
            plan.relative[b, start - w0 : stop - w0] = 0.0  # (never flagged)
        # quietest first, so that runs of like loudness share blocks
        return runs[np.argsort(runs[:, 4], kind="stable")]

    def compute(self, runs, piece, w0, sumsq, tile, unsafe, kernel_args, result, offset, center):
        """The cosines of the windows of ``runs`` (``find``), from the row of
        their own.  ``unsafe``: whether the segment has windows whose sums of
        squares left the float64 range (then every tile is checked for them)."""
        khat, d, span = self.khat, self.d, self.span
        nker, nchan, m = khat.shape
        positions, windows = blocks.run_positions(runs, span, m * d)
        # room for a power of two of tiles: the same arrays serve most segments
        # (fresh ones would cost more in page faults than they hold)
        padded = tile << max(0, (-(-windows // tile) - 1).bit_length())
        samples = scratch.empty("flagged runs' samples", (1, nchan, padded + span), piece.dtype)
        own = scratch.empty("flagged runs' sums of squares", (1, padded))
        blocks.gather_runs(piece, runs, positions, span, w0, sumsq, samples, own)
        # (its large arrays are this thread's kept scratch arrays)
        plan = _SegmentPlan(self.length, 1, nchan, nker, padded, span, padded, use="flagged runs")
        tiles = np.full((1, padded // tile), unsafe)
        cost = plan.plan(samples, 0, windows, m, d, tile, own, tiles, self.direct_ns, center)
        if not _transforms_pay(cost, windows * self.direct_ns):
            plan.assign(-1)
        fft = plan.transform(samples, 0, windows, khat, d)
        cosines = scratch.empty("flagged runs' cosines", (1, nker, padded), result.dtype)
        _fft_cosines(samples, windows, khat, kernel_args, tile, own, fft, cosines, 0, tiles, center)
        blocks.scatter_runs(cosines, runs, positions, result, offset)


def _fft_cosines(piece, w1, khat, kernel_args, tile, sumsq, fft, result, offset, unsafe, center):
    """The cosines of a segment's windows from its transforms (``fft``), with
    those whose sums of squares (centered: M2) left the float64 range (in
    ``unsafe`` tiles) recomputed scaled."""
    if not kernels.fft_kernel(piece, w1, khat, *kernel_args, tile, sumsq, fft, result, offset):
        # (compiled on a first call that needs it)
        kernels.fft_direct_kernel(piece, w1, khat, *kernel_args, tile, sumsq, fft, result, offset)
    if unsafe.any():
        fix = centered.fft_fix_out_of_range if center else kernels.fft_fix_out_of_range
        fix(piece, w1, khat, *kernel_args, tile, sumsq, fft, result, offset, unsafe)


def _in_range(samples, floor):
    """``(samples, floor, shift)``: both times ``2**shift``, the power of two
    that centres the non-zero finite magnitudes of the float64 ``samples``
    (in binades) in ``[SAFE_MIN, SAFE_MAX]``: the same scaled samples for
    any power-of-two scaling of them, each exact.  None where they (or a
    noise floor above 0) would not all lie in that range, or no sample is
    non-zero and finite."""
    shift = plans.in_range_shift(*blocks.magnitude_range(samples), floor)
    if shift is None:
        return None
    with np.errstate(over="ignore", under="ignore"):
        return _times_power_of_two(samples, shift), float(np.ldexp(floor, shift)), shift


def signal_in_range(padded, floor):
    """``(padded, floor, shift)`` for the gradients: float64 ``padded``
    samples ``(B, C, ...)`` whose squares could leave the float64 range,
    and the noise floor, times the power of two ``2**shift`` that brings
    them all into it (``_in_range``; the gradients with respect to the
    signal and the floor are scaled back by it).  ``shift`` is 0 where no
    sample needs it, and None where no power of two serves: they are
    returned as they are.  The whole signal at once: parts scaled apart
    would scale their gradients back apart, and sums over them could
    overflow where the true gradient does not."""
    if padded.dtype != np.float64 or not kernels._count_unsafe(padded.reshape(-1)):
        return padded, floor, 0
    in_range = _in_range(padded.reshape(padded.shape[:2] + (-1,)), floor)
    if in_range is None:
        return padded, floor, None
    scaled, floor, shift = in_range
    return scaled.reshape(padded.shape), floor, shift


def _times_power_of_two(values, shift):
    """``np.ldexp(values, shift)`` of float64 ``values``, the same bits (each
    is the correctly rounded product), by one multiplication where
    ``2**shift`` is a normal float64: several times faster than NumPy's
    ``ldexp``."""
    values = np.asarray(values, dtype=np.float64)  # (a float32 product would overflow)
    # (a product past the float64 range is ±inf, as the true value is there)
    with np.errstate(over="ignore", under="ignore"):
        if -1022 <= shift <= 1023:
            return values * math.ldexp(1.0, shift)
        return np.ldexp(values, shift)


def segment_length(tile, nker):
    """Windows per FFT segment: whole tiles, ``config.SEGMENT_WINDOWS``
    divided among the kernels of a bank.  Every plan of the FFT path is made
    per segment, so pieces of a call that start on segments give its bits."""
    return tile * max(1, config.SEGMENT_WINDOWS // (tile * nker))


def run_fft(piece, khat, kernel_state, d, exponent, floor, fill, result, offset, budget,
            center=False, scaled=False):
    """Sliding cosines with dots by overlap-save FFT, a segment of windows at
    a time (bounded memory, in cache).

    Each segment: the window sums of squares (exactly as the direct method
    sums them); a plan of its blocks (``_SegmentPlan``), in which a block
    whose windows would mostly be flagged (their FFT error bound exceeds
    ``budget`` times their norm: a loud sample nearby) takes direct dots
    instead of a transform.  The plan is made in blocks of about four spans
    (``_cpu.fft.short_fft_length``, which mix fewer quiet windows with loud
    stretches) where the sums of squares show that ``fft_length``'s would
    leave many dots to the direct method (``_BlockLength.may_miss``), else
    in ``fft_length``'s (centered, or with sums out of the float64 range:
    in those first, then in the shorter ones where they do, taking the
    cheaper plan); then leaving loud samples (spikes) out of the
    transforms, or direct dots for the whole segment where no plan pays; the
    transforms; the cosines, the flagged windows' dots recomputed directly,
    except long runs of them (quiet stretches next to loud ones), which are
    planned and transformed again in blocks of their own
    (``_FlaggedRuns``).  Segments are whole tiles, and every decision
    depends on the segment's own samples only, the same for any power-of-two
    scaling: every result bit is the same for any thread count.

    A segment holding samples whose squares could leave the float64 range
    (float64 magnitudes outside ``[SAFE_MIN, SAFE_MAX]``) is scaled first by
    the power of two that brings its magnitudes and the noise floor into that
    range where one does (``_in_range``; ``scaled``: ``piece`` is such a
    segment): the plans of an out-of-range segment differ from those of an
    in-range one, and an out-of-range segment's windows are many times
    slower.

    With ``center``, the windows' centered sums of squares (``_cpu.centered``)
    take the place of their sums of squares throughout: a window is flagged
    where the FFT's error bound, which grows with the block's own samples,
    offset included, is not small against its centered norm."""
    nker, nchan, m = khat.shape
    span = (m - 1) * d
    rows = piece.shape[0]
    tile = kernels.tile_length(m, d)
    length = _BlockLength(khat, d, transforms.fft_length(span, single=nker == 1 and nchan == 1), budget)
    direct_ns = _direct_dot_ns(m, nchan, nker)
    short_nfft = transforms.short_fft_length(span)
    short = _BlockLength(khat, d, short_nfft, budget) if short_nfft < length.nfft else None
    segment = segment_length(tile, nker)
    segment_sumsq = (centered.segment_m2 if center else
                     kernels.segment_sumsqs[kernels.rows_scan(m, d, piece.shape[-1] - span)])
    flagged = _FlaggedRuns(khat, d, short or length, direct_ns)
    kernel_args = (kernel_state, d, exponent, floor, fill)

    # many rows: a block of them at a time, each a segment's windows in all
    # (a segment's arrays hold every row it plans)
    per_block = max(1, config.SEGMENT_WINDOWS // (min(segment, piece.shape[-1] - span) * nker))

    def work(start, stop):
        longest = min(segment, stop - start)
        _, bufs = (centered.make_buffers(m, d, nchan, longest) if center else
                   kernels.make_buffers(m, d, longest))
        # whole chunks: the scans' slack past a tile's last window
        windows = -(-longest // (m * d)) * (m * d)
        for r0 in range(0, rows, per_block):
            r1 = min(rows, r0 + per_block)
            segments(piece[r0:r1], result[r0:r1], start, stop, longest, bufs, windows)

    def segments(piece, result, start, stop, longest, bufs, windows):
        rows = piece.shape[0]
        sumsq = scratch.empty("segment sums of squares", (rows, windows))
        long_plan = _SegmentPlan(length, rows, nchan, nker, longest, span, windows)

        @functools.cache
        def short_plan():
            return _SegmentPlan(short, rows, nchan, nker, longest, span, windows)

        for w0 in range(start, stop, segment):
            w1 = min(stop, w0 + segment)
            unsafe = _unsafe_flags(rows, windows, tile)
            segment_sumsq(piece, w0, w1, m, d, tile, bufs, sumsq, unsafe)
            in_range = _in_range(piece[:, :, w0 : w1 + span], floor) if (
                unsafe.any() and not scaled) else None
            if in_range is not None:
                samples, scaled_floor, _ = in_range
                run_fft(samples, khat, kernel_state, d, exponent, scaled_floor, fill, result,
                        offset + w0, budget, center, scaled=True)
                continue
            all_direct = (w1 - w0) * rows * direct_ns
            ideal = length.transforms_ns(w1 - w0, rows)
            # planning again pays where transforms save much over direct dots
            replan = config.FFT_MARGIN * all_direct - ideal > config.REPLAN_GAIN * all_direct
            # Loud stretches next to quiet ones: shorter blocks mix fewer.
            # The sums of squares tell which segments the longer blocks' plan
            # would not miss on; centered, or out of the float64 range, that
            # plan tells.
            plain = not center and not unsafe.any()
            shorter = replan and short is not None
            if shorter and plain and length.may_miss(sumsq, w1 - w0, direct_ns):
                plan = short_plan()
            else:
                plan = long_plan
            cost = plan.plan(piece, w0, w1, m, d, tile, sumsq, unsafe, direct_ns, center)
            if shorter and not plain and plan.missed(cost):
                short_cost = short_plan().plan(piece, w0, w1, m, d, tile, sumsq, unsafe,
                                               direct_ns, center)
                if short_cost < cost:
                    plan, cost = short_plan(), short_cost
            if replan and plan.missed(cost):  # spikes: leave them out of the transforms
                cost = plan.leave_out_loud(direct_ns)
            if not _transforms_pay(cost, all_direct):
                plan.assign(-1)  # every dot directly: no transform pays
            fft = plan.transform(piece, w0, w1, khat, d)
            runs = flagged.find(plan, fft, w0, w1) if replan and plan.missed(cost) else None
            _fft_cosines(piece, w1, khat, kernel_args, tile, sumsq, fft, result, offset, unsafe,
                         center)
            if runs is not None:  # (after: their cosines replace those just written)
                flagged.compute(runs, piece, w0, sumsq, tile, bool(unsafe.any()), kernel_args,
                                result, offset, center)

    threads.run_segments(piece.shape[-1] - span, segment, work, _weight(piece, khat))
