"""find_matches against its definition (tests/naive.py), the seed-000 motifs,
tiling, the candidate pool, bounded memory, errors and the Matches result."""

import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import Matches, find_matches, sliding_cosine
from cosim_np import demo as seed000
from cosim_np._core import config
from cosim_np._cpu import matches as cpu_matches
from tests import naive
from tests.memory import traced_peak
from tests.strategies import window_geometry
from tests.test_sliding import tolerance


def assert_same(found, expected):
    """``found`` (a Matches) equals the reference ``((row, index, kernel,
    score), lead)``, exactly."""
    (row, index, kernel, score), lead = expected
    batch = np.stack(np.unravel_index(row, lead), axis=-1) if lead else np.empty((row.size, 0), np.int64)
    np.testing.assert_array_equal(found.index, index)
    np.testing.assert_array_equal(found.kernel, kernel)
    np.testing.assert_array_equal(found.batch, batch)
    np.testing.assert_array_equal(found.score, score)
    assert found.score.dtype == score.dtype and found.index.dtype == np.int64


# values with exact ties, plateaus (repeats, zeros) and NaN stretches
VALUES = st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -3.0, 1.0, 1.0, 0.0, np.nan])


@st.composite
def problems(draw, nan=True):
    n, m, dilation, mode = draw(window_geometry(max_n=40, max_m=5, max_dilation=3))
    shape = draw(st.sampled_from(["one", "bank", "channels"]))
    lead = draw(st.sampled_from([(), (2,), (2, 1)]))
    values = VALUES if nan else VALUES.filter(lambda value: not np.isnan(value))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if shape == "channels":
        c_in = draw(st.integers(1, 2))
        signal = np.array(draw(st.lists(values, min_size=c_in * n, max_size=c_in * n)) *
                          max(1, int(np.prod(lead))), dtype=dtype).reshape(lead + (c_in, n))
        kernel = np.array(draw(st.lists(st.integers(-2, 2), min_size=2 * c_in * m,
                                        max_size=2 * c_in * m)), dtype=float).reshape(2, c_in, m)
    else:
        count = n * max(1, int(np.prod(lead)))
        signal = np.array(draw(st.lists(values, min_size=count, max_size=count)), dtype=dtype)
        signal = signal.reshape(lead + (n,))
        nker = draw(st.integers(1, 3)) if shape == "bank" else None
        taps = draw(st.lists(st.integers(-2, 2), min_size=m * (nker or 1), max_size=m * (nker or 1)))
        kernel = np.array(taps, dtype=float).reshape((nker, m) if nker else (m,))
    if shape != "channels" and signal.ndim > 1 and draw(st.booleans()):
        axis = 0  # slide along the first axis
        signal = np.ascontiguousarray(np.moveaxis(signal, -1, 0))
    else:
        axis = -1
    options = dict(mode=mode, dilation=dilation, axis=axis,
                   sharpness=draw(st.sampled_from([1.0, 2.0])),
                   sign=draw(st.sampled_from(["both", "positive", "negative"])),
                   k=draw(st.one_of(st.none(), st.integers(0, 5))),
                   exclusion=draw(st.one_of(st.none(), st.integers(0, n + 5))),
                   threshold=draw(st.sampled_from([None, 0.3, 0.9, -0.5, "median", "mad"])))
    return signal, kernel, options


def _threshold(name):
    if name == "median":
        return lambda keys: np.nanmedian(keys) if np.isfinite(keys).any() else 0.0
    if name == "mad":
        return mad_threshold
    return name


def mad_threshold(keys, c=2.0):
    """median + c * MAD of the finite keys (the docs' recipe)."""
    finite = keys[np.isfinite(keys)]
    if finite.size == 0:
        return np.inf
    median = np.median(finite)
    return median + c * np.median(np.abs(finite - median))


@given(problems())
def test_matches_equal_the_greedy_definition_on_the_scores(problem):
    """Exactly the definition applied to sliding_cosine's whole score array."""
    signal, kernel, options = problem
    options["threshold"] = _threshold(options["threshold"])
    found = find_matches(signal, kernel, **options)
    sliding = {name: options[name] for name in ("mode", "dilation", "axis", "sharpness")}
    scores = sliding_cosine(signal, kernel, **sliding)
    assert_same(found, naive.find_matches(signal, kernel, scores=scores, **options))


@given(n=st.integers(8, 60), m=st.integers(1, 6), nker=st.integers(1, 3),
       mode=st.sampled_from(["valid", "same", "full", "causal"]), k=st.one_of(st.none(), st.integers(1, 4)),
       sign=st.sampled_from(["both", "positive", "negative"]), seed=st.integers(0, 2**31))
