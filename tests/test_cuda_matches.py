"""find_matches on device inputs: the scores come from the CUDA
sliding_cosine, the selection runs on the host and the result is NumPy.

As tests/test_cuda.py: Numba's CUDA simulator (see conftest.py) with tiny
launch sizes, or a real GPU with ``COSIM_REAL_GPU=1``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import demo as seed000
from cosim_np import find_matches, sliding_cosine
from tests import naive
from tests.test_matches import assert_same, mad_threshold

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
# the simulator's example budget, tiny launches (autouse) and the transfers
from tests.test_cuda import EXAMPLES, on_gpu, small_launches, to_host  # noqa: E402, F401


@EXAMPLES
@given(n=st.integers(6, 30), m=st.integers(1, 4), shape=st.sampled_from(["one", "bank", "channels"]),
       batch=st.integers(1, 2), mode=st.sampled_from(["valid", "same", "full", "causal"]),
       k=st.one_of(st.none(), st.integers(0, 3)), threshold=st.sampled_from([None, 0.4, "mad"]),
       sign=st.sampled_from(["both", "positive", "negative"]), seed=st.integers(0, 2**31))
def test_device_inputs_equal_the_definition_on_the_device_scores(n, m, shape, batch, mode, k, threshold,
                                                                  sign, seed):
    rng = np.random.default_rng(seed)
    # rounded values: exact ties and plateaus
    if shape == "channels":
        signal = np.round(rng.standard_normal((batch, 2, n)))
        kernel = np.round(rng.standard_normal((2, 2, m)))
    else:
        signal = np.round(rng.standard_normal((batch, n)))
        kernel = np.round(rng.standard_normal((2, m) if shape == "bank" else m))
    threshold = mad_threshold if threshold == "mad" else threshold
    options = dict(k=k, threshold=threshold, sign=sign, mode=mode)
    got = find_matches(on_gpu(signal), kernel, **options)
    assert isinstance(got.index, np.ndarray) and isinstance(got.score, np.ndarray)
    scores = to_host(sliding_cosine(on_gpu(signal), kernel, mode=mode))
    assert_same(got, naive.find_matches(signal, kernel, scores=scores, **options))
    # backend="cuda" with host arrays: the same
    again = find_matches(signal, kernel, backend="cuda", **options)
    np.testing.assert_array_equal(again.index, got.index)
    np.testing.assert_array_equal(again.score, got.score)


def test_seed000_motifs_on_the_device():
    signal, regions = seed000.motif_signal()
    found = find_matches(on_gpu(signal), seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    ends = [region.start + len(seed000.KERNEL) - 1 for region in regions]
    assert sorted(found.index.tolist()) == ends[:3]
    assert found.score[found.index == ends[1]].tolist() == [-1.0]


def test_lists_on_the_device_path_are_arrays_as_on_the_cpu():
    """backend='cuda' with a list signal (copied to the device, as every
    function does): the CPU's matches, along one axis and over two."""
    signal = [0.0, 1, 2, 3, 0, -1, -2, -3, 0]
    for args, options in (((signal, [1.0, 2.0, 3.0]), dict()),
                          (([signal, signal[::-1]], [[1.0, 2.0, 3.0]]), dict(axis=(0, 1)))):
        got = find_matches(*args, backend="cuda", **options)
        want = find_matches(*args, backend="cpu", **options)
        assert len(want)
        for name in ("index", "score", "kernel", "batch"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_device_errors_name_the_parameter():
    signal = on_gpu(np.arange(20.0))
    with pytest.raises(ValueError, match="k"):
        find_matches(signal, [1.0, 2.0], k=-1)
    with pytest.raises(TypeError, match="threshold"):
        find_matches(signal, [1.0, 2.0], threshold="high")
    with pytest.raises(ValueError, match="sign"):
        find_matches(signal, [1.0, 2.0], sign="up")
    with pytest.raises(TypeError, match="backend='cpu'"):
        find_matches(signal, [1.0, 2.0], backend="cpu")


@pytest.mark.parametrize("shape", ["one", "bank", "channels"])
@pytest.mark.parametrize("mode", ["valid", "same", "causal"])
def test_centered_device_matches_equal_the_cpu(shape, mode):
    """center=True (issue 16) on device inputs: motifs riding on an offset
    and a drift are found where the CPU finds them, with its scores (to
    rounding), and the selection is the definition's on the device scores."""
    rng = np.random.default_rng(len(shape) + len(mode))
    m, n = 6, 90
    channels = (2,) if shape == "channels" else ()
    kernel = rng.standard_normal({"one": (m,), "bank": (2, m), "channels": (2, 2, m)}[shape])
    motif = kernel if shape == "one" else kernel[0]
    signal = 30.0 + 0.05 * np.arange(n) + rng.standard_normal((2,) + channels + (n,))
    # a scaled and shifted copy (a Pearson correlation of 1), and a noisy one
    signal[0, ..., 10 : 10 + m] = 3.0 * motif + 50.0
    signal[0, ..., 47 : 47 + m] = 0.5 * motif - 8.0 + 0.05 * rng.standard_normal(motif.shape)
    options = dict(k=4, threshold=0.2, mode=mode, center=True)
    got = find_matches(on_gpu(signal), kernel, **options)
    cpu = find_matches(signal, kernel, **options)
    np.testing.assert_array_equal(got.index, cpu.index)
    np.testing.assert_array_equal(got.kernel, cpu.kernel)
    np.testing.assert_array_equal(got.batch, cpu.batch)
    np.testing.assert_allclose(got.score, cpu.score, rtol=0, atol=1e-12)
    assert got.score.dtype == cpu.score.dtype
    first = got.batch[:, 0] == 0
    left = naive.padding(mode, m - 1)[0]
    assert got.score[first][0] == pytest.approx(1.0, abs=1e-12)
    assert list(got.index[first][:2] - left) == [10, 47] and list(got.kernel[first][:2]) == [0, 0]
    scores = to_host(sliding_cosine(on_gpu(signal), kernel, mode=mode, center=True))
    plain = {key: value for key, value in options.items() if key != "center"}
    assert_same(got, naive.find_matches(signal, kernel, scores=scores, **plain))


def test_a_dask_signal_is_scored_block_by_block_on_the_gpu(monkeypatch):
    """``backend="cuda"`` with a Dask signal takes the Dask path, each
    block's scores on the GPU (as ``sliding_cosine`` does): it handed the
    whole signal to one CUDA call, computed on the client."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    from cosim_np import _backend

    signal = np.random.default_rng(0).standard_normal((2, 3000))
    lazy = da.from_array(signal, chunks=(1, 1000))
    seen = []
    real = _backend.cuda_impl

    def spy(name):
        implementation = real(name)

        def call(*args, **kwargs):
            seen.append((name, type(args[0]).__name__, np.shape(args[0])))
            return implementation(*args, **kwargs)
        return call

    monkeypatch.setattr(_backend, "cuda_impl", spy)
    kernel = [1.0, 2.0, 3.0]
    # (one block at a time: the simulator swaps a module global while a kernel runs)
    with dask.config.set(scheduler="synchronous"):
        got = find_matches(lazy, kernel, k=2, backend="cuda", method="direct")
    assert seen and all(kind == "ndarray" and shape[-1] <= 3000 and shape[0] == 1
                        for _, kind, shape in seen), seen
    want = find_matches(signal, kernel, k=2, backend="cuda")
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.batch, want.batch)
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-12)
