"""The Dask backend (``cosim_np._dask``): lazy results equal to the
in-memory ones -- the sliding functions bit for bit with ``method="direct"``
and for ``windowed_norm``, for any chunking, mode, dilation, axis, bank and
multi-channel kernel; ``cosine_similarity`` bit for bit; ``pairwise_cosine``
and ``topk_cosine`` to the rounding of the BLAS products -- on the threaded
scheduler and on a ``dask.distributed.LocalCluster`` of worker processes."""

import re

import numpy as np
import pytest
import scipy.sparse
from hypothesis import example, given
from hypothesis import strategies as st

from cosim_np import (
    cosine_similarity,
    find_matches,
    pairwise_cosine,
    sharpen,
    sliding_cosine,
    topk_cosine,
    windowed_norm,
)
from tests import naive
from tests.test_embedding import broadcast_problem, check_topk, matrices, tol
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


@pytest.mark.parametrize("mode", MODES)
def test_a_stride_keeps_every_stride_th_window_of_the_in_memory_result(mode):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 20_000))
    lazy = da.from_array(x, chunks=(1, 3, 3000))
    for kernel in (rng.standard_normal(7), rng.standard_normal((3, 11)),
                   rng.standard_normal((4, 3, 5))):
        got = sliding_cosine(lazy, kernel, mode=mode, stride=3, method="direct")
        want = sliding_cosine(x, kernel, mode=mode, stride=3, method="direct")
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.compute(), want)
    got = windowed_norm(lazy, 6, mode=mode, stride=5, center=True)
    np.testing.assert_array_equal(got.compute(), windowed_norm(x, 6, mode=mode, stride=5,
                                                               center=True))


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
    rows = da.zeros((6, 4), chunks=3)
    for call in (lambda: sliding_cosine(lazy, np.ones(2), backend="gpu"),
                 lambda: windowed_norm(lazy, 2, backend="gpu"),
                 lambda: sharpen(lazy, 2.0, backend="gpu"),
                 lambda: cosine_similarity(rows, rows, backend="gpu"),
                 lambda: pairwise_cosine(rows, backend="gpu"),
                 lambda: topk_cosine(rows, None, 2, backend="gpu")):
        with pytest.raises(ValueError, match="backend must be one of"):
            call()
    # find_matches over several axes: the selection's arguments before any block is scored

    def refuse(block):
        raise AssertionError("a block was computed")

    image = da.zeros((8, 8), chunks=4).map_blocks(refuse, dtype=float)
    for bad, error, pattern in ((dict(exclusion=-1), ValueError, "exclusion must be an integer >= 0"),
                                (dict(exclusion=(1, -2)), ValueError, "exclusion must be an"),
                                (dict(exclusion=(1, 2, 3)), ValueError,
                                 r"exclusion must be one value or one per sliding axis \(2\)"),
                                (dict(exclusion=1.5), TypeError, "exclusion must be an integer"),
                                (dict(k=-1), ValueError, "k must be"),
                                (dict(sign="up"), ValueError, "sign must be one of")):
        with pytest.raises(error, match=pattern):
            find_matches(image, np.ones((2, 2)), axis=(0, 1), **bad)
    # chunks of unknown size (boolean indexing): named, with the way out
    unknown = lazy[lazy > -1]
    table = rows[rows[:, 0] > -1]
    for call, name in ((lambda: sliding_cosine(unknown, np.ones(2)), "signal"),
                       (lambda: windowed_norm(unknown, 2), "signal"),
                       (lambda: find_matches(unknown, np.ones(2)), "signal"),
                       (lambda: sliding_cosine(table, np.ones((2, 2)), axis=(0, 1)), "signal"),
                       (lambda: cosine_similarity(unknown, unknown), "a"),
                       (lambda: pairwise_cosine(table), "a"),
                       (lambda: topk_cosine(table, None, 2), "queries")):
        with pytest.raises(ValueError, match=rf"{name} has chunks of unknown size .*"
                                             rf"{name}\.compute_chunk_sizes\(\)"):
            call()


def test_nan_stays_local_across_chunk_borders():
    x = np.random.default_rng(6).standard_normal(10_000)
    x[4095] = np.nan  # at a tile border
    got = sliding_cosine(da.from_array(x, chunks=1000), np.ones(5), mode="same").compute()
    want = sliding_cosine(x, np.ones(5), mode="same")
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 5


