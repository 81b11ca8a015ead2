"""The CUDA backend against the naive references and the CPU, and its dispatch.

Runs in Numba's CUDA simulator (see conftest.py) with tiny launch sizes, so
signals stay short and Hypothesis draws few examples; with
``COSIM_REAL_GPU=1`` the same tests run on a GPU at full launch sizes.
Tolerances are those of the CPU tests: the kernels accumulate in float64 too.
"""

import importlib.util
import math
import os
import subprocess
import sys
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cosim_np import (
    SlidingCosineGrad,
    cosine_similarity,
    find_matches,
    pairwise_cosine,
    set_similarity,
    sharpen,
    sliding_cosine,
    sliding_cosine_grad,
    topk_cosine,
    windowed_norm,
)
from tests import naive
from tests.strategies import ALL_DTYPES, FLOAT_DTYPES, arrays, scalable_elements, window_geometry
from tests.test_embedding import broadcast_problem, check_topk, matrices, search_problem, tol
from tests.test_grad import problems as grad_problems
from tests.test_images import gradient_problems as image_gradient_problems
from tests.test_sliding import EPS64, expected_dtype, tolerance

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
from cosim_np import _cuda  # noqa: E402  (after the simulator is chosen)
from cosim_np._cuda import device  # noqa: E402

SIMULATOR = device.SIMULATOR
# Every simulated thread is a Python thread: a quarter of the profile's
# examples (ci: 37, dev: 10), all of them small.
EXAMPLES = hsettings(max_examples=max(6, hsettings.default.max_examples // 4) if SIMULATOR
                     else hsettings.default.max_examples)


@pytest.fixture(autouse=True)
def small_launches():
    """Tiny blocks under the simulator (several blocks even for short
    signals, so block edges are exercised); the defaults on a real GPU."""
    saved = dict(vars(_cuda.settings))
    if SIMULATOR:
        _cuda.settings.threads, _cuda.settings.tile, _cuda.settings.min_blocks = 16, 4, 4
        _cuda.settings.shared_bytes = 8 * 48  # few taps per tile: the tap loop runs
    yield _cuda.settings
    vars(_cuda.settings).update(saved)


def to_host(result):
    return result.copy_to_host() if hasattr(result, "copy_to_host") else np.asarray(result)


def on_gpu(x):
    return cuda.to_device(np.ascontiguousarray(x))


# ---------------------------------------------------------------------------
# sliding: against the naive references


@EXAMPLES
@given(
    geometry=window_geometry(max_n=40, max_m=6, max_dilation=3),
    dtype=st.sampled_from(ALL_DTYPES),
    sharpness=st.one_of(st.just(1.0), st.floats(1.0, 3.0)),
    noise_floor=st.one_of(st.just(0.0), st.floats(0.0, 10.0)),
    fill=st.sampled_from([0.0, -2.0, np.nan]),
    data=st.data(),
)
def test_one_kernel_matches_naive(geometry, dtype, sharpness, noise_floor, fill, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    kernel = data.draw(arrays(np.float64, m))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor,
                   fill=fill)
    got = sliding_cosine(signal, kernel, backend="cuda", **options)
    want = naive.sliding_cosine_1d(signal, kernel, sharpness, mode, dilation, noise_floor, fill)
    assert isinstance(got, np.ndarray) and got.dtype == expected_dtype(dtype)
    tol_ = tolerance(got.dtype, m, sharpness**2)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol_)
    cpu = sliding_cosine(signal, kernel, **options)
    np.testing.assert_allclose(got.astype(np.float64), cpu, rtol=0, atol=2 * tol_)


def test_topk_of_the_queries_object_equals_that_of_a_copy_on_the_device():
    a = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    twice = topk_cosine(a, a, 3, backend="cuda")
    copied = topk_cosine(a, a.copy(), 3, backend="cuda")
    np.testing.assert_array_equal(twice[0], copied[0])
    np.testing.assert_array_equal(twice[1], copied[1])


@pytest.mark.parametrize("noise_floor", [0.0, 1.0])
def test_subnormal_signal_with_a_noise_floor(noise_floor):
    # the window is scaled up by 2**1031 before its cosine: the noise floor,
    # scaled alike, overflows to inf (a cosine of exactly 0), never to an
    # error, as the simulator's math.ldexp once raised; and a norm past the
    # float64 range is inf.  (Without a floor the cosines agree within the
    # tolerance, not to the bit: the CPU's dots round each multiply-add once,
    # and the simulator's twice; see docs/gpu.rst.)
    signal = np.full(12, 2.2e-311)
    kernel = np.array([1.0, -2.0, 3.0])
    got = sliding_cosine(signal, kernel, backend="cuda", noise_floor=noise_floor)
    cpu = sliding_cosine(signal, kernel, noise_floor=noise_floor)
    np.testing.assert_allclose(got, cpu, rtol=0, atol=tolerance(np.float64, 3, 1.0))
    if noise_floor:
        np.testing.assert_array_equal(got, 0.0)
        np.testing.assert_array_equal(cpu, 0.0)
    huge = np.full(12, 1.5e308)
    np.testing.assert_array_equal(windowed_norm(huge, 3, backend="cuda"), windowed_norm(huge, 3))
    assert np.all(np.isinf(windowed_norm(huge, 3, backend="cuda")))


@EXAMPLES
@given(
    geometry=window_geometry(max_n=24, max_m=4, max_dilation=2),
    dtype=st.sampled_from(FLOAT_DTYPES),
    c_out=st.integers(1, 3),
    c_in=st.integers(1, 3),
    batch=st.integers(1, 2),
    data=st.data(),
)
def test_multichannel_kernels_on_device_arrays(geometry, dtype, c_out, c_in, batch, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, (batch, c_in, n)))
    kernels_ = data.draw(arrays(np.float64, (c_out, c_in, m)))
    got = sliding_cosine(on_gpu(signal), kernels_, mode=mode, dilation=dilation)
    assert cuda.devicearray.is_cuda_ndarray(got)  # a device array in, a device array out
    got = to_host(got)
    assert got.shape == (batch, c_out, signal.shape[-1] + sum(naive.padding(mode, (m - 1) * dilation))
                         - (m - 1) * dilation)
    want = np.stack([naive.sliding_cosine_multichannel(s, kernels_, 1.0, mode, dilation) for s in signal])
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(got.dtype, m * c_in))


@EXAMPLES
@given(geometry=window_geometry(max_n=40, max_m=6, max_dilation=3), dtype=st.sampled_from(ALL_DTYPES),
       data=st.data())
