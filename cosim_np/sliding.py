"""Sliding (sharpened) cosine similarity, windowed norms and sharpening.

Each public function validates its arguments (``_validate``), plans the work
(axis moves, padding, kernel normalisation, dtypes) and hands plain arrays to
the Numba kernels in ``_cpu.sliding``.
"""

from collections import namedtuple

import numpy as np

from . import _backend
from ._core import validate as v
from ._cpu import drivers
from ._cpu import sliding as kernels

__all__ = ["sliding_cosine", "windowed_norm", "sharpen"]

MODES = ("valid", "same", "full", "causal")
METHODS = ("auto", "direct", "fft")


# ---------------------------------------------------------------------------
# planning helpers


def _padding(mode, span):
    """Zeros added (left, right) of the signal so that every mode is 'valid'."""
    if mode == "valid":
        return 0, 0
    if mode == "full":
        return span, span
    if mode == "same":  # centred as scipy.signal.correlate(mode="same")
        return span - span // 2, span // 2
    return span, 0  # causal: output i is the window that ends at i


def _compute_dtype(out_dtype):
    """The kernels read float32 or float64; float16 is computed in float32."""
    return np.float32 if out_dtype.itemsize <= 4 else np.float64


def _moveaxis(array, source, destination):
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
        moved = _moveaxis(signal, axis, -1)
        lead = moved.shape[:-1]
        rows = moved.reshape(-1, 1, moved.shape[-1])
    else:
        moved = _moveaxis(signal, (channel_axis, axis), (-2, -1))
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


def _moved_axes(ax, channel_axis, is_bank):
    """``(kernel_axes, caller_axes)``: where the trailing axes of the kernels'
    ``(lead..., [K,] L)`` layout go in the caller's array (``np.moveaxis``
    one way delivers a result, the other way views ``out`` as the kernels
    write it)."""
    if channel_axis is not None:
        return (-2, -1), (channel_axis, ax)
    if is_bank:
        return (-2, -1), (ax, ax + 1)
    return -1, ax


def _deliver(result, ax, channel_axis, is_bank, out_dtype, out):
    """Move the kernel's ``(lead..., [K,] L)`` layout back to the caller's axes,
    cast to the output dtype and fill ``out`` if given.

    A bank's K axis goes just before ``axis``; a multi-channel kernel's C_out
    axis replaces the signal's channel axis."""
    result = _moveaxis(result, *_moved_axes(ax, channel_axis, is_bank))
    if out is not None:
        np.copyto(out, result, casting="unsafe")
        return out
    return result.astype(out_dtype, copy=False)


def _check_window_fits(n, m, dilation, mode, what):
    span = (m - 1) * dilation
    if mode == "valid" and n < span + 1:
        raise ValueError(
            f"{what} of length {m} with dilation={dilation} spans {span + 1} samples, "
            f"longer than the signal ({n} samples along axis) in mode='valid'; "
            "use a shorter kernel, a smaller dilation or mode='same'/'full'/'causal'."
        )
    return span


# ---------------------------------------------------------------------------
# public functions