@pytest.fixture(scope="module")
def cluster_client():
    """A real cluster, started here: two worker processes of one Dask thread
    each, and one Numba thread each (docs/dask.rst, "On a cluster"): the
    two cores of the CI machine, not oversubscribed."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  env={"NUMBA_NUM_THREADS": "1"}, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster:
        # (not the default scheduler: the other tests keep the threaded one)
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client


def _numba_threads():
    import numba

    return numba.get_num_threads()


def test_workers_run_the_kernels_on_the_threads_they_are_given(cluster_client):
    """Each worker's Numba uses the threads its environment gives it, and its
    results are those of the client's own threads."""
    assert set(cluster_client.run(_numba_threads).values()) == {1}
    x = np.random.default_rng(12).standard_normal(300_000)  # several threads' worth here
    lazy = sliding_cosine(da.from_array(x, chunks=150_000), np.hanning(64), method="direct")
    np.testing.assert_array_equal(cluster_client.compute(lazy).result(),
                                  sliding_cosine(x, np.hanning(64), method="direct"))


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



def test_find_matches_on_a_cluster_block_by_block_without_scheduler_warnings(cluster_client,
                                                                               monkeypatch):
    """A callable threshold and a pool cut short serve the scores to the
    client block by block, each block a compute of its own, after the
    candidates' compute: on dask.distributed, blocks cut as arrays from the
    scores were each optimised apart, and the candidates' graph and the
    blocks' shared keys optimised other ways, so that the scheduler warned
    of keys given other tasks ("different run_spec", which it says can
    fail); the blocks now come from one optimised graph, and each graph's
    layers have names of their own."""
    import logging

    from cosim_np._core import config

    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("distributed.scheduler")  # (the scheduler runs here)
    logger.addHandler(handler)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 20_000))
    kernel = rng.standard_normal(16)
    x[2, 7000:7016] = kernel
    lazy = da.from_array(x, chunks=(2, 5000))  # (rechunked: windows' blocks differ)
    monkeypatch.setattr(config, "MATCH_POOL", 1)
    try:
        with dask.config.set(scheduler=cluster_client):
            # (calls in a row, each gathering candidates, then scanning blocks)
            for options in 3 * (dict(threshold=lambda keys: float(np.nanmedian(keys)) + 0.3),
                                dict(k=2, exclusion=6000), dict(k=3), dict(threshold=0.5)):
                got = find_matches(lazy, kernel, method="direct", **options)
                want = find_matches(x, kernel, method="direct", **options)
                assert len(got) == len(want) > 0
                for name in ("index", "score", "kernel", "batch"):
                    np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage()[:80] for record in records] == []


# ---------------------------------------------------------------------------
# embeddings


@st.composite
def chunked_rows(draw, max_rows=40, max_d=6):
    n = draw(st.integers(1, max_rows))
    m = draw(st.integers(2, max_rows))
    d = draw(st.integers(1, max_d))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    a = draw(matrices(dtype, n, d))
    b = draw(matrices(dtype, m, d))
    return a, b, (draw(st.integers(1, n)), draw(st.integers(1, d))), draw(st.integers(1, m))


