"""cosine_similarity, pairwise_cosine, topk_cosine and set_similarity against
the naive references in tests/naive.py, and the promises of docs/embedding.rst."""

import tracemalloc
import warnings
from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cosim_np import cosine_similarity, pairwise_cosine, set_similarity, sliding_cosine, topk_cosine
from cosim_np._core import config
from cosim_np._cpu import blas as _blas
from cosim_np._cpu import embedding as _embedding_kernels
from cosim_np._cpu import threads as _threads
from cosim_np._cpu import tiles as _tiles
from tests import naive
from tests.memory import traced_peak

EPS64 = np.finfo(np.float64).eps
DTYPES = (np.float16, np.float32, np.float64, np.int8, np.int32, np.bool_)


def expected_dtype(*dtypes):
    return np.result_type(*[np.dtype(d) if np.dtype(d).kind == "f" else np.float64 for d in dtypes])


def tol(out_dtype, length, compute=np.float64):
    """Absolute tolerance for a cosine of vectors of ``length`` components
    computed in ``compute`` precision and rounded to ``out_dtype``."""
    part = 8 * (length + 4) * float(np.finfo(compute).eps)
    return part + (0.0 if out_dtype == np.float64 else float(np.finfo(out_dtype).eps))


STREAM_TILE = (config.STREAM_ROWS, config.STREAM_COLS)  # before any patching
TALL_FACTOR = config.TALL_FACTOR


@pytest.fixture(scope="module", params=["one stream", "per-thread streams"])
def tile_layout(request):
    """Run a tiled test in both layouts of ``_tiles.row_blocks``: one stream
    of multi-threaded BLAS calls, and per-thread streams on tiles of 3 x 5
    (so that even the smallest inputs have several row blocks, column tiles
    and threads)."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "one stream":
            patch.setattr(_blas, "can_limit", lambda: False)
        else:
            if not _blas.can_limit():
                pytest.skip("NumPy's BLAS thread count cannot be set on this machine")
            patch.setattr(config, "MIN_ROWS_PER_STREAM", 1)
            patch.setattr(config, "MIN_STREAM_WORK", 0)
            patch.setattr(config, "STREAM_ROWS", 3)
            patch.setattr(config, "STREAM_COLS", 5)
            patch.setattr(config, "TALL_FACTOR", 1)
            patch.setattr(_threads, "thread_count", lambda: 3)
        yield request.param


tiled = pytest.mark.usefixtures("tile_layout")


def values(dtype):
    """Small magnitudes, zeros likely, exactly representable in every dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        return st.integers(-100, 100)
    return st.one_of(st.just(0.0), st.integers(-60, 60).map(float),
                     st.floats(-1e3, 1e3, width=16))


def matrices(dtype, rows, cols):
    return hnp.arrays(dtype, (rows, cols), elements=values(dtype))


# ---------------------------------------------------------------------------
# cosine_similarity


@st.composite
def broadcast_problem(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=4))
    a_shape, b_shape = shapes.input_shapes
    ndim = len(shapes.result_shape)
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    axis = axes[0] - ndim if len(axes) == 1 else tuple(axes)
    da, db = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    a = draw(hnp.arrays(da, a_shape, elements=values(da)))
    b = draw(hnp.arrays(db, b_shape, elements=values(db)))
    return a, b, axis


@given(problem=broadcast_problem(), fill=st.sampled_from([0.0, -3.0, np.nan]))
def test_cosine_similarity_matches_naive(problem, fill):
    a, b, axis = problem
    got = cosine_similarity(a, b, axis=axis, fill=fill)
    want = naive.cosine_broadcast(a, b, axis, fill=fill)
    assert np.asarray(got).dtype == expected_dtype(a.dtype, b.dtype)
    assert np.shape(got) == want.shape
    length = max(1, int(np.prod([np.broadcast_shapes(a.shape, b.shape)[ax] for ax in np.atleast_1d(axis)])))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0,
                               atol=tol(np.asarray(got).dtype, length))


@given(problem=broadcast_problem(), eps=st.sampled_from([1e-8, 0.5, 3.0, 100.0]))
def test_cosine_similarity_eps_is_torch_clamping(problem, eps):
    a, b, axis = problem
    got = np.asarray(cosine_similarity(a, b, axis=axis, eps=eps), np.float64)
    want = naive.cosine_broadcast(a, b, axis, eps=eps)
    length = max(1, int(np.prod([np.broadcast_shapes(a.shape, b.shape)[ax] for ax in np.atleast_1d(axis)])))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(expected_dtype(a.dtype, b.dtype), length))


@given(problem=broadcast_problem())
@example((np.where(np.arange(18).reshape(3, 3, 2) == 0, 66, 1).astype(np.int8), np.array([1], np.int8),
          (0, 1)))
def test_cosine_similarity_bits_depend_on_each_vector_alone(problem):
    """Neither the arrays' memory layout nor the other vectors change a
    result's rounding (what lets Dask blocks give the in-memory bits)."""
    a, b, axis = problem
    got = np.asarray(cosine_similarity(a, b, axis=axis))
    flipped = [np.asfortranarray(v[::-1])[::-1] if v.ndim else v for v in (a, b)]
    np.testing.assert_array_equal(cosine_similarity(*flipped, axis=axis), got)
    ndim = got.ndim + len(np.atleast_1d(axis))
    reduced = {ax % ndim for ax in np.atleast_1d(axis)}
    kept = [ax for ax in range(ndim) if ax not in reduced]
    a, b = (v.reshape((1,) * (ndim - v.ndim) + v.shape) for v in (a, b))
    for index in np.ndindex(got.shape):
        one = []
        for v in (a, b):
            cut = [slice(None)] * ndim
            for ax, i in zip(kept, index):
                cut[ax] = slice(0, 1) if v.shape[ax] == 1 else slice(i, i + 1)
            one.append(np.ascontiguousarray(v[tuple(cut)]))
        np.testing.assert_array_equal(np.asarray(cosine_similarity(*one, axis=axis)).reshape(()),
                                      got[index])


@given(problem=broadcast_problem(), parts=st.integers(2, 5),
       eps=st.sampled_from([0.0, 0.5]), fill=st.sampled_from([0.0, np.nan]))
def test_cosine_similarity_split_among_threads_has_the_bits_of_one_thread(problem, parts, eps, fill):
    """The pairs of vectors split among threads (down to one pair a part),
    and each part's cosines stored a few at a time, give the bits of one
    thread taking them all."""
    a, b, axis = problem
    with mock.patch.object(_threads, "thread_count", lambda: 1):
        whole = np.asarray(cosine_similarity(a, b, axis=axis, eps=eps, fill=fill))
    with mock.patch.object(_threads, "thread_count", lambda: parts), \
            mock.patch.object(config, "MIN_COMPONENTS_PER_THREAD", 1), \
            mock.patch.object(config, "COSINES_AT_ONCE", parts - 1):
        split = np.asarray(cosine_similarity(a, b, axis=axis, eps=eps, fill=fill))
        into = np.full(whole.shape, 7.0, whole.dtype)
        cosine_similarity(a, b, axis=axis, eps=eps, fill=fill, out=into)
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(into, whole)


