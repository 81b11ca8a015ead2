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
    first six arguments ``(flat, roff, cs, nchan, ts, n)``."""

    def __init__(self, call, x, ax, channel_axis):
        flat, base = x.flat()
        inner = (ax,) if channel_axis is None else (channel_axis, ax)
        lead, lead_strides, strides = _split(_layout(x.shape, x.strides), inner)
        nchan = 1 if channel_axis is None else x.shape[channel_axis]
        cs = 0 if channel_axis is None else strides[0]
        roff = call.to_device(strided_offsets(lead, lead_strides, base))
        self.rows = int(np.prod(lead, dtype=np.int64))
        self.args = (flat, roff, cs, nchan, strides[-1], x.shape[ax])
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


def windowed_norm(signal, window, *, dilation=1, mode="valid", axis=-1, center=False, stride=1,
                  out=None):
    call = Call(signal)
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
    threads = settings.threads
    room = settings.shared_bytes // 8  # float64 taps + signal tile
    taps = max(1, min(m, (room - threads + d) // (d + 1)))
    grid = (-(-plan.nwin // threads), min(rows.rows * nker, 65535))
    call.launch(kernels.sliding_cosine, grid, threads, 8 * (taps + threads + (taps - 1) * d),
                *rows.args, plan.pad_left, call.to_device(plan.khat),
                call.to_device(plan.kernel_state), d, taps, ss, rows.wide, plan.center,
                plan.exponent, plan.floor, plan.fill, plan.stride, *outs)
    return call.deliver(result, out)


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