def test_windowed_norm_matches_naive(geometry, dtype, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    got = windowed_norm(signal, m, dilation=dilation, mode=mode, backend="cuda")
    want = naive.windowed_norm_1d(signal, m, dilation, mode)
    assert got.dtype == expected_dtype(dtype)
    rtol = 4 * (m + 2) * EPS64 + (0 if got.dtype == np.float64 else np.finfo(got.dtype).eps)
    atol = 0 if got.dtype == np.float64 else float(np.finfo(got.dtype).smallest_subnormal)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


def test_bank_any_axis_and_strided_views_in_place():
    """A bank on axis 0 of a transposed, reversed, non-contiguous device view:
    read in place through its strides, laid out as on the CPU."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((20, 3, 5))
    view = base[::-1, 1, ::2]  # (20, 3), negative and non-unit strides
    bank = rng.standard_normal((2, 4))
    device = cuda.to_device(base)[::-1, 1, ::2]
    got = to_host(sliding_cosine(device, bank, axis=0, mode="same", dilation=2))
    want = sliding_cosine(view, bank, axis=0, mode="same", dilation=2)
    assert got.shape == want.shape == (2, 20, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 4))
    norms = to_host(windowed_norm(device, 3, axis=0, mode="full"))
    np.testing.assert_allclose(norms, windowed_norm(view, 3, axis=0, mode="full"), rtol=1e-14)


@pytest.mark.parametrize("mode", ["valid", "same", "full", "causal"])
@pytest.mark.parametrize("center", [False, True])
def test_a_stride_keeps_every_stride_th_window(mode, center):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 45))
    for kernel in (rng.standard_normal(5), rng.standard_normal((2, 4)),
                   rng.standard_normal((2, 3, 3))):
        got = to_host(sliding_cosine(on_gpu(x), kernel, mode=mode, stride=3, dilation=2,
                                     center=center, sharpness=1.5))
        want = sliding_cosine(x, kernel, mode=mode, stride=3, dilation=2, center=center,
                              sharpness=1.5)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 9, 2.25))
    norms = to_host(windowed_norm(on_gpu(x), 4, mode=mode, stride=4, center=center))
    np.testing.assert_allclose(norms, windowed_norm(x, 4, mode=mode, stride=4, center=center),
                               rtol=1e-13)


def test_long_kernels_cross_several_shared_memory_tiles(small_launches):
    """More taps than one shared tile holds, several blocks of windows."""
    rng = np.random.default_rng(4)
    signal = rng.standard_normal(90).astype(np.float32)
    kernel = rng.standard_normal(25)
    for dilation in (1, 3):
        got = sliding_cosine(signal, kernel, dilation=dilation, mode="full", backend="cuda")
        want = naive.sliding_cosine_1d(signal, kernel, 1.0, "full", dilation)
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float32, 25))


# ---------------------------------------------------------------------------
# sliding: the robustness promises


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,dilation", [(3, 1), (8, 2)])
def test_exact_after_a_loud_burst(dtype, m, dilation):
    rng = np.random.default_rng(m)
    signal = (rng.standard_normal(160) * 1e-3).astype(dtype)
    signal[20] = 1e8
    signal[90:94] = -1e8
    kernel = rng.standard_normal(m)
    rounding = 0 if dtype == np.float64 else np.finfo(np.float32).eps
    got = windowed_norm(signal, m, dilation=dilation, backend="cuda")
    want = naive.windowed_norm_1d(signal, m, dilation)
    np.testing.assert_allclose(got, want, rtol=4 * (m + 2) * EPS64 + rounding, atol=0)
    got = sliding_cosine(signal, kernel, dilation=dilation, backend="cuda")
    want = naive.sliding_cosine_1d(signal, kernel, 1.0, "valid", dilation)
    np.testing.assert_allclose(got, want, atol=8 * (m + 4) * EPS64 + rounding)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_stay_local_zero_windows_get_fill(bad):
    signal = np.array([0, 0, 0, 0, 1, 2, 3, bad, 5, 6, 7, 8, 0, 0, 0, 0, 1e-30, 2e-30, 3e-30])
    got = sliding_cosine(signal, [1.0, 2.0, 3.0], fill=-5.0, backend="cuda")
    want = naive.sliding_cosine_1d(signal, [1.0, 2.0, 3.0], fill=-5.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[5:8]).all() and not np.isnan(np.delete(got, [5, 6, 7])).any()
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 3))
    assert got[0] == -5.0 and got[-1] == pytest.approx(1.0, abs=1e-15)  # 1e-30 is a real window
    norms = windowed_norm(signal, 3, backend="cuda")
    np.testing.assert_array_equal(norms[5:8], np.abs(bad) * np.ones(3))


@pytest.mark.parametrize("scale", [1e-300, 1e300, 2.0**-1020])
def test_float64_windows_near_the_limits(scale):
    """Squares would underflow or overflow: rescaled by powers of two."""
    rng = np.random.default_rng(5)
    signal = np.ldexp(np.round(rng.standard_normal(40) * 2**20), -20) * scale  # full precision
    kernel = rng.standard_normal(4)
    got = sliding_cosine(signal, kernel, mode="same", backend="cuda")
    np.testing.assert_allclose(got, naive.sliding_cosine_1d(signal, kernel, 1.0, "same"),
                               rtol=0, atol=tolerance(np.float64, 4))
    norms = windowed_norm(signal, 4, backend="cuda")
    np.testing.assert_allclose(norms, naive.windowed_norm_1d(signal, 4), rtol=4 * 6 * EPS64)


def test_never_above_one_and_scale_sign_invariance():
    signal = np.array([1.0, 1.0, 1.0, 1 + 2**-52, 1.0, 3.0, 3.0, 3.0] * 4, dtype=np.float64)
    kernel = np.ones(3)
    got = sliding_cosine(signal, kernel, backend="cuda")
    assert np.all(np.abs(got) <= 1.0)
    np.testing.assert_array_equal(sliding_cosine(-signal, kernel, backend="cuda"), -got)
    np.testing.assert_array_equal(sliding_cosine(signal * 2.0**40, kernel, backend="cuda"), got)
    np.testing.assert_allclose(sliding_cosine(signal * 7.3, kernel / 0.3, backend="cuda"), got,
                               rtol=0, atol=tolerance(np.float64, 3))


@EXAMPLES
@given(geometry=window_geometry(max_n=30, max_m=5, max_dilation=3), dtype=st.sampled_from(FLOAT_DTYPES),
       shift=st.integers(-100, 100), sharpness=st.floats(0.0, 4.0), data=st.data())
def test_power_of_two_scaling_is_bit_exact(geometry, dtype, shift, sharpness, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n, scalable_elements(dtype)))
    kernel = data.draw(arrays(np.float64, m, scalable_elements(np.float64)))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, fill=0.5, backend="cuda")
    base = sliding_cosine(signal, kernel, **options)
    scaled = np.ldexp(signal, shift).astype(dtype)
    np.testing.assert_array_equal(sliding_cosine(scaled, kernel, **options), base)
    np.testing.assert_array_equal(sliding_cosine(signal, np.ldexp(kernel, -shift), **options), base)


def test_dtypes_and_sharpen():
    for dtype, want in [(np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
                        (np.int16, np.float64), (np.bool_, np.float64)]:
        signal = (np.arange(12) % 5).astype(dtype)
        assert sliding_cosine(signal, [1, 2], backend="cuda").dtype == want
        assert windowed_norm(signal, 2, backend="cuda").dtype == want
        assert sharpen(signal, 1.5, backend="cuda").dtype == want
    # A GPU's pow is within 2 units in the last place, not correctly rounded
    # (a real H200 gave 0.5 ** 4 one unit below 0.0625); signs, zeros, NaN, +-1
    # and the symmetry sharpen(-s) == -sharpen(s) are exact.
    s = np.array([[-0.5, 0.0, 0.25], [1.0, -1.0, np.nan], [-0.3, 0.7, 3.0]])
    device_view = cuda.to_device(s)[:, ::-1]
    cases = [(sharpen(values, 2.0, backend="cuda"), values) for values in (s, s.T, s[:, ::-1])]
    cases.append((to_host(sharpen(device_view, 2.0)), s[:, ::-1]))
    for got, values in cases:
        want = sharpen(values, 2.0)
        np.testing.assert_array_max_ulp(got, want, maxulp=2)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.sign(got), np.sign(want))
        exact = np.isin(np.abs(values), (0.0, 1.0))
        np.testing.assert_array_equal(got[exact], want[exact])
        np.testing.assert_array_equal(sharpen(-values, 2.0, backend="cuda"), -got)
    np.testing.assert_array_max_ulp(sharpen(0.5, 2.0, backend="cuda"), 0.0625, maxulp=2)


def test_out_and_inputs_not_modified():
    signal = np.arange(10.0)
    copy = signal.copy()
    out = np.empty(8)
    assert sliding_cosine(signal, [1.0, 0, 2], out=out, backend="cuda") is out
    np.testing.assert_allclose(out, sliding_cosine(signal, [1.0, 0, 2]), atol=1e-15)
    np.testing.assert_array_equal(signal, copy)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        sliding_cosine(on_gpu(signal), [1.0, 0, 2], out=cuda.device_array(8))


def test_out_of_windowed_norm_and_sharpen():
    signal = np.arange(12.0).reshape(2, 6)
    out = np.empty((2, 4))
    assert windowed_norm(on_gpu(signal), 3, out=out) is out
    np.testing.assert_allclose(out, windowed_norm(signal, 3), rtol=1e-15)
    out = np.empty((2, 6), np.float32)
    assert sharpen(on_gpu(signal.astype(np.float32)), 2.0, out=out) is out
    np.testing.assert_array_equal(out, sharpen(signal.astype(np.float32), 2.0))
    with pytest.raises(ValueError, match=r"out has shape \(2, 5\); the result needs shape \(2, 4\)"):
        windowed_norm(on_gpu(signal), 3, out=np.empty((2, 5)))
    with pytest.raises(ValueError, match=r"out has dtype float32; the result needs dtype float64"):
        sharpen(on_gpu(signal), 2.0, out=np.empty((2, 6), np.float32))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: sliding_cosine(np.ones(3), np.ones(5), backend="cuda"), ValueError, "longer than the signal"),
        (lambda: sliding_cosine(on_gpu(np.ones(9)), np.ones(2), mode="middle"), ValueError, "mode"),
        (lambda: sliding_cosine(on_gpu(np.ones((2, 9))), np.ones((1, 3, 2))), ValueError, "C_in=3"),
        (lambda: sliding_cosine(np.ones(9), np.ones(2), dilation=0, backend="cuda"), ValueError, "dilation"),
        (lambda: windowed_norm(on_gpu(np.ones(4, np.complex64)), 2), TypeError, "real-valued"),
        (lambda: sharpen(on_gpu(np.ones(3)), np.inf), ValueError, "sharpness"),
        (lambda: sliding_cosine(on_gpu(np.ones(9)), np.ones(2), backend="gpu"), ValueError, "backend"),
        # a loud grad_output over tiny windows: the norms that bound its scaling
        # were taken first, and their refusal named a window (an exploratory test)
        (lambda: sliding_cosine_grad(np.array([1e-300, 2e-300, 1.0]), np.ones(5), np.full(1, 1e300),
                                     backend="cuda"), ValueError, "kernel of length 5"),
        (lambda: sliding_cosine_grad(np.full((3, 3), 1e-300), np.ones((4, 2)), np.full((1, 1), 1e300),
                                     axis=(0, 1), backend="cuda"), ValueError, r"kernel of shape \(4, 2\)"),
    ],
)
def test_errors_name_the_parameter(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_kernel_on_the_device_too():
    signal = np.random.default_rng(6).standard_normal(30)
    kernel = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    device_kernel = cuda.to_device(np.asfortranarray(kernel))[:, ::-1]
    got = to_host(sliding_cosine(on_gpu(signal), device_kernel, fill=3.0))
    want = sliding_cosine(signal, kernel[:, ::-1], fill=3.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 3))
    assert np.all(got[1] == 3.0)


# ---------------------------------------------------------------------------
# sliding: center=True (issue 16), against the CPU's center=True and exact
# references.  The error of a centered result grows with the window's
# condition ``kappa = ||w|| / ||w - mean(w)||`` (an offset over the spread),
# as sliding_cosine's Notes promise: the tolerances are the plain ones with
# their float64 part times kappa.


def _window_blocks(signal, m, dilation, mode):
    """The windows of a 1-D signal, or the ``(C, m)`` blocks of a ``(C, n)`` one."""
    rows = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    per_channel = [naive.windows(row, m, dilation, mode) for row in rows]
    return [np.stack([per_channel[c][i] for c in range(len(rows))])
            for i in range(len(per_channel[0]))]


def _exact_centered(values):
    """``(deviations, M2)`` of finite values, in rationals: exact."""
    from fractions import Fraction

    exact = [Fraction(float(a)) for a in np.ravel(values)]
    mean = sum(exact) / len(exact)
    deviations = [a - mean for a in exact]
    return deviations, sum(dev * dev for dev in deviations)


def centered_reference(signal, m, dilation=1, mode="valid", kernels=(), sharpness=1.0,
                       noise_floor=0.0, fill=0.0):
    """By the definition, for every window of a finite 1-D (or ``(C, n)``)
    signal: ``(norms, scores, kappa, constant)`` -- the centered norms and
    the Pearson scores with each kernel (``(K, L)``), exact in rationals but
    for the last roots and division (each window scaled by a power of two
    first, so nothing overflows); ``kappa`` is inf for a constant window."""
    import math

    blocks = _window_blocks(signal, m, dilation, mode)
    kernel_parts = []
    for kernel in kernels:
        kernel = np.asarray(kernel, dtype=np.float64)
        dev, m2 = _exact_centered(np.ldexp(kernel, -np.frexp(np.max(np.abs(kernel)))[1]))
        kernel_parts.append((dev, math.sqrt(m2)))
    count = len(blocks)
    norms, kappa = np.empty(count), np.empty(count)
    constant = np.zeros(count, bool)
    scores = np.empty((len(kernel_parts), count))
    for i, w in enumerate(blocks):
        big = np.max(np.abs(w))
        expo = int(np.frexp(big)[1]) if big > 0 else 0
        dev, m2 = _exact_centered(np.ldexp(w, -expo))
        spread = math.sqrt(m2)
        with np.errstate(over="ignore"):
            norms[i] = np.ldexp(spread, expo)
            floor = np.ldexp(noise_floor, -expo)  # inf for a tiny window: s -> 0
        constant[i] = m2 == 0
        kappa[i] = np.inf if constant[i] else max(1.0, naive.exact_norm(w) / norms[i])
        for k, (kdev, knorm) in enumerate(kernel_parts):
            if constant[i]:
                scores[k, i] = fill
                continue
            s = float(sum(a * b for a, b in zip(dev, kdev))) / ((spread + floor) * knorm)
            scores[k, i] = float(naive.sharpen(np.clip(s, -1.0, 1.0), sharpness))
    return norms, scores, kappa, constant


def centered_tolerance(out_dtype, taps, kappa, exponent=1.0):
    """:func:`tests.test_sliding.tolerance` with its float64 part times ``kappa``."""
    rounding = 0.0 if np.dtype(out_dtype) == np.float64 else float(np.finfo(out_dtype).eps)
    return tolerance(np.float64, taps, exponent) * kappa + rounding


def assert_within(got, want, bound):
    """Equal NaN patterns; elsewhere equal (infinities too) or within ``bound``."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    with np.errstate(invalid="ignore"):
        ok = np.isnan(want) | (got == want) | (np.abs(got - want) <= bound)
    bad = np.flatnonzero(~ok)
    bound = np.broadcast_to(bound, got.shape).ravel()
    assert bad.size == 0, (f"{bad.size} off: at {bad[:5]} got {got.ravel()[bad[:5]]}, want "
                           f"{want.ravel()[bad[:5]]}, bound {bound[bad[:5]]}")


def assert_fill(got, constant, fill):
    """Constant windows hold ``fill`` exactly (NaN for a NaN fill)."""
    values = np.asarray(got, dtype=np.float64)[..., constant]
    if np.isnan(fill):
        assert np.isnan(values).all()
    else:
        np.testing.assert_array_equal(values, fill)


def _non_constant(kernel):
    """A drawn kernel, made non-constant (center=True refuses a constant one)
    and scaled by a power of two to a largest magnitude in [0.5, 1) (which
    changes no score): the core's centering of a kernel of subnormal taps
    loses their mean (``[5e-324, 0]`` centers to itself), the plan's concern,
    not the device's."""
    kernel = np.array(kernel, dtype=np.float64)
    if np.all(kernel == kernel.flat[0]):
        kernel.flat[-1] = -kernel.flat[0] if kernel.flat[0] else 1.0
    return np.ldexp(kernel, -np.frexp(np.max(np.abs(kernel)))[1])


@EXAMPLES
@given(geometry=window_geometry(max_n=40, max_m=6, max_dilation=3), dtype=st.sampled_from(ALL_DTYPES),
       data=st.data())
def test_centered_windowed_norm_matches_the_definition_and_the_cpu(geometry, dtype, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    got = windowed_norm(signal, m, dilation=dilation, mode=mode, center=True, backend="cuda")
    cpu = windowed_norm(signal, m, dilation=dilation, mode=mode, center=True)
    assert got.dtype == cpu.dtype == expected_dtype(dtype)
    want, _, kappa, constant = centered_reference(signal, m, dilation, mode)
    np.testing.assert_array_equal(got[constant], 0.0)  # exactly: no rounding left over
    np.testing.assert_array_equal(cpu[constant], 0.0)
    rounding = 0.0 if got.dtype == np.float64 else float(np.finfo(got.dtype).eps)
    # (as accurate as a two-pass computation over the window, whatever the
    # offset: see tests/test_center.py)
    rtol = 4 * (m + 4) * EPS64 + rounding
    atol = 0 if got.dtype == np.float64 else float(np.finfo(got.dtype).smallest_subnormal)
    assert_within(got, want, rtol * want + atol)
    assert_within(got, cpu, 2 * (rtol * want + atol))
    offset = windowed_norm(signal.astype(np.float64) + 1e9, m, dilation=dilation, mode=mode,
                           center=True, backend="cuda")
    want, _, _, _ = centered_reference(signal.astype(np.float64) + 1e9, m, dilation, mode)
    assert_within(offset, want, 4 * (m + 4) * EPS64 * want)


@EXAMPLES
@given(
    geometry=window_geometry(max_n=40, max_m=6, max_dilation=3),
    dtype=st.sampled_from(ALL_DTYPES),
    sharpness=st.one_of(st.just(1.0), st.floats(1.0, 3.0)),
    noise_floor=st.one_of(st.just(0.0), st.floats(0.0, 10.0)),
    fill=st.sampled_from([0.0, -2.0, np.nan]),
    data=st.data(),
)
def test_centered_one_kernel_matches_the_definition_and_the_cpu(geometry, dtype, sharpness,
                                                                noise_floor, fill, data):
    n, m, dilation, mode = geometry
    m = max(m, 2)  # one tap is a constant kernel
    if mode == "valid":
        n = max(n, (m - 1) * dilation + 1)
    signal = data.draw(arrays(dtype, n))
    kernel = _non_constant(data.draw(arrays(np.float64, m)))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor,
                   fill=fill, center=True)
    got = sliding_cosine(signal, kernel, backend="cuda", **options)
    cpu = sliding_cosine(signal, kernel, **options)
    assert got.dtype == cpu.dtype == expected_dtype(dtype)
    _, want, kappa, constant = centered_reference(signal, m, dilation, mode, [kernel], sharpness,
                                                  noise_floor, fill)
    assert_fill(got, constant, fill)
    tol_ = centered_tolerance(got.dtype, m, kappa, sharpness**2)
    assert_within(got, want[0], tol_)
    assert_within(got, cpu, 2 * tol_)


@pytest.mark.parametrize("mode", ["valid", "same", "full", "causal"])
@pytest.mark.parametrize("dilation", [1, 3])
def test_centered_bank_and_multichannel_kernels_match_the_cpu(mode, dilation):
    """A bank over a batch of rows, and multi-channel kernels over a batch of
    ``(C_in, n)`` signals, on device arrays: as the CPU's center=True, and
    as the definition."""
    rng = np.random.default_rng(10 + dilation)
    m = 5
    rows = 40.0 + rng.standard_normal((2, 30))  # an offset: kappa about 40
    rows[1, 8:23] = 3.0  # constant windows
    bank = rng.standard_normal((3, m))
    got = to_host(sliding_cosine(on_gpu(rows), bank, mode=mode, dilation=dilation, center=True,
                                 fill=-7.0))
    cpu = sliding_cosine(rows, bank, mode=mode, dilation=dilation, center=True, fill=-7.0)
    assert got.shape == cpu.shape == (2, 3, cpu.shape[-1])
    norms = to_host(windowed_norm(on_gpu(rows), m, dilation=dilation, mode=mode, center=True))
    cpu_norms = windowed_norm(rows, m, dilation=dilation, mode=mode, center=True)
    for b in range(2):
        want_norms, want, kappa, constant = centered_reference(rows[b], m, dilation, mode, bank,
                                                               fill=-7.0)
        assert constant.any() == (b == 1)
        assert_fill(got[b], constant, -7.0)
        assert_within(got[b], want, centered_tolerance(np.float64, m, kappa))
        assert_within(got[b], cpu[b], 2 * centered_tolerance(np.float64, m, kappa))
        rtol = 4 * (m + 4) * EPS64 * np.where(constant, 0.0, kappa)
        assert_within(norms[b], want_norms, rtol * want_norms)
        assert_within(norms[b], cpu_norms[b], 2 * rtol * want_norms)

    signal = (-20.0 + rng.standard_normal((2, 3, 30))).astype(np.float32)
    signal[1, :, 5:25] = 0.1  # constant across the channels too: (0.1 + 0.1 + 0.1) / 3 != 0.1
    kernels_ = rng.standard_normal((2, 3, m))
    got = to_host(sliding_cosine(on_gpu(signal), kernels_, mode=mode, dilation=dilation, center=True,
                                 fill=-7.0))
    cpu = sliding_cosine(signal, kernels_, mode=mode, dilation=dilation, center=True, fill=-7.0)
    assert got.dtype == cpu.dtype == np.float32 and got.shape == cpu.shape == (2, 2, cpu.shape[-1])
    for b in range(2):
        _, want, kappa, constant = centered_reference(signal[b], m, dilation, mode, kernels_,
                                                      fill=-7.0)
        assert constant.any() == (b == 1)
        assert_fill(got[b], constant, -7.0)
        tol_ = centered_tolerance(np.float32, m * 3, kappa)
        assert_within(got[b], want, tol_)
        assert_within(got[b], cpu[b], 2 * tol_)


@pytest.mark.parametrize("m,dilation,mode", [(4, 1, "valid"), (7, 2, "same"), (16, 3, "full")])
def test_centered_large_offset_within_the_bound_of_a_two_pass_reference(m, dilation, mode):
    """1e6 + unit noise: every centered norm and score within ``4 (m + 4) eps
    kappa`` (kappa about 1e6) of a two-pass computation in long double per
    window, where ``sum w**2 - m mean**2`` in float64 misses it by far."""
    rng = np.random.default_rng(m)
    signal = 1e6 + rng.standard_normal(200)
    kernel = rng.standard_normal(m)
    norms = to_host(windowed_norm(on_gpu(signal), m, dilation=dilation, mode=mode, center=True))
    scores = to_host(sliding_cosine(on_gpu(signal), kernel, dilation=dilation, mode=mode, center=True))
    windows = naive.windows(signal, m, dilation, mode)
    wide = np.longdouble
    centered_kernel = kernel.astype(wide) - kernel.astype(wide).sum() / m
    ref_norm, ref_score, one_pass = [], [], []
    for w in windows:
        dev = w.astype(wide) - w.astype(wide).sum() / m
        m2 = (dev * dev).sum()
        ref_norm.append(np.sqrt(m2))
        ref_score.append((dev * centered_kernel).sum()
                         / (np.sqrt(m2) * np.sqrt((centered_kernel * centered_kernel).sum())))
        one_pass.append(np.sqrt(abs(np.sum(w * w) - m * np.mean(w) ** 2)))
    ref_norm = np.array(ref_norm, dtype=np.float64)
    ref_score = np.array(ref_score, dtype=np.float64)
    kappa = np.array([naive.exact_norm(w) for w in windows]) / ref_norm
    assert kappa.max() > 1e5
    bound = 4 * (m + 4) * EPS64 * kappa
    assert np.all(np.abs(norms - ref_norm) <= bound * ref_norm)
    assert np.all(np.abs(scores - ref_score) <= bound)
    # the bound has teeth: the one-pass formula misses it by orders of magnitude
    assert np.max(np.abs(np.array(one_pass) - ref_norm) / (bound * ref_norm)) > 100


@pytest.mark.parametrize("noise_floor", [0.0, 1.0])
@pytest.mark.parametrize("fill", [-5.0, np.nan])
def test_centered_constant_windows_get_fill_exactly(noise_floor, fill):
    """Constant windows at any magnitude (squares that overflow, subnormals,
    zeros) have a centered norm of exactly 0 and score ``fill``, whatever the
    noise floor; a window whose squares overflow is rescaled and scores as
    the definition."""
    tiny = np.ldexp(1.0, -1060)
    signal = np.concatenate([np.full(6, 5.0), [1.0, 2.0, 3.0], np.full(6, 1e6), np.full(6, 1e300),
                             np.full(6, -tiny), np.zeros(6), [3.0, 1e300, -1.0, tiny, 0.0],
                             np.full(6, 0.1)])
    kernel = np.array([1.0, -2.0, 0.5])
    options = dict(noise_floor=noise_floor, fill=fill, center=True)
    for dtype, x in [(np.float64, signal), (np.float32, signal[np.abs(signal) < 1e30])]:
        x = x.astype(dtype)
        want_norms, want, kappa, constant = centered_reference(x, 3, kernels=[kernel],
                                                               noise_floor=noise_floor, fill=fill)
        assert constant.sum() >= 20
        got = sliding_cosine(x, kernel, backend="cuda", **options)
        assert_fill(got, constant, fill)
        assert np.all(np.abs(got[~constant]) <= 1.0)
        tol_ = centered_tolerance(dtype, 3, kappa)
        assert_within(got, want[0], tol_)
        assert_within(got, sliding_cosine(x, kernel, **options), 2 * tol_)
        norms = windowed_norm(x, 3, center=True, backend="cuda")
        np.testing.assert_array_equal(norms[constant], 0.0)
        assert np.all(norms[~constant] > 0.0)
        np.testing.assert_array_equal(norms == 0.0, windowed_norm(x, 3, center=True) == 0.0)
        rtol = 4 * 7 * EPS64 * np.where(constant, 0.0, kappa) + (dtype == np.float32) * 2.0**-23
        assert_within(norms, want_norms, rtol * want_norms)
    # constant across channels too: (0.1 + 0.1 + 0.1) / 3 is not 0.1 in float64
    channels = np.full((2, 3, 12), 0.1)
    channels[1] = np.arange(36).reshape(3, 12) % 5
    kernels_ = np.arange(18.0).reshape(2, 3, 3) % 4
    got = sliding_cosine(channels, kernels_, backend="cuda", **options)
    assert_fill(got[0], np.ones(got.shape[1:], bool), fill)
    _, want, kappa, constant = centered_reference(channels[1], 3, kernels=kernels_, fill=fill,
                                                  noise_floor=noise_floor)
    assert not constant.any()
    assert_within(got[1], want, centered_tolerance(np.float64, 9, kappa))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e200])