def test_cosine_similarity_of_every_pair_holds_only_its_result():
    """``(N, 1, D)`` against ``(1, M, D)``: the N x M result and nothing of
    its size besides (two int64 N x M arrays of row indices and a float64
    one of cosines made it 7 times the float32 result), into ``out`` with
    nothing at all."""

    rng = np.random.default_rng(12)
    a = rng.normal(size=(600, 1, 4)).astype(np.float32)
    b = rng.normal(size=(1, 500, 4)).astype(np.float32)
    want = cosine_similarity(a[:, :, :], b)  # (compiled)
    out = np.empty((600, 500), np.float32)
    tracemalloc.start()
    try:
        got = cosine_similarity(a, b)
        whole = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        cosine_similarity(a, b, out=out)
        into = tracemalloc.get_traced_memory()[1] - got.nbytes
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out, want)
    assert whole < 1.5 * got.nbytes and into < 0.3 * got.nbytes, (whole, into, got.nbytes)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "axis"),
    [((3001, 200), (3001, 200), -1), ((1, 200), (3001, 200), -1), ((200, 3001), (200, 1), 0),
     ((2, 1500, 250), (1500, 250), (0, 2)), ((50, 1, 200), (1, 40, 200), -1),
     ((401, 700), (401, 700), 0)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_similarity_of_many_vectors_on_two_threads_rounds_as_one(a_shape, b_shape, axis, dtype):
    """Enough pairs that two threads share them at the default minimum give
    the bits of one thread, and of the same vectors in rows of their own
    (vectors side by side are reduced by a kernel of their own), within the
    naive reference's tolerance; zero and NaN vectors anywhere in them."""
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(a_shape) * np.exp(rng.normal(0, 3, a_shape))).astype(dtype)
    b = rng.standard_normal(b_shape).astype(dtype)
    shape = np.broadcast_shapes(a_shape, b_shape)
    assert np.prod(shape) >= 2 * config.MIN_COMPONENTS_PER_THREAD
    full = a if a.size >= b.size else b
    reduced = [ax % full.ndim for ax in np.atleast_1d(axis)]
    vectors = np.moveaxis(full, reduced, range(full.ndim - len(reduced), full.ndim))  # a view
    vectors[7] = 0.0
    vectors[-1].flat[5] = np.nan
    with mock.patch.object(_threads, "thread_count", lambda: 2):
        got = cosine_similarity(a, b, axis=axis)
    with mock.patch.object(_threads, "thread_count", lambda: 1):
        one_thread = cosine_similarity(a, b, axis=axis)
    np.testing.assert_array_equal(got, one_thread)
    # every pair again, copied C-contiguous with its components last
    reduced = [ax % len(shape) for ax in np.atleast_1d(axis)]
    last = tuple(range(len(shape) - len(reduced), len(shape)))
    a_rows, b_rows = (np.ascontiguousarray(np.moveaxis(np.broadcast_to(v, shape), reduced, last))
                      for v in (a, b))
    np.testing.assert_array_equal(cosine_similarity(a_rows, b_rows, axis=last), got)
    want = naive.cosine_broadcast(a, b, axis)
    length = int(np.prod([shape[ax] for ax in np.atleast_1d(axis)]))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol(dtype, length))
    assert np.isnan(got).sum() >= 1 and (got == 0.0).sum() >= 1


