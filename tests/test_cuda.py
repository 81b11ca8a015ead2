"""The CUDA backend against the naive references and the CPU, and its dispatch.

Runs in Numba's CUDA simulator (see conftest.py) with tiny launch sizes, so
signals stay short and Hypothesis draws few examples; with
``COSIM_REAL_GPU=1`` the same tests run on a GPU at full launch sizes.
Tolerances are those of the CPU tests: the kernels accumulate in float64 too.
"""

import importlib.util
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
    cosine_similarity,
    pairwise_cosine,
    sharpen,
    sliding_cosine,
    topk_cosine,
    windowed_norm,
)
from tests import naive
from tests.strategies import ALL_DTYPES, FLOAT_DTYPES, arrays, scalable_elements, window_geometry
from tests.test_embedding import broadcast_problem, check_topk, matrices, search_problem, tol
from tests.test_sliding import EPS64, expected_dtype, tolerance

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
from cosim_np import _cuda  # noqa: E402  (after the simulator is chosen)
from cosim_np._cuda import kernels  # noqa: E402

SIMULATOR = kernels.SIMULATOR
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
    # scaled alike, overflows to inf (a cosine of 0), never to an error, as
    # the simulator's math.ldexp once raised; and a norm past the float64
    # range is inf
    signal = np.full(12, 2.2e-311)
    kernel = np.array([1.0, -2.0, 3.0])
    got = sliding_cosine(signal, kernel, backend="cuda", noise_floor=noise_floor)
    np.testing.assert_array_equal(got, sliding_cosine(signal, kernel, noise_floor=noise_floor))
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
    s = np.array([[-0.5, 0.0, 0.25], [1.0, -1.0, np.nan]])
    for values in (s, s.T, s[:, ::-1]):
        np.testing.assert_array_equal(sharpen(values, 2.0, backend="cuda"), sharpen(values, 2.0))
        np.testing.assert_array_equal(to_host(sharpen(cuda.to_device(s)[:, ::-1], 2.0)),
                                      sharpen(s[:, ::-1], 2.0))
    assert sharpen(0.5, 2.0, backend="cuda") == 0.0625


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
@given(problem=search_problem(), max_memory=st.sampled_from([None, 200]))
def test_topk_is_stable_argsort_of_full_matrix(problem, max_memory):
    queries, corpus, k = problem
    scores, idx = topk_cosine(queries, corpus, k, max_memory=max_memory, backend="cuda")
    cpu_scores, _ = topk_cosine(queries, corpus, k)
    assert scores.dtype == cpu_scores.dtype and idx.dtype == np.int64
    compute = np.float64 if scores.dtype == np.float64 else np.float32
    exact = naive.pairwise_matrix(queries, corpus)
    check_topk(scores, idx, exact, corpus, k, tol(scores.dtype, queries.shape[1], compute))


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


def test_no_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: False)
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        sharpen(np.ones(3), 1.0, backend="cuda")


def test_results_come_back_as_cupy_or_torch(monkeypatch):
    """The wrapping of results for CuPy and PyTorch inputs, with stand-in
    modules (neither library is needed): the device result is handed to
    ``cupy.asarray`` / ``torch.as_tensor(..., device=input.device)``."""
    FakeArray = type(cuda.to_device(np.zeros(1)))
    if not SIMULATOR:
        pytest.skip("stand-in device arrays exist in the simulator only")
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
                 topk_cosine):
        assert "backend : {'auto', 'cpu', 'cuda'}" in func.__doc__, func.__name__
