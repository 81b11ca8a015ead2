"""Sliding (sharpened) cosine similarity, windowed norms and sharpening.

Each public function validates and plans its call in the core
(``_core.sliding``: checks, geometry, unit kernels) and dispatches it to a
backend: ``_cpu.drivers``, ``_cuda`` for device arrays, or ``_dask`` for Dask
arrays (which runs the function itself on each block, lazily).
"""

import functools
import math
import numbers
from collections import namedtuple

import numpy as np

from . import _backend
from ._core import sliding as plans
from ._core import spatial
from ._core import validate as v
from ._cpu import drivers, spatial_driver

__all__ = ["sliding_cosine", "windowed_norm", "sharpen", "sliding_cosine_grad",
           "SlidingCosineGrad"]

SlidingCosineGrad = namedtuple("SlidingCosineGrad", "signal kernel sharpness noise_floor")
SlidingCosineGrad.__doc__ = """Gradients returned by :func:`sliding_cosine_grad`.

Attributes
----------
signal : numpy.ndarray
    With respect to the signal; its shape, the result's dtype.
kernel : numpy.ndarray
    With respect to the kernel; its shape, the result's dtype.
sharpness : float
    With respect to ``sharpness``.
noise_floor : float
    With respect to ``noise_floor``.

Examples
--------
>>> import numpy as np
>>> from cosim_np import sliding_cosine_grad
>>> grads = sliding_cosine_grad([0.0, 1, 2, 3, 0], [1.0, 2, 3], np.ones(3))
>>> grads.signal.shape, grads.kernel.shape
((5,), (3,))
>>> signal_grad, kernel_grad, sharpness_grad, floor_grad = grads"""


# ---------------------------------------------------------------------------
# public functions


@_backend.documented
def sharpen(s, sharpness, *, out=None, backend="auto"):
    """Sign-preserving sharpening ``sign(s) * |s| ** (sharpness**2)``.

    Parameters
    ----------
    s : array_like
        Similarities, usually in ``[-1, 1]``. Real dtypes only. A
        ``dask.array.Array`` gives a lazy Dask array (:doc:`/dask`).
    sharpness : float
        The sharpness ``p``. The exponent is ``p**2`` (seed 000), so any real
        ``p`` gives a non-negative exponent; ``p = 1`` returns ``s`` unchanged,
        ``p = 0`` gives ``sign(s)``.
    out : numpy.ndarray, optional
        Array to write the result into, of exactly the result's shape and
        dtype (a 0-d array for a scalar ``s``); it is returned.
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
        If ``sharpness`` is not finite, or ``out`` has the wrong shape or dtype.
    TypeError
        If ``s`` is complex or not numeric, ``sharpness`` is not a real number,
        or ``out`` is not an ndarray.

    Notes
    -----
    Each element is raised to the power in float64 and rounded once to the
    result's dtype, the elements split among the threads
    (``numba.set_num_threads``). Float64, float16 and integer inputs take
    libm's ``pow``. Float32 inputs take the vectorised power the kernels
    give float32 results (within ``1e-14`` relative of libm's, several times
    faster, see :doc:`/sliding`): the float32 result is libm's power
    rounded, but where that power lies within its error of a rounding
    boundary (exact ties, such as ``(71/128)**4``), one unit away.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import sharpen
    >>> sharpen(np.array([-0.5, 0.0, 0.5, 1.0]), 2.0)
    array([-0.0625,  0.    ,  0.0625,  1.    ])
    """
    if _backend.is_xarray(s):
        _no_out_for_labels(out)
        return _backend.xarray_impl("sharpen", backend)(
            s, functools.partial(sharpen, backend=backend), sharpness=sharpness)
    if _backend.is_dask(s):
        return _backend.dask_impl("sharpen", backend)(s, sharpness, functools.partial(sharpen, backend=backend),
                                             out=out)
    if _backend.wants_cuda(backend, s=s):
        return _backend.cuda_impl("sharpen")(s, sharpness, out=out)
    array = v.as_real_array(s, "s", min_ndim=0)
    p = v.check_real(sharpness, "sharpness")
    out_dtype = v.output_dtype(array.dtype, "s")
    if out is not None:
        v.check_out(out, array.shape, out_dtype)
    return drivers.sharpen(array, p * p, out_dtype, out)