@given(
    a=matrices(np.float64, 3, 5),
    b=matrices(np.float64, 3, 5),
    k=st.integers(-200, 200),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_cosine_similarity_symmetry_scale_sign_bounds(a, b, k, sign):
    base = cosine_similarity(a, b)
    assert np.all(np.abs(base) <= 1.0)
    np.testing.assert_array_equal(cosine_similarity(b, a), base)
    c = sign * 2.0**k  # exact scaling: results must be identical, not just close
    factors = np.array([c, 1.0, 2.0**-k])[:, None]
    scaled = cosine_similarity(a * factors, b)
    expected = base.copy()
    expected[0] *= sign
    np.testing.assert_array_equal(scaled, expected)


@pytest.mark.parametrize("length", [8192, 3 * 8192 + 5, 100_003])
def test_cosine_similarity_of_long_vectors_has_the_bits_of_each_alone(length):
    """Long float64 vectors of widely spread magnitudes against a float32
    one: each result has the bits of its two vectors alone, on any number
    of threads, within the naive reference's tolerance."""
    rng = np.random.default_rng(length)
    a = rng.standard_normal((3, length)) * np.exp(rng.normal(0, 4, (3, length)))
    b = rng.standard_normal((1, length)).astype(np.float32)
    with mock.patch.object(_threads, "thread_count", lambda: 3), \
            mock.patch.object(config, "MIN_COMPONENTS_PER_THREAD", 1):
        got = cosine_similarity(a, b)
    for i in range(3):
        np.testing.assert_array_equal(cosine_similarity(a[i], b[0]), got[i])
        np.testing.assert_array_equal(cosine_similarity(a[i, ::-1].copy()[::-1], b[0]), got[i])
    np.testing.assert_allclose(got, naive.cosine_broadcast(a, b), rtol=0, atol=tol(np.float64, length))


F32_TINY = float(np.finfo(np.float32).smallest_subnormal)
F32_MAX = float(np.finfo(np.float32).max)


def _float32_over_the_range(low, high):
    """float32 samples of either sign, or zero, with magnitudes in [low, high]."""
    magnitude = st.floats(low, high, width=32)
    return st.one_of(st.just(0.0), magnitude, magnitude.map(lambda v: -v))


@given(a=hnp.arrays(np.float32, (3, 6), elements=_float32_over_the_range(F32_TINY, F32_MAX)),
       b=hnp.arrays(np.float32, (3, 6), elements=_float32_over_the_range(F32_TINY, F32_MAX)),
       other=st.sampled_from([np.float32, np.float64]))
def test_float32_cosine_similarity_over_its_whole_range(a, b, other):
    """float32 samples are not scaled first: their squares and products must
    still neither overflow nor underflow, from subnormals to 3.4e38, nor
    when the other input is float64 (and scaled)."""
    b = b.astype(other)
    got = cosine_similarity(a, b)
    assert got.dtype == np.result_type(a, b)
    np.testing.assert_allclose(got, naive.cosine_broadcast(a, b), rtol=0, atol=tol(np.float32, 6))


@given(a=hnp.arrays(np.float32, (3, 6), elements=_float32_over_the_range(2.0**-100, 2.0**100)),
       b=hnp.arrays(np.float32, (3, 6), elements=_float32_over_the_range(2.0**-100, 2.0**100)),
       k=st.integers(-20, 20))
def test_float32_cosine_similarity_is_bit_exact_under_powers_of_two(a, b, k):
    base = cosine_similarity(a, b)
    np.testing.assert_array_equal(cosine_similarity(a * np.float32(2.0**k), b), base)
    np.testing.assert_array_equal(cosine_similarity(-a, b), -base)


@given(x=matrices(np.float64, 4, 6), c=st.floats(1e-3, 1e3))
def test_cosine_similarity_scale_invariance_any_positive_factor(x, c):
    y = x[::-1]
    np.testing.assert_allclose(cosine_similarity(c * x, y), cosine_similarity(x, y), rtol=0,
                               atol=tol(np.float64, 6))


def test_cosine_similarity_reduces_axis_and_size_one_dim_gives_ones():
    rng = np.random.default_rng(1)
    x, y = np.abs(rng.normal(size=(1, 2, 5, 5))), np.abs(rng.normal(size=(1, 2, 5, 5)))
    assert cosine_similarity(x, y, axis=1).shape == (1, 5, 5)
    ones = cosine_similarity(x, y, axis=0)  # one-component vectors of positive numbers
    assert ones.shape == (2, 5, 5)
    np.testing.assert_array_equal(ones, 1.0)
    per_channel = cosine_similarity(x, y, axis=(-2, -1))
    assert per_channel.shape == (1, 2)
    flat = cosine_similarity(x.reshape(1, 2, -1), y.reshape(1, 2, -1), axis=-1)
    np.testing.assert_allclose(per_channel, flat, rtol=0, atol=1e-15)


def test_cosine_similarity_norm_taken_on_broadcast_shape():
    # (1,) against (4,): a is [2, 2, 2, 2] once broadcast, like torch
    got = cosine_similarity(np.array([2.0]), np.array([1.0, 0.0, 0.0, 0.0]))
    assert got == pytest.approx(0.5, abs=1e-15)
    got = cosine_similarity(np.ones((3, 1, 1)), np.arange(12.0).reshape(3, 4, 1), axis=(1, 2))
    want = naive.cosine_broadcast(np.ones((3, 1, 1)), np.arange(12.0).reshape(3, 4, 1), (1, 2))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


def test_cosine_similarity_does_not_materialise_the_broadcast():
    rng = np.random.default_rng(0)
    n, m, d = 120, 150, 400
    a = rng.normal(size=(n, 1, d))
    b = rng.normal(size=(1, m, d))
    cosine_similarity(a[:2], b[:, :2])  # warm up
    got, peak = traced_peak(lambda: cosine_similarity(a, b))
    broadcast_bytes = n * m * d * 8
    inputs = (n + m) * d * 8
    assert peak < 8 * inputs + 8 * n * m * 8 < broadcast_bytes / 2
    an = a[:, 0] / np.linalg.norm(a[:, 0], axis=1, keepdims=True)
    bn = b[0] / np.linalg.norm(b[0], axis=1, keepdims=True)
    np.testing.assert_allclose(got, an @ bn.T, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype,big", [(np.float64, 1e308), (np.float32, 3e38)])
def test_cosine_similarity_overflow_safe(dtype, big):
    a = np.array([big, big, 0.5 * big], dtype=dtype)
    b = np.array([big, -0.25 * big, big], dtype=dtype)
    want = naive.cosine(a, b)  # exact, by scaling
    got = cosine_similarity(a, b)
    assert got.dtype == dtype
    assert abs(float(got) - want) <= tol(dtype, 3)
    tiny = np.array([1e-300, 2e-300], dtype=np.float64) if dtype == np.float64 else \
        np.array([1e-40, 2e-40], dtype=np.float32)
    assert float(cosine_similarity(tiny, tiny)) == pytest.approx(1.0, abs=tol(dtype, 2))
    if dtype == np.float64:
        # the largest magnitude subnormal, or of the largest binade: still
        # scaled exactly by a power of two
        smallest = float(np.finfo(np.float64).smallest_subnormal)
        subnormal = np.array([smallest, 2 * smallest, 0.0, -3 * smallest])
        assert cosine_similarity(subnormal, [1.0, 2.0, 0.0, -3.0]) == 1.0
        largest = np.array([np.finfo(np.float64).max, -0.5 * np.finfo(np.float64).max])
        assert cosine_similarity(largest, [2.0, -1.0]) == pytest.approx(1.0, abs=tol(dtype, 2))
        assert cosine_similarity(largest, subnormal[:2]) == pytest.approx(0.0, abs=tol(dtype, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_cosine_similarity_zero_nan_inf_and_empty(dtype):
    z, x = np.zeros(3, dtype), np.array([1.0, 2.0, 3.0], dtype)
    assert cosine_similarity(z, x) == 0.0
    assert cosine_similarity(z, x, fill=-2.0) == -2.0
    assert np.isnan(cosine_similarity(z, x, fill=np.nan))
    assert cosine_similarity(z, x, eps=1e-8) == 0.0
    one = np.ones(2, dtype)
    for bad in (np.nan, np.inf, -np.inf):
        assert np.isnan(cosine_similarity(np.array([bad, 1.0], dtype), one))
        assert np.isnan(cosine_similarity(np.array([bad, 1.0], dtype), one, eps=0.5))
    assert np.isnan(cosine_similarity(z, np.array([np.nan, 1.0, 1.0], dtype)))
    assert cosine_similarity(np.array([3.0, 4.0], dtype), np.array([4.0, 3.0], dtype), eps=10.0) == \
        pytest.approx(24.0 / 100.0, abs=tol(dtype, 2))
    assert cosine_similarity(np.zeros((2, 0)), np.zeros((2, 0)), fill=5.0).tolist() == [5.0, 5.0]
    assert cosine_similarity(np.zeros((0, 3)), np.zeros((1, 3))).shape == (0,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_topk_and_sets_of_no_rows_or_no_components(dtype):
    rows = np.ones((2, 3), dtype)
    for a, b, shape in ((np.ones((0, 3), dtype), rows, (0, 2)), (rows, np.ones((0, 3), dtype), (2, 0))):
        got = pairwise_cosine(a, b)
        assert got.shape == shape and got.dtype == dtype
    scores, indices = topk_cosine(np.ones((0, 3), dtype), rows, 2)
    assert scores.shape == indices.shape == (0, 2)
    assert scores.dtype == dtype and indices.dtype == np.int64
    # vectors of no components are zero vectors, as in cosine_similarity
    for measure in ("mean", "centroid", "greedy", "chamfer"):
        assert set_similarity(np.ones((2, 0), dtype), np.ones((3, 0), dtype), measure=measure) == \
            set_similarity(np.zeros((2, 1), dtype), np.zeros((3, 1), dtype), measure=measure)


def test_cosine_similarity_does_not_mutate_inputs():
    a = np.array([[3.0, 4.0], [1e300, 1e300]])
    b = a[::-1].copy()
    a0, b0 = a.copy(), b.copy()
    cosine_similarity(a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_sparse_matrices_are_refused_by_name():
    """scikit-learn's users pass SciPy sparse rows: a clear error with the
    way out, not NumPy's "dtype object"."""
    import scipy.sparse

    rows = scipy.sparse.random(5, 8, density=0.5, format="csr", random_state=1)
    for call, name in ((lambda: pairwise_cosine(rows), "a"),
                       (lambda: topk_cosine(np.ones((2, 8)), rows, 2), "corpus"),
                       (lambda: cosine_similarity(rows, rows), "a"),
                       (lambda: sliding_cosine(rows, np.ones(3)), "signal")):
        with pytest.raises(TypeError, match=rf"{name} is a SciPy sparse .*{name}\.toarray\(\)"):
            call()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(a=np.ones((2, 3)), b=np.ones((4, 3))), ValueError, "a and b must broadcast"),
        (dict(a=np.ones(3), b=np.ones(3), axis=1), ValueError, "axis=1 is out of bounds"),
        (dict(a=np.ones((2, 3)), b=np.ones((2, 3)), axis=(1, -1)), ValueError, "axis must not repeat"),
        (dict(a=np.ones(3), b=np.ones(3), axis=()), ValueError, "axis must name at least one"),
        (dict(a=np.ones(3), b=np.ones(3), axis=0.5), TypeError, "axis must be an integer"),
        (dict(a=np.ones((2, 3)), b=np.ones((2, 3)), axis=True), TypeError,
         "axis must be an integer or a tuple of integers; got True"),
        (dict(a=np.ones((2, 3)), b=np.ones((2, 3)), axis=(np.False_,)), TypeError,
         r"axis must be an integer or a tuple of integers; got np\.False_"),
        (dict(a=np.ones(3), b=np.ones(3), eps=-1.0), ValueError, "eps must be >= 0"),
        (dict(a=np.ones(3), b=np.ones(3), eps=np.inf), ValueError, "eps must be a finite"),
        (dict(a=np.ones(3) * 1j, b=np.ones(3)), TypeError, "a must be real-valued"),
        (dict(a=np.ones(3), b=np.array(["x"] * 3)), TypeError, "b must have a boolean"),
        (dict(a=1.0, b=2.0), ValueError, "both 0-d"),
        (dict(a=np.ones(3), b=np.ones(3), fill="x"), TypeError, "fill must be a real"),
    ],
)
def test_cosine_similarity_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cosine_similarity(**kwargs)


# ---------------------------------------------------------------------------
# pairwise_cosine


@tiled
@given(
    n=st.integers(1, 6), m=st.integers(1, 6), d=st.integers(1, 5),
    da=st.sampled_from(DTYPES), db=st.sampled_from(DTYPES),
    fill=st.sampled_from([0.0, 2.0, np.nan]),
    max_memory=st.sampled_from([None, 600, 2000]),
    data=st.data(),
)
def test_pairwise_matches_naive(n, m, d, da, db, fill, max_memory, data):
    a = data.draw(matrices(da, n, d))
    b = data.draw(matrices(db, m, d))
    got = pairwise_cosine(a, b, fill=fill, max_memory=max_memory)
    want = naive.pairwise_matrix(a, b, fill=fill)
    out_dtype = expected_dtype(da, db)
    assert got.dtype == out_dtype
    compute = np.float64 if out_dtype == np.float64 else np.float32
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol(out_dtype, d, compute))
    # |s| <= 1 wherever both rows are non-zero and finite (elsewhere: fill or NaN)
    def regular(x):
        x = np.asarray(x, dtype=np.float64)
        return np.any(x != 0, axis=1) & np.all(np.isfinite(x), axis=1)

    assert np.all(np.abs(got[np.outer(regular(a), regular(b))]) <= 1)


@tiled
@given(
    n=st.integers(1, 9), d=st.integers(1, 5), dtype=st.sampled_from([np.float32, np.float64]),
    max_memory=st.sampled_from([None, 500, 1500]), data=st.data(),
)
def test_pairwise_self_is_symmetric_with_unit_diagonal(n, d, dtype, max_memory, data):
    a = data.draw(matrices(dtype, n, d))
    got = pairwise_cosine(a, max_memory=max_memory)
    np.testing.assert_array_equal(got, got.T)
    nonzero = np.any(a != 0, axis=1)
    np.testing.assert_array_equal(np.diag(got)[nonzero], 1.0)
    np.testing.assert_array_equal(np.diag(got)[~nonzero], 0.0)
    want = naive.pairwise_matrix(a)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(np.dtype(dtype), d, dtype))
    assert np.all(np.abs(got) <= 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strided", [False, True])
def test_clip_equals_numpy_clip(dtype, strided):
    # Scores a rounding step past +-1 in a few rows, NaN in others: the
    # row-skipping pass must give np.clip's result, also on a strided tile.
    rng = np.random.default_rng(4)
    base = rng.uniform(-1, 1, size=(40, 70)).astype(dtype)
    above = np.nextafter(dtype(1), dtype(2))
    base[3, 5], base[3, 6], base[17, 69], base[25, 0] = above, -above, above, np.nan
    base[30, 2], base[30, 3] = np.nan, -above
    tile = np.array(base)
    view = tile[:, 10:60] if strided else tile
    _tiles.clip(view, _tiles._split_threads)
    want = np.array(base)
    target = want[:, 10:60] if strided else want
    np.clip(target, -1.0, 1.0, out=target)
    np.testing.assert_array_equal(tile, want)


@tiled
@given(a=matrices(np.float64, 4, 3), k=st.integers(-300, 300), sign=st.sampled_from([1.0, -1.0]))
def test_pairwise_row_scale_and_sign_invariance(a, k, sign):
    b = a[::-1] + 1.0
    base = pairwise_cosine(a, b)
    scaled = a.copy()
    scaled[1] *= sign * 2.0**k
    got = pairwise_cosine(scaled, b)
    expected = base.copy()
    expected[1] *= sign
    np.testing.assert_array_equal(got, expected)


@tiled
def test_pairwise_out_memmap_dtype_and_nonfinite(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(37, 5))
    b = rng.normal(size=(23, 5))
    a[4] = 0.0
    b[7, 2] = np.nan
    out = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=(37, 23))
    res = pairwise_cosine(a, b, out=out, max_memory=4000, fill=-5.0)
    assert res is out
    out.flush()
    want = naive.pairwise_matrix(a, b, fill=-5.0)
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), want, rtol=0, atol=tol(np.float32, 5, np.float32))
    assert np.isnan(res[:, 7]).all() and (res[4, np.arange(23) != 7] == -5.0).all()
    half = pairwise_cosine(a.astype(np.float32), b, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(float), want.clip(-1, 1) * (want != -5), rtol=0,
                               atol=np.finfo(np.float16).eps, equal_nan=True)