def test_matches_equal_the_naive_scores_and_loop(n, m, nker, mode, k, sign, seed):
    """Scores by the naive reference, then its loop (continuous values: no
    near-ties for rounding to reorder)."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n)
    kernel = rng.standard_normal((nker, m))
    if mode == "valid" and m > n:
        return
    found = find_matches(signal, kernel, k=k, sign=sign, mode=mode, threshold=0.1)
    (row, index, kern, score), _ = naive.find_matches(signal, kernel, k=k, sign=sign, mode=mode,
                                                      threshold=0.1)
    np.testing.assert_array_equal(found.index, index)
    np.testing.assert_array_equal(found.kernel, kern)
    np.testing.assert_allclose(found.score, score, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.int16, np.bool_, np.float64])
def test_dtypes_follow_sliding_cosine(dtype):
    """Scores in sliding_cosine's dtype (float16 rounded as it rounds them),
    selected from its whole array exactly."""
    rng = np.random.default_rng(2)
    signal = (rng.standard_normal((3, 500)) * 3).astype(dtype)
    kernel = np.array([1.0, 0.0, -1.0, 2.0])
    for options in (dict(k=4), dict(threshold=0.5, sign="negative")):
        found = find_matches(signal, kernel, mode="same", **options)
        scores = sliding_cosine(signal, kernel, mode="same")
        assert found.score.dtype == scores.dtype
        assert_same(found, naive.find_matches(signal, kernel, scores=scores, mode="same", **options))


def test_seed000_motifs_at_sharpness_9():
    signal, regions = seed000.motif_signal()
    found = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    ends = [region.start + len(seed000.KERNEL) - 1 for region in regions]  # windows ending on a motif
    assert sorted(found.index.tolist()) == ends[:3]  # A, B and C, not D or E
    by_index = dict(zip(found.index.tolist(), found.score.tolist()))
    assert by_index[ends[0]] == 1.0 and by_index[ends[1]] == -1.0
    assert by_index[ends[2]] == pytest.approx(1.0, abs=1e-12)  # (0.2, 0.4, 0.6: rounded, to the 81st power)
    best3 = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, k=3)
    assert sorted(best3.index.tolist()) == ends[:3]
    positive = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5,
                            sign="positive")
    assert sorted(positive.index.tolist()) == [ends[0], ends[2]]
    negative = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5,
                            sign="negative")
    assert negative.index.tolist() == [ends[1]] and negative.score.tolist() == [-1.0]


def test_plateaus_ties_nan_and_borders():
    # a plateau reports its first window; ties go to the lower index; NaN
    # never matches and counts as -inf beside a peak; a peak at either end
    s = np.array([0.9, 0.1, 0.5, 0.5, 0.5, 0.2, 0.7, np.nan, 0.7, 0.1, 0.8])
    rows = s[None, None, :]
    row, index, _, _ = naive.greedy_matches(rows, exclusion=0)
    assert index.tolist() == [0, 10, 6, 8, 2]
    found = cpu_matches.select_scores(s, 0, None, False, _plan(exclusion=0))
    np.testing.assert_array_equal(found[1], index)
    # exclusion across the kernels of a bank: the second kernel's peak at 3
    # lies within 2 of the first's at 2
    bank = np.array([[0.0, 0.1, 0.9, 0.1, 0.0, 0.0, 0.5], [0.0, 0.0, 0.2, 0.8, 0.2, 0.0, 0.0]])
    found = cpu_matches.select_scores(bank, 0, None, True, _plan(exclusion=2, nker=2))
    assert found[1].tolist() == [2, 6] and found[2].tolist() == [0, 0]
    # (the second kernel's first window is a local maximum too: 0 >= 0)
    found = cpu_matches.select_scores(bank, 0, None, True, _plan(exclusion=0, nker=2))
    assert found[1].tolist() == [2, 3, 6, 0] and found[2].tolist() == [0, 1, 0, 1]


@st.composite
def long_score_rows(draw):
    """Score rows ``(rows, K, L)`` of a few hundred windows: a quiet
    background with a few loud stretches (ties, plateaus, NaN, both signs)
    placed anywhere, at the scan's block borders too."""
    rows, nker = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    length = draw(st.integers(2, 300))
    background = draw(st.sampled_from([0.0, 0.05, -0.1]))
    wiggle = draw(st.sampled_from([0.0, 0.01]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scores = background + wiggle * rng.standard_normal((rows, nker, length))
    block = cpu_matches._SKIP
    places = st.one_of(st.integers(0, length - 1),
                       st.integers(0, length // block).map(lambda b: b * block - 1),
                       st.integers(0, length // block).map(lambda b: b * block))
    for _ in range(draw(st.integers(0, 8))):
        r, kk, at = draw(st.integers(0, rows - 1)), draw(st.integers(0, nker - 1)), draw(places)
        stretch = draw(st.lists(st.sampled_from([0.9, -0.9, 0.5, 0.95, 0.1, np.nan]), min_size=1, max_size=4))
        stretch = stretch[: max(0, length - max(0, at))]
        scores[r, kk, max(0, at) : max(0, at) + len(stretch)] = stretch
    return scores.astype(draw(st.sampled_from([np.float32, np.float64])))


@given(long_score_rows(), st.one_of(st.none(), st.integers(0, 4)),
       st.sampled_from([None, 0.3, 0.92, -0.5]), st.integers(0, 40),
       st.sampled_from(["both", "positive", "negative"]), st.sampled_from([1, 7, 16, 40, 300]))
def test_the_scan_passes_over_blocks_below_the_cut_exactly(scores, k, threshold, exclusion, sign, tile):
    """The scan tests blocks of windows against the cut (the threshold, or a
    full pool's worst) and passes over those below it: candidates on either
    side of a block border, plateaus across it and NaN in it are judged as
    one window at a time judges them, in tiles of any width."""
    from cosim_np._core import matches as core

    rows, nker, length = scores.shape
    plan = core.plan_matches(k, threshold, exclusion, sign, None, nker=nker, m=3, dilation=1,
                             nwin=length, lead=(rows,))
    thresholds = np.full(rows, plan.threshold)
    found = cpu_matches.select(cpu_matches.HostScores(scores, tile), nker, length, plan, thresholds)
    expected = naive.greedy_matches(scores, k=k, threshold=threshold, exclusion=exclusion, sign=sign)
    for got, want in zip(found, expected):
        np.testing.assert_array_equal(got, want)


@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 1e-30, -1e-30, 0.75]),
                min_size=1, max_size=60),
       st.sampled_from(["both", "positive", "negative"]), st.integers(0, 3))
def test_the_packed_order_of_float32_matches_equals_the_sort(values, sign, exclusion):
    """One row and kernel of float32 scores: the kept candidates ordered by a
    sort of packed integers equal the general sort's order (ties to the
    lower index, -0 and +0 equal keys) and keep each score's bits."""
    score = np.array(values, dtype=np.float32)
    idx = np.arange(score.size, dtype=np.int64) * 2 + 5
    code = np.zeros(score.size, np.int64)
    code_sign = {"both": 0, "positive": 1, "negative": -1}[sign]
    packed = cpu_matches._select_listed(score, idx, code, 1, exclusion, code_sign)
    general = cpu_matches._select_listed(score.astype(np.float64), idx, code, 1, exclusion, code_sign)
    np.testing.assert_array_equal(packed[1], general[1])
    np.testing.assert_array_equal(packed[3].view(np.uint32),
                                  general[3].astype(np.float32).view(np.uint32))


def _plan(exclusion, nker=1, k=None, threshold=None, sign="both"):
    from cosim_np._core import matches as core

    return core.plan_matches(k, threshold, exclusion, sign, None, nker=nker, m=3, dilation=1, nwin=11,
                             lead=())


# ---------------------------------------------------------------------------
# tiles and the pool


def _count_tiles(monkeypatch):
    seen = []
    original = cpu_matches.Scores._score

    def counted(self, piece):
        seen.append(piece.shape[-1])
        return original(self, piece)

    monkeypatch.setattr(cpu_matches.Scores, "_score", counted)
    return seen


@pytest.mark.parametrize("method, m", [("direct", 5), ("direct", 40), ("fft", 150)])
@pytest.mark.parametrize("mode", ["valid", "same", "causal"])
def test_tiling_equals_no_tiling(monkeypatch, method, m, mode):
    if method == "fft":  # FFT segments (the tiles' alignment) of 4200 windows, not 130200
        monkeypatch.setattr(config, "SEGMENT_WINDOWS", 1 << 13)
    rng = np.random.default_rng(m)
    signal = rng.standard_normal((2, 60_000)).astype(np.float32)
    signal[:, 20_000:20_100] *= 1e4  # a loud stretch (the FFT path plans around it)
    signal[1, 30_000:30_050] = np.nan
    kernel = rng.standard_normal((2, m))
    options = dict(method=method, mode=mode, exclusion=7)
    scores = sliding_cosine(signal, kernel, method=method, mode=mode)
    seen = _count_tiles(monkeypatch)
    for k, threshold in [(20, None), (None, 0.6)]:
        expected = naive.find_matches(signal, kernel, scores=scores, k=k, threshold=threshold, exclusion=7,
                                      mode=mode)
        seen.clear()
        whole = find_matches(signal, kernel, k=k, threshold=threshold, **options)
        assert len(seen) <= 3  # one tile (and the padded ends)
        seen.clear()
        tiled = find_matches(signal, kernel, k=k, threshold=threshold, max_memory="200KiB", **options)
        assert len(seen) >= 5, seen
        assert_same(whole, expected)
        assert_same(tiled, expected)


@pytest.mark.parametrize("parts", [3, 5])
@pytest.mark.parametrize("m, mode", [(2, "causal"), (5, "same"), (3, "full"), (4, "valid")])
def test_runs_on_several_threads_equal_the_definition(monkeypatch, parts, m, mode):
    """Tiles split into runs, one per thread, each scanned on its own: the
    windows on either side of each border (plateaus, ties and NaN there
    too) are judged with their true neighbours."""
    from cosim_np._cpu import threads

    monkeypatch.setattr(threads, "thread_count", lambda: parts)
    monkeypatch.setattr(config, "TILE_TARGET", 1)  # the kernels' tiles: 8 * m windows
    monkeypatch.setattr(config, "MATCH_TILE", 1)  # so are these
    rng = np.random.default_rng(m)
    signal = np.round(rng.standard_normal((2, 40 * 8 * m + 3)) * 2) / 2  # ties and plateaus
    signal[0, 8 * m - 3 : 8 * m + 4] = np.nan  # NaN on a border
    signal[1, 16 * m - 2 : 16 * m + 3] = 1.0  # a plateau on one
    kernel = np.array([[1.0, -1.0, 2.0, 0.5, 1.0][:m], [0.0, 1.0, 1.0, 1.0, 0.0][:m]])
    scores = sliding_cosine(signal, kernel, mode=mode)
    seen = _count_tiles(monkeypatch)
    for k, threshold, exclusion in [(7, None, 2), (None, 0.2, 0), (None, None, 1), (3, 0.5, 9)]:
        seen.clear()
        found = find_matches(signal, kernel, k=k, threshold=threshold, exclusion=exclusion, mode=mode)
        assert len(seen) >= 30
        assert_same(found, naive.find_matches(signal, kernel, scores=scores, k=k, threshold=threshold,
                                              exclusion=exclusion, mode=mode))


def _count_scans(monkeypatch):
    """A list that gains an item at each scan of the scores (``_scan_all``)."""
    passes = []
    original = cpu_matches._scan_all

    def counted(*args, **kwargs):
        passes.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cpu_matches, "_scan_all", counted)
    return passes