def test_centered_nan_inf_and_loud_samples_stay_in_their_windows(bad):
    """A bad sample changes only the windows that hold it: every other
    window is the same, bit for bit, as without it.  A NaN or inf makes its
    windows NaN (``inf - mean`` is undefined); a loud one is rescaled."""
    rng = np.random.default_rng(11)
    clean = 1e3 + rng.standard_normal(60)
    signal = clean.copy()
    signal[23] = bad
    kernel = np.array([0.5, -1.0, 2.0, 0.0])
    m, d = 4, 2
    for dtype in (np.float64, np.float32):
        if dtype == np.float32 and bad == 1e200:
            continue
        x, x_clean = signal.astype(dtype), clean.astype(dtype)
        for mode in ("valid", "same"):
            options = dict(dilation=d, mode=mode, center=True, backend="cuda")
            got = sliding_cosine(x, kernel, **options)
            base = sliding_cosine(x_clean, kernel, **options)
            norms = windowed_norm(x, m, **options)
            base_norms = windowed_norm(x_clean, m, **options)
            left = naive.padding(mode, (m - 1) * d)[0]
            starts = np.arange(got.size) - left  # the first sample of each window
            hit = ((23 - starts) % d == 0) & (starts <= 23) & (starts + (m - 1) * d >= 23)
            assert hit.sum() == m
            np.testing.assert_array_equal(got[~hit], base[~hit])
            np.testing.assert_array_equal(norms[~hit], base_norms[~hit])
            if np.isfinite(bad):
                want_norms, want, _, _ = centered_reference(x, m, d, mode, [kernel])
                np.testing.assert_allclose(got[hit], want[0, hit], rtol=0,
                                           atol=tolerance(np.float64, m))
                np.testing.assert_allclose(norms[hit], want_norms[hit], rtol=4 * (m + 4) * EPS64)
            else:
                assert np.isnan(got[hit]).all() and np.isnan(norms[hit]).all()