@given(chunked_rows(), st.sampled_from([0.0, np.nan]))
def test_pairwise_of_dask_rows_equals_in_memory_to_the_products_rounding(problem, fill):
    a, b, a_chunks, b_rows = problem
    lazy = pairwise_cosine(da.from_array(a, chunks=a_chunks), da.from_array(b, chunks=(b_rows, -1)),
                           fill=fill)
    want = pairwise_cosine(a, b, fill=fill)
    assert isinstance(lazy, da.Array) and lazy.shape == want.shape and lazy.dtype == want.dtype
    got = lazy.compute()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(a.dtype, a.shape[1], a.dtype))
    assert np.all(np.abs(got[~np.isnan(got)]) <= 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # a.a^T: exactly symmetric with a unit diagonal, as in memory
    own = pairwise_cosine(da.from_array(a, chunks=a_chunks)).compute()
    np.testing.assert_array_equal(own, own.T)
    regular = ~(np.all(a == 0, axis=1) | ~np.all(np.isfinite(a), axis=1))
    assert np.all(np.diag(own)[regular] == 1)
    np.testing.assert_allclose(own, pairwise_cosine(a), rtol=0, atol=tol(a.dtype, a.shape[1], a.dtype))


@given(chunked_rows(), st.integers(1, 5), st.sampled_from([False, "None", "passed"]))
def test_topk_of_dask_rows_is_a_topk_of_the_true_cosines(problem, k, self_search):
    """Also ``exclude_self`` with the corpus passed again, chunked its own
    way: each query's own row is left out whichever block holds it."""
    a, b, a_chunks, b_rows = problem
    queries = da.from_array(a, chunks=a_chunks)
    if self_search:
        k = min(k, a.shape[0] - 1)
        if k < 1:
            return
        corpus = None if self_search == "None" else da.from_array(a, chunks=(b_rows, -1))
        scores, idx = topk_cosine(queries, corpus, k, exclude_self=True)
        corpus = a
    else:
        k = min(k, b.shape[0])
        scores, idx = topk_cosine(queries, da.from_array(b, chunks=(b_rows, -1)), k)
        corpus = b
    assert isinstance(scores, da.Array) and scores.shape == (a.shape[0], k)
    scores, idx = scores.compute(), idx.compute()
    assert scores.dtype == a.dtype and idx.dtype == np.int64
    exact = naive.pairwise_matrix(a, corpus)
    check_topk(scores, idx, exact, corpus, k, tol(a.dtype, a.shape[1], a.dtype),
               exclude_self=self_search)


def test_topk_equals_the_in_memory_lists_on_distinct_scores():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((500, 32)).astype(np.float32)
    b = rng.standard_normal((3000, 32)).astype(np.float32)
    scores, idx = topk_cosine(da.from_array(a, chunks=(128, 32)), da.from_array(b, chunks=(700, 32)), 10)
    want_s, want_i = topk_cosine(a, b, 10)
    np.testing.assert_array_equal(idx.compute(), want_i)
    # float32 BLAS products of differently shaped blocks (the tiles follow the
    # thread count) round differently: the float32 products' tolerance
    np.testing.assert_allclose(scores.compute(), want_s, rtol=0, atol=tol(np.float32, 32, np.float32))


@given(broadcast_problem(), st.integers(1, 3))
@example((np.array([[1], [0], [0]], np.int8), np.array([[[3, 1]], [[1, 1]]], np.int8), (0, 1, 2)), 1)
@example((np.where(np.arange(18).reshape(3, 3, 2) == 0, 66, 1).astype(np.int8), np.array([1], np.int8),
          (0, 1)), 1)
def test_cosine_similarity_of_dask_arrays_is_bit_for_bit(problem, chunk):
    a, b, axis = problem
    want = cosine_similarity(a, b, axis=axis)
    lazy_a = da.from_array(a, chunks=chunk) if a.ndim else a
    lazy_b = da.from_array(b, chunks=chunk) if b.ndim else b
    got = cosine_similarity(lazy_a, lazy_b, axis=axis)
    assert isinstance(got, da.Array)
    np.testing.assert_array_equal(got.compute(), want)


def test_pairwise_result_stores_block_by_block(tmp_path):
    rng = np.random.default_rng(9)
    a = rng.standard_normal((1000, 8))
    target = np.lib.format.open_memmap(tmp_path / "scores.npy", mode="w+", shape=(1000, 1000))
    da.store(pairwise_cosine(da.from_array(a, chunks=(300, 8))), target)
    np.testing.assert_allclose(target, pairwise_cosine(a), rtol=0, atol=1e-14)


def test_embedding_errors_name_the_parameter():
    rows = da.zeros((10, 4), chunks=3)
    with pytest.raises(ValueError, match=r"k=11 is larger than the corpus"):
        topk_cosine(rows, None, 11)
    with pytest.raises(ValueError, match="must have the same number of columns"):
        pairwise_cosine(rows, da.zeros((5, 3), chunks=2))
    with pytest.raises(ValueError, match="a must be a 2-d array"):
        pairwise_cosine(da.zeros(4, chunks=2))
    with pytest.raises(TypeError, match="out is not supported for Dask arrays"):
        pairwise_cosine(rows, out=np.empty((10, 10)))


def test_topk_on_a_local_cluster_of_worker_processes(cluster_client):
    rng = np.random.default_rng(10)
    a = rng.standard_normal((400, 16)).astype(np.float32)
    b = rng.standard_normal((2000, 16)).astype(np.float32)
    lazy = topk_cosine(da.from_array(a, chunks=(100, 16)), da.from_array(b, chunks=(500, 16)), 5)
    scores, idx = cluster_client.compute(list(lazy), sync=True)
    np.testing.assert_array_equal(idx, topk_cosine(a, b, 5)[1])


# ---------------------------------------------------------------------------
# find_matches


def mad_threshold(keys):
    median = np.nanmedian(keys)
    return median + 4 * np.nanmedian(np.abs(keys - median))


@pytest.mark.parametrize("options", [dict(k=5), dict(threshold=0.6), dict(k=3, sign="positive"),
                                     dict(threshold=mad_threshold), dict(k=2, exclusion=0)])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_find_matches_on_a_dask_array_equals_in_memory(options, mode):
    from cosim_np import find_matches

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 20_000)).astype(np.float32)
    kernel = rng.standard_normal(16)
    x[0, 1, 1000:1016] = 3 * kernel
    x[1, 2, 15_000:15_016] = -kernel
    x[1, 0, 9000:9100] = np.nan
    for k_shape in (kernel, rng.standard_normal((3, 16))):
        got = find_matches(da.from_array(x, chunks=(1, 2, 3000)), k_shape, mode=mode,
                           method="direct", **options)
        want = find_matches(x, k_shape, mode=mode, method="direct", **options)
        assert len(got) == len(want) > 0
        for name in ("index", "score", "kernel", "batch"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


@pytest.mark.parametrize("options", [dict(), dict(threshold=0.9), dict(k=1, threshold=0.99),
                                     dict(threshold=0.9, sign="negative")])
def test_find_matches_on_a_float16_dask_row_equals_in_memory(options):
    """One float16 row, one kernel: the gathered candidates' float16 keys
    reached a compiled sort, which has no float16 (NotImplementedError; an
    exploratory test)."""
    from cosim_np import find_matches

    x = np.random.default_rng(0).standard_normal(1000).astype(np.float16)
    want = find_matches(x, [1.0, 2.0, 3.0], method="direct", **options)
    got = find_matches(da.from_array(x, chunks=100), [1.0, 2.0, 3.0], method="direct", **options)
    assert got == want and got.score.dtype == np.float16


def test_find_matches_blocks_keep_the_signal_chunks_rows(monkeypatch):
    """A task finds the candidates of a block of the rows its chunks hold
    (along the first leading axis: the others are merged with it), not of
    every row (64 rows of 256 KiB chunks made tasks of 16 MiB): the row
    blocks' candidates go to their rows."""
    from cosim_np._dask import matches as dask_matches

    shapes = []
    real = dask_matches._block_candidates
    monkeypatch.setattr(dask_matches, "_block_candidates",
                        lambda block, *args: shapes.append(block.shape) or real(block, *args))
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 3, 6000))
    kernel = rng.standard_normal((2, 9))
    x[1, 2, 4000:4009] = kernel[1]
    for signal, chunks, most in ((x.reshape(6, 6000), (1, 2000), 1), (x, (1, 1, 2000), 3),
                                 (x.reshape(6, 6000), (4, 2500), 4), (x, (2, 2, 6000), 6)):
        for options in (dict(k=3), dict(threshold=0.8)):
            shapes.clear()
            got = find_matches(da.from_array(signal, chunks=chunks), kernel, method="direct",
                               **options)
            want = find_matches(signal, kernel, method="direct", **options)
            assert shapes and max(shape[0] for shape in shapes) == most
            for name in ("index", "score", "kernel", "batch"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_find_matches_gathers_only_candidates(monkeypatch):
    """Without a callable threshold the scores never reach the client: each
    block's candidates do; a pool cut short falls back to the exact scan."""
    from cosim_np import _dask, find_matches
    from cosim_np._core import config

    def no_scores(*args, **kwargs):
        raise AssertionError("the scores were served to the client")

    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 40_000))
    kernel = rng.standard_normal(12)
    for start in (100, 9_990, 10_000, 25_000):  # two on a block border
        x[1, start : start + 12] = kernel * (1 + start / 1e5)
    lazy = da.from_array(x, chunks=(1, 10_000))
    with monkeypatch.context() as patch:
        patch.setattr(_dask, "score_tiles", no_scores)
        for options in (dict(k=4), dict(threshold=0.7), dict(k=2, exclusion=0, sign="negative")):
            got = find_matches(lazy, kernel, method="direct", **options)
            want = find_matches(x, kernel, method="direct", **options)
            np.testing.assert_array_equal(got.index, want.index)
            np.testing.assert_array_equal(got.batch, want.batch)
            np.testing.assert_array_equal(got.score, want.score)
    # pools of one candidate with a zone of 15000 windows (at most 3 matches
    # a row): no row can keep k = 2 of them while others were left out, so
    # the blocks' scores are scanned instead, with the same matches
    monkeypatch.setattr(config, "MATCH_POOL", 1)
    served = []
    real = _dask.score_tiles
    monkeypatch.setattr(_dask, "score_tiles", lambda *a, **kw: served.append(1) or real(*a, **kw))
    got = find_matches(lazy, kernel, k=2, exclusion=15_000, method="direct")
    want = find_matches(x, kernel, k=2, exclusion=15_000, method="direct")
    assert served and len(got) == len(want) >= 6
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.batch, want.batch)