def test_a_small_pool_rescans_and_stays_exact(monkeypatch):
    # exclusion wide enough that the pool of the best candidates keeps fewer
    # than k: the scan must run again after it
    rng = np.random.default_rng(5)
    signal = rng.standard_normal(5000)
    kernel = rng.standard_normal(8)
    scores = sliding_cosine(signal, kernel)
    expected = naive.find_matches(signal, kernel, scores=scores, k=30, exclusion=60)
    passes = _count_scans(monkeypatch)
    monkeypatch.setattr(config, "MATCH_POOL", 40)
    assert_same(find_matches(signal, kernel, k=30, exclusion=60), expected)
    assert len(passes) > 1
    passes.clear()
    monkeypatch.setattr(config, "MATCH_POOL", 1 << 16)
    assert_same(find_matches(signal, kernel, k=30, exclusion=60), expected)
    assert len(passes) == 1


def test_candidates_crowded_into_few_zones_scan_the_signal_a_few_times(monkeypatch):
    """Pulses on every other sample, the gaps between them filling in
    slowly: the best candidates crowd into a few zones, so a pool keeps a
    few matches a scan.  Each rescan doubles the pool (where memory holds
    it): 26 scans for ``k = 500`` became 6 (an exploratory test; at ``2e7``
    samples and ``k = 10**4``, 77 scans of the signal became 12)."""
    n = 200_000
    t = np.arange(n)
    signal = np.where(t % 2 == 0, 1.0, 0.5 * t / n).astype(np.float32)
    kernel = np.array([1.0, 0, 1, 0, 1, 0, 1, 0])
    every = find_matches(signal, kernel, exclusion=100)
    passes = _count_scans(monkeypatch)
    monkeypatch.setattr(config, "MATCH_POOL", 1024)
    found = find_matches(signal, kernel, k=500, exclusion=100)
    assert np.array_equal(found.index, every.index[:500])
    assert np.array_equal(found.score, every.score[:500])
    assert len(passes) <= 8, len(passes)


def test_the_pools_of_many_runs_fit_max_memory(monkeypatch):
    """With ``k``, each of the scan's runs (four a thread) keeps a pool: at
    most half of ``max_memory`` holds them all.  The pools were 65536
    candidates whatever the memory: 101 MiB at 16 threads with
    ``max_memory="16MiB"`` (an exploratory test; here many runs a thread
    stand for many threads)."""
    rng = np.random.default_rng(30)
    signal = rng.standard_normal(400_000).astype(np.float32)
    kernel = rng.standard_normal(16)
    expected = find_matches(signal, kernel, k=100, exclusion=1000)
    monkeypatch.setattr(config, "MATCH_RUNS_PER_THREAD", 32)
    found, peak = traced_peak(lambda: find_matches(signal, kernel, k=100, exclusion=1000,
                                                   max_memory="4MiB"))
    assert np.array_equal(found.index, expected.index)
    assert np.array_equal(found.score, expected.score)
    assert peak < 8 * 2**20, peak


def test_a_full_pool_of_the_best_first_candidates_rescans(monkeypatch):
    # keys of the local maxima falling along the signal: the pool fills with
    # the first candidates, which all lie in one zone, and no later one reaches
    # its cut, so none is counted as left out; a full pool must rescan anyway
    steps = 0.01 * np.arange(1, 41)
    signal = np.column_stack([np.ones(40), steps]).ravel()  # windows [1, e], [e, 1], ...
    kernel = np.array([1.0, 0.0])
    monkeypatch.setattr(config, "MATCH_POOL", 5)
    expected = naive.find_matches(signal, kernel, k=3, exclusion=10)
    assert len(expected[0][1]) == 3
    assert_same(find_matches(signal, kernel, k=3, exclusion=10), expected)