@EXAMPLES
@given(geometry=window_geometry(max_n=30, max_m=5, max_dilation=3), dtype=st.sampled_from(FLOAT_DTYPES),
       shift=st.integers(-100, 100), sharpness=st.floats(0.0, 4.0), data=st.data())
def test_centered_power_of_two_scaling_and_negation_are_bit_exact(geometry, dtype, shift, sharpness,
                                                                  data):
    n, m, dilation, mode = geometry
    m = max(m, 2)
    if mode == "valid":
        n = max(n, (m - 1) * dilation + 1)
    signal = data.draw(arrays(dtype, n, scalable_elements(dtype)))
    kernel = _non_constant(data.draw(arrays(np.float64, m, scalable_elements(np.float64))))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, fill=np.nan, center=True,
                   backend="cuda")
    base = sliding_cosine(signal, kernel, **options)
    scaled = np.ldexp(signal, shift).astype(dtype)
    np.testing.assert_array_equal(sliding_cosine(scaled, kernel, **options), base)
    np.testing.assert_array_equal(sliding_cosine(-signal, kernel, **options), -base)
    np.testing.assert_array_equal(sliding_cosine(signal, np.ldexp(kernel, -shift), **options), base)
    norm_options = dict(dilation=dilation, mode=mode, center=True, backend="cuda")
    norms = windowed_norm(signal, m, **norm_options)
    np.testing.assert_array_equal(windowed_norm(scaled, m, **norm_options), np.ldexp(norms, shift))
    np.testing.assert_array_equal(windowed_norm(-signal, m, **norm_options), norms)