@pytest.mark.parametrize("max_memory", [None, "64KiB"])
@pytest.mark.parametrize("case", ["a into a", "a, b into a", "a, b into b"])
def test_pairwise_out_overlapping_an_input_gives_the_same_matrix(max_memory, case):
    """``out`` may be an input (square): the tiles read the input as it was,
    not tiles already written over it."""
    rng = np.random.default_rng(12)
    a = rng.normal(size=(150, 150))
    b = None if case == "a into a" else rng.normal(size=(150, 150))
    want = pairwise_cosine(a, b, max_memory=max_memory)
    target = b if case.endswith("into b") else a
    got = pairwise_cosine(a, b, out=target, max_memory=max_memory)
    assert got is target
    np.testing.assert_array_equal(got, want)


@tiled
def test_pairwise_self_memmap_tiled(tmp_path):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(41, 3)).astype(np.float32)
    out = np.memmap(tmp_path / "s.dat", mode="w+", dtype=np.float64, shape=(41, 41))
    pairwise_cosine(a, out=out, max_memory=1500)
    np.testing.assert_array_equal(out, out.T)
    np.testing.assert_allclose(out, naive.pairwise_matrix(a), rtol=0, atol=tol(np.float64, 3))


def real_stream_tiles(monkeypatch):
    """Undo the fixture's 3 x 5 stream tiles for a test on large inputs."""
    monkeypatch.setattr(config, "STREAM_ROWS", STREAM_TILE[0])
    monkeypatch.setattr(config, "STREAM_COLS", STREAM_TILE[1])
    monkeypatch.setattr(config, "TALL_FACTOR", TALL_FACTOR)


