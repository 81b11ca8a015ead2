"""The grid clip of ``_nearpairs``: it must change exactly what ``np.clip``
changes, on data built to round past +-1 (copies, scaled copies, negated and
slightly perturbed copies), and step aside where it would cost more."""

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import _nearpairs, pairwise_cosine, topk_cosine
from cosim_np._cpu import tiles as _tiles


def unit_rows(x, compute):
    rows = _tiles.Rows(x)
    return rows.normalised(0, x.shape[0], np.empty(x.size, dtype=compute))


def near_copies(rng, a, m, scale):
    """``m`` rows: copies of rows of ``a`` times a random power of two or a
    random positive factor, half of them negated, each perturbed by noise of
    relative size ``scale``; a few independent rows, a zero row and a NaN row."""
    pick = rng.integers(0, a.shape[0], size=m)
    factor = np.where(rng.random(m) < 0.5, 2.0 ** rng.integers(-8, 8, size=m),
                      rng.uniform(0.1, 10, size=m))
    sign = np.where(rng.random(m) < 0.5, 1.0, -1.0)
    b = a[pick] * (factor * sign)[:, None]
    b += scale * rng.standard_normal(b.shape) * np.abs(b).max(axis=1, keepdims=True)
    b[: max(1, m // 8)] = rng.standard_normal((max(1, m // 8), a.shape[1]))
    b[-1] = 0.0
    if m > 2:
        b[-2, 0] = np.nan
    return b


def grid_clip(raw, left, right):
    """``raw`` clipped by a grid that is always used (``COMPARE_COST`` 0)."""
    got = raw.copy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_nearpairs, "COMPARE_COST", 0)
        assert _nearpairs.NearPairs.of_rows(right).clip(got, left, _tiles._split_threads)
    return got


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    n=st.integers(1, 30), m=st.integers(1, 30), d=st.integers(1, 300),
    scale_exponent=st.integers(-12, -1), seed=st.integers(0, 2**32 - 1),
)
def test_grid_clip_equals_numpy_clip(dtype, n, m, d, scale_exponent, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)).astype(dtype)
    b = near_copies(rng, a, m, 10.0**scale_exponent).astype(dtype)
    left, right = unit_rows(a, dtype), unit_rows(b, dtype)
    raw = np.matmul(left, right.T)
    np.testing.assert_array_equal(grid_clip(raw, left, right), np.clip(raw, -1.0, 1.0))


@pytest.mark.parametrize("dtype,scale", [(np.float32, 0.0), (np.float32, 1e-6), (np.float32, 1e-4),
                                         (np.float64, 0.0), (np.float64, 1e-8)])
def test_grid_clip_finds_every_score_past_one(dtype, scale):
    # Enough copies that rounding takes many scores past +1 and -1: the test
    # can fail, and the grid must find them all.  With noise of 1e-4 (float32)
    # or 1e-8 (float64) such pairs lie up to 4e-4 (3.5e-8) apart, 7% (4%) of
    # the radius: the radius is a worst-case bound, which no test can reach,
    # but one a fifteenth of it would fail here.
    rng = np.random.default_rng(11)
    a = rng.standard_normal((400, 256)).astype(dtype)
    b = near_copies(rng, a, 600, scale).astype(dtype)
    left, right = unit_rows(a, dtype), unit_rows(b, dtype)
    raw = np.matmul(left, right.T)
    assert np.count_nonzero(raw > 1) > 10 and np.count_nonzero(raw < -1) > 10
    got = grid_clip(raw, left, right)
    np.testing.assert_array_equal(got, np.clip(raw, -1.0, 1.0))


@given(
    rows=st.integers(1, 40), points=st.integers(1, 60),
    radius=st.sampled_from([1e-3, 0.02, 0.1, 0.5]), seed=st.integers(0, 2**32 - 1),
)
def test_grid_visits_exactly_the_pairs_within_the_radius(rows, points, radius, seed):
    # On made-up projections, in a tile of scores past 1 everywhere: exactly
    # the pairs within the radius of a row's projection or of its negation
    # are clipped (pairs within a rounding step of the radius may go either
    # way).  Points cluster around the rows and their negations, and lie on
    # cell edges, so neighbouring cells, both signs and the grid's borders
    # all matter.
    rng = np.random.default_rng(seed)
    p = rng.uniform(-0.3, 0.3, size=(rows, 4))
    near = p[rng.integers(0, rows, size=points)] * rng.choice([-1.0, 1.0], size=(points, 1))
    q = near + rng.normal(scale=radius, size=(points, 4)) * rng.choice([0.5, 1, 3], size=(points, 1))
    q[rng.random(points) < 0.2] = rng.uniform(-0.4, 0.4, size=4)
    q[rng.random(points) < 0.05] = np.nan
    p, q = p.astype(np.float32), q.astype(np.float32)
    grid = _nearpairs.NearPairs(q, radius, np.zeros((4, 4), np.float32))
    tile = np.full((rows, points), 2.0, dtype=np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_nearpairs, "COMPARE_COST", 0)
        assert grid.clip_projected(tile, p, _tiles._split_threads)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    dist2 = np.minimum(((p64[:, None] - q64[None]) ** 2).sum(-1),
                       ((p64[:, None] + q64[None]) ** 2).sum(-1))
    inside, outside = dist2 < radius**2 * (1 - 1e-5), dist2 > radius**2 * (1 + 1e-4)
    assert np.all(tile[inside] == 1.0)
    assert np.all(tile[outside | np.isnan(dist2)] == 2.0)