def test_centered_kernel_on_the_device_out_and_errors():
    rng = np.random.default_rng(12)
    signal = 5.0 + rng.standard_normal(30)
    kernel = rng.standard_normal((2, 3))
    device_kernel = cuda.to_device(np.asfortranarray(kernel))[:, ::-1]
    got = to_host(sliding_cosine(on_gpu(signal), device_kernel, center=True))
    _, want, kappa, _ = centered_reference(signal, 3, kernels=kernel[:, ::-1])
    assert_within(got, want, centered_tolerance(np.float64, 3, kappa))
    out = np.empty(29)
    assert windowed_norm(on_gpu(signal), 2, center=True, out=out) is out
    np.testing.assert_allclose(out, np.abs(np.diff(signal)) / np.sqrt(2), rtol=1e-14)
    with pytest.raises(ValueError, match=r"kernel\[1\] is constant"):
        sliding_cosine(on_gpu(signal), np.array([[1.0, 2.0], [3.0, 3.0]]), center=True)
    with pytest.raises(TypeError, match="center"):
        sliding_cosine(on_gpu(signal), [1.0, 2.0], center="yes")
    with pytest.raises(TypeError, match="center"):
        windowed_norm(on_gpu(signal), 2, center=1)


# ---------------------------------------------------------------------------
# sliding: gradients (issue 17), against the CPU's, which tests/test_grad.py
# checks against finite differences and PyTorch.  Both sum in float64, in
# different orders: the difference is a few units of rounding of the largest
# term (every term is bounded by |a| ||khat|| or |c|, at most ~m*K of them).


def assert_grads_close(got, want, terms):
    for name, a, b in zip(SlidingCosineGrad._fields, got, want):
        a, b = np.asarray(to_host(a), dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(b)
        scale = 1.0 + np.max(np.abs(b[ok]), initial=0.0)
        np.testing.assert_allclose(a[ok], b[ok], rtol=0, atol=8 * terms * EPS64 * scale,
                                   err_msg=name)


@EXAMPLES
@given(problem=grad_problems())
def test_gradients_match_the_cpu(problem):
    signal, kernel, g, options = problem
    want = sliding_cosine_grad(signal, kernel, g, **options)
    got = sliding_cosine_grad(signal, kernel, g, backend="cuda", **options)
    assert isinstance(got, SlidingCosineGrad)
    assert isinstance(got.signal, np.ndarray) and isinstance(got.sharpness, float)
    terms = np.size(kernel) * max(1, np.size(g) // max(1, g.shape[-1]))
    assert_grads_close(got, want, terms * np.shape(signal)[-1])


def test_gradients_of_device_arrays_any_axis_and_strides():
    """Device arrays in (a strided signal, ``grad_output`` transposed), device
    arrays out; the kernel's axis and channel axis anywhere."""
    rng = np.random.default_rng(20)
    base = rng.standard_normal((12, 3, 40))
    signal = cuda.to_device(base)[::-1, 1:, ::2]  # (12, 2, 20), negative strides
    host = base[::-1, 1:, ::2]
    kernel = rng.standard_normal((4, 2, 3))  # 4 kernels of 2 channels: channel axis 1
    options = dict(axis=-1, sharpness=1.4, noise_floor=0.1, mode="same", center=True, stride=2)
    shape = sliding_cosine(host, kernel, **options).shape
    g = rng.standard_normal(shape[::-1]).T  # a transposed (non-contiguous) layout
    # copied as laid out (a real device array's .T is a copy, and only in 2-D)
    device_g = cuda.to_device(g)
    assert device_g.is_f_contiguous() and not device_g.is_c_contiguous()
    got = sliding_cosine_grad(signal, kernel, device_g, **options)
    assert cuda.devicearray.is_cuda_ndarray(got.signal)
    assert cuda.devicearray.is_cuda_ndarray(got.kernel)
    want = sliding_cosine_grad(host, kernel, g, **options)
    assert_grads_close(got, want, kernel.size * 40)
    # a bank along axis 0 of a 2-D signal
    rows = rng.standard_normal((30, 3))
    bank = rng.standard_normal((2, 4))
    g = rng.standard_normal(sliding_cosine(rows, bank, axis=0).shape)
    got = sliding_cosine_grad(on_gpu(rows), bank, g, axis=0, sharpness=0.9)
    assert_grads_close(got, sliding_cosine_grad(rows, bank, g, axis=0, sharpness=0.9), 8 * 30)


def test_gradients_nan_stays_local_and_dtypes_follow_the_forward():
    rng = np.random.default_rng(21)
    signal = rng.standard_normal(50)
    signal[20] = np.nan
    kernel = rng.standard_normal(4)
    g = rng.standard_normal(47)
    got = sliding_cosine_grad(signal, kernel, g, backend="cuda")
    assert np.flatnonzero(np.isnan(got.signal)).tolist() == list(range(17, 24))
    assert np.all(np.isnan(got.kernel)) and np.isnan(got.sharpness)
    assert np.isnan(got.noise_floor)
    # float32 in, float32 gradients, as on the CPU
    single = rng.standard_normal(30).astype(np.float32)
    got = sliding_cosine_grad(single, kernel, np.ones(27, np.float32), backend="cuda")
    assert got.signal.dtype == got.kernel.dtype == np.float32
    want = sliding_cosine_grad(single, kernel, np.ones(27, np.float32))
    np.testing.assert_allclose(got.signal, want.signal, rtol=2e-7, atol=1e-7)


def test_gradients_of_windows_a_stride_leaves_out_carry_no_nan():
    """As on the CPU: a NaN only in windows left out reaches no gradient."""
    x = np.array([0.5, 1.0, 2.0, np.nan, 1.0, -1.0, 2.0, 0.5, 1.5, 0.25])
    for kernel, stride, center in (([1.0, -1.0, 2.0], 2, False), ([1.0, -2.0], 3, True)):
        options = dict(stride=stride, center=center)
        g = np.ones(sliding_cosine(x, kernel, **options).shape)
        got = sliding_cosine_grad(x, kernel, g, backend="cuda", **options)
        want = sliding_cosine_grad(x, kernel, g, **options)
        np.testing.assert_array_equal(np.isnan(got.signal), np.isnan(want.signal))
        assert np.isnan(want.signal).sum() < x.size // 2
        assert_grads_close(got, want, len(kernel) * x.size)


@pytest.mark.parametrize("shift", [-1000, -60, 0, 60, 1000])
def test_gradients_scale_as_the_true_ones_through_the_float64_range(shift):
    """A signal times ``2**shift`` (squares leave the float64 range at the
    ends): the kernel's and the sharpness's gradients unchanged, the
    signal's and the noise floor's divided by ``2**shift``, as on the CPU."""
    rng = np.random.default_rng(22)
    signal = rng.standard_normal((2, 25))
    kernel = rng.standard_normal((3, 2, 4))
    g = rng.standard_normal((3, 22))
    options = dict(sharpness=1.3, center=shift > 0)
    want = sliding_cosine_grad(signal, kernel, g, backend="cuda", **options)
    got = sliding_cosine_grad(np.ldexp(signal, shift), kernel, g, backend="cuda", **options)
    unscaled = (np.ldexp(got.signal, shift), got.kernel, got.sharpness,
                math.ldexp(got.noise_floor, shift))
    assert_grads_close(unscaled, want, kernel.size * 25)


def _on_device(where, kernel, g):
    """``kernel`` and ``g`` as they are (``"host"``), or one on the device."""
    return (on_gpu(kernel) if where == "kernel" else kernel,
            on_gpu(g) if where == "grad_output" else g)


@pytest.mark.parametrize("where", ["host", "kernel", "grad_output"])
@pytest.mark.parametrize("case", ["plain", "center", "floor", "image"])
def test_gradients_of_windows_whose_norms_are_past_the_float64_range(case, where):
    """Samples near 1.5e308: windows whose norms (or norm plus noise floor)
    are past the float64 range.  The GPU took them as inf: the kernel's
    gradient came out wrong, the signal's 0 (an exploratory test).  A host
    signal is now scaled by a power of two first, as the CPU does, whether
    the kernel or ``grad_output`` is on the device or not (it was left as it
    was beside a device one: an exploratory test); the signal's gradient
    (about 1e-309) compared scaled back up."""
    rng = np.random.default_rng(12)
    image = case == "image"
    x = rng.uniform(-1, 1, (6, 7) if image else 30) * (0.5e308 if case == "floor" else 1.5e308)
    kernel = rng.standard_normal((2, 3) if image else 4)
    options = dict(axis=(0, 1) if image else -1, center=case == "center",
                   noise_floor=1.5e308 if case == "floor" else 0.0)
    g = rng.standard_normal(sliding_cosine(x, kernel, **options).shape)
    got = sliding_cosine_grad(x, *_on_device(where, kernel, g), backend="cuda", **options)
    got = SlidingCosineGrad(*(to_host(part) for part in got))
    want = sliding_cosine_grad(x, kernel, g, **options)
    assert_grads_close(got, want, kernel.size * x.size)
    assert_grads_close(*([np.ldexp(grads.signal, 1020)] for grads in (got, want)), x.size)


@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_gradients_of_a_grad_output_near_the_top_of_the_range(axis):
    """``grad_output`` times ``2**1021``: every gradient times it (inf past
    the range), as on the CPU; the kernel's sums over windows gave NaN."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((6, 20))
    kernel = rng.standard_normal((3, 3) if axis == (0, 1) else (2, 5))
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis).shape)
    want = sliding_cosine_grad(x, kernel, g, axis=axis, sharpness=1.2, backend="cuda")
    with np.errstate(over="ignore"):
        got = sliding_cosine_grad(x, kernel, np.ldexp(g, 1021), axis=axis, sharpness=1.2,
                                  backend="cuda")
        for name in ("signal", "kernel", "sharpness", "noise_floor"):
            np.testing.assert_array_equal(getattr(got, name),
                                          np.ldexp(getattr(want, name), 1021), err_msg=name)


@pytest.mark.parametrize("where", ["host", "kernel"])
@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_gradients_of_windows_of_tiny_norm_beside_unit_ones(axis, where):
    """Windows of norm near 1e-300 beside windows of norm 1, ``grad_output``
    times 1e10: the kernel's gradient finite, as on the CPU (the windows'
    coefficients overflowed), the signal's without NaN, with the kernel on
    the host or on the device (then nothing was scaled: NaN)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 12))
    x[:, :6] *= 1e-300
    kernel = rng.standard_normal((2, 3) if axis == (0, 1) else 4)
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis).shape)
    want = sliding_cosine_grad(x, kernel, g, axis=axis, backend="cuda")
    with np.errstate(over="ignore"):
        got = sliding_cosine_grad(x, _on_device(where, kernel, g)[0], g * 1e10, axis=axis,
                                  backend="cuda")
    got = SlidingCosineGrad(*(to_host(part) for part in got))
    np.testing.assert_allclose(got.kernel, want.kernel * 1e10, rtol=1e-13, atol=0)
    assert not np.isnan(got.signal).any() and not np.isnan(got.noise_floor)


