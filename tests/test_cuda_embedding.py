"""The GPU paths of the embedding functions that tests/test_cuda.py does not
cover: set_similarity, scaled_cosine and scaled_cosine_loss on the device,
cosine_similarity's ``out=``, and their dispatch.

As tests/test_cuda.py: Numba's CUDA simulator (see conftest.py) with tiny
launch sizes, or a real GPU with ``COSIM_REAL_GPU=1``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import (
    GreedyMatch,
    cosine_similarity,
    scaled_cosine,
    scaled_cosine_loss,
    set_similarity,
)
from tests.test_embedding import matrices, set_weights, tol

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
# the simulator's example budget, tiny launches (autouse) and the transfers
from tests.test_cuda import EXAMPLES, on_gpu, small_launches, to_host  # noqa: E402, F401

MEASURES = ["mean", "centroid", "greedy", "chamfer"]


def as_tuple(score):
    return tuple(score) if isinstance(score, GreedyMatch) else (score,)


# ---------------------------------------------------------------------------
# set_similarity


@EXAMPLES
@given(n=st.integers(1, 7), m=st.integers(1, 7), d=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64, np.int8]),
       measure=st.sampled_from(MEASURES), weighted=st.booleans(), data=st.data())
def test_set_similarity_matches_the_cpu(n, m, d, dtype, measure, weighted, data):
    a = data.draw(matrices(dtype, n, d))
    b = data.draw(matrices(np.float64 if dtype == np.float64 else dtype, m, d))
    wa, wb = set_weights(data, n, m) if weighted else (None, None)
    cpu = set_similarity(a, b, measure=measure, weights_a=wa, weights_b=wb)
    for x, y, backend in ((a, b, "cuda"), (on_gpu(a), on_gpu(b), "auto")):
        got = set_similarity(x, y, measure=measure, weights_a=wa, weights_b=wb, backend=backend)
        assert type(got) is type(cpu)
        for g, c in zip(as_tuple(got), as_tuple(cpu)):
            assert isinstance(g, np.generic) and g.dtype == c.dtype
        compute = np.float64 if cpu_dtype(cpu) == np.float64 else np.float32
        np.testing.assert_allclose(np.array(as_tuple(got), np.float64),
                                   np.array(as_tuple(cpu), np.float64), rtol=0,
                                   atol=4 * tol(cpu_dtype(cpu), d, compute))


def cpu_dtype(score):
    return as_tuple(score)[0].dtype


@pytest.mark.parametrize("measure", MEASURES)
def test_set_similarity_masks_nan_rows_and_strided_inputs(measure):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((9, 5))
    b = rng.standard_normal((6, 5))
    a[[2, 7]] = np.nan  # masked: never looked at
    runs = np.ones(9, bool)
    runs[[2, 7]] = False  # keeps three runs of rows: gathered through the host
    tail = np.ones(6, bool)
    tail[4:] = False  # padding at the end: one run, a view on the device
    want = set_similarity(a[runs], b[tail], measure=measure)
    got = set_similarity(on_gpu(a), on_gpu(b), measure=measure, mask_a=runs, mask_b=tail)
    np.testing.assert_allclose(as_tuple(got), as_tuple(want), rtol=0, atol=1e-14)
    assert all(np.isnan(as_tuple(set_similarity(on_gpu(a), b, measure=measure, backend="cuda"))))
    # a reversed, strided device view reads the same rows
    view = on_gpu(np.vstack([b, b]))[::-2]
    want = set_similarity(np.vstack([b, b])[::-2], a[runs], measure=measure)
    got = set_similarity(view, on_gpu(a[runs]), measure=measure)
    np.testing.assert_allclose(as_tuple(got), as_tuple(want), rtol=0, atol=1e-14)


def test_set_similarity_zero_rows_ties_and_errors():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]], np.float32)
    b = np.array([[0.0, 3.0], [1.0, 1.0]], np.float32)
    for measure in MEASURES:
        got = set_similarity(on_gpu(a), on_gpu(b), measure=measure)
        want = set_similarity(a, b, measure=measure)
        np.testing.assert_allclose(as_tuple(got), as_tuple(want), rtol=0, atol=1e-6)
        assert as_tuple(got)[0].dtype == np.float32
    with pytest.raises(ValueError, match="measure must be one of"):
        set_similarity(on_gpu(a), b, measure="median")
    with pytest.raises(ValueError, match="same number of columns"):
        set_similarity(on_gpu(a), np.ones((2, 3)))
    with pytest.raises(ValueError, match="b has no rows to compare"):
        set_similarity(on_gpu(a), on_gpu(b), mask_b=np.zeros(2, bool))
    with pytest.raises(TypeError, match="is a CUDA device array"):
        set_similarity(on_gpu(a), b, backend="cpu")


# ---------------------------------------------------------------------------
# scaled_cosine and scaled_cosine_loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scaling", ["minmax", "zscore", None])
def test_scaled_cosine_on_the_device(dtype, scaling):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 3)).astype(dtype)
    b = rng.standard_normal((6, 3)).astype(dtype)
    g = rng.standard_normal(6)
    want = scaled_cosine(a, b, scaling=scaling, return_grad=True, grad_output=g)
    got = scaled_cosine(on_gpu(a), on_gpu(b)[::-1][::-1], scaling=scaling, return_grad=True,
                        grad_output=on_gpu(g))
    for x, y in zip(got, want):
        assert cuda.devicearray.is_cuda_ndarray(x)
        np.testing.assert_array_equal(to_host(x), y)
    host = scaled_cosine(a, b, scaling=scaling, backend="cuda")
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, want[0])


def test_scaled_cosine_loss_on_the_device():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((8, 4)), rng.standard_normal((8, 4))
    want = scaled_cosine_loss(a, b, shuffle=True, rng=3, return_grad=True)
    got = scaled_cosine_loss(on_gpu(a), on_gpu(b), shuffle=True, rng=3, return_grad=True)
    assert to_host(got[0]).shape == ()
    for x, y in zip(got, want):
        np.testing.assert_array_equal(to_host(x), y)
    assert scaled_cosine_loss(a, b, backend="cuda") == scaled_cosine_loss(a, b)
    with pytest.raises(ValueError, match="same shape"):
        scaled_cosine_loss(on_gpu(a), b[:3])
    with pytest.raises(TypeError, match="is a CUDA device array"):
        scaled_cosine_loss(a, on_gpu(b), backend="cpu")


# ---------------------------------------------------------------------------
# cosine_similarity's out=, and the documentation of the backends


def test_cosine_similarity_out_on_the_device():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((4, 1, 3)), rng.standard_normal((1, 5, 3))
    out = np.empty((4, 5), np.float32)
    assert cosine_similarity(on_gpu(a), on_gpu(b), out=out) is out
    np.testing.assert_allclose(out, cosine_similarity(a, b), rtol=0, atol=1e-6)
    scalar = np.empty(())
    assert cosine_similarity([1.0, 0.0], [1.0, 1.0], out=scalar, backend="cuda") is scalar
    assert float(scalar) == pytest.approx(2**-0.5)
    with pytest.raises(ValueError, match="out has shape"):
        cosine_similarity(on_gpu(a), b, out=np.empty((5, 4)))


def test_the_new_functions_document_their_gpu_path():
    for func in (set_similarity, scaled_cosine, scaled_cosine_loss):
        assert "backend : {'auto', 'cpu', 'cuda'}" in func.__doc__
        assert "On the GPU" in func.__doc__