def test_crowded_rows_fall_back_unchanged():
    # Rows all close to one direction: every row would compare every point,
    # so the grid declines and leaves the tile as it was.
    rng = np.random.default_rng(12)
    base = rng.standard_normal(64).astype(np.float32)
    a = base + 1e-4 * rng.standard_normal((300, 64)).astype(np.float32)
    left = unit_rows(a, np.float32)
    raw = np.matmul(left, left.T)
    tile = raw.copy()
    assert not _nearpairs.NearPairs.of_rows(left).clip(tile, left, _tiles._split_threads)
    np.testing.assert_array_equal(tile, raw)


def spy_on_grid(monkeypatch):
    """A list that records what every grid clip returns."""
    used = []
    real = _nearpairs.NearPairs.clip

    def spy(self, tile, left, split):
        used.append(real(self, tile, left, split))
        return used[-1]

    monkeypatch.setattr(_nearpairs.NearPairs, "clip", spy)
    return used


def test_pairwise_with_and_without_the_grid(monkeypatch):
    # End to end, straight into the result: the grid's clip, the whole-result
    # clip and the patching of zero/NaN rows give the same array.
    rng = np.random.default_rng(13)
    a = rng.standard_normal((500, 96)).astype(np.float32)
    b = near_copies(rng, a, 700, 1e-7).astype(np.float32)
    a[7] = 0.0
    used = spy_on_grid(monkeypatch)
    got = pairwise_cosine(a, b, fill=np.nan)
    assert used == [True]
    monkeypatch.setattr(_nearpairs, "fitting", lambda *args: None)
    np.testing.assert_array_equal(got, pairwise_cosine(a, b, fill=np.nan))
    assert np.nanmax(np.abs(got)) <= 1.0


def test_grid_within_the_memory_bound(monkeypatch):
    rng = np.random.default_rng(14)
    a = rng.standard_normal((3000, 64)).astype(np.float32)
    b = near_copies(rng, a, 2000, 0.0).astype(np.float32)
    out = np.empty((3000, 2000), dtype=np.float32)  # straight into the result
    budget = 2 * 2**20  # the grid fits in what the tiles leave
    pairwise_cosine(a[:5], b[:5], out=out[:5, :5], max_memory=budget)  # warm up
    tracemalloc.start()
    try:
        used = spy_on_grid(monkeypatch)
        pairwise_cosine(a, b, out=out, max_memory=budget)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= budget
    assert used == [True]
    raw = np.matmul(unit_rows(a, np.float32), unit_rows(b, np.float32).T)
    assert np.count_nonzero(raw > 1) > 0
    np.testing.assert_array_equal(out, np.clip(raw, -1.0, 1.0))


def test_radius():
    # float32 rows of 256: the figure the module docstring quotes
    assert 0.0055 < _nearpairs.radius(256, np.dtype(np.float32)) < 0.0058
    assert _nearpairs.radius(256, np.dtype(np.float64)) < 1e-6
    # beyond d u = 0.01 the bound is of no use: the plain clip runs
    assert _nearpairs.radius(200_000, np.dtype(np.float32)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,m,d", [(2000, 3000, 64), (50, 3000, 8), (10, 10, 300)])
def test_grid_memory_within_its_estimate(dtype, n, m, d):
    # pairwise_cosine uses the grid only where nbytes fits in what the tiles
    # leave of max_memory: building it and clipping a tile must stay within
    rng = np.random.default_rng(15)
    left = unit_rows(rng.standard_normal((n, d)).astype(dtype), dtype)
    right = unit_rows(rng.standard_normal((m, d)).astype(dtype), dtype)
    tile = np.zeros((n, m), dtype=dtype)
    _nearpairs.NearPairs.of_rows(right).clip(tile, left, _tiles._split_threads)  # warm up
    tracemalloc.start()
    try:
        _nearpairs.NearPairs.of_rows(right).clip(tile, left, _tiles._split_threads)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= _nearpairs.nbytes(n, m)


def test_concurrent_calls_from_user_threads():
    # Grid clips (pairwise_cosine) and per-thread streams that lower the BLAS
    # thread count (topk_cosine) from four user threads at once: each call
    # gives its serial result, and every score stays within [-1, 1].
    rng = np.random.default_rng(16)
    problems = []
    for _ in range(4):
        a = rng.standard_normal((300, 128)).astype(np.float32)
        problems.append((a, near_copies(rng, a, 400, 1e-6).astype(np.float32)))
    serial = [(pairwise_cosine(a, b), topk_cosine(a, b, 5)) for a, b in problems]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: (pairwise_cosine(*p), topk_cosine(*p, 5)), problems * 2))
    for (got, (scores, idx)), (want, (want_scores, want_idx)) in zip(results, serial * 2):
        # BLAS may round a product differently on another thread count
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * 132 * 2.0**-23)
        assert np.nanmax(np.abs(got)) <= 1.0 and np.nanmax(np.abs(scores)) <= 1.0
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=8 * 132 * 2.0**-23)