@tiled
@pytest.mark.parametrize("dtype, budget", [(np.float64, 2**20), (np.float32, 400_000)])
def test_pairwise_memory_bound(monkeypatch, dtype, budget):
    """float64 rows into a float32 ``out``: tiles are buffered; float32 rows:
    tiles are ``out``'s columns, clipped a row at a time (``np.clip`` of the
    view buffered some 60 KB a thread past the budget; found by an
    exploratory test)."""
    real_stream_tiles(monkeypatch)
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3000, 64)).astype(dtype)
    b = rng.normal(size=(2000, 64)).astype(dtype)
    out = np.empty((3000, 2000), dtype=np.float32)
    # Warm up with the same call: a few rows would not load every kernel it
    # takes (the clip of out's column tiles), and loading one is traced.
    pairwise_cosine(a, b, out=out, max_memory=budget)
    _, peak = traced_peak(lambda: pairwise_cosine(a, b, out=out, max_memory=budget))
    assert peak <= budget
    np.testing.assert_allclose(out[:50], naive.pairwise_matrix(a[:50], b), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.ones(3),), {}, ValueError, "a must be a 2-d array"),
        ((np.ones((2, 3)), np.ones((2, 4))), {}, ValueError, "same number of columns"),
        ((np.ones((2, 3)),), dict(out=np.empty((3, 3))), ValueError, "out has shape"),
        ((np.ones((2, 3)),), dict(out=np.empty((2, 2), np.float32), dtype=np.float64), ValueError, "out has dtype"),
        ((np.ones((2, 3)),), dict(out=[[0, 0], [0, 0]]), TypeError, "out must be a numpy.ndarray"),
        ((np.ones((2, 3)),), dict(dtype=np.int32), TypeError, "dtype must be float16"),
        ((np.ones((2, 3)),), dict(max_memory="lots"), ValueError, "max_memory must be"),
        ((np.ones((2, 3)),), dict(max_memory=1.5), ValueError, "max_memory must be a whole number"),
        ((np.ones((2, 3)),), dict(max_memory=[4096]), TypeError, "max_memory must be a number"),
        ((np.ones((2, 3)),), dict(max_memory=0), ValueError, "max_memory must be at least"),
        ((np.ones((200, 3)),), dict(max_memory=100), ValueError, "max_memory=100 bytes is too small"),
        ((np.ones((2, 3), complex),), {}, TypeError, "a must be real-valued"),
    ],
)
def test_pairwise_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pairwise_cosine(*args, **kwargs)


# ---------------------------------------------------------------------------
# topk_cosine


@st.composite
def search_problem(draw):
    """Corpus rows drawn from a few base directions, with exact duplicates and
    power-of-two rescalings (identical normalised rows): exact ties abound."""
    d = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32]))
    base = draw(matrices(dtype, draw(st.integers(1, 4)), d))
    m = draw(st.integers(1, 12))
    picks = draw(st.lists(st.integers(0, len(base) - 1), min_size=m, max_size=m))
    shifts = draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))
    corpus = np.stack([base[p] * (2 ** s if dtype != np.int32 else 1) for p, s in zip(picks, shifts)])
    corpus = corpus.astype(dtype)
    queries = draw(matrices(dtype, draw(st.integers(1, 5)), d))
    k = draw(st.integers(1, m))
    return queries, corpus, k


def check_topk(scores, idx, exact, corpus, k, atol, exclude_self=False):
    """``(scores, idx)`` is a top-k of the true cosines ``exact`` (float64,
    naive), allowing for rounding only where the true values are within
    ``atol`` of each other:

    * each row lists k distinct corpus rows (never itself with ``exclude_self``);
    * the scores are the true cosines of those rows, within ``atol``;
    * the lists are ordered best first, equal scores by increasing index, NaN last
      (the order of the returned scores is exact, no tolerance);
    * no row left out is better by more than ``atol`` than the k-th score;
    * exact ties (corpus rows with the same direction, as from duplicates or
      power-of-two rescalings) go to the lower index: a left-out row never has
      the direction of a chosen row of higher index.

    A stable argsort of any matrix within rounding of ``exact`` satisfies all
    of these; the score values may differ from one such matrix by rounding,
    since the BLAS calls of differently shaped tiles round differently."""
    n, m = exact.shape
    assert scores.shape == idx.shape == (n, k)
    direction = [naive.unit(row) for row in corpus]
    for r in range(n):
        chosen = idx[r].tolist()
        assert len(set(chosen)) == k and all(0 <= j < m for j in chosen)
        if exclude_self:
            assert r not in chosen
        np.testing.assert_allclose(scores[r], exact[r, chosen], rtol=0, atol=atol)
        for p in range(k - 1):
            s, t = scores[r, p], scores[r, p + 1]
            if np.isnan(s):
                assert np.isnan(t) and chosen[p] < chosen[p + 1]
            elif not np.isnan(t):
                assert s > t or (s == t and chosen[p] < chosen[p + 1])
        left_out = [j for j in range(m) if j not in chosen and not (exclude_self and j == r)]
        last = scores[r, k - 1]
        for j in left_out:
            if np.isnan(last):
                assert np.isnan(exact[r, j]) and j > chosen[-1]
                continue
            assert not exact[r, j] > last + atol
            for q in chosen:
                if np.array_equal(direction[j], direction[q]):
                    assert j > q, (r, j, q)


@tiled
@given(problem=search_problem(), max_memory=st.sampled_from([None, 700, 1500]))
def test_topk_is_stable_argsort_of_full_matrix(problem, max_memory):
    queries, corpus, k = problem
    scores, idx = topk_cosine(queries, corpus, k, max_memory=max_memory)
    exact = naive.pairwise_matrix(queries, corpus)
    d = queries.shape[1]
    compute = np.float64 if scores.dtype == np.float64 else np.float32
    check_topk(scores, idx, exact, corpus, k, tol(scores.dtype, d, compute))
    # With no near-ties (true gaps above rounding) the result is exactly the
    # stable argsort of the full matrix.
    full = pairwise_cosine(queries, corpus)
    want_s, want_i = naive.topk_from_matrix(full, k)
    gaps = np.diff(np.sort(exact, axis=1), axis=1)
    if np.all((gaps == 0) | (gaps > 4 * tol(scores.dtype, d, compute))):
        np.testing.assert_array_equal(idx, want_i)