@_backend.documented
def sharpen(s, sharpness, *, backend="auto"):
    """Sign-preserving sharpening ``sign(s) * |s| ** (sharpness**2)``.

    Parameters
    ----------
    s : array_like
        Similarities, usually in ``[-1, 1]``. Real dtypes only.
    sharpness : float
        The sharpness ``p``. The exponent is ``p**2`` (seed 000), so any real
        ``p`` gives a non-negative exponent; ``p = 1`` returns ``s`` unchanged,
        ``p = 0`` gives ``sign(s)``.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend}

    Returns
    -------
    numpy.ndarray or numpy scalar
        Same shape as ``s``; float16/float32/float64 keep their dtype, integers
        and bools become float64. Zeros and NaN pass through unchanged. The
        sign is never flipped, but ``|s| ** (sharpness**2)`` may underflow to
        zero for tiny ``|s|``.

    Raises
    ------
    ValueError
        If ``sharpness`` is not finite.
    TypeError
        If ``s`` is complex or not numeric, or ``sharpness`` is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import sharpen
    >>> sharpen(np.array([-0.5, 0.0, 0.5, 1.0]), 2.0)
    array([-0.0625,  0.    ,  0.0625,  1.    ])
    """
    if _backend.wants_cuda(backend, s=s):
        return _backend.cuda_impl("sharpen")(s, sharpness)
    array = v.as_real_array(s, "s", min_ndim=0)
    p = v.check_real(sharpness, "sharpness")
    out_dtype = v.output_dtype(array.dtype, "s")
    values = np.ascontiguousarray(array, dtype=np.float64).reshape(-1)
    result = np.empty(values.size, dtype=np.float64)
    kernels.sharpen_kernel(values, p * p, result)
    result = result.reshape(array.shape).astype(out_dtype, copy=False)
    return result if array.ndim else result[()]


@_backend.documented
def windowed_norm(signal, window, *, dilation=1, mode="valid", axis=-1, backend="auto"):
    """L2 norm of every (dilated) window of a signal, in O(n), exactly.

    The sums of squares are computed by blocked prefix sums that never
    subtract: each window's norm depends only on its own samples, so a loud
    burst leaves later windows exact to float64 rounding and a NaN affects only
    the windows that contain it.

    Parameters
    ----------
    signal : array_like
        Real array of at least one dimension; windows slide along ``axis``.
    window : int
        Number of samples (taps) per window, ``>= 1``.
    dilation : int, optional
        Spacing between taps: window ``i`` is ``signal[i : i + (window-1)*dilation + 1 : dilation]``.
    mode : {'valid', 'same', 'full', 'causal'}, optional
        Zero padding, as in :func:`sliding_cosine`.
    axis : int, optional
        Axis along which the windows slide.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend}

    Returns
    -------
    numpy.ndarray
        Norms, with ``axis`` replaced by the number of windows. float32 and
        float16 keep their dtype, integers and bools give float64. A window
        containing NaN gives NaN; one containing ±inf (and no NaN) gives inf.

    Raises
    ------
    ValueError
        For a window longer than the signal in 'valid' mode, ``window < 1``,
        ``dilation < 1``, an unknown ``mode``, a 0-d signal or a bad ``axis``.
    TypeError
        For complex or non-numeric input, or non-integer ``window``/``dilation``.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import windowed_norm
    >>> windowed_norm(np.array([3.0, 4.0, 0.0, 1e8, 0.0, 3e-3, 4e-3]), 2)
    array([5.e+00, 4.e+00, 1.e+08, 1.e+08, 3.e-03, 5.e-03])
    """
    if _backend.wants_cuda(backend, signal=signal):
        return _backend.cuda_impl("windowed_norm")(signal, window, dilation=dilation, mode=mode, axis=axis)
    x = v.as_real_array(signal, "signal")
    m, d, ax, out_dtype, span = _check_norm_args(x, window, dilation, mode, axis)

    rows, lead = _as_rows(x, ax, None, _compute_dtype(out_dtype))
    pad_left, pad_right = _padding(mode, span)
    nwin = rows.shape[-1] + pad_left + pad_right - span
    result = np.empty((rows.shape[0], nwin), dtype=rows.dtype)
    for piece, offset in _pieces(rows, pad_left, pad_right, span):
        drivers.run_windowed_norm(piece, m, d, result, offset)
    return _deliver(result.reshape(lead + (nwin,)), ax, None, False, out_dtype, None)


def _check_norm_args(x, window, dilation, mode, axis):
    """Validated ``windowed_norm`` arguments for the signal ``x`` (an array or
    a stand-in of a device array's shape and dtype): ``(m, d, ax, out_dtype,
    span)``.  Shared by the CPU and CUDA paths."""
    m = v.check_positive_int(window, "window")
    d = v.check_positive_int(dilation, "dilation")
    v.check_choice(mode, "mode", MODES)
    ax = v.check_axis(axis, x.ndim)
    out_dtype = v.output_dtype(x.dtype, "signal")
    span = _check_window_fits(x.shape[ax], m, d, mode, "window")
    return m, d, ax, out_dtype, span


