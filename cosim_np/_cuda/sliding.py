"""sliding_cosine, windowed_norm and sharpen on the GPU.

Validation and planning are the core's (:mod:`cosim_np._core.sliding`),
run on a stand-in of the device signal; the signal is then read in place
through offsets (any strides, padding by index), and the result is written
straight into the caller's axis order.  With ``center=True`` the plan holds
the unit centered kernels and the windows' centered sums of squares
(``kernels.window_m2``) stand where the plain sums of squares do; the rest
of the path is the same.
"""

import numpy as np

from .._core import sliding as plans
from .._core import spatial
from .._core import validate as v
from . import kernels
from .arrays import Call, blocks, settings, strided_offsets


def _layout(shape, strides):
    """A stand-in whose strides are ``strides`` elements: ``np.moveaxis`` on
    it tells where each axis of a moved view lives."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, strides, writeable=False)


def _c_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.insert(0, step)
        step *= n
    return tuple(strides)


def _split(layout, inner):
    """``np.moveaxis`` ``inner`` axes to the end: ``(lead shape, lead
    strides, inner strides)``."""
    moved = np.moveaxis(layout, inner, range(-len(inner), 0))
    count = len(inner)
    return moved.shape[:-count], moved.strides[:-count], moved.strides[-count:]


class _Signal:
    """A signal as rows ``b``, channels ``c``, samples ``j``: the kernels'
    first six arguments ``(flat, roff, cs, nchan, ts, n)``.  With a tuple of
    sliding axes ``ax``, ``axis_strides`` holds each one's stride (``ts``
    and ``n`` are the last one's)."""

    def __init__(self, call, x, ax, channel_axis):
        axes = ax if isinstance(ax, tuple) else (ax,)
        flat, base = x.flat()
        inner = axes if channel_axis is None else (channel_axis,) + axes
        lead, lead_strides, strides = _split(_layout(x.shape, x.strides), inner)
        nchan = 1 if channel_axis is None else x.shape[channel_axis]
        cs = 0 if channel_axis is None else strides[0]
        roff = call.to_device(strided_offsets(lead, lead_strides, base))
        self.rows = int(np.prod(lead, dtype=np.int64))
        self.args = (flat, roff, cs, nchan, strides[-1], x.shape[axes[-1]])
        self.axis_strides = strides[len(inner) - len(axes):]
        self.wide = x.dtype == np.float64  # squares may leave the float64 range


def _output(call, shape, dtype, inner):
    """A new C-ordered device result of ``shape`` and the kernels' output
    arguments ``(flat, ooff, *inner strides)`` for the ``inner`` axes."""
    result = call.empty(shape, dtype)
    lead, lead_strides, strides = _split(_layout(shape, _c_strides(shape)), inner)
    ooff = call.to_device(strided_offsets(lead, lead_strides))
    return result, (result.reshape(result.size), ooff) + tuple(strides)