@pytest.mark.parametrize("axis", [-1, 0])
def test_rows_beyond_the_budget_are_searched_a_block_at_a_time(monkeypatch, axis):
    """Many signal rows: a tile of one alignment for every row held them all
    (377 MiB for 4000 rows with max_memory='8MiB'); blocks of rows now, with
    the matches of the whole call, in its order (rows of a view or copied
    one at a time: ``axis=0`` moves the sliding axis)."""
    rng = np.random.default_rng(8)
    signal = rng.standard_normal((5, 6, 700)).astype(np.float32)
    signal[2, 3, 100:140] = np.nan
    signal = np.moveaxis(signal, -1, 0) if axis == 0 else signal
    kernel = rng.standard_normal((2, 5))
    scores = sliding_cosine(signal, kernel, axis=axis)
    blocks = []
    real = cpu_matches.Scores

    def counted(*args, **kwargs):
        blocks.append(kwargs.get("rows", args[5] if len(args) > 5 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_matches, "Scores", counted)
    for k, threshold in [(3, None), (None, 0.7), (2, lambda keys: np.nanpercentile(keys, 99))]:
        whole = find_matches(signal, kernel, k=k, threshold=threshold, axis=axis, exclusion=4)
        blocks.clear()
        found = find_matches(signal, kernel, k=k, threshold=threshold, axis=axis, exclusion=4,
                             max_memory=4000)
        assert len(blocks) > 3 and blocks[-1] is not None  # (the whole, then its blocks)
        for name in ("index", "kernel", "batch", "score"):
            np.testing.assert_array_equal(getattr(found, name), getattr(whole, name))
        if not callable(threshold):
            expected = naive.find_matches(signal, kernel, scores=scores, k=k, axis=axis,
                                          threshold=threshold, exclusion=4)
            assert_same(whole, expected)


@pytest.mark.parametrize("max_memory", ["4MiB", "16MiB"])
def test_pools_and_callable_thresholds_of_many_rows_within_max_memory(max_memory):
    """Pools of ``k · (exclusion + 1)`` candidates for every row in each of
    the scan's runs, and a callable threshold's whole key rows, were held for
    every row the tiles allowed (234 MiB for 100 rows with max_memory='16MiB',
    more than with the default): rows are now taken as many at a time as half
    the budget holds them, the same matches."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((60, 20_000))
    kernel = rng.standard_normal(16)
    budget = int(max_memory[:-3]) * 2**20
    for options in (dict(k=15, exclusion=1000),
                    dict(threshold=lambda keys: np.nanpercentile(keys, 99.9), exclusion=20)):
        # (compiled first, the blocks of rows' calls too: with a cold cache
        # the measured call's compilation went past the bound)
        find_matches(x, kernel, max_memory=max_memory, **options)
        whole = find_matches(x, kernel, **options)
        found, peak = traced_peak(
            lambda: find_matches(x, kernel, max_memory=max_memory, **options))
        assert found == whole
        assert peak < 1.5 * budget, (options, peak / 2**20)


def test_a_callable_threshold_holds_one_copy_of_a_row_s_keys():
    """The docstring says a callable threshold holds the row's keys: the
    scores, their magnitudes and the magnitudes' cast were three row-sized
    arrays (an exploratory test); now the scores and the keys."""
    x = np.random.default_rng(4).standard_normal(2_000_000)
    kernel = np.ones(16)
    options = dict(threshold=lambda keys: 0.9 + 0 * float(keys[0]), exclusion=50)
    find_matches(x[:5000], kernel, **options)  # (compiled first)
    row = (x.size - 15) * 8
    _, peak = traced_peak(lambda: find_matches(x, kernel, **options))
    assert peak < 2.5 * row, peak / row


def test_a_k_no_row_can_reach_is_a_search_without_it():
    """``k`` past the most matches a row holds lists every match, in the
    memory of a search without ``k`` (pools of ``k`` candidates per thread
    took 549 MiB for ``k = 10**9`` on 2 * 10**6 samples)."""
    x = np.random.default_rng(9).standard_normal(300_000).astype(np.float32)
    find_matches(x[:5000], [1.0, 2.0, 3.0], k=10**9)  # (compiled first)
    every = find_matches(x, [1.0, 2.0, 3.0])
    found, peak = traced_peak(lambda: find_matches(x, [1.0, 2.0, 3.0], k=10**9))
    np.testing.assert_array_equal(found.index, every.index)
    np.testing.assert_array_equal(found.score, every.score)
    assert peak < 3 * 32 * len(every) + 8 * 2**20, peak
    # k beyond the pools' 65536 candidates: pools of k where max_memory holds
    # them, else of 65536 scanned again; the same first k
    for max_memory in (None, "4MiB"):
        bigger = find_matches(x, [1.0, 2.0, 3.0], k=70_000, max_memory=max_memory)
        np.testing.assert_array_equal(bigger.index, every.index[:70_000])


@pytest.mark.parametrize("options", [dict(k=1), dict(k=5, exclusion=3)])
def test_a_search_with_k_keeps_no_slot_for_every_bucket_of_the_signal(options):
    """With ``k``, the greedy pass kept a slot for every ``exclusion + 1``
    windows of the signal where there were up to 2**20 of them: 7.7 MiB
    past a ``max_memory`` of 256 KiB for a few candidates (an exploratory
    test).  Now the slots take no more than the candidates."""
    x = np.random.default_rng(0).standard_normal(2_000_000).astype(np.float32)
    def search():
        return find_matches(x, [1.0, 2.0, 3.0], max_memory="256KiB", method="direct", **options)
    want = search()  # (compiled and loaded first)
    found, peak = traced_peak(search)
    assert found == want
    assert peak < 2**20, peak / 2**20


@pytest.mark.parametrize("dtype", ["<f4", ">f4"])
def test_memmap_in_bounded_memory(tmp_path, dtype):
    """Also a big-endian file (SEG-Y, SAC), which was converted whole first
    (18.7 MiB for 4 * 10**6 samples; an exploratory test)."""
    n = 3_000_000
    path = tmp_path / "signal.f32"
    data = np.memmap(path, dtype=dtype, mode="w+", shape=(n,))
    rng = np.random.default_rng(1)
    for start in range(0, n, 1 << 20):
        data[start : start + (1 << 20)] = rng.standard_normal(min(1 << 20, n - start))
    kernel = rng.standard_normal(16)
    data[1_000_000:1_000_016] = 3 * kernel
    data.flush()
    signal = np.memmap(path, dtype=dtype, mode="r", shape=(n,))
    find_matches(signal[:100_000], kernel, k=5)  # compiled
    found, peak = traced_peak(lambda: find_matches(signal, kernel, k=5, max_memory="1MiB"))
    assert found.index[0] == 1_000_000 and found.score[0] == pytest.approx(1.0, abs=1e-6)
    assert peak < 4 * 2**20, peak  # the signal is 12 MB, its scores as much
    whole = find_matches(np.array(signal), kernel, k=5)
    np.testing.assert_array_equal(found.index, whole.index)
    np.testing.assert_array_equal(found.score, whole.score)


# ---------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("options, error, name", [
    (dict(k=-1), ValueError, "k"),
    (dict(k=1.5), TypeError, "k"),
    (dict(exclusion=-2), ValueError, "exclusion"),
    (dict(exclusion="3"), TypeError, "exclusion"),
    (dict(threshold="high"), TypeError, "threshold"),
    (dict(threshold=np.nan), ValueError, "threshold"),
    (dict(threshold=lambda keys: np.nan), ValueError, "threshold"),
    (dict(threshold=lambda keys: "x"), TypeError, "threshold"),
    (dict(sign="up"), ValueError, "sign"),
    (dict(max_memory="lots"), ValueError, "max_memory"),
    (dict(mode="wrong"), ValueError, "mode"),
])
@pytest.mark.parametrize("signal, kernel, axis", [
    (np.arange(20.0), [1.0, 2.0], -1),
    (np.arange(30.0).reshape(5, 6), [[1.0, 2.0]], (0, 1)),  # (an image: checked the same)
])
def test_errors_name_the_parameter(options, error, name, signal, kernel, axis):
    with pytest.raises(error, match=name):
        find_matches(signal, kernel, axis=axis, **options)


def test_k_zero_and_no_candidates():
    assert len(find_matches(np.arange(20.0), [1.0, 2.0], k=0)) == 0
    signal = np.sin(np.arange(60.0))
    for huge in (2**62, 2**63, 10**19):  # (k past int64: no limit, as k = None)
        for axis, kernel in ((-1, [1.0, 2.0]), ((0, 1), [[1.0, 2.0]])):
            got = find_matches(signal.reshape(6, 10) if axis != -1 else signal, kernel, k=huge,
                               axis=axis)
            want = find_matches(signal.reshape(6, 10) if axis != -1 else signal, kernel,
                                axis=axis)
            np.testing.assert_array_equal(got.index, want.index)
    assert len(find_matches(np.zeros(20), [1.0, 2.0], fill=np.nan)) == 0
    assert len(find_matches(np.arange(20.0), [1.0, 2.0], threshold=2.0)) == 0


# ---------------------------------------------------------------------------
# the result


def test_matches_result():
    signal = np.zeros((2, 3, 30))
    signal[1, 2, 10:13] = [1, 2, 3]
    signal[0, 1, 20:23] = [-2, -4, -6]
    found = find_matches(signal, [1, 2, 3], threshold=0.99)
    assert len(found) == 2 and isinstance(found, Matches)
    assert found.batch.tolist() == [[0, 1], [1, 2]] and found.index.tolist() == [20, 10]
    assert found.score.tolist() == [-1.0, 1.0]
    assert list(found) == [(20, -1.0, 0, (0, 1)), (10, 1.0, 0, (1, 2))]
    text = repr(found)
    assert text.splitlines()[0] == "Matches(2 matches, exclusion=1, threshold=0.99)"
    assert "batch" in text and "(1, 2)" in text and "-1.0000" in text
    many = find_matches(np.sin(np.arange(400.0)), [0.0, 1.0, 0.0])
    assert len(many) > 10 and "..." in repr(many) and len(repr(many).splitlines()) == 2 + 5 + 1 + 3
    none = find_matches(np.zeros(30), [1, 2, 3], threshold=0.5)
    assert len(none) == 0 and repr(none) == "Matches(0 matches, exclusion=1, threshold=0.5)"


@pytest.mark.parametrize("axis, signal, kernel", [(-1, np.arange(40.0) % 7, [1.0, 2.0, 0.0]),
                                                  ((0, 1), np.arange(64.0).reshape(8, 8) % 5,
                                                   np.eye(2))])
def test_the_threshold_is_reported_as_given(axis, signal, kernel):
    """A number is reported as given, ``-inf`` too (every key passes it,
    as with None); None and a callable as None."""
    for threshold, reported in ((-np.inf, -np.inf), (0.25, 0.25), (np.float32(0.5), 0.5),
                                (None, None), (np.median, None)):
        found = find_matches(signal, kernel, threshold=threshold, axis=axis)
        assert found.threshold == reported and type(found.threshold) is type(reported)
    assert find_matches(signal, kernel, threshold=-np.inf, axis=axis) == \
        Matches(*(getattr(find_matches(signal, kernel, axis=axis), name)
                  for name in ("index", "score", "kernel", "batch")),
                exclusion=1 if axis == -1 else (1, 1), threshold=-np.inf)


def test_to_pandas(monkeypatch):
    pandas = pytest.importorskip("pandas")  # (in the test extra: CI fails on a skip)
    signal = np.zeros((2, 30))
    signal[1, 10:13] = [1, 2, 3]
    signal[0, 20:23] = [-2, -4, -6]
    matches = find_matches(signal, [1, 2, 3], k=1, threshold=0.5)
    frame = matches.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["index", "score", "kernel", "batch0"] and len(frame) == 2
    np.testing.assert_array_equal(frame["index"], matches.index)
    np.testing.assert_array_equal(frame["score"], matches.score)
    assert sorted(zip(frame["batch0"], frame["index"])) == [(0, 20), (1, 10)]
    assert frame["score"].dtype == matches.score.dtype
    image = np.zeros((12, 14))
    image[3:5, 7:9] = [[1, 2], [3, 4]]
    over_image = find_matches(image, [[1, 2], [3, 4]], axis=(0, 1), k=1)
    frame = over_image.to_pandas()  # a column per sliding axis
    assert list(frame.columns) == ["index0", "index1", "score", "kernel"]
    assert frame[["index0", "index1"]].values.tolist() == [[3, 7]]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        matches.to_pandas()


# ---------------------------------------------------------------------------
# the picture and the command line


def test_plot_matches_renders(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from cosim_np import plot_matches

    signal, _ = seed000.motif_signal()
    found = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    figure = plot_matches(signal, found, seed000.KERNEL, mode="causal", sharpness=9.0)
    top, bottom = figure.axes
    # the signal, and one fitted kernel per match, at its scale and sign
    assert len(top.lines) == 1 + len(found)
    ends = sorted(found.index.tolist())
    fitted = {int(line.get_xdata()[-1]): line.get_ydata() for line in top.lines[1:]}
    np.testing.assert_allclose(fitted[ends[1]], [-1.0, -2.0, -3.0])
    np.testing.assert_allclose(fitted[ends[2]], [0.2, 0.4, 0.6])
    assert [line.get_ydata()[0] for line in bottom.lines if len(line.get_ydata()) == 2] == [0.5, -0.5]
    path = tmp_path / "matches.png"
    figure.savefig(path)
    assert path.stat().st_size > 1000
    # into one axes of the caller's: the signal and the fits, no score track
    import matplotlib.pyplot as plt

    own, ax = plt.subplots()
    assert plot_matches(signal, found, seed000.KERNEL, mode="causal", sharpness=9.0, ax=ax) is own
    assert len(ax.lines) == 1 + len(found) and own.axes == [ax]
    with pytest.raises(ValueError, match="signal must be 1-d"):
        plot_matches(np.stack([signal, signal]), found, seed000.KERNEL)
    plt.close("all")


@pytest.mark.parametrize("ax", [None, "one"])
def test_plot_matches_refuses_what_the_search_would(ax):
    """Drawn on one Axes (no score track), the options were not checked: an
    unknown mode was taken as 'causal', a dilation of 0 drew every tap at one
    sample, a complex signal lost its imaginary part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosim_np import plot_matches

    signal, _ = seed000.motif_signal()
    found = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    where = plt.subplots()[1] if ax else None
    for error, match, call in [
        (ValueError, "^mode must be one of", lambda: plot_matches(
            signal, found, seed000.KERNEL, mode="bogus", ax=where)),
        (ValueError, "^dilation must be an integer >= 1", lambda: plot_matches(
            signal, found, seed000.KERNEL, dilation=0, ax=where)),
        (TypeError, "^signal must be real-valued", lambda: plot_matches(
            signal + 1j, found, seed000.KERNEL, ax=where)),
        (ValueError, "^kernel must be a kernel", lambda: plot_matches(
            signal, found, np.ones((2, 1, 3)), ax=where)),
        (ValueError, "several signal rows", lambda: plot_matches(
            signal, find_matches(np.stack([signal, -signal]), seed000.KERNEL, k=4), seed000.KERNEL,
            ax=where)),
        (ValueError, "^matches holds matches of kernel 1 of a bank, but kernel holds 1 kernel",
         lambda: plot_matches(signal, find_matches(signal, [seed000.KERNEL, seed000.KERNEL[::-1]]),
                              seed000.KERNEL, ax=where)),
        (TypeError, "^matches must be the Matches that find_matches returned; got tuple",
         lambda: plot_matches(signal, tuple(found), seed000.KERNEL, ax=where)),
    ]:
        with pytest.raises(error, match=match):
            call()
    plt.close("all")


def test_plot_matches_takes_one_axes_or_a_pair_and_names_anything_else():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosim_np import plot_matches

    signal, _ = seed000.motif_signal()
    found = find_matches(signal, seed000.KERNEL, threshold=0.5)
    pair = plt.subplots(2)[1]  # (a 1-d array of two)
    for ax, drawn in ((pair, 2), (list(pair), 2), (tuple(pair), 2), (pair[0], 1), ([pair[0]], 1)):
        for one in pair:
            one.clear()
        plot_matches(signal, found, seed000.KERNEL, ax=ax)
        assert sum(bool(one.lines) for one in pair) == drawn
    grid = plt.subplots(2, 2)[1]
    # (a Figure has a figure too: it got to Axes.plot, an AttributeError)
    for ax, said in ((grid, r"an array of shape \(2, 2\)"), (list(grid.ravel()[:3]), "a list of 3"),
                     ("top", "str"), ([], "a list of 0"), (plt.figure(), "Figure")):
        with pytest.raises(ValueError, match=f"^ax must be one matplotlib Axes or a pair of them.*"
                                             f"got {said}"):
            plot_matches(signal, found, seed000.KERNEL, ax=ax)
    plt.close("all")


def test_matches_built_by_hand_hold_whole_numbers_as_int64():
    """Lists gave float64 ``batch`` (and ``index`` when empty), so a
    ``Matches`` rebuilt from a result's own values never equalled it (an
    exploratory test); values that are not whole numbers are refused."""
    signal = np.random.default_rng(3).standard_normal((2, 60))
    found = find_matches(signal, [1.0, -2.0, 1.0], k=2)
    rebuilt = Matches(found.index.tolist(), found.score.tolist(), found.kernel.tolist(),
                      found.batch.tolist(), exclusion=found.exclusion)
    assert rebuilt == found
    assert all(part.dtype == np.int64 for part in (rebuilt.index, rebuilt.kernel, rebuilt.batch))
    empty = Matches([], [], [], [])
    assert empty.index.dtype == empty.kernel.dtype == empty.batch.dtype == np.int64
    assert Matches([3.0], [0.5], [0], [[1]]).index.dtype == np.int64
    with pytest.raises(TypeError, match=r"Matches needs whole numbers in index; got float64"):
        Matches([2.5], [0.5], [0], [[]])


def test_plot_matches_says_how_many_kernels_it_was_handed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosim_np import plot_matches

    signal = np.random.default_rng(4).standard_normal(80)
    bank = np.array([[1.0, -1.0, 1.0], [1.0, 2.0, 1.0]])
    found = find_matches(signal, bank, k=4)
    assert found.kernel.max() == 1  # (matches of the bank's second kernel)
    with pytest.raises(ValueError, match=r"kernel 1 of a bank, but kernel holds 1 kernel "
                                         r"\(shape \(3,\)\)"):
        plot_matches(signal, found, bank[0])
    plt.close("all")


def test_plot_matches_draws_the_search_it_is_given():
    """center and noise_floor reach the score track and the fits; a
    one-signed search draws its one threshold; matches of several axes and
    unknown signs are refused by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosim_np import plot_matches

    signal, _ = seed000.motif_signal()
    raised = signal + 100.0
    options = dict(mode="causal", center=True, noise_floor=0.1)
    found = find_matches(raised, seed000.KERNEL, threshold=0.5, sign="positive", **options)
    assert len(found)
    figure = plot_matches(raised, found, seed000.KERNEL, sign="positive", **options)
    top, bottom = figure.axes
    track = bottom.lines[0].get_ydata()
    np.testing.assert_array_equal(track, sliding_cosine(raised, seed000.KERNEL, **options))
    dots = [line for line in bottom.lines if line.get_marker() == "o"][0]
    np.testing.assert_array_equal(dots.get_ydata(), found.score)
    assert [line.get_ydata()[0] for line in bottom.lines if len(line.get_ydata()) == 2] == [0.5]
    inside = 0
    for line, index in zip(top.lines[1:], found.index):  # fits about the windows' means
        start = int(index) - (seed000.KERNEL.size - 1)
        if start >= 0:
            window = raised[start : start + seed000.KERNEL.size]
            assert abs(line.get_ydata().mean() - window.mean()) < 1e-9
            inside += 1
    assert inside
    negative = find_matches(signal, seed000.KERNEL, threshold=0.5, sign="negative", mode="causal")
    figure = plot_matches(signal, negative, seed000.KERNEL, sign="negative", mode="causal")
    assert [line.get_ydata()[0] for line in figure.axes[1].lines
            if len(line.get_ydata()) == 2] == [-0.5]
    image = np.random.default_rng(0).standard_normal((20, 20))
    two_axes = find_matches(image, image[:3, :3], axis=(0, 1), k=2)
    with pytest.raises(ValueError, match="one sliding axis"):
        plot_matches(image, two_axes, image[:3, :3])
    with pytest.raises(ValueError, match="sign must be"):
        plot_matches(signal, found, seed000.KERNEL, sign="+")
    plt.close("all")


def test_plot_matches_takes_what_find_matches_took(tmp_path):
    """Exploratory tests: Axes of a SubFigure gave back the SubFigure (no
    ``savefig``), one row's matches from a row other than 0 were refused as
    "several signal rows", and a callable threshold (as find_matches takes)
    was a raw TypeError."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from cosim_np import plot_matches

    signal, _ = seed000.motif_signal()
    found = find_matches(signal, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    root = Figure()
    (left, right) = root.subfigures(1, 2)
    pair = right.subplots(2, 1)
    assert plot_matches(signal, found, seed000.KERNEL, ax=pair, mode="causal", sharpness=9.0) is root
    rows = np.stack([-signal, signal])
    second = find_matches(rows, seed000.KERNEL, mode="causal", sharpness=9.0, threshold=0.5)
    only = second.batch[:, 0] == 1
    one_row = Matches(second.index[only], second.score[only], second.kernel[only],
                      second.batch[only], exclusion=second.exclusion, threshold=0.5)
    figure = plot_matches(signal, one_row, seed000.KERNEL, mode="causal", sharpness=9.0)
    assert len(figure.axes[0].lines) == 1 + len(found)
    with pytest.raises(ValueError, match="several signal rows"):
        plot_matches(signal, second, seed000.KERNEL, mode="causal", sharpness=9.0)

    def level(keys):  # (the keys' largest but one: a level of the scores drawn)
        return np.sort(keys[np.isfinite(keys)])[-2]

    for sign in ("both", "positive", "negative"):
        by_level = find_matches(signal, seed000.KERNEL, threshold=level, sign=sign)
        figure = plot_matches(signal, by_level, seed000.KERNEL, threshold=level, sign=sign)
        keys = {"both": np.abs, "positive": np.positive, "negative": np.negative}[sign](
            sliding_cosine(signal, seed000.KERNEL))
        drawn = [line.get_ydata()[0] for line in figure.axes[1].lines
                 if line.get_linestyle() == "--"]
        want = {"both": [level(keys), -level(keys)], "positive": [level(keys)],
                "negative": [-level(keys)]}[sign]
        assert drawn == want
    plt.close("all")


def test_the_demo_figure_leaves_the_callers_backend(tmp_path):
    """``demo.plot`` switched the process to Agg (an exploratory test): a
    notebook's backend is the notebook's."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("svg")
    try:
        open_figures = plt.get_fignums()
        seed000.plot(tmp_path / "demo.png")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == open_figures
    finally:
        matplotlib.use("Agg")
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"


def test_the_demo_figure_draws_the_matches(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    drawn = []
    real = seed000.plot_matches
    monkeypatch.setattr(seed000, "plot_matches",
                        lambda *args, **kwargs: drawn.append(args[1]) or real(*args, **kwargs))
    seed000.plot(tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 1000
    # A, B and C, B negated: the seed-000 result, as the figure shows it
    (found,) = drawn
    assert len(found) == 3 and sorted(np.round(found.score, 9).tolist()) == [-1.0, 1.0, 1.0]


def _cli(*args, cwd):
    import subprocess

    return subprocess.run([sys.executable, "-m", "cosim_np", "match", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_command_line(tmp_path):
    import subprocess
    from pathlib import Path

    from scipy.io import wavfile

    root = Path(__file__).resolve().parents[1]
    signal, _ = seed000.motif_signal()
    np.save(tmp_path / "signal.npy", signal)
    np.savetxt(tmp_path / "kernel.txt", seed000.KERNEL)
    np.savetxt(tmp_path / "rows.csv", np.stack([signal, -signal], axis=1), delimiter=",")
    wavfile.write(tmp_path / "signal.wav", 8000, (signal * 1000).astype(np.int16))
    done = _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--threshold", 0.5, "--sharpness", 9,
                "--mode", "causal", "--out", tmp_path / "out.csv", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "3 matches" in done.stdout and "-1.0000" in done.stdout
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "index,score,kernel" and len(lines) == 4
    assert lines[1:3] == ["8,1.0,0", "17,-1.0,0"]
    # C, the kernel times 0.2 up to the rounding of 0.2, 0.4 and 0.6: 1 within rounding
    index, score, kernel = lines[3].split(",")
    assert (index, kernel) == ("26", "0") and abs(float(score) - 1.0) <= tolerance(np.float64, 3, 81)
    # --sign negative: the key is minus the score, as --help says (it said
    # the signed score; an exploratory test)
    done = _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--sign", "negative",
                "--threshold", 0.8, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "1 match" in done.stdout and "-1.0000" in done.stdout
    helped = subprocess.run([sys.executable, "-m", "cosim_np", "match", "--help"], cwd=root,
                            capture_output=True, text=True).stdout
    assert "minus the score with --sign negative" in " ".join(helped.split())
    # two columns: two signal rows; a .npy file of two rows the same
    np.save(tmp_path / "rows.npy", np.stack([signal, -signal]))
    outputs = []
    for rows in ("rows.csv", "rows.npy"):
        done = _cli(tmp_path / rows, tmp_path / "kernel.txt", "--k", 1, "--sign", "positive",
                    cwd=root)
        assert done.returncode == 0, done.stderr
        assert "row" in done.stdout and "2 matches" in done.stdout
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    done = _cli(tmp_path / "signal.wav", tmp_path / "kernel.txt", "--k", 2, "--exclusion", 3, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "2 matches (exclusion 3)" in done.stdout
    # 8-bit PCM is unsigned, silence at 128: the same search as 16-bit samples of the same values
    levels = np.round(signal / np.abs(signal).max() * 100)
    wavfile.write(tmp_path / "s16.wav", 8000, levels.astype(np.int16))
    wavfile.write(tmp_path / "s8.wav", 8000, (levels + 128).astype(np.uint8))
    found = [_cli(tmp_path / name, tmp_path / "kernel.txt", "--k", 3, cwd=root)
             for name in ("s16.wav", "s8.wav")]
    assert found[0].returncode == found[1].returncode == 0, found[1].stderr
    assert found[0].stdout == found[1].stdout and "-1.0000" in found[0].stdout
    done = _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--k", 3, "--plot", tmp_path / "m.png",
                cwd=root)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.png").stat().st_size > 1000
    # a kernel file of one line is a bank of one-tap kernels, as documented, and said so
    (tmp_path / "line.csv").write_text("1,2,3\n")
    done = _cli(tmp_path / "signal.npy", tmp_path / "line.csv", "--k", 1, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "read as 3 kernels of one tap (one column per kernel)" in done.stderr
    # --center: Pearson's correlation, which finds the motif riding on an offset
    np.save(tmp_path / "offset.npy", signal + 1000.0)
    plain, centered = (_cli(tmp_path / "offset.npy", tmp_path / "kernel.txt", "--k", 1, *more,
                            "--plot", tmp_path / "c.png", cwd=root) for more in ((), ("--center",)))
    assert plain.returncode == centered.returncode == 0, centered.stderr
    want = find_matches(signal + 1000.0, np.loadtxt(tmp_path / "kernel.txt"), k=1, center=True)
    assert plain.stdout != centered.stdout
    assert f"{int(want.index[0])} {float(want.score[0]):.4f}" in " ".join(centered.stdout.split())
    # a signal file of one line (or a column-shaped .npy) is many rows of one sample: said so
    np.savetxt(tmp_path / "row.csv", signal[None], delimiter=",")
    np.save(tmp_path / "column.npy", signal[:, None])
    for name, advice in (("row.csv", "put one value per line"), ("column.npy", "save a 1-d array")):
        done = _cli(tmp_path / name, tmp_path / "kernel.txt", "--k", 1, "--mode", "same", cwd=root)
        assert f"was read as {signal.size} rows of 1 sample(s)" in done.stderr, done.stderr
        assert advice in done.stderr
    # a name without a suffix: a PNG, and the message names the file written
    done = _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--k", 3, "--plot", tmp_path / "n",
                cwd=root)
    assert done.returncode == 0, done.stderr
    assert f"figure written to {tmp_path / 'n.png'}" in done.stdout
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "n").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("suffix", "unknown type"),
    ("garbage", "cannot read"),
    ("header", "(a .csv file holds numbers separated by commas, a .txt file numbers separated "
               "by spaces or tabs; no header row)"),
    # (a .txt of commas was blamed on a header row: an exploratory test)
    ("commas in txt", "a .txt file numbers separated by spaces or tabs"),
    ("negative k", "k must be"),
    ("too long", "longer than the signal"),
    ("empty", "cannot read signal file"),
    ("out", "cannot write --out file"),
    ("plot", "cannot write --plot file"),
    ("plot folder", "it is a folder; name a file in it"),
    ("wav without chunks", "as a WAV file: "),
    ("wav of no channels", "as a WAV file: "),
    ("wav of no samples", "holds no samples"),
    ("empty csv", "signal file '{tmp}/empty.csv' holds no samples"),
    ("npy of no samples", "signal file '{tmp}/zero.npy' holds no samples (shape (0,))"),
    ("signal folder", "signal file '{tmp}' is a folder; name a file in it"),
    ("three axes", "kernel file '{tmp}/kernel.npy' holds an array of shape (2, 2, 5)"),
    # (a 0-d kernel beside rows of signal was an IndexError: an exploratory test)
    ("no axes", "kernel file '{tmp}/kernel.npy' holds an array of shape ()"),
    # (an empty name wrote nothing and said nothing: an exploratory test)
    ("empty out", "argument --out: needs a file name, got ''"),
    ("empty plot", "argument --plot: needs a file name, got ''"),
    ("plot suffix", "cannot write --plot file '{tmp}/matches.xyz': unknown type 'xyz'"),
    # (a CSV table was written to matches.npy, which np.load refused: an exploratory test)
    ("out suffix", "cannot write --out file '{tmp}/matches.npy': --out writes the table as CSV"),
])
def test_command_line_errors(tmp_path, case, message):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    np.save(tmp_path / "signal.npy", np.arange(10.0))
    np.save(tmp_path / "kernel.npy", np.ones(3))
    (tmp_path / "bad.csv").write_text("1,2\nx,y\n")
    (tmp_path / "signal.dat").write_text("1 2 3")
    signal, kernel, extra = tmp_path / "signal.npy", tmp_path / "kernel.npy", []
    if case == "missing":
        signal = tmp_path / "nothing.npy"
    elif case == "suffix":
        signal = tmp_path / "signal.dat"
    elif case == "garbage":
        signal = tmp_path / "bad.csv"
    elif case == "header":
        signal = tmp_path / "header.csv"
        signal.write_text("time,value\n0,1.5\n1,2.5\n")
    elif case == "commas in txt":
        signal = tmp_path / "commas.txt"
        signal.write_text("1,2\n3,4\n")
    elif case == "negative k":
        extra = ["--k", "-2"]
    elif case == "empty":
        signal = tmp_path / "empty.npy"
        signal.write_bytes(b"")
    elif case == "plot folder":
        extra = ["--plot", tmp_path]
    elif case == "empty csv":
        signal = tmp_path / "empty.csv"
        signal.write_text("")
    elif case == "npy of no samples":
        signal = tmp_path / "zero.npy"
        np.save(signal, np.zeros(0))
    elif case == "signal folder":
        signal = tmp_path
    elif case == "three axes":
        np.save(kernel, np.ones((2, 2, 5)))
    elif case == "no axes":
        np.save(signal, np.ones((2, 100)))
        np.save(kernel, np.array(1.0))
    elif case.startswith("wav"):
        import struct

        from scipy.io import wavfile

        signal = tmp_path / "signal.wav"
        wavfile.write(signal, 8000, np.arange(0 if "no samples" in case else 100, dtype=np.int16))
        if case == "wav without chunks":
            signal.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
        elif case == "wav of no channels":  # (SciPy divides by the channel count)
            header = bytearray(signal.read_bytes())
            header[22:24] = struct.pack("<H", 0)
            signal.write_bytes(bytes(header))
    elif case in ("empty out", "empty plot"):
        extra = [f"--{case.split()[1]}", ""]
    elif case in ("out", "plot"):  # (a folder that is not there)
        extra = [f"--{case}", tmp_path / "no folder" / f"matches.{'csv' if case == 'out' else 'png'}"]
    elif case == "plot suffix":
        extra = ["--plot", tmp_path / "matches.xyz"]
    elif case == "out suffix":
        extra = ["--out", tmp_path / "matches.npy"]
    else:
        np.save(tmp_path / "kernel.npy", np.ones(30))
    done = _cli(signal, kernel, *extra, cwd=root)
    assert done.returncode == 2
    assert message.format(tmp=tmp_path) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    if case in ("out", "plot", "plot suffix", "out suffix"):  # (said before the search: no table)
        assert "exclusion" not in done.stdout
    # (said with the match command's usage, as argparse says its own errors)
    assert "python -m cosim_np match: error: " in done.stderr


def test_the_command_line_reads_what_users_hand_it(tmp_path, monkeypatch):
    """Exploratory tests: ``--threshold -inf`` was read as an option
    ("expected one argument"); a kernel saved as a column was read as one-tap
    kernels, silently; a CSV with a spreadsheet's byte-order mark was
    refused; and a small .npy file was memory-mapped, a read-only array,
    whose kernels Numba compiles apart from those ``compile`` leaves."""
    from pathlib import Path

    from cosim_np import __main__ as cli

    root = Path(__file__).resolve().parents[1]
    signal, _ = seed000.motif_signal()
    np.save(tmp_path / "signal.npy", signal)
    np.savetxt(tmp_path / "kernel.txt", seed000.KERNEL)
    done = _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--threshold", "-inf", "--k", 2,
                cwd=root)
    assert done.returncode == 0, done.stderr
    assert "2 matches" in done.stdout
    assert cli._negative_numbers(["a", "--threshold", "-1e-3", "--k", "-2"]) == [
        "a", "--threshold=-1e-3", "--k", "-2"]
    # --sharpness as well, each option of the line (-p was refused as an option)
    assert cli._negative_numbers(["--sharpness", "-2E0", "--threshold", "-inf", "x"]) == [
        "--sharpness=-2E0", "--threshold=-inf", "x"]
    negative, positive = (_cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--sharpness", p,
                               "--k", 2, cwd=root) for p in ("-3e0", "3"))
    assert negative.returncode == 0 and negative.stdout == positive.stdout, negative.stderr
    np.save(tmp_path / "column.npy", seed000.KERNEL[:, None])
    done = _cli(tmp_path / "signal.npy", tmp_path / "column.npy", "--k", 1, cwd=root)
    assert "holds an array of shape (3, 1), read as 3 kernels of one tap" in done.stderr
    assert "save a 1-d array" in done.stderr
    (tmp_path / "bom.csv").write_bytes(
        b"\xef\xbb\xbf" + "\n".join(map(repr, signal.tolist())).encode() + b"\n")
    done = _cli(tmp_path / "bom.csv", tmp_path / "kernel.txt", "--k", 2, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout == _cli(tmp_path / "signal.npy", tmp_path / "kernel.txt", "--k", 2,
                               cwd=root).stdout
    parser = cli.argparse.ArgumentParser()
    assert cli._read(str(tmp_path / "signal.npy"), "signal", parser).flags.writeable
    monkeypatch.setattr(config, "CLI_MEMORY_MAP_BYTES", 100)
    mapped = cli._read(str(tmp_path / "signal.npy"), "signal", parser)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable


@pytest.mark.parametrize("command", [["demo"], ["compile", "--only", "sharpen"],
                                     ["match", "signal.npy", "kernel.npy"]])
def test_the_commands_refuse_numba_disable_jit_in_a_line(tmp_path, command):
    """Under NUMBA_DISABLE_JIT, ``match`` and ``demo`` printed a traceback,
    and ``compile`` blamed the cache folder."""
    import os
    import subprocess
    from pathlib import Path

    np.save(tmp_path / "signal.npy", np.arange(10.0))
    np.save(tmp_path / "kernel.npy", np.ones(3))
    command = [str(tmp_path / word) if word.endswith(".npy") else word for word in command]
    done = subprocess.run([sys.executable, "-m", "cosim_np", *command],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          env=dict(os.environ, NUMBA_DISABLE_JIT="1"))
    assert done.returncode == 2
    assert f"python -m cosim_np {command[0]}: error: NUMBA_DISABLE_JIT is set" in done.stderr
    assert "Traceback" not in done.stderr and "unset NUMBA_DISABLE_JIT" in done.stderr


def test_demo_plot_without_matplotlib_refuses_before_its_table(tmp_path):
    """``demo --plot`` without matplotlib printed the whole table, then
    exited 1 by SystemExit, where ``match --plot`` exits 2 (an exploratory
    test)."""
    import subprocess
    from pathlib import Path

    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from cosim_np.__main__ import main\n"
              f"sys.exit(main(['demo', '--plot', {str(tmp_path / 'd.png')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and done.stdout == ""
    assert "python -m cosim_np demo: error: --plot needs matplotlib" in done.stderr
    # nor a path it cannot write (it was found after the table)
    missing = tmp_path / "no folder" / "d.png"
    done = subprocess.run([sys.executable, "-m", "cosim_np", "demo", "--plot", str(missing)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and done.stdout == ""
    assert f"cannot write --plot file {str(missing)!r}: there is no folder" in done.stderr


def test_a_figure_type_that_fails_to_write_ends_the_command_by_name(tmp_path, monkeypatch,
                                                                    capsys):
    """``--plot x.pgf`` (a type matplotlib lists) without TeX ended in a
    RuntimeError traceback (an exploratory test)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cosim_np import __main__ as cli

    def no_tex(self, *args, **kwargs):
        raise RuntimeError("'xelatex' not found")

    monkeypatch.setattr(Figure, "savefig", no_tex)
    path = str(tmp_path / "m.pgf")
    for argv in (["demo", "--plot", path],
                 ["match", str(tmp_path / "s.npy"), str(tmp_path / "k.npy"), "--plot", path]):
        np.save(tmp_path / "s.npy", np.arange(20.0))
        np.save(tmp_path / "k.npy", np.ones(3))
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2
        assert f"error: cannot write --plot file {path!r}: 'xelatex' not found" in (
            capsys.readouterr().err)


def test_the_command_line_stops_quietly_when_its_reader_does(tmp_path):
    """``match ... | head``: the table's reader closes the pipe early; the
    command stops without a BrokenPipeError traceback."""
    import subprocess
    from pathlib import Path

    np.save(tmp_path / "signal.npy", np.sin(np.arange(100_000) * 0.3))
    np.save(tmp_path / "kernel.npy", np.ones(3))
    command = subprocess.Popen(
        [sys.executable, "-m", "cosim_np", "match", tmp_path / "signal.npy",
         tmp_path / "kernel.npy"], cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "matches" in command.stdout.readline()  # (thousands more rows follow: > a pipe's buffer)
    command.stdout.close()
    errors = command.stderr.read()
    assert command.wait() == 1 and "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_windows_with_no_cosine_score_fill_and_match_only_as_a_number():
    """As documented: a zero window scores ``fill`` and is keyed like any
    score; ``fill=np.nan`` never matches."""
    silence_then_motif = np.r_[np.zeros(40), [1.0, 2.0, 3.0], np.zeros(40)]
    found = find_matches(silence_then_motif, [1.0, 2.0, 3.0], k=3)
    assert found.score.tolist() == [1.0, 0.0]  # the motif, then the first silent window
    assert found.index.tolist() == [40, 0]
    found = find_matches(silence_then_motif, [1.0, 2.0, 3.0], k=3, fill=np.nan)
    assert found.score.tolist() == [1.0] and found.index.tolist() == [40]
    assert len(find_matches(np.zeros(100), [1.0, 2.0, 3.0], k=3, fill=np.nan)) == 0
    # float16 scores: a fill past their range is inf, with no warning of the cast
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = find_matches(silence_then_motif.astype(np.float16), [1.0, 2.0, 3.0], k=2,
                             fill=1e6)
    assert found.score.dtype == np.float16 and np.isinf(found.score).all()


def test_matches_built_by_hand_take_lists_and_check_their_lengths():
    """``Matches`` is public, its signature documented: lists gave an
    AttributeError at its repr, and arrays of other lengths too (an
    exploratory test)."""
    built = Matches([1, 2], [0.5, 0.4], [0, 0], np.empty((2, 0), int))
    assert len(built) == 2 and "0.5000" in repr(built)
    assert list(built) == [(1, 0.5, 0, ()), (2, 0.4, 0, ())]
    assert len(Matches([], [], [], [])) == 0 and Matches([], [], [], []).batch.shape == (0, 0)
    with pytest.raises(ValueError, match=r"got index of shape \(2,\) for n = 1"):
        Matches([1, 2], [0.5], [0], np.empty((1, 0), int))
    with pytest.raises(ValueError, match=r"got batch of shape \(2,\)"):
        Matches([1, 2], [0.5, 0.4], [0, 0], [0, 0])


def test_matches_are_equal_by_value():
    import copy
    import pickle

    x = np.random.default_rng(4).standard_normal((2, 200))
    found = find_matches(x, np.hanning(7), k=3)
    again = find_matches(x, np.hanning(7), k=3)
    assert found == again and found == pickle.loads(pickle.dumps(found))
    assert found == copy.deepcopy(found) and not (found != again)
    assert found != find_matches(x, np.hanning(7), k=2)
    assert found != find_matches(x, np.hanning(7), k=3, exclusion=5)
    assert found != find_matches(x.astype(np.float32), np.hanning(7), k=3)  # (score dtypes)
    assert found != (found.index, found.score) and found.__eq__(None) is NotImplemented
    with pytest.raises(TypeError, match="unhashable"):
        hash(found)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_a_callable_threshold_gets_keys_of_the_scores_dtype(dtype, axis):
    """Along one axis or several, the keys a callable threshold gets have the
    scores' dtype (NaN where a score is NaN), so that its statistics are
    the same either way."""
    signal = np.random.default_rng(4).standard_normal((12, 12)).astype(dtype)
    signal[3, 5] = np.nan
    kernel = np.ones((2, 2)) if axis == (0, 1) else np.ones(2)
    seen = []

    def threshold(keys):
        seen.append(keys)
        return float(np.nanmedian(keys))

    found = find_matches(signal, kernel, threshold=threshold, axis=axis)
    scores = sliding_cosine(signal, kernel, axis=axis)
    assert scores.dtype == dtype and len(found) > 0
    assert all(keys.dtype == dtype for keys in seen)
    rows = [scores] if axis == (0, 1) else list(scores)
    for keys, row in zip(seen, rows, strict=True):
        np.testing.assert_array_equal(keys, np.abs(row))