_SlidingArgs = namedtuple(
    "_SlidingArgs",
    "ax d p floor fill_value out_dtype khat kernel_state bank_shape channel_axis "
    "span pad_left pad_right nwin final_shape",
)


def _check_sliding_args(x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill, out):
    """Validate ``sliding_cosine``'s arguments for the signal ``x`` (an array
    or a stand-in of a device array's shape and dtype) and the host
    ``kernel``; plan the kernel and the geometry.  Shared by the CPU and CUDA
    paths."""
    ax = v.check_axis(axis, x.ndim)
    v.check_choice(mode, "mode", MODES)
    v.check_choice(method, "method", METHODS)
    d = v.check_positive_int(dilation, "dilation")
    p = v.check_real(sharpness, "sharpness")
    floor = v.check_real(noise_floor, "noise_floor", nonnegative=True)
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    out_dtype = v.output_dtype(x.dtype, "signal")
    if x.size == 0:
        raise ValueError(f"signal must not be empty; got shape {x.shape}.")

    khat, kernel_state, bank_shape, channel_axis = _plan_kernel(kernel, x.ndim, ax)
    nker, nchan, m = khat.shape
    if channel_axis is not None and x.shape[channel_axis] != nchan:
        raise ValueError(
            f"kernel has C_in={nchan} input channels but the signal has "
            f"{x.shape[channel_axis]} along its channel axis {channel_axis - x.ndim} "
            f"(just before axis={axis}); signal shape {x.shape}, kernel shape "
            f"{(nker, nchan, m)}."
        )
    n = x.shape[ax]
    span = _check_window_fits(n, m, d, mode, "kernel")
    pad_left, pad_right = _padding(mode, span)
    nwin = n + pad_left + pad_right - span
    final_shape = _final_shape(x.shape, ax, channel_axis, nker, bank_shape, nwin)
    if out is not None:
        v.check_out(out, final_shape, out_dtype)
    return _SlidingArgs(ax, d, p, floor, fill_value, out_dtype, khat, kernel_state, bank_shape,
                        channel_axis, span, pad_left, pad_right, nwin, final_shape)


def _plan_kernel(kernel, signal_ndim, ax):
    """Normalise the kernel to unit L2 norm per output (``(K, C, m)`` float64).

    Returns ``(khat, kernel_state, bank_shape, channel_axis)``."""
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
    k3 = np.ascontiguousarray(k, dtype=np.float64).reshape(
        (-1,) + k.shape[-2:] if k.ndim == 3 else (-1, 1, k.shape[-1]))
    khat = np.zeros_like(k3)
    state = np.zeros(k3.shape[0], dtype=np.int8)
    kernels.unit_kernels(k3, khat, state)
    bank_shape = () if k.ndim == 1 else k.shape[:1]
    return khat, state, bank_shape, channel_axis