def _sumsq(call, signal, pl, m, d, nwin, center):
    """Window sums of squares ``(rows, nwin)`` float64, by the blocked scan;
    with ``center``, the windows' centered sums of squares (the scan of
    Welford statistics merged by Chan's formula)."""
    ss = call.empty((signal.rows, nwin), np.float64)
    scans = signal.rows * -(-nwin // (m * d)) * d
    if center:
        means = call.empty((signal.rows, nwin), np.float64)  # the suffixes' means
        call.launch(kernels.window_m2, blocks(scans), settings.threads, 0,
                    *signal.args, pl, m, d, means, ss)
    else:
        call.launch(kernels.window_sumsq, blocks(scans), settings.threads, 0,
                    *signal.args, pl, m, d, ss)
    return ss


def _host_copy(call, value, name):
    """A small device input (a kernel) as a host array; host values pass."""
    if not v.on_device(value):
        return value
    operand = call.operand(value, name)
    flat, base = operand.flat()
    items = operand.dtype.itemsize
    whole = flat.copy_to_host(stream=call.stream)
    call.stream.synchronize()
    view = np.lib.stride_tricks.as_strided(
        whole[base:], operand.shape, tuple(s * items for s in operand.strides))
    return np.array(view)


def _spatial_signal(call, x, geo, channel_axis):
    """``(rows, args)``: the signal as rows (:class:`_Signal`) and the first
    eleven arguments of the kernels over several axes, ``(x, roff, cs,
    nchan, strides, sizes, pads, m, d, stride, nout)``."""
    if len(geo.axes) > kernels.MAX_AXES:  # (each thread's window starts: a local array)
        raise ValueError(f"axis: backend='cuda' slides at most {kernels.MAX_AXES} axes; got "
                         f"{len(geo.axes)}: use backend='cpu'.")
    rows = _Signal(call, x, tuple(geo.axes), channel_axis)
    per_axis = [np.asarray(values, dtype=np.int64) for values in (
        rows.axis_strides, [x.shape[a] for a in geo.axes], [left for left, _ in geo.pads],
        geo.m, geo.d, geo.stride, geo.nout)]
    return rows, rows.args[:4] + tuple(call.to_device(values) for values in per_axis)


def _spatial_output(call, shape, dtype, inner, r, lead_axis):
    """A new device result over several axes and the kernels' ``(out, ooff,
    lead stride, ostrides)``: ``inner`` ends with the ``r`` sliding axes,
    after a K or channel axis where ``lead_axis`` (else its stride is 0)."""
    result, outs = _output(call, shape, dtype, inner)
    lead = outs[2] if lead_axis else 0
    return result, (outs[0], outs[1], lead,
                    call.to_device(np.asarray(outs[len(outs) - r:], dtype=np.int64)))


def _spatial(call, x, geo, channel_axis, result_shape, result_axes, has_kernel_axis, out_dtype):
    """The arguments of ``kernels.spatial_windows`` for a plan over several
    axes: the signal's ``(x, roff, cs, nchan, strides, sizes, pads, m, d,
    stride, nout)`` and the result with its ``(out, ooff, oks, ostrides)``."""
    _, signal = _spatial_signal(call, x, geo, channel_axis)
    r = len(geo.axes)
    outer = tuple(result_axes[len(result_axes) - r - (1 if has_kernel_axis else 0):])
    result, outs = _spatial_output(call, result_shape, out_dtype, outer, r, has_kernel_axis)
    return signal, result, outs


def _spatial_windowed_norm(call, x, window, dilation, mode, axis, center, stride, out):
    plan = spatial.plan_norms(x.standin, window, dilation, mode, axis, center, stride)
    if out is not None:
        v.check_out(out, plan.final_shape, plan.out_dtype)
    order = spatial.layout_axes(x.ndim, plan.geometry.axes, None)
    signal, result, outs = _spatial(call, x, plan.geometry, None, plan.final_shape, order, False,
                                    plan.out_dtype)
    khat = call.to_device(np.zeros((1, 1)))
    kstate = call.to_device(np.zeros(1, np.int8))
    total = signal[1].shape[0] * int(np.prod(plan.geometry.nout))
    call.launch(kernels.spatial_windows, blocks(total), settings.threads, 0, *signal, khat,
                kstate, plan.center, True, 1.0, 0.0, 0.0, *outs)
    return call.deliver(result, out)


def _spatial_sliding_cosine(call, x, kernel, sharpness, mode, dilation, noise_floor, fill, axis,
                            method, center, stride, out):
    plan = spatial.plan_sliding(x.standin, _host_copy(call, kernel, "kernel"), axis, mode,
                                method, dilation, sharpness, noise_floor, fill, out,
                                kernels.fill_unit_kernels, center, stride)
    signal, result, outs = _spatial(call, x, plan.geometry, plan.channel_axis,
                                    plan.final_shape, plan.result_axes,
                                    spatial.has_kernel_axis(plan), plan.out_dtype)
    nker = plan.khat.shape[0]
    khat = call.to_device(np.ascontiguousarray(plan.khat.reshape(nker, -1)))
    total = signal[1].shape[0] * nker * int(np.prod(plan.geometry.nout))
    call.launch(kernels.spatial_windows, blocks(total), settings.threads, 0, *signal, khat,
                call.to_device(plan.kernel_state), plan.center, False, plan.exponent,
                plan.floor, plan.fill, *outs)
    return call.deliver(result, out)


def windowed_norm(signal, window, *, dilation=1, mode="valid", axis=-1, center=False, stride=1,
                  out=None):
    call = Call(signal)
    if isinstance(axis, tuple):
        return _spatial_windowed_norm(call, call.operand(signal, "signal"), window, dilation,
                                      mode, axis, center, stride, out)
    x = call.operand(signal, "signal")
    plan = plans.plan_norms(x.standin, window, dilation, mode, axis, center, stride)
    shape = plans.norms_shape(x.shape, plan)
    if out is not None:
        v.check_out(out, shape, plan.out_dtype)
    rows = _Signal(call, x, plan.ax, None)
    ss = _sumsq(call, rows, plan.pad_left, plan.m, plan.d, plan.nwin, plan.center)
    result, outs = _output(call, shape, plan.out_dtype, (plan.ax,))
    call.launch(kernels.finish_norms, blocks(rows.rows * plan.nout), settings.threads, 0,
                ss, *rows.args, plan.pad_left, plan.m, plan.d, rows.wide, plan.center,
                plan.stride, *outs)
    return call.deliver(result, out)


def sliding_cosine(signal, kernel, *, sharpness=1.0, mode="valid", dilation=1, noise_floor=0.0,
                   fill=0.0, axis=-1, method="auto", center=False, stride=1, out=None):
    call = Call(signal, kernel)
    x = call.operand(signal, "signal")
    if isinstance(axis, tuple):
        return _spatial_sliding_cosine(call, x, kernel, sharpness, mode, dilation, noise_floor,
                                       fill, axis, method, center, stride, out)
    plan = plans.plan_sliding(x.standin, _host_copy(call, kernel, "kernel"), axis, mode, method,
                              dilation, sharpness, noise_floor, fill, out,
                              kernels.fill_unit_kernels, center, stride)
    nker, _, m = plan.khat.shape
    d = plan.d
    rows = _Signal(call, x, plan.ax, plan.channel_axis)
    ss = _sumsq(call, rows, plan.pad_left, m, d, plan.nwin, plan.center)
    _, inner = plans.moved_axes(plan.ax, plan.channel_axis, bool(plan.bank_shape))
    inner = inner if isinstance(inner, tuple) else (inner,)
    result, outs = _output(call, plan.final_shape, plan.out_dtype, inner)
    if len(inner) == 1:  # one kernel: no K axis in the output
        outs = outs[:2] + (0,) + outs[2:]
    _launch_cosines(call, rows, plan, call.to_device(plan.khat), call.to_device(plan.kernel_state),
                    ss, (plan.exponent, plan.floor, plan.fill, plan.stride), outs)
    return call.deliver(result, out)


def _launch_cosines(call, rows, plan, khat, kstate, ss, options, outs):
    """``kernels.sliding_cosine`` over every window and kernel of ``plan``
    with ``options`` ``(exponent, floor, fill, stride)``, written through
    ``outs``: the tile of taps and samples as large as shared memory allows."""
    nker, _, m = plan.khat.shape
    d = plan.d
    threads = settings.threads
    room = settings.shared_bytes // 8  # float64 taps + signal tile
    taps = max(1, min(m, (room - threads + d) // (d + 1)))
    grid = (-(-plan.nwin // threads), min(rows.rows * nker, 65535))
    call.launch(kernels.sliding_cosine, grid, threads, 8 * (taps + threads + (taps - 1) * d),
                *rows.args, plan.pad_left, khat, kstate, d, taps, ss, rows.wide, plan.center,
                *options, *outs)


def sliding_cosine_grad(signal, kernel, grad_output, *, sharpness=1.0, mode="valid", dilation=1,
                        noise_floor=0.0, fill=0.0, axis=-1, method="auto", center=False,
                        stride=1, want_sharpness=True, shifts=(0, 0)):
    """``(signal, kernel, sharpness, noise_floor)`` gradients on the GPU: the
    windows' norms and unsharpened cosines by the forward's kernels
    (float64), the per-window coefficients, then the signal's gradient
    gathered sample by sample and the sums over windows in chunks
    (``kernels.grad_*``).  ``method`` is accepted for the CPU's signature:
    the cosines are the direct kernel's.  ``shifts``: ``(g, s)``, where the
    caller scaled ``grad_output`` by ``2**-g`` and the signal and noise
    floor by ``2**-s`` (``_core.sliding.grad_output_in_range`` and
    ``host_signal_in_range``): each gradient is scaled back, the signal's on
    the device."""
    call = Call(signal, kernel, grad_output)
    x = call.operand(signal, "signal")
    g = call.operand(grad_output, "grad_output", min_ndim=0)
    options = (sharpness, mode, dilation, noise_floor, fill, axis, method, center, stride)
    if isinstance(axis, tuple):
        return _spatial_grad(call, x, kernel, g, options, want_sharpness, shifts)
    grad_plan = plans.plan_sliding_grad(x.standin, _host_copy(call, kernel, "kernel"), g.standin,
                                        axis, mode, method, dilation, sharpness, noise_floor,
                                        fill, kernels.fill_unit_kernels, center, stride)
    plan = grad_plan.forward
    nker, nchan, m = plan.khat.shape
    d, pl, nwin = plan.d, plan.pad_left, plan.nwin
    rows = _Signal(call, x, plan.ax, plan.channel_axis)
    count = rows.rows
    threads = settings.threads
    khat = call.to_device(plan.khat)
    kstate = call.to_device(plan.kernel_state)
    # the windows' norms and unsharpened cosines, float64, C order
    ss = _sumsq(call, rows, pl, m, d, nwin, plan.center)
    norms = call.empty((count, nwin), np.float64)
    by_row = call.to_device(np.arange(count, dtype=np.int64) * nwin)
    call.launch(kernels.finish_norms, blocks(count * nwin), threads, 0, ss, *rows.args, pl, m, d,
                rows.wide, plan.center, 1, norms.reshape(norms.size), by_row, 1)
    cosines = call.empty((count, nker, nwin), np.float64)
    by_row = call.to_device(np.arange(count, dtype=np.int64) * nker * nwin)
    _launch_cosines(call, rows, plan, khat, kstate, ss, (1.0, plan.floor, 0.0, 1),
                    (cosines.reshape(cosines.size), by_row, nwin, 1))
    means = call.empty((count, nwin) if plan.center else (1, 1), np.float64)
    if plan.center:
        call.launch(kernels.window_means, blocks(count * nwin), threads, 0, *rows.args, pl, m, d,
                    means)
    # the coefficients, grad_output read in the caller's layout
    _, inner = plans.moved_axes(plan.ax, plan.channel_axis, bool(plan.bank_shape))
    inner = inner if isinstance(inner, tuple) else (inner,)
    flat_g, base = g.flat()
    lead, lead_strides, strides = _split(_layout(g.shape, g.strides), inner)
    goff = call.to_device(strided_offsets(lead, lead_strides, base))
    gks = strides[0] if len(inner) == 2 else 0
    a = call.empty((count, nker, nwin), np.float64)
    along = call.empty((nker, count, nwin), np.float64)
    spread = call.empty((count, nwin), np.float64)
    logs = call.empty((count, nwin), np.float64)
    call.launch(kernels.grad_coefficients, blocks(count * nwin), threads, 0, cosines, norms,
                flat_g, goff, gks, strides[-1], plan.stride, kstate, plan.exponent, plan.floor,
                want_sharpness, a, along, spread, logs)
    # the signal's gradient, in the caller's layout and dtype
    signal_inner = (plan.ax,) if plan.channel_axis is None else (plan.channel_axis, plan.ax)
    grad_signal, outs = _output(call, x.shape, plan.out_dtype, signal_inner)
    if len(signal_inner) == 1:  # one channel: no channel stride
        outs = outs[:2] + (0,) + outs[2:]
    call.launch(kernels.grad_signal, blocks(count * nchan * x.shape[plan.ax]), threads, 0,
                *rows.args, pl, khat, d, a, spread, norms, means, plan.center, *outs)
    # the sums over windows: in chunks on the device, the chunks added here
    chunk, partials = _chunks(call, count * nwin, (nker, nchan, m))
    call.launch(kernels.grad_kernel_sums, blocks(partials.size), threads, 0, *rows.args, pl, d,
                a, means, plan.center, chunk, partials)
    return _finish_grad(call, grad_plan, grad_signal, partials, chunk, along, spread, logs,
                        shifts)


def _chunks(call, windows, shape):
    """``(chunk, partials)``: the windows per chunk of the sums over
    ``windows`` windows, and the partial sums' device array ``shape + (number
    of chunks,)`` (enough chunks to fill the device)."""
    nchunks = max(1, min(windows, -(-settings.max_blocks * settings.threads
                                    // int(np.prod(shape)))))
    chunk = max(1, -(-windows // nchunks))
    return chunk, call.empty(shape + (-(-windows // chunk),), np.float64)


def _finish_grad(call, grad_plan, grad_signal, partials, chunk, along, spread, logs, shifts):
    """The gradients from the signal's, the kernel sums' ``partials`` and the
    per-window ``along`` (``(K, ...)``), ``spread`` and ``logs``, whose sums
    are taken in chunks of ``chunk`` on the device and added on the host;
    each scaled back by ``shifts`` (see :func:`sliding_cosine_grad`)."""
    nker = along.shape[0]
    sums = _host_sum(call, partials).reshape(nker, -1)
    totals = [_host_sum(call, _chunk_sums(call, values, chunk))
              for values in (along.reshape(nker, -1), spread.reshape(1, -1),
                             logs.reshape(1, -1))]
    g_shift, s_shift = shifts
    grad_kernel, grad_sharpness, grad_floor = plans.finish_grad(
        grad_plan, sums, totals[0], totals[2][0], totals[1][0], g_shift)
    if g_shift + s_shift:
        call.launch(kernels.times_power_of_two, blocks(grad_signal.size), settings.threads, 0,
                    grad_signal.reshape(grad_signal.size), g_shift + s_shift)
    grad_floor = plans.grads_times_power_of_two((grad_floor,), s_shift)[0]
    return (call.deliver(grad_signal), call.deliver(call.to_device(grad_kernel)),
            grad_sharpness, grad_floor)


def _spatial_grad(call, x, kernel, g, options, want_sharpness, shifts):
    """``sliding_cosine_grad`` over several axes: as along one axis, on the
    strided windows only (C order over ``nout``): their cosines and norms by
    ``kernels.spatial_windows`` (float64), ``grad_output`` gathered in that
    order, the coefficients by ``kernels.grad_coefficients``, then the
    signal's gradient and the kernel sums by their kernels over several
    axes."""
    sharpness, mode, dilation, noise_floor, fill, axis, method, center, stride = options
    grad_plan, _ = spatial.plan_sliding_grad(
        x.standin, _host_copy(call, kernel, "kernel"), g.standin, axis, mode, method, dilation,
        sharpness, noise_floor, fill, kernels.fill_unit_kernels, center, stride)
    plan = grad_plan.forward
    geo = plan.geometry
    r = len(geo.axes)
    nker = plan.khat.shape[0]
    nchan = plan.khat.shape[1]
    count = int(np.prod(geo.nout))
    threads = settings.threads
    rows, signal = _spatial_signal(call, x, geo, plan.channel_axis)
    khat = call.to_device(np.ascontiguousarray(plan.khat.reshape(nker, -1)))
    kstate = call.to_device(plan.kernel_state)
    window_strides = call.to_device(np.asarray(_c_strides(geo.nout), dtype=np.int64))
    by_row = call.to_device(np.arange(rows.rows, dtype=np.int64) * nker * count)
    cosines = call.empty((rows.rows, nker, count), np.float64)
    call.launch(kernels.spatial_windows, blocks(cosines.size), threads, 0, *signal, khat, kstate,
                plan.center, False, 1.0, plan.floor, 0.0, cosines.reshape(cosines.size), by_row,
                count, window_strides)
    norms = call.empty((rows.rows, count), np.float64)
    call.launch(kernels.spatial_windows, blocks(norms.size), threads, 0, *signal, khat, kstate,
                plan.center, True, 1.0, 0.0, 0.0, norms.reshape(norms.size),
                call.to_device(np.arange(rows.rows, dtype=np.int64) * count), 0, window_strides)
    means = call.empty((rows.rows, count) if plan.center else (1, 1), np.float64)
    if plan.center:
        call.launch(kernels.spatial_means, blocks(means.size), threads, 0, *signal, means)
    # grad_output in the computing layout (B, K, windows), float64
    flat_g, base = g.flat()
    moved = np.moveaxis(_layout(g.shape, g.strides), plan.result_axes, range(g.ndim))
    if not spatial.has_kernel_axis(plan):
        moved = np.expand_dims(moved, moved.ndim - r)
    gathered = call.empty(cosines.shape, np.float64)
    call.launch(kernels.sharpen, blocks(gathered.size), threads, 0, flat_g, base,
                call.to_device(np.asarray(moved.shape, dtype=np.int64)),
                call.to_device(np.asarray(moved.strides, dtype=np.int64)), 1.0,
                gathered.reshape(gathered.size))  # (sharpen to the power 1: a strided copy)
    a = call.empty(cosines.shape, np.float64)
    along = call.empty((nker, rows.rows, count), np.float64)
    spread = call.empty((rows.rows, count), np.float64)
    logs = call.empty((rows.rows, count), np.float64)
    call.launch(kernels.grad_coefficients, blocks(spread.size), threads, 0, cosines, norms,
                gathered.reshape(gathered.size), by_row, count, 1, 1, kstate, plan.exponent,
                plan.floor, want_sharpness, a, along, spread, logs)
    # the signal's gradient, in the caller's layout and dtype
    inner = tuple(geo.axes) if plan.channel_axis is None else (plan.channel_axis,) + geo.axes
    grad_signal, outs = _spatial_output(call, x.shape, plan.out_dtype, inner, r,
                                        plan.channel_axis is not None)
    samples = rows.rows * nchan * int(np.prod([x.shape[ax] for ax in geo.axes]))
    call.launch(kernels.spatial_grad_signal, blocks(samples), threads, 0, *signal, khat, a,
                spread, norms, means, plan.center, *outs)
    chunk, partials = _chunks(call, rows.rows * count, (nker, khat.shape[1]))
    call.launch(kernels.spatial_grad_kernel_sums, blocks(partials.size), threads, 0, *signal, a,
                means, plan.center, chunk, partials)
    return _finish_grad(call, grad_plan, grad_signal, partials, chunk, along, spread, logs,
                        shifts)


def _chunk_sums(call, values, chunk):
    """Partial sums of each row of ``values`` ``(R, L)`` in chunks of ``chunk``."""
    nchunks = max(1, -(-values.shape[1] // chunk))
    partials = call.empty((values.shape[0], nchunks), np.float64)
    call.launch(kernels.chunk_sums, blocks(partials.size), settings.threads, 0, values, chunk,
                partials)
    return partials


def _host_sum(call, partials):
    """The partial sums on the host, added along the last axis in order."""
    host = partials.copy_to_host(stream=call.stream)
    call.stream.synchronize()
    return np.sum(host, axis=-1)


def sharpen(s, sharpness, *, out=None):
    call = Call(s)
    x = call.operand(s, "s", min_ndim=0)
    p = v.check_real(sharpness, "sharpness")
    out_dtype = v.output_dtype(x.dtype, "s")
    if out is not None:
        v.check_out(out, x.shape, out_dtype)
    result = call.empty(x.shape, out_dtype)
    if result.size:
        flat, base = x.flat()
        shape = call.to_device(np.array(x.shape or (1,), np.int64))
        strides = call.to_device(np.array(x.strides or (0,), np.int64))
        call.launch(kernels.sharpen, blocks(result.size), settings.threads, 0,
                    flat, base, shape, strides, p * p, result.reshape(result.size))
    return call.deliver(result, out, scalar=x.ndim == 0)
