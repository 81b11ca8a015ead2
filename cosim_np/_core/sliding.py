"""The plans of the sliding functions, shared by the CPU and CUDA backends:
argument checks, the geometry of a call (padding, number of windows, output
shape and axes) and the unit kernels.  Nothing here computes on a signal.

``x`` below is the signal, or a stand-in with a device array's ``shape``,
``ndim``, ``size`` and ``dtype``: only those are read.
"""

import math
from collections import namedtuple

import numpy as np

from . import config
from . import validate as v
from .scalars import KERNEL_NONFINITE, KERNEL_NORMAL, KERNEL_ZERO, SAFE_MAX, SAFE_MIN

MODES = ("valid", "same", "full", "causal")
METHODS = ("auto", "direct", "fft")


def padding(mode, span):
    """Zeros added (left, right) of the signal so that every mode is 'valid'."""
    if mode == "valid":
        return 0, 0
    if mode == "full":
        return span, span
    if mode == "same":  # centred as scipy.signal.correlate(mode="same")
        return span - span // 2, span // 2
    return span, 0  # causal: output i is the window that ends at i


def compact_taps(m, d, pad_left, nwin, n, positions=None):
    """Where fewer windows than the dilation ``d`` (a short signal, a huge
    dilation): tap ``j`` of window ``i`` reads sample ``j*d + i - pad_left``
    of the signal (``n`` samples, padding outside), so each tap reads a run
    of ``nwin`` samples, no two runs overlapping.  Laid side by side, the
    ``m`` runs are a 'valid' problem of ``m * nwin`` samples with dilation
    ``nwin``: the same windows, the same taps in the same order, each window
    still one block of its blocked sums (its first ``m`` taps), where the
    padded signal, and the loops' scratch sized by ``m * d``, would hold
    ``(m - 1) * d`` samples.  Returns ``(source, at)``: the signal's samples
    ``source`` go to the compact positions ``at`` (of all ``m * nwin``, or
    indices into ``positions``, some of them), zeros elsewhere.  (Only for
    ``nwin < d``: with more windows the runs overlap.)"""
    if positions is None:
        positions = np.arange(m * nwin, dtype=np.int64)
    source = positions // nwin * d + positions % nwin - pad_left
    at = np.flatnonzero((source >= 0) & (source < n))
    return source[at], at


def compact_along(array, axis, taps, length):
    """``array`` with its ``axis`` laid out as ``compact_taps``'s ``(source,
    at)`` says, ``length`` (``m * nwin``) long: a copy, zeros for the
    padding."""
    source, at = taps
    shape = list(array.shape)
    shape[axis] = length
    compact = np.zeros(shape, array.dtype)
    index = [slice(None)] * array.ndim
    index[axis] = at
    compact[tuple(index)] = np.take(array, source, axis=axis)
    return compact


def expand_along(array, axis, taps, n):
    """The inverse of ``compact_along`` for gradients: ``array``'s compact
    ``axis`` back to the signal's ``n`` samples (each read at one compact
    position at most), zeros for the samples no window reads."""
    source, at = taps
    shape = list(array.shape)
    shape[axis] = n
    expanded = np.zeros(shape, array.dtype)
    into, take = [slice(None)] * array.ndim, [slice(None)] * array.ndim
    into[axis], take[axis] = source, at
    expanded[tuple(into)] = array[tuple(take)]
    return expanded


def compacted(rows, plan, m):
    """``(rows, plan, taps)``: rows ``(B, C, n)`` and a 1-d plan (a
    :class:`NormPlan` or :class:`SlidingPlan`) of windows of ``m`` taps, as
    the compact 'valid' problem of ``compact_taps`` where there are fewer
    windows than the dilation (``taps`` its ``(source, at)``), else as they
    are (``taps`` None)."""
    if plan.nwin >= plan.d:
        return rows, plan, None
    taps = compact_taps(m, plan.d, plan.pad_left, plan.nwin, rows.shape[-1])
    return compact_along(rows, -1, taps, m * plan.nwin), compact_plan(plan, m), taps


