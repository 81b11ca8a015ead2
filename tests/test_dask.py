"""The sliding functions on Dask arrays (``cosim_np._dask``): lazy results
equal to the in-memory ones, bit for bit with ``method="direct"`` and for
``windowed_norm``, for any chunking, mode, dilation, axis, bank and
multi-channel kernel; on the threaded scheduler and on a
``dask.distributed.LocalCluster`` of worker processes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import sharpen, sliding_cosine, windowed_norm
from tests.test_sliding import tolerance

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

MODES = ["valid", "same", "full", "causal"]


@st.composite
def chunked_signal(draw, max_rows=3, max_n=400):
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((rows, n)).astype(dtype)
    # a loud stretch and an exact zero, so the windows' sums of squares vary
    if n > 10:
        start = draw(st.integers(0, n - 5))
        x[:, start : start + 5] *= 1e6
        x[:, draw(st.integers(0, n - 1))] = 0
    chunks = (draw(st.integers(1, rows)), draw(st.integers(1, n)))
    return x, chunks


@given(chunked_signal(), st.integers(1, 12), st.integers(1, 3), st.sampled_from(MODES),
       st.booleans(), st.sampled_from([1.0, 2.0]))
def test_direct_and_norms_equal_the_in_memory_results_bit_for_bit(signal, m, dilation, mode, bank,
                                                                  sharpness):
    x, chunks = signal
    span = (m - 1) * dilation
    if mode == "valid" and x.shape[1] <= span:
        with pytest.raises(ValueError, match="longer than the signal"):
            sliding_cosine(da.from_array(x, chunks=chunks), np.ones(m), dilation=dilation)
        return
    rng = np.random.default_rng(m)
    kernel = rng.standard_normal((3, m) if bank else m)
    lazy = sliding_cosine(da.from_array(x, chunks=chunks), kernel, mode=mode, dilation=dilation,
                          sharpness=sharpness, method="direct")
    want = sliding_cosine(x, kernel, mode=mode, dilation=dilation, sharpness=sharpness,
                          method="direct")
    assert isinstance(lazy, da.Array) and lazy.shape == want.shape and lazy.dtype == want.dtype
    np.testing.assert_array_equal(lazy.compute(), want)
    norms = windowed_norm(da.from_array(x, chunks=chunks), m, dilation=dilation, mode=mode)
    np.testing.assert_array_equal(norms.compute(), windowed_norm(x, m, dilation=dilation, mode=mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [999, 4096, 70_000])
def test_long_signals_across_many_tiles(mode, chunk):
    """Blocks of whole tiles: chunks shorter than a tile, or than the span,
    are merged; the FFT method agrees to its accuracy."""
    x = np.random.default_rng(1).standard_normal(200_000).astype(np.float32)
    x[50_000:50_100] *= 1e5
    lazy = da.from_array(x, chunks=chunk)
    for kernel, method in [(np.arange(1.0, 9.0), "direct"), (np.hanning(600), "fft"),
                           (np.random.default_rng(2).standard_normal((4, 300)), "fft")]:
        got = sliding_cosine(lazy, kernel, mode=mode, method=method).compute()
        want = sliding_cosine(x, kernel, mode=mode, method=method)
        if method == "direct":
            np.testing.assert_array_equal(got, want)
        else:
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float32, 600))


def test_other_axes_and_leading_chunks():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 2, 3))
    lazy = da.from_array(x, chunks=(70, 1, 2))
    bank = rng.standard_normal((5, 7))
    for axis in (0, -3):
        got = sliding_cosine(lazy, bank, axis=axis, mode="same")
        want = sliding_cosine(x, bank, axis=axis, mode="same")
        assert got.shape == want.shape == (5, 500, 2, 3)
        np.testing.assert_array_equal(got.compute(), want)
    np.testing.assert_array_equal(windowed_norm(lazy, 4, axis=0, dilation=3).compute(),
                                  windowed_norm(x, 4, axis=0, dilation=3))


def test_multichannel_kernels_rechunk_the_channel_axis():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 3000))
    kernel = rng.standard_normal((4, 3, 20))
    lazy = da.from_array(x, chunks=(1, 1, 700))  # channels split: rechunked
    got = sliding_cosine(lazy, kernel, mode="causal", dilation=2)
    assert got.chunks[1] == (4,)
    np.testing.assert_array_equal(got.compute(), sliding_cosine(x, kernel, mode="causal", dilation=2))


def test_banks_along_any_axis():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((400, 3))
    bank = rng.standard_normal((5, 9))
    lazy = da.from_array(x, chunks=(64, 2))
    got = sliding_cosine(lazy, bank, axis=0, mode="full")
    want = sliding_cosine(x, bank, axis=0, mode="full")
    assert got.shape == want.shape == (5, 408, 3)
    np.testing.assert_array_equal(got.compute(), want)


def test_sharpen_and_dtypes():
    values = np.linspace(-1, 1, 101).astype(np.float16)
    got = sharpen(da.from_array(values, chunks=30), 1.7)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.compute(), sharpen(values, 1.7))
    ints = da.from_array(np.arange(50, dtype=np.int16), chunks=7)
    assert sliding_cosine(ints, [1.0, 2.0]).dtype == np.float64
    assert windowed_norm(ints, 3).compute().dtype == np.float64


def test_errors_are_raised_when_the_graph_is_built():
    lazy = da.zeros(10, chunks=3)
    with pytest.raises(ValueError, match="longer than the signal"):
        sliding_cosine(lazy, np.ones(20))
    with pytest.raises(ValueError, match="dilation must be an integer >= 1"):
        windowed_norm(lazy, 3, dilation=0)
    with pytest.raises(ValueError, match="sharpness must be a finite real number"):
        sharpen(lazy, np.inf)
    with pytest.raises(TypeError, match="out is not supported for a Dask array"):
        sliding_cosine(lazy, np.ones(2), out=np.empty(9))
    with pytest.raises(TypeError, match="signal must be real-valued"):
        sliding_cosine(da.zeros(10, chunks=3, dtype=np.complex64), np.ones(2))


def test_nan_stays_local_across_chunk_borders():
    x = np.random.default_rng(6).standard_normal(10_000)
    x[4095] = np.nan  # at a tile border
    got = sliding_cosine(da.from_array(x, chunks=1000), np.ones(5), mode="same").compute()
    want = sliding_cosine(x, np.ones(5), mode="same")
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 5


@pytest.fixture(scope="module")
def cluster_client():
    """A real cluster: two worker processes of one thread each, started here."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def test_on_a_local_cluster_of_worker_processes(cluster_client):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 60_000)).astype(np.float32)
    lazy = da.from_array(x, chunks=(1, 9000))
    bank = rng.standard_normal((3, 40))
    got = sliding_cosine(lazy, bank, mode="same", method="direct")
    np.testing.assert_array_equal(cluster_client.compute(got).result(),
                                  sliding_cosine(x, bank, mode="same", method="direct"))
    norms = cluster_client.compute(windowed_norm(lazy, 64)).result()
    np.testing.assert_array_equal(norms, windowed_norm(x, 64))
    # every task ran on a worker process
    assert len(cluster_client.scheduler_info()["workers"]) == 2