def test_gradients_of_a_host_signal_of_subnormal_samples_beside_a_device_grad_output():
    """A host signal of samples near 1e-309, ``grad_output`` on the device:
    the signal is scaled into range first, as the CPU takes it (it was not:
    NaN kernel, noise floor and signal gradients; an exploratory test)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(24) * 1e-309
    kernel = rng.standard_normal(3)
    g = rng.standard_normal(22)
    want = sliding_cosine_grad(x, kernel, g)
    got = sliding_cosine_grad(x, kernel, on_gpu(g))
    got = SlidingCosineGrad(*(to_host(part) for part in got))
    assert not np.isnan(got.kernel).any() and not np.isnan(got.signal).any()
    np.testing.assert_allclose(got.kernel, want.kernel, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.isinf(got.signal), np.isinf(want.signal))


@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_centered_gradients_of_a_window_beginning_near_the_largest_float(axis):
    """The mean of a window whose first sample is 1.7e308: the sum of the
    differences from it overflowed, and the gradients were inf; now as on
    the CPU."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8))
    x[0, 0] = 1.7e308
    kernel = rng.standard_normal((3, 3) if axis == (0, 1) else 4)
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis, center=True).shape)
    got = sliding_cosine_grad(x, kernel, g, axis=axis, center=True, backend="cuda")
    want = sliding_cosine_grad(x, kernel, g, axis=axis, center=True)
    assert all(np.isfinite(part).all() for part in got)
    np.testing.assert_allclose(got.kernel, want.kernel, rtol=0, atol=1e-14)


def test_gradients_of_zero_windows_and_kernels_are_zero():
    signal = np.array([0.0, 0, 0, 0, 1, 2, 0, 0, 0, 0])
    got = sliding_cosine_grad(signal, [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], np.ones((2, 8)),
                              sharpness=0.8, backend="cuda")
    want = sliding_cosine_grad(signal, [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], np.ones((2, 8)),
                               sharpness=0.8)
    assert np.all(np.isfinite(got.signal)) and np.all(got.kernel[1] == 0.0)
    assert_grads_close(got, want, 6 * 10)


# ---------------------------------------------------------------------------
# embedding


@EXAMPLES
@given(problem=broadcast_problem(), fill=st.sampled_from([0.0, np.nan]), eps=st.sampled_from([0.0, 0.5]))
def test_cosine_similarity_matches_naive(problem, fill, eps):
    a, b, axis = problem
    got = cosine_similarity(a, b, axis=axis, eps=eps, fill=fill, backend="cuda")
    want = naive.cosine_broadcast(a, b, axis, eps=eps, fill=fill)
    cpu = cosine_similarity(a, b, axis=axis, eps=eps, fill=fill)
    assert np.shape(got) == np.shape(cpu) and np.asarray(got).dtype == np.asarray(cpu).dtype
    length = max(1, int(np.prod([np.broadcast_shapes(a.shape, b.shape)[ax] for ax in np.atleast_1d(axis)])))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=0,
                               atol=tol(np.asarray(got).dtype, length))


def test_cosine_similarity_overflow_nan_and_device_scalars():
    big = np.array([[1e308, -1e308, 5e307], [1.0, 0.0, np.nan], [0.0, 0.0, 0.0]])
    other = np.array([1e308, 1e308, 1e308])
    got = cosine_similarity(big, other, backend="cuda")
    np.testing.assert_allclose(got, [1 / 3**1.5, np.nan, 0.0], rtol=1e-15)
    scalar = cosine_similarity(on_gpu([1.0, 0.0]), np.array([1.0, 1.0]))
    assert to_host(scalar).shape == () and float(to_host(scalar)) == pytest.approx(2**-0.5)
    assert cosine_similarity([3.0, 4.0], [3.0, 4.0], backend="cuda") == 1.0


@EXAMPLES
@given(n=st.integers(1, 9), m=st.integers(1, 9), d=st.integers(1, 6),
       da=st.sampled_from([np.float32, np.float64, np.int8]), fill=st.sampled_from([0.0, -2.0]),
       data=st.data())
def test_pairwise_matches_naive(n, m, d, da, fill, data):
    a = data.draw(matrices(da, n, d))
    b = data.draw(matrices(np.float64, m, d))
    got = pairwise_cosine(a, b, fill=fill, backend="cuda")
    assert got.dtype == pairwise_cosine(a, b, fill=fill).dtype
    compute = np.float64 if got.dtype == np.float64 else np.float32
    np.testing.assert_allclose(got, naive.pairwise_matrix(a, b, fill=fill), rtol=0,
                               atol=tol(got.dtype, d, compute))


def test_pairwise_self_symmetric_unit_diagonal_nan_rows():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((11, 6)).astype(np.float32)
    a[3] = 0
    a[5, 2] = np.inf
    got = pairwise_cosine(on_gpu(a), dtype=np.float64)
    got = to_host(got)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, got.T)  # exactly symmetric, NaN rows aside
    np.testing.assert_array_equal(np.diag(got)[[0, 1, 2, 4, 6]], 1.0)
    assert np.isnan(got[5]).all() and (got[3, np.arange(11) != 5] == 0).all()
    want = naive.pairwise_matrix(a)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(np.float32, 6, np.float32))
    out = np.empty((11, 11), np.float16)
    assert pairwise_cosine(a, out=out, backend="cuda") is out


@EXAMPLES
@given(problem=search_problem(), lists=st.sampled_from([None, 1, 2]))
def test_topk_is_stable_argsort_of_full_matrix(problem, lists):
    queries, corpus, k = problem
    # (room for the partial lists of one or two column partitions: 16 bytes an entry)
    max_memory = None if lists is None else lists * 16 * queries.shape[0] * k
    scores, idx = topk_cosine(queries, corpus, k, max_memory=max_memory, backend="cuda")
    cpu_scores, _ = topk_cosine(queries, corpus, k)
    assert scores.dtype == cpu_scores.dtype and idx.dtype == np.int64
    compute = np.float64 if scores.dtype == np.float64 else np.float32
    exact = naive.pairwise_matrix(queries, corpus)
    check_topk(scores, idx, exact, corpus, k, tol(scores.dtype, queries.shape[1], compute))


def test_a_max_memory_too_small_for_the_top_k_lists_is_refused_by_name():
    rows = np.random.default_rng(9).standard_normal((7, 5))
    with pytest.raises(ValueError, match=r"max_memory=1 bytes is too small .* need 448 bytes"):
        topk_cosine(rows, rows, 4, max_memory=1, backend="cuda")
    with pytest.raises(ValueError, match=r"max_memory=1 bytes is too small"):
        set_similarity(rows, rows[:3], measure="greedy", max_memory=1, backend="cuda")