@_backend.documented
def windowed_norm(signal, window, *, dilation=1, mode="valid", axis=-1, center=False, stride=1,
                  out=None, backend="auto"):
    """L2 norm of every (dilated) window of a signal, in O(n), exactly.

    The sums of squares are computed by blocked prefix sums that never
    subtract: each window's norm depends only on its own samples, so a loud
    burst leaves later windows exact to float64 rounding and a NaN affects only
    the windows that contain it.

    Parameters
    ----------
    signal : array_like
        Real array of at least one dimension; windows slide along ``axis``.
        A ``dask.array.Array`` gives a lazy Dask array (:doc:`/dask`).
    window : int or tuple of int
        Number of samples (taps) per window, ``>= 1``; with several axes,
        one per axis (or one for all).
    dilation : int, optional
        Spacing between taps: window ``i`` is ``signal[i : i + (window-1)*dilation + 1 : dilation]``.
    mode : {'valid', 'same', 'full', 'causal'}, optional
        Zero padding, as in :func:`sliding_cosine`.
    axis : int or tuple of int, optional
        Axis along which the windows slide; a tuple of axes slides a window
        over all of them (images, volumes: :doc:`/images`), with ``mode``
        ('valid', 'same' or 'full'), ``dilation`` and ``stride`` one for all
        axes or one per axis.
    center : bool, optional
        The norm of each window less its mean, ``||w - mean(w)||`` (``sqrt(m)``
        times its standard deviation), from the means and sums of squared
        deviations of runs of taps merged pairwise by Chan, Golub and
        LeVeque's update [3]_ (each run's mean held as its distance from
        the run's first sample), never ``sum(w**2) - m * mean(w)**2``: as
        accurate as a two-pass computation over each window whatever the
        offset (a relative error below ``4 (m + 4) eps``). A constant window
        gives exactly 0, one holding NaN or ±inf NaN (``inf - mean(w)`` is
        undefined). Default False.
    stride : int, optional
        Keep every ``stride``-th window of the mode: output ``i`` is window
        ``i * stride``, ``ceil(L / stride)`` outputs for ``L`` windows.
        Default 1.
    out : numpy.ndarray, optional
        Array to write the result into, of exactly the result's shape and
        dtype; it is returned.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, ``out`` must be a NumPy array.

    Returns
    -------
    numpy.ndarray
        Norms, with ``axis`` replaced by the number of windows. float32 and
        float16 keep their dtype, integers and bools give float64. A window
        containing NaN gives NaN; one containing ±inf (and no NaN) gives inf
        (NaN with ``center``).

    Raises
    ------
    ValueError
        For a window longer than the signal in 'valid' mode, ``window < 1``,
        ``dilation < 1``, ``stride < 1``, an unknown ``mode``, a 0-d or empty
        signal, a bad ``axis``, or ``out`` of the wrong shape or dtype.
    TypeError
        For complex or non-numeric input, non-integer ``window``,
        ``dilation`` or ``stride``, ``center`` not a bool, or ``out`` not an
        ndarray.

    Notes
    -----
    The signal's samples (each residue modulo ``dilation`` on its own) are
    cut into blocks of ``window`` samples; a window is the suffix of one
    block plus the prefix of the next, so its sum of squares is the sum of
    one suffix sum and one prefix sum, both computed in one pass over the
    block.  This is the block decomposition of van Herk [1]_ and Gil and
    Werman [2]_ for running maxima, applied to sums: no running total is
    ever subtracted, so no window inherits another's rounding.

    References
    ----------
    .. [1] M. van Herk, "A fast algorithm for local minimum and maximum
       filters on rectangular and octagonal kernels", Pattern Recognition
       Letters 13(7), 517-521, 1992.
    .. [2] J. Gil and M. Werman, "Computing 2-D min, median, and max
       filters", IEEE Transactions on Pattern Analysis and Machine
       Intelligence 15(5), 504-507, 1993.
    .. [3] T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for
       computing the sample variance: analysis and recommendations", The
       American Statistician 37(3), 242-247, 1983.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import windowed_norm
    >>> windowed_norm(np.array([3.0, 4.0, 0.0, 1e8, 0.0, 3e-3, 4e-3]), 2)
    array([5.e+00, 4.e+00, 1.e+08, 1.e+08, 3.e-03, 5.e-03])

    Centered, under an offset where running sums lose every digit:

    >>> x = 1e9 + np.array([1.0, -1.0, 1.0, -1.0, 3.0])
    >>> np.round(windowed_norm(x, 4, center=True), 6)  # sqrt(4), sqrt(11)
    array([2.      , 3.316625])
    >>> sums, squares = np.convolve(x, np.ones(4), "valid"), np.convolve(x**2, np.ones(4), "valid")
    >>> np.sqrt(np.maximum(squares - sums**2 / 4, 0))  # the running-sum recipe
    array([0., 0.])
    """
    axis, window, dilation, mode, stride = spatial.normalise_axis(
        axis, window=window, dilation=dilation, mode=mode, stride=stride)
    if _backend.is_xarray(signal):
        _no_out_for_labels(out)
        return _backend.xarray_impl("windowed_norm", backend)(
            signal, functools.partial(windowed_norm, backend=backend), window=window,
            dilation=dilation, mode=mode, axis=axis, center=center, stride=stride)
    if _backend.is_dask(signal):
        return _backend.dask_impl("windowed_norm", backend)(
            signal, window, functools.partial(windowed_norm, backend=backend), dilation=dilation,
            mode=mode, axis=axis, center=center, stride=stride, out=out)
    if _backend.wants_cuda(backend, signal=signal):
        return _backend.cuda_impl("windowed_norm")(signal, window, dilation=dilation, mode=mode,
                                                   axis=axis, center=center, stride=stride,
                                                   out=out)
    x = v.as_real_array(signal, "signal")
    if isinstance(axis, tuple):
        plan = spatial.plan_norms(x, window, dilation, mode, axis, center, stride)
        if out is not None:
            v.check_out(out, plan.final_shape, plan.out_dtype)
        return spatial_driver.windowed_norm(x, plan, out)
    plan = plans.plan_norms(x, window, dilation, mode, axis, center, stride)
    if out is not None:
        v.check_out(out, plans.norms_shape(x.shape, plan), plan.out_dtype)
    return drivers.windowed_norm(x, plan, out)


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
    center=False,
    stride=1,
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
        A ``dask.array.Array`` gives a lazy Dask array (:doc:`/dask`).
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
    axis : int or tuple of int, optional
        Axis of ``signal`` along which the kernel slides.  A tuple of ``r``
        axes slides the kernel's last ``r`` dimensions over them (images,
        volumes: :doc:`/images`): ``(kh, kw)`` is one kernel, ``(K, kh,
        kw)`` a bank (its K axis before the first sliding axis), ``(C_out,
        C_in, kh, kw)`` multi-channel kernels over the channels on the axis
        just before the first sliding axis; ``mode`` ('valid', 'same' or
        'full'), ``dilation`` and ``stride`` then take one value or one per
        axis.
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
        faster for ``m``, ``K``, ``C_in`` and the number of windows (the
        FFT path's fixed cost per call leaves short signals to the direct
        method: up to about 14 000 windows at ``m = 256``, 2 300 at 1024).
    center : bool, optional
        Subtract each window's mean and the kernel's before the cosine
        (Pearson's correlation, see Notes): offset invariance on top of the
        scale invariance. Default False.
    stride : int, optional
        Keep every ``stride``-th window of the mode, as a convolution
        layer's stride: output ``i`` is window ``i * stride``,
        ``ceil(L / stride)`` outputs for ``L`` windows, each with the bits
        it has without a stride. Every window is still computed (the cost
        does not fall with the stride; the result's memory does, and the
        call holds a block of some ``2**18`` windows' scores at a time, not
        every window's). Default 1.
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
        Kernel longer than the signal in 'valid' mode, a constant kernel with
        ``center=True``, ``dilation < 1``, ``stride < 1``,
        non-finite ``sharpness``, negative or non-finite ``noise_floor``,
        channel mismatch, 0-d or empty input, bad ``axis``/``mode``/``method``,
        or ``out`` of the wrong shape/dtype.
    TypeError
        Complex or non-numeric input, non-integer ``dilation`` or
        ``stride``, ``center`` not a bool, ``out`` not an ndarray.

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
    dtype (for banks and multi-channel kernels the direct method may take a
    block of windows' dots with all the kernels as one matrix product, BLAS
    in float64, within the same bound), and float64 windows near the overflow/underflow limits are
    recomputed with power-of-two scaling, so results are right to a few units
    of float64 rounding per tap for any amplitude.  The accuracy bounds of
    the direct dots (``(taps + 4) eps`` relative to the window's norm) and of
    the FFT's overlap-save blocks (``O(eps log2 nfft)`` relative to a
    block's norm) are those of Higham [1]_ (chapters 3 and 24); the FFT path
    compares the second, window by window, with four times the first (for
    float64 results; see :doc:`/sliding` for float32).  Each kernel is
    normalised with a compensated sum of its squares (Neumaier's [2]_), after
    a power-of-two scaling.  The sharpening (libm's ``pow``) is applied to
    the float64 cosine, before the result's one rounding.

    With ``center=True`` the score is Pearson's correlation of each window
    with the kernel (OpenCV's ``TM_CCOEFF_NORMED`` of one channel,
    scikit-image's ``match_template``; STUMPY's z-normalised distance is
    ``sqrt(2 * m * (1 - s))``), a multi-channel window less one mean over
    all its channels (OpenCV takes one per channel)::

        s = <w - mean(w), k - mean(k)> / ((||w - mean(w)|| + noise_floor) * ||k - mean(k)||)

    The means run over all taps and channels of a window.  The dot is the
    raw window's with the centered kernel (centered twice, so its taps sum
    to zero to far below rounding), and the centered norms come from
    statistics of runs of taps merged pairwise by Chan, Golub and LeVeque's
    update [3]_, never from ``sum(w**2) - m * mean(w)**2``, which loses
    every digit under a large offset; they are as accurate as a two-pass
    computation over each window.  A constant window gives ``fill``; a
    constant kernel is an error.  Offsets cost accuracy in proportion to
    their size (the products of the raw windows with the kernel are rounded
    at their scale): with ``kappa = ||w|| / ||w - mean(w)||`` the error in ``s`` stays
    below about ``4 (m C_in + 4) eps kappa`` (``eps`` of float64; measured
    near ``eps kappa``, where a two-pass computation over each window errs
    by about ``m (eps kappa)**2``, far less under large offsets); the tests
    hold every result to it (see :doc:`/sliding`).

    References
    ----------
    .. [1] N. J. Higham, "Accuracy and Stability of Numerical Algorithms",
       2nd ed., SIAM, 2002.
    .. [2] A. Neumaier, "Rundungsfehleranalyse einiger Verfahren zur
       Summation endlicher Summen", ZAMM 54(1), 39-51, 1974.
    .. [3] T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for
       computing the sample variance: analysis and recommendations", The
       American Statistician 37(3), 242-247, 1983.

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
    axis, dilation, mode, stride = spatial.normalise_axis(
        axis, dilation=dilation, mode=mode, stride=stride)
    if _backend.is_xarray(signal):
        _no_out_for_labels(out)
        return _backend.xarray_impl("sliding_cosine", backend)(
            signal, kernel, functools.partial(sliding_cosine, backend=backend), axis=axis,
            mode=mode, sharpness=sharpness, dilation=dilation, noise_floor=noise_floor, fill=fill,
            method=method, center=center, stride=stride)
    if _backend.is_dask(signal):
        return _backend.dask_impl("sliding_cosine", backend)(
            signal, kernel, functools.partial(sliding_cosine, backend=backend),
            sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor, fill=fill,
            axis=axis, method=method, center=center, stride=stride, out=out,
            normalise=drivers.fill_unit_kernels)
    if _backend.wants_cuda(backend, signal=signal, kernel=kernel):
        return _backend.cuda_impl("sliding_cosine")(
            signal, kernel, sharpness=sharpness, mode=mode, dilation=dilation,
            noise_floor=noise_floor, fill=fill, axis=axis, method=method, center=center,
            stride=stride, out=out)
    x = v.as_real_array(signal, "signal")
    if isinstance(axis, tuple):
        plan = spatial.plan_sliding(x, kernel, axis, mode, method, dilation, sharpness,
                                    noise_floor, fill, out, drivers.fill_unit_kernels, center,
                                    stride)
        return spatial_driver.sliding_cosine(x, plan, method, out)
    plan = plans.plan_sliding(x, kernel, axis, mode, method, dilation, sharpness, noise_floor,
                              fill, out, drivers.fill_unit_kernels, center, stride)
    return drivers.sliding_cosine(x, plan, method, out)


@_backend.documented
def sliding_cosine_grad(
    signal,
    kernel,
    grad_output,
    *,
    sharpness=1.0,
    mode="valid",
    dilation=1,
    noise_floor=0.0,
    fill=0.0,
    axis=-1,
    method="auto",
    center=False,
    stride=1,
    backend="auto",
):
    """Gradients of ``sum(grad_output * sliding_cosine(signal, kernel, ...))``.

    The backward pass of :func:`sliding_cosine`, for learning a kernel, its
    sharpness and its noise floor (seed 000's learnable ``p``; the
    sharpened-cosine-similarity layers), with every option of the forward.

    Parameters
    ----------
    signal, kernel
        As for :func:`sliding_cosine`.
    grad_output : array_like
        ``dL/d(result)``: of the shape of ``sliding_cosine``'s result.
    sharpness, mode, dilation, noise_floor, fill, axis, method, center, stride
        As for :func:`sliding_cosine` (``method`` chooses how the forward's
        cosines are computed inside; with a ``stride``, the windows left out
        pass on no gradient, and the backward costs what it costs without
        one).
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU the signal's and the kernel's gradients
        come back as device arrays of the first device input's kind (host
        arrays for host inputs), the cosines inside are the direct
        kernel's (``method`` is then ignored), and every sum runs in a
        fixed order (the same bits on every run).

    Returns
    -------
    SlidingCosineGrad
        ``(signal, kernel, sharpness, noise_floor)``: arrays of the
        signal's and the kernel's shapes (the result's dtype), and floats
        summed over every output.

    Raises
    ------
    ValueError
        ``grad_output`` not of the result's shape, and every error of
        :func:`sliding_cosine`.
    TypeError
        A Dask array or an ``xarray.DataArray`` (compute the gradient of a
        chunk of a signal on that chunk, with its overlap).

    Notes
    -----
    With ``s = <w, khat> / (||w|| + q)`` a window's cosine (``khat`` the
    unit kernel; with ``center``, window and kernel less their means),
    ``out = sign(s) |s|**P``, ``P = p**2`` and ``gamma = grad_output * P
    |s|**(P-1)``::

        dL/dw = gamma (khat - s w / ||w||) / (||w|| + q)
        dL/dk = (sum_i gamma_i w_i / (||w_i|| + q) - (sum_i gamma_i s_i) khat) / ||k||
        dL/dq = -sum_i gamma_i s_i / (||w_i|| + q)
        dL/dp = sum_i grad_output_i 2 p out_i ln|s_i|

    summed over the windows (and kernels) that hold each sample or tap,
    in float64, whatever the input dtype. Conventions, so that no gradient
    of finite inputs is NaN or infinite (while the true gradient, which
    grows as ``1 / ||w||`` and ``1 / ||k||``, fits the dtype: a window or
    kernel of subnormal norm gives inf):

    * at ``s = 0``, ``d out / d s`` is taken as 0 for ``P < 1`` (where it is
      infinite), 1 for ``P = 1``; ``d out / d p`` is 0. That is ``s`` as
      computed: a window whose cosine is 0 but comes out as its rounding
      (up to about ``1e-16``: a flat stretch against a zero-sum kernel, in
      a bank or a multi-channel kernel most often, whose dots are matrix
      products) gets the slope there, ``P |s|**(P-1)``, some ``1e12`` for
      ``P = 1/4``, as its output gets ``|s|**P`` (see "Sharpening and the
      meaning of p²" in the docs);
    * a window of norm 0 (a constant window with ``center``) gives ``fill``,
      a constant: it contributes nothing; so does a zero kernel (its
      outputs are ``fill``, and NaN in windows holding NaN or inf: a
      kernel with no direction passes no gradient, NaN none either);
    * a window holding NaN or inf gives NaN (as its output does) to the
      samples of that window, to the kernel and to ``sharpness`` and
      ``noise_floor``;
    * a ``grad_output`` with magnitudes past ``2**960``, or past ``2**960``
      times the smallest window norm (windows of norm 1e-300 beside
      windows of norm 1, whose coefficients ``g P |s|**(P-1) / ||w||``
      overflow), is taken divided by a power of two, and the gradients
      multiplied back by it (exactly: every gradient scales as
      ``grad_output`` does), so that the sums over windows stay in range
      where the gradients do: the kernel's stays finite, and a tiny
      window's samples get inf where theirs is past the range (on the GPU,
      for a ``grad_output`` and a signal in host memory: a device signal's
      window norms are not looked at, see :doc:`/gpu`).

    The window norms are :func:`windowed_norm`'s (exact blocked sums), so a
    loud burst leaves the gradients of the windows without it exact.

    The sums over windows above run directly, whatever ``method``: each
    costs the windows times the kernel's taps, as the forward's direct dots
    do. For the short kernels of learned layers that is the cheaper way;
    for kernels of hundreds of taps, where the forward takes FFTs, the
    backward costs tens to hundreds of times the forward (``m = 2048`` on
    ``2 * 10**5`` samples: about 400 times).

    Examples
    --------
    The gradient of the sum of the scores: a small step of the kernel
    along it raises that sum.

    >>> import numpy as np
    >>> from cosim_np import sliding_cosine, sliding_cosine_grad
    >>> signal = np.array([0.0, 1.0, 2.0, 1.0, 0.0, 3.0])
    >>> kernel = np.array([1.0, 2.0, 1.0])
    >>> grads = sliding_cosine_grad(signal, kernel, np.ones(4), sharpness=1.5)
    >>> grads.signal.shape, grads.kernel.shape
    ((6,), (3,))
    >>> np.round(grads.kernel, 4)
    array([ 0.2273, -0.3544,  0.4816])
    >>> round(grads.sharpness, 4)
    -1.378
    >>> total = lambda k: sliding_cosine(signal, k, sharpness=1.5).sum()
    >>> bool(total(kernel + 0.01 * grads.kernel) > total(kernel))
    True
    """
    axis, dilation, mode, stride = spatial.normalise_axis(
        axis, dilation=dilation, mode=mode, stride=stride)
    for name, value in (("signal", signal), ("kernel", kernel), ("grad_output", grad_output)):
        if _backend.is_xarray(value):  # (its .compute() is a DataArray again)
            raise TypeError(
                f"sliding_cosine_grad takes NumPy arrays; {name} is an xarray DataArray: pass "
                f"its values ({name}.values).")
        if _backend.is_dask(value):
            raise TypeError(
                f"sliding_cosine_grad takes NumPy arrays; {name} is a Dask array: compute it "
                f"first ({name}.compute()), or the gradient of each chunk with its overlap.")
    if _backend.wants_cuda(backend, signal=signal, kernel=kernel, grad_output=grad_output):
        shift = signal_shift = 0
        # (what is in host memory is scaled there, whatever else is on the
        # device: a host signal was left unscaled beside a device kernel, and
        # its gradients came back wrong)
        if not v.on_device(signal):
            signal = v.as_real_array(signal, "signal")
            if not v.on_device(grad_output):
                grad_output, shift = _grad_output_in_range(
                    grad_output, signal,
                    tuple(kernel.shape) if v.on_device(kernel) else np.shape(kernel), center=center,
                    noise_floor=noise_floor, sharpness=sharpness, dilation=dilation, mode=mode,
                    axis=axis)
            # samples whose squares could leave the float64 range: scaled into it
            # by a power of two, as the CPU's gradients take them
            if isinstance(noise_floor, numbers.Real) and noise_floor >= 0:
                signal, noise_floor, signal_shift = plans.host_signal_in_range(
                    signal, float(noise_floor))
        elif not v.on_device(grad_output):  # (a device signal's window norms are not known here)
            grad_output, shift = plans.grad_output_in_range(grad_output)
        return SlidingCosineGrad(*_backend.cuda_impl("sliding_cosine_grad")(
            signal, kernel, grad_output, sharpness=sharpness, mode=mode, dilation=dilation,
            noise_floor=noise_floor, fill=fill, axis=axis, method=method, center=center,
            stride=stride, shifts=(shift, signal_shift)))
    return _gradients(signal, kernel, grad_output, sharpness=sharpness, mode=mode,
                      dilation=dilation, noise_floor=noise_floor, fill=fill, axis=axis,
                      method=method, center=center, stride=stride)


def _gradients(signal, kernel, grad_output, *, sharpness, mode, dilation, noise_floor, fill,
               axis, method, center, stride=1, want_sharpness=True, forward=None):
    """``sliding_cosine_grad`` of host arrays; ``want_sharpness=False`` skips
    the sharpness's gradient (0), for callers that do not learn it (the
    PyTorch layer sharpens each channel itself); ``forward``, for callers
    that hold it: ``sliding_cosine``'s result of the same call where
    ``sharpness`` is 1 and ``stride`` 1 (the cosines are then not computed
    again)."""
    # (the PyTorch adapter's backward calls this with its options as given)
    axis, dilation, mode, stride = spatial.normalise_axis(
        axis, dilation=dilation, mode=mode, stride=stride)
    x = v.as_real_array(signal, "signal")
    if isinstance(axis, tuple):
        grad_plan, taps = spatial.plan_sliding_grad(x, kernel, grad_output, axis, mode, method,
                                                    dilation, sharpness, noise_floor, fill,
                                                    drivers.fill_unit_kernels, center, stride)
        g, shift = _grad_output_in_range(
            grad_plan.grad_output, x, np.shape(kernel), center=center, noise_floor=noise_floor,
            sharpness=sharpness, dilation=dilation, mode=mode, axis=axis)
        grad_signal, grad_kernel, grad_sharpness, grad_floor = spatial_driver.sliding_cosine_grad(
            x, grad_plan.forward, taps, g, method, sharpness, want_sharpness, forward, shift)
        return SlidingCosineGrad(grad_signal, grad_kernel.reshape(np.shape(kernel)),
                                 grad_sharpness, grad_floor)
    plan = plans.plan_sliding_grad(x, kernel, grad_output, axis, mode, method, dilation,
                                   sharpness, noise_floor, fill, drivers.fill_unit_kernels,
                                   center, stride)
    if forward is not None and (plan.forward.exponent != 1.0 or plan.forward.stride != 1):
        forward = None  # (the cosines cannot be read off a sharpened or strided result)
    g, shift = _grad_output_in_range(
        plan.grad_output, x, np.shape(kernel), center=center, noise_floor=noise_floor,
        sharpness=sharpness, dilation=dilation, mode=mode, axis=axis)
    return SlidingCosineGrad(*drivers.sliding_cosine_grad(
        x, plan._replace(grad_output=g), method, want_sharpness, forward, unscale=shift))


def _grad_output_in_range(g, x, kernel_shape, *, center, noise_floor, sharpness, dilation,
                          mode, axis):
    """``plans.grad_output_in_range`` for a signal ``x`` and the options as
    given (validated by then, but for the CUDA backend's, which takes them
    after: a value it will refuse bounds nothing).  The signal's smallest
    magnitude bounds its windows' norms first (one pass); only where that
    bound would scale ``g`` are the norms themselves taken (of each channel
    apart, where a kernel has channels: no more than the windows' own), so
    that no ``g`` is scaled, and its small terms brought near underflow, for
    a tiny sample in a window of norm 1."""
    largest = plans.largest_magnitude(g)
    try:
        exponent = float(sharpness) ** 2
        floor = float(noise_floor)
    except (TypeError, ValueError, OverflowError):
        return plans.grad_output_in_range(g, largest=largest)
    if not (math.isfinite(exponent) and math.isfinite(floor) and floor >= 0.0):
        return plans.grad_output_in_range(g, largest=largest)
    bound = plans.grad_output_limit(plans.smallest_window_norm(x, center, floor), exponent)
    if largest <= bound:  # (and so below the plain limit: nothing to scale)
        return plans.grad_output_in_range(g, largest=largest)
    window = tuple(kernel_shape[-len(axis):]) if isinstance(axis, tuple) else kernel_shape[-1]
    try:
        norms = windowed_norm(x, window, dilation=dilation, mode=mode, axis=axis, center=center)
    except (TypeError, ValueError):  # (the CUDA backend's refusal names the kernel, not a window)
        return plans.grad_output_in_range(g, largest=largest)
    smallest = float(np.min(norms, where=(norms > 0) & (norms < np.inf), initial=np.inf))
    return plans.grad_output_in_range(g, plans.grad_output_limit(smallest + floor, exponent),
                                      largest)


def _no_out_for_labels(out):
    if out is not None:
        raise TypeError("out is not supported for an xarray.DataArray input: the result is a "
                        "new DataArray with the input's dims and coordinates.")
