"""The plans of the sliding functions over several axes at once (images,
volumes): ``axis`` a tuple of r axes slides an r-dimensional kernel over
those axes of the signal.  Shared by the backends; nothing here computes
on a signal.

The kernel's last r dimensions are spatial and the ``a``-th of them slides
along ``axis[a]``: ``(m_1, ..., m_r)`` is one kernel, ``(K, m_1, ..., m_r)``
a bank, ``(C_out, C_in, m_1, ..., m_r)`` a multi-channel kernel whose window
spans every channel (the signal's channel axis is the one just before the
first of the sliding axes in the signal's order).  Each axis has its own
mode (``"valid"``, ``"same"`` or ``"full"``), dilation and stride.

A call is computed on the signal laid out as ``(B, C, n_1, ..., n_r)``
(batch, channels, sliding axes in the order of ``axis``) and the result
as ``(B, K, nout_1, ..., nout_r)``; the plan says where those axes go in
the caller's arrays.
"""

import math
from collections import namedtuple

import numpy as np

from . import config
from . import validate as v
from .sliding import (
    LONGEST_PADDED,
    SlidingGradPlan,
    centered_kernels,
    check_grad_output,
    check_grad_sharpness,
    check_not_empty,
    check_options,
    compact_taps,
    divisor_norms,
    kept_stride,
    padding,
    strided_count,
    unit_kernels,
)

SPATIAL_MODES = ("valid", "same", "full")

Geometry = namedtuple("Geometry", "axes m d stride pads nwin nout")
Geometry.__doc__ = """Per sliding axis (tuples in the order of ``axis``):
the window's taps ``m``, dilation ``d``, ``stride``, the zeros ``pads``
``(left, right)`` of each axis's mode, the windows of the padded signal
``nwin`` and those kept by the stride ``nout``."""