def test_topk_partitions_ties_exclude_self_and_nan_last(small_launches):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((3, 4))
    corpus = np.concatenate([base, 2 * base, base, np.full((2, 4), np.nan), np.zeros((1, 4))])
    queries = np.concatenate([base, np.zeros((1, 4))])
    for min_blocks in (1, 64):  # one column partition, or one per tile
        small_launches.min_blocks = min_blocks
        scores, idx = topk_cosine(on_gpu(queries), on_gpu(corpus), 12)
        scores, idx = to_host(scores), to_host(idx)
        check_topk(scores, idx, naive.pairwise_matrix(queries, corpus), corpus, 12, tol(np.float64, 4))
        np.testing.assert_array_equal(idx[0, :3], [0, 3, 6])  # exact ties: lower index first
        assert np.isnan(scores[:, -2:]).all() and list(idx[0, -2:]) == [9, 10]
    scores, idx = topk_cosine(corpus, None, 3, exclude_self=True, backend="cuda")
    assert not any(r in idx[r] for r in range(len(corpus)))
    check_topk(scores, idx, naive.pairwise_matrix(corpus), corpus, 3, tol(np.float64, 4), exclude_self=True)


def test_embedding_errors():
    with pytest.raises(ValueError, match="k=5 is larger than the corpus"):
        topk_cosine(on_gpu(np.ones((2, 3))), on_gpu(np.ones((4, 3))), 5)
    with pytest.raises(ValueError, match="same number of columns"):
        pairwise_cosine(on_gpu(np.ones((2, 3))), np.ones((2, 4)))
    with pytest.raises(ValueError, match="broadcast"):
        cosine_similarity(on_gpu(np.ones((2, 3))), np.ones((4,)), backend="cuda")
    with pytest.raises(ValueError, match="2-d"):
        pairwise_cosine(on_gpu(np.ones(3)))


# ---------------------------------------------------------------------------
# dispatch


def test_backend_cpu_refuses_device_arrays_and_auto_follows_the_input():
    x = on_gpu(np.arange(6.0))
    with pytest.raises(TypeError, match="copy it to the host"):
        windowed_norm(x, 2, backend="cpu")
    with pytest.raises(TypeError, match="queries is a CUDA device array"):
        topk_cosine(on_gpu(np.ones((2, 2))), np.ones((2, 2)), 1, backend="cpu")
    assert cuda.devicearray.is_cuda_ndarray(windowed_norm(x, 2))
    assert isinstance(windowed_norm(np.arange(6.0), 2), np.ndarray)  # auto, host: the CPU


def test_calls_from_several_threads_and_dask_s_threads():
    """Calls from several threads at once (a Dask array's blocks on the
    threaded scheduler): under the simulator they failed, the host code of
    one finding ``numba.cuda`` swapped for the simulator's fake module by
    another's launch ('FakeCUDAModule' has no attribute 'devicearray'), or
    two kernels simulated at once (an exploratory test).  The launches take
    turns there; on a GPU they run side by side."""
    import threading

    import dask.array as da

    rng = np.random.default_rng(4)
    x, kernel = rng.standard_normal((2, 200)), np.array([1.0, 2.0, 3.0])
    want = sliding_cosine(x, kernel)
    found = [None] * 4

    def run(slot):
        found[slot] = [to_host(sliding_cosine(x, kernel, backend="cuda")) for _ in range(2)]

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(found))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in found:
        for result in got:
            np.testing.assert_allclose(result, want, rtol=0, atol=tolerance(np.float64, 3))
    lazy = sliding_cosine(da.from_array(x, chunks=(1, 60)), kernel, backend="cuda")
    np.testing.assert_allclose(lazy.compute(scheduler="threads"), want, rtol=0,
                               atol=tolerance(np.float64, 3))


def test_no_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device, "available", lambda: False)
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        sharpen(np.ones(3), 1.0, backend="cuda")


def test_results_come_back_as_cupy_or_torch(monkeypatch):
    """The wrapping of results for CuPy and PyTorch inputs: the device result
    is handed to ``cupy.asarray`` / ``torch.as_tensor(..., device=input.device)``.
    In the simulator with stand-in modules (neither library is needed), on a
    real GPU with the libraries themselves."""
    if not SIMULATOR:  # a real GPU: the real libraries, where installed
        cupy, torch = pytest.importorskip("cupy"), pytest.importorskip("torch")
        want = windowed_norm(np.arange(5.0), 2)
        result = windowed_norm(cupy.arange(5.0), 2)
        assert isinstance(result, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(result), want, rtol=1e-15)
        result = windowed_norm(torch.arange(5.0, dtype=torch.float64, device="cuda"), 2)
        assert isinstance(result, torch.Tensor) and result.device.type == "cuda"
        np.testing.assert_allclose(result.cpu().numpy(), want, rtol=1e-15)
        return
    FakeArray = type(cuda.to_device(np.zeros(1)))
    for module in ("cupy", "torch"):
        fake = ModuleType(module)
        fake.asarray = lambda array: ("cupy", array)
        fake.as_tensor = lambda array, device: ("torch", device, array)
        monkeypatch.setitem(sys.modules, module, fake)
        cls = type("ndarray", (FakeArray,), {"__module__": module, "device": "cuda:0"})
        x = cls(np.arange(5.0))
        result = windowed_norm(x, 2)
        assert result[0] == module
        np.testing.assert_allclose(to_host(result[-1]), windowed_norm(np.arange(5.0), 2))
        if module == "torch":
            assert result[1] == "cuda:0"


def test_import_never_touches_cuda():
    code = ("import sys, numpy as np, cosim_np; cosim_np.sliding_cosine(np.ones(5), [1, 2]); "
            "cosim_np.topk_cosine(np.ones((3, 2)), None, 1); "
            "assert 'numba.cuda' not in sys.modules and 'cosim_np._cuda' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


def test_kernels_compile_for_the_real_target():
    """PTX for every kernel and signature (tests/cuda_ptx.py), where NVVM is
    installed (CUDA_HOME, or the nvidia-cuda-nvcc wheel); no GPU needed."""
    home = os.environ.get("CUDA_HOME")
    if not home:
        spec = importlib.util.find_spec("nvidia")
        paths = list(spec.submodule_search_locations) if spec else []
        home = next((os.path.join(p, "cuda_nvcc") for p in paths
                     if os.path.isdir(os.path.join(p, "cuda_nvcc", "nvvm"))), None)
    if not home or not os.path.isdir(os.path.join(home, "nvvm")):
        pytest.skip("no NVVM (CUDA toolkit) to compile with")
    env = dict(os.environ, CUDA_HOME=home)
    script = os.path.join(os.path.dirname(__file__), "cuda_ptx.py")
    done = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_public_functions_document_backend():
    for func in (sliding_cosine, windowed_norm, sharpen, cosine_similarity, pairwise_cosine,
                 topk_cosine, sliding_cosine_grad):
        assert "backend : {'auto', 'cpu', 'cuda'}" in func.__doc__, func.__name__


# --- several sliding axes (images, volumes): one thread per output


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("case", [
    ((7, 8), (2, 3), dict(axis=(0, 1))),
    ((7, 8), (2, 3), dict(axis=(0, 1), mode=("same", "full"), stride=(2, 1), dilation=(1, 2),
                          sharpness=1.3, noise_floor=0.1)),
    ((2, 3, 6, 7), (4, 3, 2, 2), dict(axis=(2, 3), center=True, mode="full")),
    ((5, 2, 6), (3, 2, 2), dict(axis=(0, 2))),
    ((4, 5, 6), (2, 2, 3), dict(axis=(0, 1, 2), center=True)),
])
def test_several_axes_match_the_cpu(dtype, case):
    shape, kernel_shape, options = case
    rng = np.random.default_rng(21)
    x = (10 * rng.standard_normal(shape)).astype(dtype)
    k = rng.standard_normal(kernel_shape)
    got = to_host(sliding_cosine(cuda.to_device(x), k, **options))
    want = sliding_cosine(x, k, **options)
    assert got.shape == want.shape and got.dtype == want.dtype
    taps = int(np.prod(kernel_shape[1:])) if len(kernel_shape) > len(options["axis"]) else \
        int(np.prod(kernel_shape))
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(want.dtype, taps, 1.69))
    window = kernel_shape[-len(options["axis"]):]
    norm_options = {key: value for key, value in options.items()
                    if key in ("axis", "mode", "dilation", "stride", "center")}
    if len(kernel_shape) == len(window) + 2:
        return  # (norms take no channel axis)
    norms = to_host(windowed_norm(cuda.to_device(x), window, **norm_options))
    np.testing.assert_allclose(norms, windowed_norm(x, window, **norm_options), rtol=1e-6,
                               atol=0)


def test_several_axes_keep_nan_and_inf_in_their_windows_and_scale_exactly():
    rng = np.random.default_rng(22)
    x = rng.standard_normal((6, 7))
    x[2, 3] = np.nan
    x[5, 6] = np.inf
    k = rng.standard_normal((2, 2))
    for center in (False, True):
        got = to_host(sliding_cosine(cuda.to_device(x), k, axis=(0, 1), center=center))
        want = sliding_cosine(x, k, axis=(0, 1), center=center)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        scaled = to_host(sliding_cosine(cuda.to_device(np.ldexp(x, 300)), k, axis=(0, 1),
                                        center=center))
        np.testing.assert_array_equal(scaled, got)
    norms = to_host(windowed_norm(cuda.to_device(x), (2, 2), axis=(0, 1)))
    want = windowed_norm(x, (2, 2), axis=(0, 1))
    np.testing.assert_array_equal(np.isnan(norms), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(norms), np.isinf(want))
    flat = np.zeros((4, 5))
    flat[:, 2:] = 3.0
    got = to_host(sliding_cosine(cuda.to_device(flat), k, axis=(0, 1), center=True, fill=-2.0))
    constant = np.ones(got.shape, bool)
    constant[:, 1] = False  # (the windows across the step)
    assert np.all(got[constant] == -2.0) and not np.any(got[~constant] == -2.0)