@pytest.mark.parametrize("max_memory", [None, 700])
def test_float16_topk_ties_are_those_of_the_float16_scores(max_memory):
    """Scores equal once rounded to float16 tie (the lower index first), as
    in pairwise_cosine's float16 matrix, though their float32 products differ."""
    q = np.array([[1.0, 0.0]], np.float16)
    c = np.array([[1.0, 0.5], [1.0, 0.4995]], np.float16)
    assert np.float32(c[0, 1]) != np.float32(c[1, 1])
    scores, idx = topk_cosine(q, c, 2, max_memory=max_memory)
    assert scores[0, 0] == scores[0, 1] and idx.tolist() == [[0, 1]]
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(12, 8)).astype(np.float16)
    rows[6] = rows[2] * np.float16(1.0009765625)  # (the same direction, not the same float32 norm)
    scores, idx = topk_cosine(rows, None, 12, max_memory=max_memory)
    full = pairwise_cosine(rows)
    want_s, want_i = naive.topk_from_matrix(full, 12)
    np.testing.assert_array_equal(scores, want_s)
    np.testing.assert_array_equal(idx, want_i)


@tiled
@given(n=st.integers(2, 10), d=st.integers(1, 4), k=st.integers(1, 9),
       max_memory=st.sampled_from([None, 700]), data=st.data())
def test_topk_exclude_self(n, d, k, max_memory, data):
    assume(k <= n - 1)
    x = data.draw(matrices(np.float64, n, d))
    scores, idx = topk_cosine(x, None, k, exclude_self=True, max_memory=max_memory)
    check_topk(scores, idx, naive.pairwise_matrix(x, x), x, k, tol(np.float64, d),
               exclude_self=True)
    assert not np.any(idx == np.arange(n)[:, None])


@tiled
@pytest.mark.parametrize("k", [65, 140, 150])
@pytest.mark.parametrize("self_search", [False, True])
def test_long_topk_lists_merge_sorted_candidates(k, self_search):
    """Lists longer than ``INSERT_MAX_K`` take each row's candidates sorted
    and merged (inserted one at a time, k near the corpus size took time k
    times the columns): the same lists as the short ones where both reach,
    with exact ties (rescaled rows), NaN rows last, zero rows at the fill."""
    assert k > _embedding_kernels.INSERT_MAX_K
    rng = np.random.default_rng(11)
    base = rng.normal(size=(6, 5))
    corpus = base[rng.integers(0, 6, 150)] * 2.0 ** rng.integers(-3, 4, 150)[:, None]
    corpus[[3, 77, 149]] = np.nan
    corpus[[10, 90]] = 0.0
    queries = corpus if self_search else np.vstack([rng.normal(size=(5, 5)), corpus[[3, 10]]])
    args = (corpus, None) if self_search else (queries, corpus)
    exact = naive.pairwise_matrix(queries, corpus)
    for exclude_self in ([False, True] if self_search else [False]):
        kk = min(k, 149) if exclude_self else k
        scores, idx = topk_cosine(*args, kk, exclude_self=exclude_self)
        check_topk(scores, idx, exact, corpus, kk, tol(np.float64, 5), exclude_self=exclude_self)
        short_s, short_i = topk_cosine(*args, 64, exclude_self=exclude_self)
        np.testing.assert_array_equal(scores[:, :64], short_s)
        np.testing.assert_array_equal(idx[:, :64], short_i)


@tiled
def test_topk_self_match_and_nan_rank_last():
    x = np.array([[1.0, 0.0], [np.nan, 1.0], [1.0, 1.0], [0.0, 0.0]])
    scores, idx = topk_cosine(x, None, 4)
    assert idx[0].tolist() == [0, 2, 3, 1] and scores[0, 0] == 1.0
    assert np.isnan(scores[1]).all() and idx[1].tolist() == [0, 1, 2, 3]
    assert scores[2, 0] == 1.0 and idx[2, 0] == 2
    assert idx[3].tolist() == [0, 2, 3, 1] and (scores[3, :3] == 0).all()
    s, i = topk_cosine(x, None, 2, fill=-9.0)
    assert s[3].tolist() == [-9.0, -9.0] and i[3].tolist() == [0, 2]


@tiled
def test_topk_of_the_queries_object_equals_that_of_a_copy():
    # the same array passed twice is an equal corpus, not "the same rows"
    # (corpus=None): the result must not depend on object identity
    a = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    twice = topk_cosine(a, a, 3)
    copied = topk_cosine(a, a.copy(), 3)
    np.testing.assert_array_equal(twice[0], copied[0])
    np.testing.assert_array_equal(twice[1], copied[1])
    assert np.all(np.abs(twice[0][:, 0] - 1) <= 4 * np.finfo(np.float32).eps)
    assert np.all(topk_cosine(a, None, 1)[0] == 1.0)  # None: the exact self-match


@pytest.mark.parametrize("dtype, shapes, k, budget", [
    (np.float32, ((2000, 64), (6000, 64)), 10, 512 * 1024),
    (np.float16, ((2000, 64), (6000, 64)), 10, 512 * 1024),
    (np.float16, ((20000, 16), None), 3, 2**20),
])
def test_topk_memory_bound(monkeypatch, dtype, shapes, k, budget):
    """float16: the float32 copies of the inputs and the float32 lists
    behind the float16 scores are not counted (the docstring); each tile's
    rounded copy is (it took a search of 20000 rows 30% past the bound: an
    exploratory test)."""
    real_stream_tiles(monkeypatch)
    rng = np.random.default_rng(6)
    queries = rng.normal(size=shapes[0]).astype(dtype)
    corpus = None if shapes[1] is None else rng.normal(size=shapes[1]).astype(dtype)
    inputs = queries.nbytes + (0 if corpus is None else corpus.nbytes)
    topk_cosine(queries[:3], None if corpus is None else corpus[:30], 3, max_memory=budget)
    numba.get_num_threads()  # (Numba's threads started: its imports are no working memory)
    (scores, idx), peak = traced_peak(lambda: topk_cosine(queries, corpus, k,
                                                          max_memory=budget))
    results = scores.nbytes + idx.nbytes
    if dtype == np.float16:
        results += 2 * scores.nbytes + 2 * inputs
    assert peak - results <= budget
    want_s, want_i = naive.topk_from_matrix(
        pairwise_cosine(queries[:40], queries if corpus is None else corpus), k)
    if dtype == np.float32:
        np.testing.assert_array_equal(idx[:40], want_i)
    else:  # (float16 products may round to ties otherwise in another tile)
        np.testing.assert_allclose(scores[:40], want_s, rtol=0, atol=np.finfo(np.float16).eps)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.ones((2, 3)), np.ones((4, 3)), 5), {}, ValueError, r"k=5 is larger than the corpus: it has 4 rows"),
        ((np.ones((2, 3)), np.ones((0, 3)), 1), {}, ValueError, r"^corpus has no rows to rank \(no rows\)"),
        ((np.ones((1, 3)), None, 1), dict(exclude_self=True), ValueError,
         r"^corpus has no rows to rank \(one row, each query itself"),
        ((np.ones((4, 3)), None, 4), dict(exclude_self=True), ValueError, r"k=4 .* 4 rows minus the excluded"),
        ((np.ones((2, 3)), np.ones((4, 3)), 1), dict(exclude_self=True), ValueError, "N == M"),
        ((np.ones((2, 3)), np.ones((4, 3)), 0), {}, ValueError, "k must be an integer >= 1"),
        ((np.ones((2, 3)), np.ones((4, 3)), 1.0), {}, TypeError, "k must be an integer"),
        ((np.ones((2, 3)), np.ones((4, 2)), 1), {}, ValueError, "queries and corpus must have the same"),
        ((np.ones(3), np.ones((4, 3)), 1), {}, ValueError, "queries must be a 2-d"),
        ((np.ones((2, 3)), np.ones((4, 3)), 1), dict(exclude_self="yes"), TypeError, "exclude_self"),
        ((np.ones((2, 3)), np.ones((4, 3)), 1), dict(max_memory="1 parsec"), ValueError, "max_memory"),
    ],
)
def test_topk_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        topk_cosine(*args, **kwargs)