# --- several sliding axes (images, volumes)


@st.composite
def chunked_images(draw):
    """An image problem with any chunking: ``(x, chunks, kernel, options)``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["one", "bank", "channels"]))
    m = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    shape = (draw(st.integers(1, 3)), 2, draw(st.integers(1, 220)), draw(st.integers(1, 30)))
    x = rng.standard_normal(shape).astype(draw(st.sampled_from([np.float32, np.float64])))
    if shape[2] > 4:
        x[:, :, draw(st.integers(0, shape[2] - 3)), 0] = 1e7  # a bright pixel
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    kernel = {"one": rng.standard_normal(m), "bank": rng.standard_normal((3,) + m),
              "channels": rng.standard_normal((4, 2) + m)}[kind]
    modes = tuple(draw(st.sampled_from(["valid", "same", "full"])) for _ in range(2))
    axis = (2, 3) if kind == "channels" or draw(st.booleans()) else (3, 2)
    if axis == (3, 2):
        m, d, modes = m[::-1], d[::-1], modes[::-1]
        kernel = kernel.reshape(kernel.shape[:-2] + m) if kind != "channels" else kernel
    options = dict(axis=axis, mode=modes, dilation=d, center=draw(st.booleans()),
                   stride=(draw(st.integers(1, 3)), draw(st.integers(1, 2))),
                   sharpness=draw(st.sampled_from([1.0, 1.5])), method="direct")
    return x, chunks, kernel, options


@given(chunked_images())
def test_several_axes_equal_the_in_memory_results_bit_for_bit(problem):
    x, chunks, kernel, options = problem
    try:
        want = sliding_cosine(x, kernel, **options)
    except ValueError as error:  # (a kernel longer than the image in mode 'valid')
        with pytest.raises(ValueError, match=re.escape(str(error))):
            sliding_cosine(da.from_array(x, chunks=chunks), kernel, **options)
        return
    lazy = sliding_cosine(da.from_array(x, chunks=chunks), kernel, **options)
    assert isinstance(lazy, da.Array) and lazy.shape == want.shape and lazy.dtype == want.dtype
    np.testing.assert_array_equal(lazy.compute(), want)
    window = kernel.shape[-2:]
    norm_options = {key: options[key] for key in ("axis", "mode", "dilation", "center", "stride")}
    lazy = windowed_norm(da.from_array(x, chunks=chunks), window, **norm_options)
    np.testing.assert_array_equal(lazy.compute(), windowed_norm(x, window, **norm_options))


def test_window_sums_over_several_axes_start_where_the_whole_image_s_do(monkeypatch):
    """Blocks of the first axis's window sums (``m * d`` rows) that do not
    divide a band of 64 rows: Dask's blocks of whole bands still start where
    the whole image's blocks do, the same bits (they did not, for heights
    such as 5, 6, 7, 9)."""
    from cosim_np._core import config

    monkeypatch.setattr(config, "SPATIAL_BAND_WINDOWS", 1)  # (bands of 64 rows, however narrow)
    x = np.random.default_rng(33).standard_normal((260, 4))
    lazy = da.from_array(x, chunks=(64, 4))
    for height in range(2, 13):
        for options in (dict(), dict(center=True, stride=(3, 1)), dict(dilation=(2, 1), stride=2)):
            want = windowed_norm(x, (height, 2), axis=(0, 1), **options)
            got = windowed_norm(lazy, (height, 2), axis=(0, 1), **options)
            assert got.numblocks[0] > 1
            np.testing.assert_array_equal(got.compute(), want)


def test_several_axes_of_a_large_image_cut_into_bands_and_by_fft(monkeypatch):
    """Blocks of many bands of windows (the first sliding axis cut, the other
    whole), a volume, and the FFT method to its accuracy."""
    from cosim_np._core import config

    monkeypatch.setattr(config, "SPATIAL_BAND_WINDOWS", 1)  # (bands of 64 rows)
    rng = np.random.default_rng(31)
    image = rng.standard_normal((700, 90)).astype(np.float32)
    lazy = da.from_array(image, chunks=(150, 40))
    template = rng.standard_normal((9, 7))
    got = sliding_cosine(lazy, template, axis=(0, 1), mode="same")
    assert got.numblocks[0] > 3
    np.testing.assert_array_equal(got.compute(), sliding_cosine(image, template, axis=(0, 1),
                                                                mode="same"))
    big = rng.standard_normal((20, 20))
    got = sliding_cosine(lazy, big, axis=(0, 1), method="fft").compute()
    np.testing.assert_allclose(got, sliding_cosine(image, big, axis=(0, 1), method="direct"),
                               rtol=0, atol=tolerance(np.float32, big.size))
    volume = rng.standard_normal((30, 12, 10))
    kernel = rng.standard_normal((3, 2, 4))
    got = sliding_cosine(da.from_array(volume, chunks=(7, 5, 4)), kernel, axis=(0, 1, 2),
                         mode=("same", "valid", "full"), center=True)
    np.testing.assert_array_equal(got.compute(), sliding_cosine(
        volume, kernel, axis=(0, 1, 2), mode=("same", "valid", "full"), center=True))


def test_find_matches_over_several_axes_of_a_dask_array_equals_in_memory():
    rng = np.random.default_rng(32)
    images = rng.standard_normal((2, 160, 50))
    bank = rng.standard_normal((2, 5, 4))
    for options in (dict(k=4), dict(threshold=0.6, exclusion=(3, 2), sign="positive")):
        want = find_matches(images, bank, axis=(1, 2), **options)
        got = find_matches(da.from_array(images, chunks=(1, 40, 20)), bank, axis=(1, 2),
                           **options)
        assert len(got) == len(want) > 0
        for field in ("index", "score", "kernel", "batch"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    with pytest.raises(ValueError, match="sign"):
        find_matches(da.from_array(images), bank, axis=(1, 2), sign="up")


def test_embeddings_of_a_data_array_beside_a_dask_array():
    """A DataArray has a Dask graph too: beside a Dask array it was taken for
    one (``'DataArray' object has no attribute 'rechunk'``); its values are
    taken now, lazy or not (found by an exploratory test)."""
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    lazy_b = da.from_array(b, chunks=(2, 4))
    for labelled in (xr.DataArray(a, dims=("row", "dim")),
                     xr.DataArray(da.from_array(a, chunks=(3, 4)), dims=("row", "dim"))):
        atol = tol(a.dtype, a.shape[1], a.dtype)  # (the products' rounding, as above)
        np.testing.assert_allclose(pairwise_cosine(labelled, lazy_b).compute(),
                                   pairwise_cosine(a, b), rtol=0, atol=atol)
        np.testing.assert_allclose(pairwise_cosine(lazy_b, labelled).compute(),
                                   pairwise_cosine(b, a), rtol=0, atol=atol)
        np.testing.assert_array_equal(topk_cosine(lazy_b, labelled, 2)[1].compute(),
                                      topk_cosine(b, a, 2)[1])
        np.testing.assert_array_equal(
            cosine_similarity(labelled[:5], lazy_b).compute(), cosine_similarity(a[:5], b))


def test_a_delayed_object_is_refused_for_what_it_is():
    """A Delayed answers every attribute: it was called 'a SciPy sparse
    Delayed' and told to use ``.toarray()``."""
    value = dask.delayed(np.ones(5))
    for call, name in [(lambda: sliding_cosine(value, np.ones(3)), "signal"),
                       (lambda: pairwise_cosine(np.ones((2, 5)), value), "b"),
                       (lambda: pairwise_cosine(da.ones((2, 5)), value), "b")]:
        with pytest.raises(TypeError, match=rf"^{name} is a dask Delayed object"):
            call()