@pytest.mark.parametrize("center", [False, True])
def test_several_axes_give_a_nan_kernel_nan_at_zero_and_constant_windows(center):
    """A kernel with a NaN or inf tap gives NaN at every window, the zero
    ones included (``fill`` is for a zero window of a finite kernel), as
    on the CPU and along one axis; the bank's finite kernel keeps ``fill``."""
    image = np.zeros((4, 5))
    image[:, 3:] = 2.0  # (zero windows, constant ones and windows across the step)
    bank = np.array([[[1.0, np.nan], [1.0, 1.0]], [[1.0, np.inf], [0.5, 1.0]],
                     [[1.0, -1.0], [2.0, 1.0]]])
    got = to_host(sliding_cosine(cuda.to_device(image), bank, axis=(0, 1), fill=2.0,
                                 center=center))
    want = sliding_cosine(image, bank, axis=(0, 1), fill=2.0, center=center)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[:2]).all() and (got[2, :, :2] == 2.0).all()
    found = find_matches(cuda.to_device(image), bank[0], axis=(0, 1), fill=1.0)
    assert len(found) == len(find_matches(image, bank[0], axis=(0, 1), fill=1.0)) == 0


def test_more_sliding_axes_than_the_device_kernels_hold_are_refused_by_name():
    """Each thread keeps its window's starts in a local array of
    ``MAX_AXES``: a ninth axis ran past it (an IndexError in the simulator,
    memory past the array on a GPU)."""
    from cosim_np._cuda.kernels import MAX_AXES

    x = np.random.default_rng(23).random((2,) * (MAX_AXES + 1))
    axes = tuple(range(MAX_AXES + 1))
    kernel = np.ones((1,) * (MAX_AXES + 1))
    for call in (lambda: sliding_cosine(cuda.to_device(x), kernel, axis=axes),
                 lambda: windowed_norm(cuda.to_device(x), (1,) * (MAX_AXES + 1), axis=axes),
                 lambda: sliding_cosine_grad(cuda.to_device(x), kernel, np.ones(x.shape), axis=axes),
                 lambda: find_matches(x, kernel, axis=axes, k=1, backend="cuda")):
        with pytest.raises(ValueError, match=rf"^axis: backend='cuda' slides at most {MAX_AXES} "
                                             rf"axes; got {MAX_AXES + 1}"):
            call()
    assert to_host(sliding_cosine(x[..., 0], kernel[..., 0], axis=axes[:-1],
                                  backend="cuda")).shape == x.shape[:-1]


def test_a_loud_noise_floor_over_tiny_windows_of_several_axes():
    """The floor scaled as the window is (by ``2**-e``) passes the float64
    range: a GPU's ldexp gives inf and the score 0, as on the CPU (the
    simulator's Python ldexp raised OverflowError)."""
    image = np.full((4, 4), 1e-310)
    image[1, 2] = 3e-310
    kernel = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = to_host(sliding_cosine(cuda.to_device(image), kernel, axis=(0, 1), noise_floor=1.0))
    np.testing.assert_array_equal(got, sliding_cosine(image, kernel, axis=(0, 1), noise_floor=1.0))
    assert np.all(got == 0.0)


# --- gradients and matches over several axes


@EXAMPLES
@given(problem=image_gradient_problems())
def test_gradients_over_several_axes_match_the_cpu(problem):
    signal, kernel, g, options = problem
    want = sliding_cosine_grad(signal, kernel, g, **options)
    got = sliding_cosine_grad(on_gpu(signal), kernel, g, **options)
    assert isinstance(got, SlidingCosineGrad) and isinstance(got.sharpness, float)
    assert_grads_close(got, want, np.size(kernel) * np.size(g))


def test_gradients_over_several_axes_of_device_arrays_in_any_layout():
    """Strided device arrays (the signal, ``grad_output``), sliding axes in
    any order, a bank and a multi-channel kernel; float32 gradients for a
    float32 signal."""
    rng = np.random.default_rng(23)
    whole = rng.standard_normal((18, 3, 8))
    host, signal = whole[::2], cuda.to_device(whole)[::2]
    kernel = rng.standard_normal((2, 2, 3))  # a bank over axes (2, 0)
    options = dict(axis=(2, 0), mode=("same", "valid"), stride=(2, 1), sharpness=1.2)
    shape = sliding_cosine(host, kernel, **options).shape
    g_whole = rng.standard_normal(shape[:-1] + (2 * shape[-1],))
    g, device_g = g_whole[..., ::2], cuda.to_device(g_whole)[:, :, :, ::2]
    got = sliding_cosine_grad(signal, kernel, device_g, **options)
    assert_grads_close(got, sliding_cosine_grad(host, kernel, g, **options), 12 * g.size)
    channels = rng.standard_normal((4, 3, 2, 2))  # C_out 4 over C_in 3
    single = np.ascontiguousarray(host.transpose(1, 0, 2), np.float32)  # channels first
    options = dict(axis=(1, 2), center=True, noise_floor=0.2)
    g = rng.standard_normal(sliding_cosine(single, channels, **options).shape)
    got = sliding_cosine_grad(cuda.to_device(single), channels, g, **options)
    want = sliding_cosine_grad(single, channels, g, **options)
    assert got.signal.dtype == want.signal.dtype == np.float32
    assert got.kernel.dtype == want.kernel.dtype == np.float32
    for name in SlidingCosineGrad._fields:  # (float64 sums, each rounded to float32 once)
        expected = np.asarray(getattr(want, name), np.float64)
        scale = 1.0 + np.max(np.abs(expected))
        np.testing.assert_allclose(np.asarray(to_host(getattr(got, name)), np.float64),
                                   expected, rtol=0,
                                   atol=2 * float(np.finfo(np.float32).eps) * scale,
                                   err_msg=name)


def test_gradients_over_several_axes_keep_nan_local_and_zero_windows_at_zero():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((7, 8))
    x[1, 1] = np.nan
    x[4:, 4:] = 0.0
    kernel = rng.standard_normal((2, 2))
    g = np.ones((6, 7))
    got = sliding_cosine_grad(cuda.to_device(x), kernel, g, axis=(0, 1))
    want = sliding_cosine_grad(x, kernel, g, axis=(0, 1))
    grad = to_host(got.signal)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(want.signal))
    assert np.isnan(grad[:3, :3]).any() and not np.isnan(grad[4:, :]).any()
    assert np.all(grad[5:, 5:] == 0.0)  # (every window holding these is zero)
    assert np.isnan(got.kernel).all() and math.isnan(got.sharpness)


@pytest.mark.parametrize("options", [
    dict(k=3),
    dict(threshold=0.4, exclusion=(1, 2), sign="negative"),
    dict(k=2, center=True, mode="same", sharpness=2.0),
])
def test_find_matches_over_several_axes_on_the_device_equals_the_cpu(options):
    rng = np.random.default_rng(25)
    x = rng.standard_normal((2, 12, 10)).astype(np.float32)
    bank = rng.standard_normal((2, 3, 3))
    want = find_matches(x, bank, axis=(1, 2), **options)
    for got in (find_matches(cuda.to_device(x), bank, axis=(1, 2), **options),
                find_matches(x, cuda.to_device(bank), axis=(1, 2), backend="cuda", **options)):
        assert len(got) == len(want) > 0
        for field in ("index", "kernel", "batch"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert got.score.dtype == want.score.dtype == np.float32
        np.testing.assert_allclose(got.score, want.score, rtol=0, atol=tolerance(np.float32, 9, 4.0))
    with pytest.raises(ValueError, match="sign"):
        find_matches(cuda.to_device(x), bank, axis=(1, 2), sign="up")


@pytest.mark.parametrize("shift", [-900, 900])
@pytest.mark.parametrize("center", [False, True])
def test_gradients_over_several_axes_scale_exactly_through_the_float64_range(shift, center):
    """A signal scaled by ``2**shift``: the signal's gradient scaled by
    ``2**-shift``, the kernel's and the sharpness's unchanged, bit for bit
    (each window's sums are taken from its samples scaled by its own power
    of two)."""
    rng = np.random.default_rng(26)
    x = rng.standard_normal((7, 8))
    kernel = rng.standard_normal((2, 3, 2))
    options = dict(axis=(0, 1), sharpness=1.3, center=center, mode=("same", "valid"))
    g = rng.standard_normal(sliding_cosine(x, kernel, **options).shape)
    want = sliding_cosine_grad(cuda.to_device(x), kernel, g, **options)
    got = sliding_cosine_grad(cuda.to_device(np.ldexp(x, shift)), kernel, g, **options)
    np.testing.assert_array_equal(np.ldexp(to_host(got.signal), shift), to_host(want.signal))
    np.testing.assert_array_equal(to_host(got.kernel), to_host(want.kernel))
    assert got.sharpness == want.sharpness