def band_windows(geo):
    """Windows a band holds along the first sliding axis (the CPU path
    takes windows band by band; Dask cuts the signal into whole bands): at
    least ``config.SPATIAL_BAND_ROWS`` and ``config.SPATIAL_BAND_WINDOWS``
    windows, enough that a band's rows are not mostly its overlap with the
    next band's, and as many that they span
    whole blocks of the first axis's window sums (``m * d`` rows): each
    band, and each Dask block, then starts where the whole signal's blocks
    do, and its windows' sums are the whole signal's, bit for bit."""
    m0, d0, s0 = geo.m[0], geo.d[0], geo.stride[0]
    per_row = math.prod(geo.nout[1:])  # (windows of the other axes)
    rows = max(config.SPATIAL_BAND_ROWS, -(-config.SPATIAL_BAND_WINDOWS // max(1, per_row)),
               -(-(m0 - 1) * d0 // s0))
    whole = m0 * d0 // math.gcd(m0 * d0, s0)  # (windows whose rows are whole blocks)
    return -(-rows // whole) * whole


def normalise_axis(axis, **per_axis):
    """``(axis, *per_axis values)`` as the public functions route them: a
    tuple (or list) of one axis is that axis (the one-axis call), and then
    an option given per axis (a tuple or list, ``per_axis`` by name) its
    one value, as a one-value tuple is with one axis given as it is; of
    several axes a tuple; anything else as it is (checked by the plans).
    A 1-d NumPy array of axes or of per-axis values is taken as the tuple
    of its values."""
    axis, per_axis = _as_tuple(axis), {name: _as_tuple(value) for name, value in per_axis.items()}
    if not isinstance(axis, (tuple, list)):  # (one value per axis of one axis is that value)
        return (axis, *(value[0] if isinstance(value, (tuple, list)) and len(value) == 1
                        else value for value in per_axis.values()))
    if not axis:
        raise ValueError(f"axis must name at least one axis; got {axis!r}.")
    if len(axis) > 1:
        return (tuple(axis), *per_axis.values())
    values = []
    for name, value in per_axis.items():
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                raise ValueError(f"{name} must be one value or one per sliding axis (1); "
                                 f"got {v.shown(value)}.")
            value = value[0]
        values.append(value)
    return (axis[0], *values)


def _as_tuple(value):
    """A 1-d NumPy array as the tuple of its values; anything else as it is."""
    return tuple(value.tolist()) if isinstance(value, np.ndarray) and value.ndim == 1 else value


def sliding_axes(axis, ndim):
    """A tuple of at least two distinct axes of an ``ndim``-d signal, in the
    caller's order, made non-negative (the public functions send a one-axis
    tuple down the 1-D path)."""
    if not isinstance(axis, tuple):
        raise TypeError(f"axis must be an integer or a tuple of integers; got {v.shown(axis)}.")
    axes = tuple(v.check_axis(item, ndim) for item in axis)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis must not repeat an axis; got {axis!r}.")
    return axes


def per_axis(value, name, count, check):
    """``value`` (one setting for every axis, or a tuple or list of one per
    axis) as a tuple of ``count`` checked settings."""
    if isinstance(value, (tuple, list)):
        if len(value) != count:
            raise ValueError(
                f"{name} must be one value or one per sliding axis ({count}); got "
                f"{v.shown(value)}.")
        return tuple(check(item, name) for item in value)
    return (check(value, name),) * count


def _check_mode(mode, name):
    if mode == "causal":
        raise ValueError(
            "mode='causal' is for one sliding axis only; with a tuple axis use "
            "'valid', 'same' or 'full' (one mode, or one per axis).")
    return v.check_choice(mode, name, SPATIAL_MODES)


def geometry(shape, axes, m, dilation, mode, stride, what):
    """The :class:`Geometry` of windows of ``m`` taps (a tuple, one per axis)
    over the axes ``axes`` of a signal of ``shape``; ``what`` names the
    window in errors ("kernel" or "window")."""
    r = len(axes)
    d = per_axis(dilation, "dilation", r, v.check_positive_int)
    # (one tap spans nothing whatever its dilation, which sized scratch by m * d)
    d = tuple(1 if taps == 1 else step for taps, step in zip(m, d))
    stride = per_axis(stride, "stride", r, v.check_positive_int)
    modes = per_axis(mode, "mode", r, _check_mode)
    pads, padded, nwin = [], [], []
    for a in range(r):
        n, span = shape[axes[a]], (m[a] - 1) * d[a]
        smaller = f"a smaller {what}" + (" or dilation" if d[a] > 1 else "")
        if modes[a] == "valid" and n < span + 1:
            raise ValueError(
                f"{what} of shape {tuple(m)} with dilation={d} spans {span + 1} samples along "
                f"axis {axes[a]}, longer than the signal's {n} there in mode='valid'; use "
                f"{smaller}, or mode='same'/'full'.")
        pads.append(padding(modes[a], span))
        padded.append(n + sum(pads[-1]))
        if padded[-1] > LONGEST_PADDED:
            raise ValueError(
                f"{what} of shape {tuple(m)} with dilation={d} spans {span + 1} samples along "
                f"axis {axes[a]}: mode={modes[a]!r} would pad the signal ({n} samples there) to "
                f"{padded[-1]}, more than an array can hold; use {smaller}.")
        nwin.append(padded[-1] - span)
    padded = tuple(padded)
    if math.prod(padded) > LONGEST_PADDED:
        raise ValueError(
            f"{what} of shape {tuple(m)} with dilation={d}: mode={tuple(modes)} would pad the "
            f"signal's sliding axes to {padded}, more than an array can hold; use a smaller "
            f"{what} or dilation.")
    stride = tuple(kept_stride(s, count) for s, count in zip(stride, nwin))
    nout = tuple(strided_count(count, s) for count, s in zip(nwin, stride))
    return Geometry(axes, tuple(m), d, stride, tuple(pads), tuple(nwin), nout)


def compacted(plan, shape):
    """``(plan, taps)``: a planned call over several axes of a signal of
    ``shape`` with each sliding axis whose windows are fewer than its
    dilation seen as ``_core.sliding.compact_taps``'s 'valid' problem there
    (``taps[a]`` its ``(source, at)``, None for the other axes): a short image
    with a huge dilation then holds ``m * nwin`` samples along that axis, not
    ``(m - 1) * d`` of padding (whose product over the axes was gigabytes)."""
    geo = plan.geometry
    taps = tuple(compact_taps(m, d, left, nwin, shape[ax]) if nwin < d else None
                 for ax, m, d, (left, _), nwin in zip(geo.axes, geo.m, geo.d, geo.pads, geo.nwin))
    if all(t is None for t in taps):
        return plan, taps
    d = tuple(step if t is None else nwin for t, step, nwin in zip(taps, geo.d, geo.nwin))
    pads = tuple(pad if t is None else (0, 0) for t, pad in zip(taps, geo.pads))
    return plan._replace(geometry=geo._replace(d=d, pads=pads)), taps


def layout_axes(ndim, axes, channel_axis):
    """The signal's axes in the computing order: batch axes, the channel
    axis (if any), the sliding axes in the order of ``axis``."""
    taken = set(axes) | ({channel_axis} if channel_axis is not None else set())
    batch = tuple(i for i in range(ndim) if i not in taken)
    return batch + ((channel_axis,) if channel_axis is not None else ()) + tuple(axes)


SpatialNormPlan = namedtuple("SpatialNormPlan", "geometry out_dtype center final_shape")
SpatialNormPlan.__doc__ = """A checked ``windowed_norm`` call over several
axes: its :class:`Geometry`, the result's dtype and shape, and ``center``."""


def plan_norms(x, window, dilation, mode, axis, center=False, stride=1):
    """Check ``windowed_norm``'s arguments for a tuple ``axis``; returns a
    :class:`SpatialNormPlan`.  ``window`` is an int (every axis) or one per
    axis."""
    center = v.check_bool(center, "center")
    axes = sliding_axes(axis, x.ndim)
    m = per_axis(window, "window", len(axes), v.check_positive_int)
    out_dtype = v.output_dtype(x.dtype, "signal")
    check_not_empty(x)
    geo = geometry(x.shape, axes, m, dilation, mode, stride, "window")
    shape = list(x.shape)
    for ax, count in zip(axes, geo.nout):
        shape[ax] = count
    return SpatialNormPlan(geo, out_dtype, center, tuple(shape))


SpatialPlan = namedtuple(
    "SpatialPlan",
    "geometry khat kernel_state exponent floor fill out_dtype center channel_axis is_bank "
    "final_shape result_axes",
)
SpatialPlan.__doc__ = """A checked ``sliding_cosine`` call over several axes.

``khat`` holds the unit kernels ``(K, C, m_1, ..., m_r)`` (float64; of the
centered kernels with ``center``) and ``kernel_state`` their classes;
``exponent`` is ``sharpness**2``.  ``channel_axis`` is the signal's channel
axis for a multi-channel kernel (else None), ``is_bank`` whether a K axis
is inserted.  The result, of ``final_shape`` and ``out_dtype``, is computed
as ``(batch..., K, nout_1, ..., nout_r)`` and its axes go to
``result_axes`` of the caller's result."""


def plan_sliding(x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill, out,
                 normalise=None, center=False, stride=1):
    """Check ``sliding_cosine``'s arguments for a tuple ``axis``; returns a
    :class:`SpatialPlan` (``normalise`` as for
    :func:`cosim_np._core.sliding.plan_sliding`)."""
    axes = sliding_axes(axis, x.ndim)
    p, floor, fill_value, center, out_dtype = check_options(x, method, sharpness, noise_floor,
                                                            fill, center)
    taps, channel_axis, is_bank = _check_kernel(kernel, x, axes)
    geo = geometry(x.shape, axes, taps.shape[2:], dilation, mode, stride, "kernel")
    final_shape, result_axes = _result_layout(x.shape, geo, channel_axis, is_bank,
                                              taps.shape[0])
    if out is not None:
        v.check_out(out, final_shape, out_dtype)
    flat = taps.reshape(taps.shape[:2] + (-1,))
    if center:
        flat = centered_kernels(flat)
    khat, state = unit_kernels(flat, normalise)
    return SpatialPlan(geo, khat.reshape(taps.shape), state, p * p, floor, fill_value, out_dtype,
                       center, channel_axis, is_bank, final_shape, result_axes)


def has_kernel_axis(plan):
    """Whether the caller's result of a :class:`SpatialPlan` has a K axis (a
    bank's, or a multi-channel kernel's C_out)."""
    return plan.channel_axis is not None or plan.is_bank


def _check_kernel(kernel, x, axes):
    """The kernel as float64 taps ``(K, C, m_1, ..., m_r)``; returns ``(taps,
    channel_axis, is_bank)``."""
    r = len(axes)
    k = v.as_real_array(kernel, "kernel")
    if not r <= k.ndim <= r + 2:
        taps = "m_1, m_2" if r == 2 else f"m_1, ..., m_{r}"
        raise ValueError(
            f"with {r} sliding axes the kernel must have shape ({taps}), a bank "
            f"(K, {taps}) or multi-channel (C_out, C_in, {taps}); got a "
            f"{k.ndim}-d array of shape {k.shape}.")
    if 0 in k.shape:
        raise ValueError(f"kernel must not be empty; got shape {k.shape}.")
    channel_axis = None
    if k.ndim == r + 2:
        first = min(axes)
        if first == 0:
            raise ValueError(
                f"a multi-channel kernel of shape {k.shape} needs a signal with a channel "
                f"axis just before its first sliding axis; axis={axes} starts at axis 0.")
        channel_axis = first - 1
        if x.shape[channel_axis] != k.shape[1]:
            raise ValueError(
                f"kernel has C_in={k.shape[1]} input channels but the signal has "
                f"{x.shape[channel_axis]} along its channel axis {channel_axis} (just before "
                f"the first sliding axis); signal shape {x.shape}, kernel shape {k.shape}.")
    lead = {r: (1, 1), r + 1: (k.shape[0], 1), r + 2: k.shape[:2]}[k.ndim]
    taps = np.ascontiguousarray(k, dtype=np.float64).reshape(lead + k.shape[k.ndim - r:])
    return taps, channel_axis, k.ndim == r + 1


def _result_layout(shape, geo, channel_axis, is_bank, nker):
    """``(final_shape, result_axes)``: the caller's result shape, and where
    the axes of the computed layout go in it: ``(batch..., K, nout...)``
    for a bank or a multi-channel kernel, ``(batch..., nout...)`` for one
    kernel.  A bank's K axis is inserted before the first sliding axis; a
    multi-channel kernel's C_out axis replaces the channel axis."""
    final = list(shape)
    for ax, count in zip(geo.axes, geo.nout):
        final[ax] = count
    order = layout_axes(len(shape), geo.axes, channel_axis)
    if channel_axis is not None:
        final[channel_axis] = nker
        return tuple(final), order
    if not is_bank:
        return tuple(final), order
    first = min(geo.axes)
    final.insert(first, nker)
    batch = order[: len(order) - len(geo.axes)]
    return tuple(final), (tuple(i + (i >= first) for i in batch) + (first,)
                          + tuple(ax + 1 for ax in geo.axes))


def plan_sliding_grad(x, kernel, grad_output, axis, mode, method, dilation, sharpness,
                      noise_floor, fill, normalise=None, center=False, stride=1):
    """Check ``sliding_cosine_grad``'s arguments for a tuple ``axis`` (those
    of ``sliding_cosine`` and ``grad_output``, which must have the shape of
    its result); returns ``(grad_plan, taps)``: a
    :class:`cosim_np._core.sliding.SlidingGradPlan` whose ``forward`` is the
    :class:`SpatialPlan` of the forward call, and the kernel as float64
    taps ``(K, C, m_1, ..., m_r)``."""
    plan = plan_sliding(x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill,
                        None, normalise, center, stride)
    g = check_grad_output(grad_output, plan.final_shape)
    taps, _, _ = _check_kernel(kernel, x, plan.geometry.axes)
    flat = taps.reshape(taps.shape[:2] + (-1,))
    norms = divisor_norms(flat, (flat.shape[0],) if plan.is_bank else (), center)
    return SlidingGradPlan(plan, check_grad_sharpness(sharpness), norms, np.shape(kernel),
                           g), taps