def compact_plan(plan, m):
    """A 1-d plan of windows of ``m`` taps as its compact problem's
    (``compact_taps``): dilation ``nwin``, no padding."""
    return plan._replace(d=plan.nwin, span=(m - 1) * plan.nwin, pad_left=0, pad_right=0)


def compute_dtype(out_dtype):
    """The kernels read float32 or float64; float16 is computed in float32."""
    return np.dtype(np.float32 if out_dtype.itemsize <= 4 else np.float64)


def tile_length(m, d):
    """Windows per tile of the CPU kernels: a whole number of chunks of
    ``m * d`` window starts.  Every sum of squares is formed within its
    tile's chunks, so a piece of the signal that starts a whole number of
    tiles into it gives the same bits as the whole signal (threads split
    the windows at tiles; the Dask backend splits chunks at tiles)."""
    chunk = m * d
    return chunk * max(config.MIN_CHUNKS_PER_TILE, -(-config.TILE_TARGET // chunk))


def moved_axes(ax, channel_axis, is_bank):
    """``(kernel_axes, caller_axes)``: where the trailing axes of the kernels'
    ``(lead..., [K,] L)`` layout go in the caller's array (``np.moveaxis``
    one way delivers a result, the other way views ``out`` as the kernels
    write it)."""
    if channel_axis is not None:
        return (-2, -1), (channel_axis, ax)
    if is_bank:
        return (-2, -1), (ax, ax + 1)
    return -1, ax


def _dilation_of(m, dilation):
    """The dilation windows of ``m`` taps take: 1 for one tap, whose window
    is one sample whatever the dilation (the loops' scratch, sized by
    ``m * dilation``, would otherwise grow with it)."""
    return 1 if m == 1 else dilation


def _check_window_fits(n, m, dilation, mode, what):
    span = (m - 1) * dilation
    # (a smaller dilation is advice only where there is one to lessen)
    shorter = f"a shorter {what}" + (" or a smaller dilation" if dilation > 1 else "")
    if mode == "valid" and n < span + 1:
        raise ValueError(
            f"{what} of length {m} with dilation={dilation} spans {span + 1} samples, "
            f"longer than the signal ({n} samples along axis) in mode='valid'; "
            f"use {shorter}, or mode='same'/'full'/'causal'."
        )
    padded = n + sum(padding(mode, span))
    if padded > LONGEST_PADDED:
        raise ValueError(
            f"{what} of length {m} with dilation={dilation} spans {span + 1} samples: "
            f"mode={mode!r} would pad the signal ({n} samples along axis) to {padded}, more "
            f"than an array can hold; use {shorter}."
        )
    return span


# The most samples a padded float64 signal can hold (NumPy's size limit).
LONGEST_PADDED = np.iinfo(np.intp).max // 8


def strided_count(nwin, stride):
    """How many of ``nwin`` windows every ``stride``-th keeps (0, stride, ...)."""
    return -(-nwin // stride)


def kept_stride(stride, nwin):
    """``stride``, at most ``nwin``: a stride past the windows keeps the
    first alone, as that many does, and stays a small integer (the device's
    arithmetic is 64-bit)."""
    return min(stride, max(1, nwin))


NormPlan = namedtuple("NormPlan", "m d ax out_dtype span pad_left pad_right nwin center stride nout")
NormPlan.__doc__ = """A checked ``windowed_norm`` call: ``m`` taps spaced ``d``
along axis ``ax``, ``nwin`` windows of the signal padded by ``pad_left`` and
``pad_right`` zeros, of which every ``stride``-th is kept (``nout``); with
``center``, the norms of the windows less their means."""


def plan_norms(x, window, dilation, mode, axis, center=False, stride=1):
    """Check ``windowed_norm``'s arguments; returns a :class:`NormPlan`."""
    center = v.check_bool(center, "center")
    if isinstance(window, (tuple, list, np.ndarray)) and np.size(window) > 1:
        raise ValueError(f"window={window!r} gives one length per axis: pass axis as a tuple "
                         "of that many axes (axis=(0, 1) for an image).")
    m = v.check_positive_int(window, "window")
    d = v.check_positive_int(dilation, "dilation")
    stride = v.check_positive_int(stride, "stride")
    v.check_choice(mode, "mode", MODES)
    ax = v.check_axis(axis, x.ndim)
    out_dtype = v.output_dtype(x.dtype, "signal")
    check_not_empty(x)
    d = _dilation_of(m, d)
    span = _check_window_fits(x.shape[ax], m, d, mode, "window")
    pad_left, pad_right = padding(mode, span)
    nwin = x.shape[ax] + pad_left + pad_right - span
    stride = kept_stride(stride, nwin)
    return NormPlan(m, d, ax, out_dtype, span, pad_left, pad_right, nwin, center, stride,
                    strided_count(nwin, stride))


def norms_shape(shape, plan):
    """The shape of ``windowed_norm``'s result for a signal of ``shape``."""
    return shape[: plan.ax] + (plan.nout,) + shape[plan.ax + 1 :]


SlidingPlan = namedtuple(
    "SlidingPlan",
    "ax d exponent floor fill out_dtype khat kernel_state bank_shape channel_axis "
    "span pad_left pad_right nwin final_shape center stride nout",
)
SlidingPlan.__doc__ = """A checked ``sliding_cosine`` call.

``khat`` holds the unit kernels ``(K, C, m)`` (float64) and ``kernel_state``
their classes (``_core.scalars``); the windows slide along axis ``ax`` with
dilation ``d``; ``exponent`` is ``sharpness**2``.  A multi-channel kernel
reads the channels on ``channel_axis`` (else None); ``bank_shape`` is
``(K,)`` for a bank, ``()`` for one kernel.  ``nwin`` windows of the signal
padded by ``pad_left`` and ``pad_right`` zeros make a result of shape
``final_shape`` and dtype ``out_dtype``, which keeps every ``stride``-th of
them (``nout``).  With ``center``, ``khat`` holds the unit *centered* kernels
and the windows' norms are their centered norms."""


def check_options(x, method, sharpness, noise_floor, fill, center):
    """The options of ``sliding_cosine`` whatever its axes, checked, and the
    signal not empty: ``(sharpness, noise_floor, fill, center, out_dtype)``."""
    v.check_choice(method, "method", METHODS)
    p = v.check_real(sharpness, "sharpness")
    floor = v.check_real(noise_floor, "noise_floor", nonnegative=True)
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    center = v.check_bool(center, "center")
    out_dtype = v.output_dtype(x.dtype, "signal")
    check_not_empty(x)
    return p, floor, fill_value, center, out_dtype


def check_not_empty(x):
    """A signal must hold a sample (an empty batch too: no window is defined
    without one)."""
    if x.size == 0:
        raise ValueError(f"signal must not be empty; got shape {x.shape}.")


def plan_sliding(x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill, out,
                 normalise=None, center=False, stride=1):
    """Check ``sliding_cosine``'s arguments for the signal ``x`` and the host
    array ``kernel``; returns a :class:`SlidingPlan`.  ``normalise``: the
    backend's compiled :func:`fill_unit_kernels` (see :func:`unit_kernels`)."""
    ax = v.check_axis(axis, x.ndim)
    v.check_choice(mode, "mode", MODES)
    d = v.check_positive_int(dilation, "dilation")
    stride = v.check_positive_int(stride, "stride")
    p, floor, fill_value, center, out_dtype = check_options(x, method, sharpness, noise_floor,
                                                            fill, center)

    taps, bank_shape, channel_axis = _check_kernel(kernel, x.ndim, ax)
    nker, nchan, m = taps.shape
    if channel_axis is not None and x.shape[channel_axis] != nchan:
        raise ValueError(
            f"kernel has C_in={nchan} input channels but the signal has "
            f"{x.shape[channel_axis]} along its channel axis {channel_axis - x.ndim} "
            f"(just before axis={axis}); signal shape {x.shape}, kernel shape "
            f"{(nker, nchan, m)}."
        )
    n = x.shape[ax]
    d = _dilation_of(m, d)
    span = _check_window_fits(n, m, d, mode, "kernel")
    pad_left, pad_right = padding(mode, span)
    nwin = n + pad_left + pad_right - span
    stride = kept_stride(stride, nwin)
    nout = strided_count(nwin, stride)
    final_shape = _final_shape(x.shape, ax, channel_axis, nker, bank_shape, nout)
    if out is not None:
        v.check_out(out, final_shape, out_dtype)
    if center:
        taps = centered_kernels(taps)
    khat, kernel_state = unit_kernels(taps, normalise)
    return SlidingPlan(ax, d, p * p, floor, fill_value, out_dtype, khat, kernel_state, bank_shape,
                       channel_axis, span, pad_left, pad_right, nwin, final_shape, center, stride,
                       nout)


SlidingGradPlan = namedtuple("SlidingGradPlan", "forward sharpness kernel_norms kernel_shape grad_output")
SlidingGradPlan.__doc__ = """A checked ``sliding_cosine_grad`` call: the
``forward`` :class:`SlidingPlan`, ``sharpness`` (``p``, not ``p**2``), each
kernel's norm (of its taps less their mean with ``center``: the length its
unit kernel was divided by) as ``(scaled, exponents)`` (:func:`divisor_norms`),
the kernel's shape, and ``grad_output`` (a real array of the forward
result's shape)."""


def plan_sliding_grad(x, kernel, grad_output, axis, mode, method, dilation, sharpness,
                      noise_floor, fill, normalise=None, center=False, stride=1):
    """Check ``sliding_cosine_grad``'s arguments (those of ``sliding_cosine``
    and ``grad_output``, which must have the shape of its result); returns a
    :class:`SlidingGradPlan`."""
    forward = plan_sliding(x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill,
                           None, normalise, center, stride)
    g = check_grad_output(grad_output, forward.final_shape)
    taps, bank_shape, _ = _check_kernel(kernel, x.ndim, forward.ax)
    return SlidingGradPlan(forward, check_grad_sharpness(sharpness),
                           divisor_norms(taps, bank_shape, center), np.shape(kernel), g)


def check_grad_sharpness(sharpness):
    """The sharpness of a gradient (checked finite by the forward's plan),
    whose square must be finite too: the slopes of ``|s|**inf`` are ``0 *
    inf``."""
    p = float(sharpness)
    if not math.isfinite(p * p):
        raise ValueError("sharpness must have a finite square for gradients (|sharpness| < "
                         f"1.3e154); got {p:.6g}.")  # (not a 200-digit integer's repr)
    return p


def divisor_norms(taps, bank_shape, center):
    """The length each unit kernel of ``taps`` ``(K, C, m)`` was divided by
    (its norm, of its taps less their mean with ``center``) as ``(scaled,
    exponents)``, the norm ``scaled * 2**exponents``: a kernel of finite taps
    may have a norm past the float64 range."""
    exponents = _exponents(taps)
    if center:  # (centered_kernels scales each kernel by a power of two already)
        return kernel_norms(centered_kernels(taps)), exponents
    return kernel_norms(np.ldexp(taps, -exponents[:, None, None])), exponents


def check_grad_output(grad_output, shape):
    """``grad_output`` as a real array of the forward result's ``shape``."""
    # (NaN would spread to the kernel's and the scalars' gradients: no way out)
    v.refuse_masked(grad_output, "grad_output",
                    "grad_output.filled(0) to pass no gradient from the masked outputs")
    g = v.as_real_array(grad_output, "grad_output", min_ndim=0)
    if g.shape != shape:
        raise ValueError(
            f"grad_output must have the shape of sliding_cosine's result, {shape}; got "
            f"{g.shape}.")
    return g


# The largest grad_output magnitude taken as it is: the sums over windows of
# its products (a window's terms are about |g| P, P = p**2) stay far inside
# float64's range up to 2**30 windows and P of 2**30.
GRAD_OUTPUT_LARGEST = 2.0**960


def grad_output_limit(smallest_norm=1.0, exponent=1.0):
    """The largest ``grad_output`` magnitude taken as it is:
    ``GRAD_OUTPUT_LARGEST`` times ``smallest_norm / max(1, exponent)`` (at
    most 1).  ``smallest_norm``: a lower bound of ``n + q`` over the windows
    of non-zero norm (:func:`smallest_window_norm`), ``exponent`` the
    sharpening's ``P``.  Past it, the kernel's sums over windows overflowed
    where its gradient does not, and their difference was NaN: at a huge
    ``g``, or where each window's coefficient ``g P |s|**(P-1) / (n + q)``
    overflowed for a window of tiny norm beside windows of norm 1 (no power
    of two brings such a signal into range)."""
    return GRAD_OUTPUT_LARGEST * min(1.0, smallest_norm / max(1.0, exponent))


def largest_magnitude(g):
    """The largest finite magnitude of a float ``grad_output`` (0 for an
    empty or integer one, which :func:`grad_output_in_range` takes as it is)."""
    g = np.asarray(g)
    if g.dtype.kind != "f" or g.size == 0:
        return 0.0
    return float(np.max(np.abs(g), where=np.isfinite(g), initial=0.0))


def grad_output_in_range(g, limit=GRAD_OUTPUT_LARGEST, largest=None):
    """``(g, shift)``: ``grad_output`` (a host array) as it is and 0, or, as
    float64 times ``2**-shift``, where its largest finite magnitude
    (``largest``, if known) is past ``limit`` (:func:`grad_output_limit`);
    each gradient, linear in ``g``, is then multiplied back by ``2**shift``
    (the backends' ``unscale``, see :func:`finish_grad`)."""
    g = np.asarray(g)
    largest = largest_magnitude(g) if largest is None else largest
    if largest <= limit or limit == 0.0:
        return g, 0
    shift = math.frexp(largest)[1] - math.frexp(limit)[1]
    return np.ldexp(g.astype(np.float64), -shift), shift


def smallest_window_norm(x, center, noise_floor):
    """A lower bound of ``n + q`` (``q`` the noise floor) over the windows of
    ``x`` whose norm ``n`` is not 0: ``x``'s smallest finite non-zero
    magnitude; for ``center``, ``2**-60`` of it, below the least difference
    of two distinct samples (windows of one value have norm 0)."""
    x = np.asarray(x)
    if x.size == 0 or x.dtype.kind != "f":  # (integers: 1 at least)
        return 1.0 + float(noise_floor)
    magnitudes = np.abs(x)
    with np.errstate(invalid="ignore"):
        smallest = float(np.min(magnitudes, where=(magnitudes > 0) & (magnitudes < np.inf),
                                initial=np.inf))
    if center:
        smallest = max(math.ldexp(smallest, -60), 5e-324)
    return smallest + float(noise_floor)


def in_range_shift(largest, smallest, floor):
    """The power of two ``2**shift`` that centres the non-zero finite
    magnitudes ``smallest .. largest`` of a signal (in binades) in
    ``[SAFE_MIN, SAFE_MAX]``, where it brings them, and a noise floor above
    0, all into it (the same scaled samples for any power-of-two scaling of
    them, each exact); None where it does not, or no magnitude is non-zero
    and finite (``largest`` 0)."""
    if largest == 0.0:
        return None
    shift = -((math.frexp(largest)[1] + math.frexp(smallest)[1]) // 2)
    with np.errstate(over="ignore", under="ignore"):
        scaled = [np.ldexp(value, shift) for value in (largest, smallest, floor)]
    if not all(SAFE_MIN <= value <= SAFE_MAX for value in scaled[: 3 if floor else 2]):
        return None
    return shift


def host_signal_in_range(x, floor):
    """``(x, floor, shift)``: a float64 host signal whose squares could
    leave the float64 range, and the noise floor, times the power of two
    ``2**shift`` of ``in_range_shift`` (the gradients with respect to them
    are then scaled back by it), by NumPy, for a backend that takes host
    arrays as they are (the GPU's gradients; the CPU's scan their samples
    compiled).  ``shift`` is 0 where no sample needs it or none serves."""
    if x.dtype != np.float64 or x.size == 0:
        return x, floor, 0
    magnitudes = np.abs(x)
    finite = (magnitudes > 0.0) & (magnitudes < np.inf)
    largest = float(np.max(magnitudes, where=finite, initial=0.0))
    smallest = float(np.min(magnitudes, where=finite, initial=np.inf))
    if largest == 0.0 or (SAFE_MIN <= smallest and largest <= SAFE_MAX):
        return x, floor, 0
    shift = in_range_shift(largest, smallest, floor)
    if shift is None:
        return x, floor, 0
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(x, shift), float(np.ldexp(floor, shift)), shift


def grads_times_power_of_two(grads, shift):
    """``(signal, kernel, sharpness, noise_floor)`` gradients each times
    ``2**shift`` (exact; past the dtype's range inf, as the true value is)."""
    if not shift:
        return tuple(grads)
    with np.errstate(over="ignore"):
        return tuple(np.ldexp(part, shift) if isinstance(part, np.ndarray)
                     else float(np.ldexp(np.float64(part), shift)) for part in grads)


def finish_grad(grad_plan, sums, along, log_sum, c_sum, unscale=0):
    """The kernel's, the sharpness's and the noise floor's gradients from a
    backend's sums over every window (float64): ``sums[k]`` of ``a w_c``
    (``(K, C*m)``), ``along[k]`` of ``gamma s``, and the totals of ``g out
    ln|s|`` and of ``c``; see ``_cpu.grad``.  ``unscale``: ``grad_output``
    was divided by ``2**unscale`` (:func:`grad_output_in_range`), which the
    gradients are multiplied by here, the kernel's with its norm's power of
    two in one step (a huge kernel's tiny gradient, from a tiny signal's
    scaled ``grad_output``, passed through the subnormals)."""
    plan = grad_plan.forward
    flat = plan.khat.reshape(plan.khat.shape[0], -1)
    scaled, exponents = grad_plan.kernel_norms
    # (a kernel's gradient past the float64 range, 1 / ||k|| for a subnormal
    # one, is inf: the documented exception, no warning)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        grad_kernel = np.ldexp((sums - along[:, None] * flat) / scaled[:, None],
                               unscale - exponents[:, None])
    grad_kernel[plan.kernel_state == KERNEL_ZERO] = 0.0
    grad_sharpness, grad_floor = grads_times_power_of_two(
        (2.0 * grad_plan.sharpness * float(log_sum), -float(c_sum)), unscale)
    return (grad_kernel.reshape(grad_plan.kernel_shape).astype(plan.out_dtype), grad_sharpness,
            grad_floor)


def kernel_norms(taps):
    """The L2 norm of each kernel of ``taps`` ``(K, C, m)``, summed after a
    power-of-two scaling (no square overflows or underflows)."""
    flat = taps.reshape(taps.shape[0], -1)
    exponents = _exponents(taps)
    scaled = np.ldexp(flat, -exponents[:, None])
    with np.errstate(invalid="ignore"):
        return np.ldexp(np.sqrt(np.einsum("ij,ij->i", scaled, scaled)), exponents)


def _exponents(taps):
    """Each kernel's power-of-two scale: the exponent of its largest finite
    magnitude (as ``centered_kernels`` takes it; 1 for none)."""
    largest = np.max(np.abs(taps.reshape(taps.shape[0], -1)), axis=1)
    return np.frexp(np.where(np.isfinite(largest), largest, 1.0))[1]


def centered_kernels(taps):
    """Each kernel of ``taps`` ``(K, C, m)`` less the mean of all its taps,
    centered twice (the second pass takes out what the first one's rounding
    left, so the taps sum to zero far more closely: a large offset of the
    signal then weighs on no dot).  A constant kernel has no centered
    direction: a ValueError names it.  Scaling a kernel by a power of two
    scales its centered taps exactly."""
    flat = taps.reshape(taps.shape[0], -1)
    # (a kernel of one infinite tap value is no constant: it is non-finite,
    # and gives NaN as [inf, -inf, 1] does)
    constant = np.all(flat == flat[:, :1], axis=1) & np.isfinite(flat[:, 0])
    if constant.any():
        # (a bank's kernels and a multi-channel kernel's output channels alike)
        index = int(np.argmax(constant))
        which = "kernel" if flat.shape[0] == 1 else f"kernel[{index}]"
        raise ValueError(
            f"{which} is constant (every tap {float(flat[index, 0])!r}): with "
            "center=True it has no direction to match (its taps less their mean are all "
            "zero); use center=False, or a kernel with some variation.")
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf taps: a NaN kernel
        # each kernel first scaled by a power of two into [0.5, 1), so that
        # the mean of subnormal or huge taps neither underflows nor overflows
        scaled = np.ldexp(flat, -_exponents(taps)[:, None])
        centered = scaled - np.mean(scaled, axis=1, keepdims=True)
        centered -= np.mean(centered, axis=1, keepdims=True)
    return centered.reshape(taps.shape)


def _check_kernel(kernel, signal_ndim, ax):
    """The kernel as float64 taps ``(K, C, m)``; returns ``(taps, bank_shape,
    channel_axis)``."""
    k = v.as_real_array(kernel, "kernel")
    if k.ndim > 3:
        raise ValueError(
            "kernel must have shape (m,), (K, m) or (C_out, C_in, m); "
            f"got a {k.ndim}-d array of shape {k.shape}."
        )
    if k.shape[-1] < 1 or 0 in k.shape:
        raise ValueError(f"kernel must not be empty; got shape {k.shape}.")
    channel_axis = None
    if k.ndim == 3:
        if signal_ndim < 2 or ax == 0:
            raise ValueError(
                f"a multi-channel kernel of shape {k.shape} needs a signal with a "
                "channel axis just before the sliding axis, shaped (..., C_in, n); "
                f"the signal has {signal_ndim} dimension(s) and axis={ax}."
            )
        channel_axis = ax - 1
    taps = np.ascontiguousarray(k, dtype=np.float64).reshape(
        (-1,) + k.shape[-2:] if k.ndim == 3 else (-1, 1, k.shape[-1]))
    bank_shape = () if k.ndim == 1 else k.shape[:1]
    return taps, bank_shape, channel_axis


def unit_kernels(taps, normalise=None):
    """``(khat, state)``: ``khat[k] = taps[k] / ||taps[k]||`` for float64
    ``taps`` of shape ``(K, C, m)``, and ``state[k]`` (int8) the kernel's
    class: ``KERNEL_ZERO`` (``khat[k]`` zero) or ``KERNEL_NONFINITE``
    (``khat[k]`` NaN) where no unit kernel exists.

    ``normalise`` is :func:`fill_unit_kernels` as a backend compiled it;
    run as plain Python (the default) it gives the same bits, slowly."""
    khat = np.zeros_like(taps)
    state = np.full(taps.shape[0], KERNEL_NORMAL, dtype=np.int8)
    (normalise or fill_unit_kernels)(taps, khat, state)
    return khat, state


def fill_unit_kernels(taps, khat, state):
    """Write the unit kernels of ``taps`` into the zeroed ``khat`` and the
    kernels' classes into ``state`` (:func:`unit_kernels`).  A loop over
    floats that backends compile (``numba.njit``).

    The taps are scaled by a power of two before the norm is taken, so the
    norm cannot overflow or underflow and a kernel times ``2**j`` gives
    bit-identical unit kernels.  The squares are summed with compensation
    (Neumaier), keeping ``||khat[k]||`` within a few units of rounding of 1
    for any kernel length."""
    nker, nchan, m = taps.shape
    for k in range(nker):
        largest = 0.0
        finite = True
        for c in range(nchan):
            for j in range(m):
                finite = finite and math.isfinite(taps[k, c, j])
                largest = max(largest, abs(taps[k, c, j]))
        if not finite:
            state[k] = KERNEL_NONFINITE
            khat[k] = np.nan
            continue
        if largest == 0.0:
            state[k] = KERNEL_ZERO
            continue
        shift = -math.frexp(largest)[1]
        total = 0.0
        compensation = 0.0
        for c in range(nchan):
            for j in range(m):
                scaled = math.ldexp(taps[k, c, j], shift)
                square = scaled * scaled
                updated = total + square
                if total >= square:
                    compensation += (total - updated) + square
                else:
                    compensation += (square - updated) + total
                total = updated
        norm = math.sqrt(total + compensation)
        for c in range(nchan):
            for j in range(m):
                khat[k, c, j] = math.ldexp(taps[k, c, j], shift) / norm


def _final_shape(shape, ax, channel_axis, nker, bank_shape, nwin):
    shape = list(shape)
    shape[ax] = nwin
    if channel_axis is not None:
        shape[channel_axis] = nker
    elif bank_shape:
        shape.insert(ax, nker)
    return tuple(shape)