# ---------------------------------------------------------------------------
# set_similarity


def set_weights(data, n, m):
    """Drawn positive weights for sets of ``n`` and ``m`` rows."""
    w = st.floats(0.1, 10.0)
    return (np.array(data.draw(st.lists(w, min_size=n, max_size=n))),
            np.array(data.draw(st.lists(w, min_size=m, max_size=m))))


@tiled
@given(n=st.integers(1, 5), m=st.integers(1, 5), d=st.integers(1, 4),
       measure=st.sampled_from(["mean", "centroid", "greedy", "chamfer"]),
       weighted=st.booleans(), data=st.data())
def test_set_similarity_matches_naive(n, m, d, measure, weighted, data):
    a = data.draw(matrices(np.float64, n, d))
    b = data.draw(matrices(np.float32, m, d))
    wa, wb = set_weights(data, n, m) if weighted else (None, None)
    got = set_similarity(a, b, measure=measure, weights_a=wa, weights_b=wb)
    want = naive.set_similarity(a, b, measure, wa, wb)
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=0,
                               atol=tol(np.float64, d) * 4)


@given(n=st.integers(1, 6), m=st.integers(1, 6), d=st.integers(1, 4), data=st.data())
def test_mean_set_similarity_is_dot_of_mean_unit_vectors(n, m, d, data):
    a = data.draw(matrices(np.float64, n, d))
    b = data.draw(matrices(np.float64, m, d))
    unit = lambda x: x / np.where(np.linalg.norm(x, axis=1, keepdims=True) == 0, 1,  # noqa: E731
                                  np.linalg.norm(x, axis=1, keepdims=True))
    want = unit(a).mean(axis=0) @ unit(b).mean(axis=0)
    assert set_similarity(a, b) == pytest.approx(want, abs=tol(np.float64, d))
    assert set_similarity(a, b) == pytest.approx(pairwise_cosine(a, b).mean(), abs=tol(np.float64, d))