def test_a_partner_of_a_dask_array_is_checked_as_in_memory():
    """The other input of an embedding call on a Dask array went through
    ``np.asarray``: a masked array's mask was dropped (its masked values read
    as data), a sparse matrix became an object array and a ragged list
    leaked NumPy's message (an exploratory test).  Each is now refused as
    the in-memory call refuses it."""
    lazy = da.from_array(np.eye(2), chunks=1)
    masked = np.ma.masked_array([[1.0, 1e6], [0.0, 1.0]], mask=[[False, True], [False, False]])
    for partner, error, message in [
        (masked, ValueError, r"^(b|corpus) is a masked array"),
        (scipy.sparse.csr_matrix(np.eye(2)), TypeError, r"(b|corpus)\.toarray\(\)"),
        ([[1.0, 2.0], [1.0]], TypeError, r"^(b|corpus) must be array-like"),
    ]:
        for call in (lambda: pairwise_cosine(lazy, partner),
                     lambda: cosine_similarity(lazy, partner),
                     lambda: topk_cosine(lazy, partner, 1)):
            with pytest.raises(error, match=message):
                call()
        with pytest.raises(error, match=message):
            pairwise_cosine(np.eye(2), partner)


def test_chunks_of_size_zero_beside_the_sliding_axes_are_no_empty_signals():
    """Boolean indexing, then ``compute_chunk_sizes`` as the unknown-chunks
    error advises, leaves chunks of size 0: along the batch axes (and the
    sliding axis of another call) they gave the in-memory function empty
    blocks, which it refuses ("signal must not be empty")."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 100))
    keep = np.array([True, False, True, True])
    rows = da.from_array(x, chunks=(1, 100))[da.from_array(keep, chunks=1)]
    rows.compute_chunk_sizes()
    assert 0 in rows.chunks[0]
    kept = x[keep]
    kernel = [1.0, 2.0, 3.0]
    for mode in ("valid", "same", "full"):
        np.testing.assert_array_equal(
            sliding_cosine(rows, kernel, mode=mode, method="direct").compute(),
            sliding_cosine(kept, kernel, mode=mode, method="direct"))
        np.testing.assert_array_equal(windowed_norm(rows, 3, mode=mode).compute(),
                                      windowed_norm(kept, 3, mode=mode))
    assert find_matches(rows, kernel, k=1, method="direct") == find_matches(
        kept, kernel, k=1, method="direct")
    image = np.stack([kept.reshape(3, 10, 10)] * 2)  # (2, 3, 10, 10): zero chunks on axis 1
    lazy = da.from_array(image, chunks=(1, 1, 10, 10))[:, da.from_array(keep, chunks=1)[:3]]
    lazy.compute_chunk_sizes()
    np.testing.assert_array_equal(
        sliding_cosine(lazy, np.ones((3, 3)), axis=(-2, -1), method="direct").compute(),
        sliding_cosine(image[:, keep[:3]], np.ones((3, 3)), axis=(-2, -1), method="direct"))
    across = da.from_array(x.T, chunks=(100, 1))[:, da.from_array(keep, chunks=1)]
    across.compute_chunk_sizes()  # (zero chunks on axis 1; the windows slide along axis 0)
    np.testing.assert_array_equal(sliding_cosine(across, kernel, axis=0).compute(),
                                  sliding_cosine(x.T[:, keep], kernel, axis=0))