@_backend.documented
def sliding_cosine(
    signal,
    kernel,
    *,
    sharpness=1.0,
    mode="valid",
    dilation=1,
    noise_floor=0.0,
    fill=0.0,
    axis=-1,
    method="auto",
    out=None,
    backend="auto",
):
    """Sharpened cosine similarity of every window of a signal with a kernel.

    For each window ``w`` (``kernel.shape[-1]`` samples spaced ``dilation``
    apart)::

        s = <w, k> / ((||w|| + noise_floor) * ||k||)
        result = sign(s) * |s| ** (sharpness**2)

    Multiplying the signal or the kernel by ``c > 0`` leaves every output
    unchanged (bit-exact for powers of two), ``c < 0`` flips its sign; there is
    no absolute epsilon, so a window of norm ``1e-300`` is a real window.

    Parameters
    ----------
    signal : array_like
        Real array of at least one dimension; windows slide along ``axis``.
    kernel : array_like
        ``(m,)``: one kernel, slides along ``axis`` of any signal.
        ``(K, m)``: a bank of K kernels; a K axis is inserted before ``axis``.
        ``(C_out, C_in, m)``: multi-channel kernels; the signal axis just before
        ``axis`` holds the ``C_in`` channels and the window across all channels
        is one vector (the sharpened-cosine-similarity layer); that axis becomes
        ``C_out`` in the output.
    sharpness : float, optional
        ``p`` in ``sign(s) * |s| ** (p**2)``; 1 (default) gives the plain cosine.
    mode : {'valid', 'same', 'full', 'causal'}, optional
        'valid': windows inside the signal, ``n - (m-1)*dilation`` outputs.
        'full': zero padding of ``(m-1)*dilation`` on both sides.
        'same': ``n`` outputs centred as ``scipy.signal.correlate(mode='same')``.
        'causal': ``n`` outputs, output ``i`` is the window that ends at ``i``
        (zero padding on the left); the seed-000 function for ``dilation=1``.
    dilation : int, optional
        Spacing between kernel taps, ``>= 1``.
    noise_floor : float, optional
        Added to every window norm (in signal units) to damp near-silent
        windows; ``>= 0``. Non-zero values break exact scale invariance by
        design.
    fill : float, optional
        Value for windows, or kernels, whose norm is exactly zero (the cosine
        is undefined there). NaN is allowed.
    axis : int, optional
        Axis of ``signal`` along which the kernel slides.
    method : {'auto', 'direct', 'fft'}, optional
        How the dot products are computed (the norms are exact sums of each
        window's own squares either way). 'direct': a vectorised loop, O(m)
        per output. 'fft': blocked overlap-save with real FFTs in float64
        (ducc0's when it is installed, the ``fft`` extra; else NumPy's
        pocketfft), each block scaled by a power of two. Any window whose
        FFT error bound is not small against its own norm (a loud sample
        nearby) gets its dot directly, so both methods meet the same
        accuracy; for float32 and float16 results that bound is a small part
        of the output's own rounding, for float64 results the direct
        method's. On signals with loud and quiet stretches the FFT path plans
        its blocks so that this costs little: blocks of mostly such windows
        take direct dots, a few loud samples (spikes) are left out of the
        transforms and added one by one, and for long kernels, long runs of
        flagged windows (quiet stretches next to loud ones) are transformed
        again in a row of their own (see :doc:`/performance`). It
        pays off for long kernels (``m * C_in`` of 128 taps and more) and for
        kernel banks. 'auto' (default): whichever a cost model predicts
        faster for ``m``, ``K`` and ``C_in``.
    out : numpy.ndarray, optional
        Array to write the result into; it must have exactly the result's shape
        and dtype. It may overlap ``signal``.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, ``out`` must be a NumPy array and
        ``method`` is ignored.

    Returns
    -------
    numpy.ndarray
        float32 for float32 signals, float16 for float16 (computed in float32),
        float64 otherwise; the kernel's dtype does not matter. Values lie in
        ``[-1, 1]``; windows containing NaN or ±inf give NaN and nothing else.

    Raises
    ------
    ValueError
        Kernel longer than the signal in 'valid' mode, ``dilation < 1``,
        non-finite ``sharpness``, negative or non-finite ``noise_floor``,
        channel mismatch, 0-d or empty input, bad ``axis``/``mode``/``method``,
        or ``out`` of the wrong shape/dtype.
    TypeError
        Complex or non-numeric input, non-integer ``dilation``, ``out`` not an
        ndarray.

    See Also
    --------
    windowed_norm : the window norms on their own.
    sharpen : the sharpening step on its own.

    Notes
    -----
    Long signals are split across ``numba.get_num_threads()`` threads (set
    it with ``numba.set_num_threads``); the result is bit-identical for any
    thread count, and calls from several user threads may run concurrently.

    Window norms use blocked prefix sums that never subtract (see
    :func:`windowed_norm`), dots are accumulated in float64 whatever the input
    dtype, and float64 windows near the overflow/underflow limits are
    recomputed with power-of-two scaling, so results are right to a few units
    of float64 rounding per tap for any amplitude.

    Examples
    --------
    The seed-000 experiment in miniature: exact, negated and downscaled copies
    of the kernel score ±1, the reversed one does not.

    >>> import numpy as np
    >>> from cosim_np import sliding_cosine
    >>> signal = np.array([0, 1, 2, 3, 0, -1, -2, -3, 0, 0.2, 0.4, 0.6, 0, 3, 2, 1, 0.])
    >>> s = sliding_cosine(signal, [1, 2, 3])
    >>> np.round(s[[1, 5, 9, 13]], 3)  # exact, negated, downscaled, reversed
    array([ 1.   , -1.   ,  1.   ,  0.714])
    >>> np.round(sliding_cosine(signal, [1, 2, 3], sharpness=3)[[1, 9, 13]], 3)
    array([1.   , 1.   , 0.048])
    """
    if _backend.wants_cuda(backend, signal=signal, kernel=kernel):
        return _backend.cuda_impl("sliding_cosine")(
            signal, kernel, sharpness=sharpness, mode=mode, dilation=dilation,
            noise_floor=noise_floor, fill=fill, axis=axis, method=method, out=out)
    x = v.as_real_array(signal, "signal")
    (ax, d, p, floor, fill_value, out_dtype, khat, kernel_state, bank_shape, channel_axis,
     span, pad_left, pad_right, nwin, final_shape) = _check_sliding_args(
        x, kernel, axis, mode, method, dilation, sharpness, noise_floor, fill, out)
    nker, nchan, m = khat.shape

    rows, lead = _as_rows(x, ax, channel_axis, _compute_dtype(out_dtype))
    # Output layout before moving axes back: lead + bank + (L,)
    out_shape_moved = lead + ((nker,) if bank_shape or channel_axis is not None else ()) + (nwin,)

    shape = (rows.shape[0], nker, nwin)
    target = None if out is None or np.may_share_memory(out, rows) else _out_view(
        out, rows.dtype, shape, ax, channel_axis, bool(bank_shape))
    result = np.empty(shape, dtype=rows.dtype) if target is None else target
    chosen = drivers.choose_method(method, m, nchan, nker)
    budget = drivers.fft_error_budget(out_dtype, m * nchan, p * p)
    for piece, offset in _pieces(rows, pad_left, pad_right, span):
        if chosen == "fft" and piece.shape[-1] - span > 0:
            drivers.run_fft(piece, khat, kernel_state, d, p * p, floor, fill_value, result, offset,
                            budget)
        else:
            drivers.run_direct(piece, khat, kernel_state, d, p * p, floor, fill_value, result, offset)
    if target is not None:
        return out
    return _deliver(result.reshape(out_shape_moved), ax, channel_axis, bool(bank_shape), out_dtype, out)


def _out_view(out, dtype, shape, ax, channel_axis, is_bank):
    """``out`` seen in the kernel's ``(B, K, L)`` layout (the inverse of the
    axis moves of ``_deliver``), when that view is C-contiguous and of the
    compute dtype: the kernels then write the result in place, sparing a
    copy (not when ``out`` overlaps the signal: windows read later would
    see results).  ``None`` otherwise."""
    if out.dtype != dtype:
        return None
    kernel_axes, caller_axes = _moved_axes(ax, channel_axis, is_bank)
    view = _moveaxis(out, caller_axes, kernel_axes)
    if not view.flags.c_contiguous:
        return None
    return view.reshape(shape)


def _final_shape(shape, ax, channel_axis, nker, bank_shape, nwin):
    shape = list(shape)
    shape[ax] = nwin
    if channel_axis is not None:
        shape[channel_axis] = nker
    elif bank_shape:
        shape.insert(ax, nker)
    return tuple(shape)