@pytest.mark.parametrize("measure", ["mean", "centroid", "greedy", "chamfer"])
def test_set_similarity_weights_near_the_float64_limit(measure):
    """Weights are relative: finite weights whose sum overflows, or whose
    shares would be subnormal, give the score of any power-of-two copy."""
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(9, 5)), rng.normal(size=(7, 5))
    wa, wb = rng.uniform(0.5, 2.0, 9), rng.uniform(0.5, 2.0, 7)
    base = set_similarity(a, b, measure=measure, weights_a=wa, weights_b=wb)
    for shift in (1022, -1020):
        with np.errstate(over="ignore"):
            assert not np.isfinite(np.sum(np.ldexp(wa, 1022)))
        got = set_similarity(a, b, measure=measure, weights_a=np.ldexp(wa, shift),
                             weights_b=np.ldexp(wb, shift // 2))
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(base, float), rtol=0,
                                   atol=1e-14)
    equal = set_similarity(a, b, measure=measure, weights_a=np.full(9, 1e308))
    np.testing.assert_allclose(np.asarray(equal, float),
                               np.asarray(set_similarity(a, b, measure=measure), float),
                               rtol=0, atol=1e-14)


@tiled
def test_best_match_set_similarity_stays_within_max_memory():
    """The weights and each row's best cosine, arrays of N + M values held
    while the tiles are scored, were left out of the budget: 1.24 times
    ``max_memory`` at 2 MiB for 20000 rows a side (an exploratory test).
    The first call starts the threads and compiles, outside the measured
    one."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    budget = 200_000
    want = set_similarity(a, b, measure="greedy")
    set_similarity(a, b, measure="greedy", max_memory=budget)
    got, peak = traced_peak(
        lambda: set_similarity(a, b, measure="greedy", max_memory=budget))
    assert peak <= budget
    assert got == want


def test_set_similarity_mask_equals_dropping_rows():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    mask_a = np.array([1, 1, 0, 1, 0, 1], bool)
    mask_b = np.array([0, 1, 1, 1, 1], bool)
    padded = a.copy()
    padded[~mask_a] = np.nan  # padding is never looked at
    for measure in ["mean", "centroid", "chamfer"]:
        assert set_similarity(padded, b, measure=measure, mask_a=mask_a, mask_b=mask_b) == \
            pytest.approx(set_similarity(a[mask_a], b[mask_b], measure=measure), abs=1e-14)
    got = set_similarity(padded, b, measure="greedy", mask_a=mask_a, mask_b=mask_b)
    want = set_similarity(a[mask_a], b[mask_b], measure="greedy")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert np.isnan(set_similarity(padded, b))


@pytest.mark.parametrize("measure", ["mean", "centroid", "greedy", "chamfer"])
def test_set_similarity_ignores_the_weights_of_masked_rows(measure):
    """Masked rows are ignored entirely, their weights too (padding's IDF
    weights are often 0/0): a NaN or negative weight under the mask is no
    error, and the score is that of the rows kept."""
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    mask = np.array([True, True, True, False])
    for padding_weight in (np.nan, -1.0, np.inf):
        weights = np.array([1.0, 2.0, 0.5, padding_weight])
        got = set_similarity(a, b, measure=measure, weights_a=weights, mask_a=mask)
        want = set_similarity(a[:3], b, measure=measure, weights_a=weights[:3])
        np.testing.assert_array_equal(np.asarray(got, float), np.asarray(want, float))
    with pytest.raises(ValueError, match=r"weights_a must be finite and >= 0 \(on the unmasked"):
        set_similarity(a, b, measure=measure, weights_a=[1.0, np.nan, 1.0, 1.0], mask_a=mask)


@pytest.mark.parametrize("measure", ["mean", "centroid"])
def test_a_nan_row_of_tiny_positive_weight_still_makes_the_score_nan(measure):
    """A weight above 0 counts however small beside the others (its share
    below the least float64): the row's NaN makes the score NaN, and a
    finite row of such a weight changes the score by no more than its
    share."""
    a = np.array([[1.0, 0.0], [np.nan, 1.0]])
    b = np.array([[1.0, 1.0]])
    for weights in ([1e300, 1e-30], [1e10, 5e-324], [1.0, 1e-320]):
        assert np.isnan(set_similarity(a, b, measure=measure, weights_a=weights))
    finite = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(
        set_similarity(finite, b, measure=measure, weights_a=[1e300, 1e-30]),
        set_similarity(finite[:1], b, measure=measure))


@tiled
def test_set_similarity_greedy_tiled_memory_and_identity():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(300, 16))
    # (the weights and each row's best count in it: 20000 bytes no longer hold them)
    p, r, f1 = set_similarity(a, a[::-1], measure="greedy", max_memory=30000)
    assert p == pytest.approx(1.0, abs=1e-14) and r == pytest.approx(1.0, abs=1e-14)
    assert f1 == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(measure="median"), ValueError, "measure must be one of"),
        (dict(weights_a=[1.0, 2.0]), ValueError, r"weights_a must have shape \(3,\)"),
        (dict(weights_b=[-1.0, 1.0]), ValueError, "weights_b must be finite and >= 0"),
        (dict(weights_a=[0.0, 0.0, 0.0]), ValueError, "weights_a must not all be zero"),
        (dict(mask_a=[1, 0, 1]), TypeError, "mask_a must be a boolean"),
        (dict(mask_b=[False, False]), ValueError, r"b has no rows to compare \(after mask_b\)"),
        (dict(mask_b=[True]), ValueError, r"mask_b must have shape \(2,\)"),
    ],
)
def test_set_similarity_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        set_similarity(np.ones((3, 2)), np.ones((2, 2)), **kwargs)


def test_an_empty_set_without_a_mask_is_named_without_one():
    with pytest.raises(ValueError, match=r"^a has no rows to compare\.$"):
        set_similarity(np.zeros((0, 4)), np.ones((2, 4)))


@tiled
@pytest.mark.parametrize(
    "dtype,scale",
    [(np.float64, 1e307), (np.float64, 1e-305), (np.float32, 1e37), (np.float32, 1e-42)],
)
def test_matrix_functions_overflow_and_underflow_safe(dtype, scale):
    """Rows near the largest float (or deep in the subnormals) give the same
    cosines as the same rows at unit scale."""
    base = np.array([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 1.0, 0.5], [0.0, 0.0, 9.0]])
    big = (base * scale).astype(dtype)
    unit = big.astype(np.float64) / scale  # the rows actually stored, at unit scale
    want = naive.pairwise_matrix(unit)
    compute = np.float64 if dtype == np.float64 else np.float32
    # float32 subnormals keep only a few significant bits: compare with what is stored
    atol = tol(np.dtype(dtype), 3, compute)
    got = pairwise_cosine(big)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    np.testing.assert_allclose(pairwise_cosine(big, big[::-1]), want[:, ::-1], rtol=0, atol=atol)
    scores, idx = topk_cosine(big, None, 2, exclude_self=True)
    np.testing.assert_allclose(scores, np.take_along_axis(want, idx, 1), rtol=0, atol=atol)
    assert set_similarity(big, big, measure="greedy").f1 == pytest.approx(1.0, abs=atol)
    assert set_similarity(big, big[:2], measure="centroid") == pytest.approx(
        naive.cosine(unit.mean(0), unit[:2].mean(0)), abs=atol)


def test_memory_bounds_and_seeds_out_of_range_are_refused_by_name():
    from cosim_np import scaled_cosine_loss

    a = np.random.default_rng(0).normal(size=(6, 4))
    with pytest.raises(ValueError, match=r"max_memory must be a finite number of bytes; got '1e400KB'"):
        pairwise_cosine(a, max_memory="1e400KB")
    with pytest.raises(ValueError, match=r"rng, a seed, must be a non-negative integer; got -1"):
        scaled_cosine_loss(a, a, shuffle=True, rng=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_corpus_of_one_row_scores_as_in_a_pair(dtype):
    """A one-row corpus (a Dask corpus's last block may be one) is a BLAS
    product of two columns, as every other tile is, not gemv: its scores have
    the bits of the same row's in a corpus of that row twice."""
    rng = np.random.default_rng(0)
    queries = (rng.normal(size=(40, 37)) + 3).astype(dtype)
    row = rng.normal(size=(1, 37)).astype(dtype) + 3
    pair = np.concatenate((row, row))
    one_s, one_i = topk_cosine(queries, row, 1)
    pair_s, _ = topk_cosine(queries, pair, 1)
    np.testing.assert_array_equal(one_s, pair_s)
    np.testing.assert_array_equal(one_i, 0)
    np.testing.assert_array_equal(pairwise_cosine(queries, row)[:, 0],
                                  pairwise_cosine(queries, pair)[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_fill_past_the_results_range_is_inf_with_no_warning(dtype):
    """As in the sliding functions: ``fill=1e300`` for float32 or float16
    results is inf, silently (NumPy's cast warned from the tiles)."""
    z = np.zeros((2, 3), dtype)
    z[1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = (cosine_similarity(z, z, fill=1e300), pairwise_cosine(z, fill=1e300),
               topk_cosine(z, z, 2, fill=1e300)[0])
    for scores in got:
        assert scores.dtype == dtype and np.isinf(scores).sum() == scores.size - 1


def test_tiles_are_clipped_by_one_compiled_call_each(monkeypatch):
    """A corpus of one row (its doubled product's column, a copy) and an
    ``out`` whose rows are contiguous but not its whole: each tile's clip is
    one compiled call (per thread's share), not one per row, which cost
    a Python loop's turn each (3x the whole product: an exploratory test)."""
    from cosim_np._cpu import tiles

    calls = []
    real = tiles.kernels.clip_rows
    monkeypatch.setattr(tiles.kernels, "clip_rows", lambda tile: (calls.append(tile.shape),
                                                                  real(tile)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 16))
    row = rng.standard_normal((1, 16))
    got = pairwise_cosine(x, row)
    out = np.empty((5000, 9))[:, :8]
    pairwise_cosine(x, np.concatenate([row] * 8), out=out)
    assert len(calls) < 100, len(calls)
    np.testing.assert_allclose(out[:, :1], got, rtol=0, atol=1e-15)
    np.testing.assert_allclose(got[:, 0], naive.pairwise_matrix(x, row)[:, 0], rtol=0, atol=1e-15)
