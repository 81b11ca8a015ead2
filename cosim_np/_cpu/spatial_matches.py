"""``find_matches`` over several sliding axes (images, volumes) on the CPU:
the scores of ``_cpu.spatial_driver`` a slab of output rows along the first
sliding axis at a time (``score_slabs``, at most the call's ``max_memory``
of scores; or the whole scores, as the CUDA and Dask backends and a callable
threshold give them), candidates (local maxima of the key along every
sliding axis) gathered slab by slab, then greedy selection with a box
exclusion zone, one batch index at a time.

A slab repeats the last two rows of the one before, so each window is
judged with its true neighbours.  With ``k``, a batch index keeps only its
best candidates while scanning: each kept match suppresses at most the
candidates within its box (no two of a kernel are neighbours along an
axis, so at most half the box's windows per kernel), and greedy selection
consults only better candidates, so the best ``k * (that + 1)`` always
decide it (``_core.matches.spatial_pool_size``).  A kept match is looked up
by the cell of a grid of cells the size of the exclusion zone plus one (one
kept match per cell at most): the selection holds the candidates and the
kept matches, never a mask of the windows.
"""

import math

import numpy as np

from .._core import config, spatial
from .._core.matches import threshold_value
from . import scratch, spatial_driver
from ._jit import jit


@scratch.one_call
def find_matches(x, splan, mplan, method):
    """``(row, index, kernel, score)`` of the matches, best first, for a
    planned call (``_core.spatial.SpatialPlan`` and ``_core.matches.MatchPlan``
    with a tuple ``exclusion``); ``index`` ``(n, r)``."""
    if mplan.threshold_fn is not None:  # (the callable reads a batch index's keys whole)
        return select(spatial_driver.sliding_cosine(x, splan, method, None), splan, mplan)
    # (half the working memory for a slab of scores, half for its candidates' room)
    slabs = spatial_driver.score_slabs(x, splan, method, mplan.budget // 2, overlap=2)
    return _matches(slabs, splan.geometry.nout, mplan, splan.khat.shape[0], splan.out_dtype)


def select(scores, splan, mplan):
    """``find_matches``'s result of ``scores``, the planned call's
    ``sliding_cosine`` result (a NumPy array in the caller's layout)."""
    geo = splan.geometry
    r = len(geo.axes)
    single = not spatial.has_kernel_axis(splan)
    scores = spatial_driver.computing_layout(scores, splan.result_axes, r, not single)
    scores = scores.reshape((-1,) + scores.shape[scores.ndim - r - 1:])  # (B, K, nout...)
    thresholds = None
    if mplan.threshold_fn is not None:
        thresholds = []
        for b in range(scores.shape[0]):
            key = keys(scores[b], mplan.sign).astype(scores.dtype)  # (as along one axis)
            shown = np.where(key == -np.inf, np.nan, key) if np.isnan(scores[b]).any() else key
            thresholds.append(threshold_value(mplan.threshold_fn(shown[0] if single else shown)))
    return _matches([(0, 0, geo.nout[0], scores)], geo.nout, mplan, scores.shape[1],
                    scores.dtype, thresholds)


def keys(scores, sign):
    """The keys of ``scores`` (float64): ``|s|``, ``s`` or ``-s`` for the sign
    codes 0, 1, -1; NaN as ``-inf``."""
    s = scores.astype(np.float64)
    key = np.abs(s) if sign == 0 else s * sign
    key[np.isnan(key)] = -np.inf
    return key


def _matches(slabs, nout, mplan, nker, dtype, thresholds=None):
    """The matches of the scores given as ``slabs`` ``(b0, i0, i1, slab)``
    (``slab`` ``(nb, K, i1 - i0, nout_2, ...)``, the windows ``[i0, i1)``
    along the first sliding axis of batch indices ``[b0, b0 + nb)``, each
    slab's first rows repeating the last two of the one before of the same
    batch indices), their scores of ``dtype``; ``thresholds``: one per
    batch index, else the plan's."""
    plane = math.prod(nout[1:])
    pools = {}  # a batch index's, from its first candidates
    block = None  # the batch indices the slabs are of
    for b0, i0, i1, slab in slabs:
        if block != b0:
            block, done = b0, 0  # (done: windows along the first axis whose candidates are found)
        lo = done - i0
        hi = slab.shape[2] if i1 == nout[0] else slab.shape[2] - 1  # (the last needs the next)
        for b in range(b0, b0 + slab.shape[0]):
            threshold = mplan.threshold if thresholds is None else thresholds[b]
            _local_maxima(slab[b - b0], mplan.sign, threshold, _pool_of(pools, b, mplan.pool),
                          lo * plane, hi * plane, mplan.budget // 2, i0 * plane)
        done = i0 + hi
    held = sorted(pools) or [0]  # (one at least: the arrays' shapes and dtypes)
    found = [_select_row(*pools.get(b, _Pool(0)).arrays(), nout, mplan, nker == 1) for b in held]
    rows = np.concatenate([np.full(len(f[0]), b, dtype=np.int64) for b, f in zip(held, found)])
    index = np.concatenate([f[0] for f in found])
    kernel = np.concatenate([f[1] for f in found])
    score = np.concatenate([f[2] for f in found])
    if len(found) > 1:
        # each batch index's matches are in order: a stable sort by key keeps
        # batch indices, then positions and kernels, in order among equal keys
        order = np.argsort(-np.concatenate([f[3] for f in found]), kind="stable")
        rows, index, kernel, score = rows[order], index[order], kernel[order], score[order]
    return rows, index.reshape(-1, len(nout)), kernel, score.astype(dtype)


def _pool_of(pools, b, size):
    """The sink of batch index ``b``'s candidates: its pool, made when the
    first come (many small images, most without a candidate, hold none)."""
    def add(*candidates):
        if not candidates[0].size:
            return
        if b not in pools:
            pools[b] = _Pool(size)
        pools[b].add(*candidates)

    return add


class _Pool:
    """The candidates of one batch index, as the slabs give them: all of
    them, or with ``size`` (``k`` given) the best ``size`` in the selection's
    order (best key first, ties by position, then kernel), cut back whenever
    twice that many have come.  (Keeping every tie of the last instead held
    every window of an image of equal scores, a lattice of equal dots.)"""

    def __init__(self, size):
        self.size = size
        self.parts = []
        self.count = 0

    def add(self, kernel, flat, key, score):
        """Candidates of arrays the caller may reuse (copied)."""
        if not kernel.size:
            return
        best = self._best(kernel, flat, key)
        if best is not None:  # (fancy indexing copies)
            self.parts.append((kernel[best], flat[best], key[best], score[best]))
        else:
            self.parts.append((kernel.copy(), flat.copy(), key.copy(), score.copy()))
        self.count += self.parts[-1][0].size
        if self.size and self.count > 2 * self.size:
            self.parts = [self.arrays()]
            self.count = self.parts[0][0].size

    def arrays(self):
        """``(kernel, flat, key, score)``, in the order they came (by slab,
        then kernel and position)."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        arrays = tuple(np.concatenate(a) if len(self.parts) > 1 else a[0]
                       for a in zip(*self.parts))
        best = self._best(*arrays[:3])
        return arrays if best is None else tuple(a[best] for a in arrays)

    def _best(self, kernel, flat, key):
        """The indices of the best ``size`` candidates, in order; None where
        all are kept."""
        if not self.size or key.size <= self.size:
            return None
        last = np.partition(key, key.size - self.size)[-self.size]
        above = np.flatnonzero(key > last)
        tied = np.flatnonzero(key == last)
        tied = tied[np.lexsort((kernel[tied], flat[tied]))[: self.size - above.size]]
        return np.sort(np.concatenate((above, tied)))


def _select_row(kernel, flat, found, score, shape, mplan, one_kernel):
    """The matches of one batch index from its candidates (``kernel``,
    ``flat`` index in the windows of ``shape``, key, score): ``(index (n,
    r), kernel, score, key)`` in greedy order (best key first, ties by
    position, then kernel).  With ``k``, only the best candidates are
    sorted, more of them until the greedy selection keeps ``k`` or has seen
    them all."""
    limit = -1 if mplan.k is None else mplan.k
    take = found.size if limit < 0 else max(config.MATCH_CANDIDATES_PER_K * limit, 1)
    dims = np.array(shape, dtype=np.int64)
    # (an exclusion past an axis's windows excludes the whole axis, as that
    # many does; the cells' ``exclusion + 1`` stays within int64)
    zone = np.array([min(e, n) for e, n in zip(mplan.exclusion, shape)], dtype=np.int64)
    while True:
        if take < found.size:  # the best ``take`` (with every tie of the last)
            best = np.flatnonzero(found >= np.partition(found, found.size - take)[-take])
        else:
            best = np.arange(found.size)
        best = best[_best_first(kernel[best], flat[best], found[best], one_kernel)]
        keep = np.zeros(best.size, dtype=np.bool_)
        kept = greedy_cells(flat[best], dims, zone, limit, keep)
        if kept == limit or best.size == found.size:
            break
        take *= 8
    best = best[keep]
    position = np.stack(np.unravel_index(flat[best], shape), axis=-1).astype(np.int64)
    return position, kernel[best], score[best], found[best]


def _best_first(kernel, flat, found, one_kernel=False):
    """The order of candidates best key first, ties by position, then
    kernel; ``one_kernel``: they are of one kernel, listed by position."""
    if not one_kernel:
        return np.lexsort((kernel, flat, -found))
    # a quicksort by key, then each run of equal keys put back in list
    # order (faster than a stable sort)
    order = np.argsort(-found, kind="quicksort")
    ranked = found[order]
    tied = ranked[1:] == ranked[:-1]
    if tied.any():
        members = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
        runs = np.cumsum(np.r_[True, ~tied])[members]
        order[members] = order[members][np.lexsort((order[members], runs))]
    return order


def _local_maxima(scores, sign, threshold, sink, lo=0, hi=None, room_bytes=None, offset=0):
    """The candidates of ``scores`` ``(K, n_1, ..., n_r)`` whose flat index
    (in ``(n_1, ..., n_r)``) lies in ``[lo, hi)`` (whole rows along the last
    axis; default all), a block of rows at a time to ``sink(kernel, flat +
    offset, key, score)`` (arrays the next block reuses), in the order of
    their flat index in ``scores``: windows whose key reaches ``threshold``
    (and is not ``-inf``) and is a local maximum along every sliding axis
    (above the key before it, at least the one after it; the neighbours
    outside ``[lo, hi)`` read too).  The room for a block's candidates takes
    at most ``room_bytes`` (a row's at least)."""
    values = scores.reshape(scores.shape[0], -1)
    if values.dtype != np.float32 and values.dtype != np.float64:
        values = values.astype(np.float32)  # (float16: exactly)
    shape = np.array(scores.shape[1:], dtype=np.int64)
    n = int(shape[-1])
    hi = values.shape[1] if hi is None else hi
    # Rows along the last axis, a block at a time, each with room for every
    # candidate it can hold (of two neighbours along a row at most one is):
    # memory follows the candidates found, not the windows' count.
    room = (n + 1) // 2
    most = config.MATCH_CANDIDATE_ROOM
    if room_bytes is not None:
        most = min(most, room_bytes // 32)  # (four arrays of 8 bytes a candidate)
    rows = max(1, most // room)
    kernel = np.empty(min(rows, max(1, (hi - lo) // n)) * room, dtype=np.int64)
    flat = np.empty_like(kernel)
    found = np.empty(kernel.size)
    score = np.empty(kernel.size)
    for k in range(values.shape[0]):
        for start in range(lo, hi, rows * n):
            count = local_maxima(values, shape, sign, float(threshold), k, start,
                                 min(hi, start + rows * n), kernel, flat, found, score)
            flat[:count] += offset
            sink(kernel[:count], flat[:count], found[:count], score[:count])


@jit
def local_maxima(scores, shape, sign, threshold, k, start, stop, kernel, flat, found, score):
    """The candidates of kernel ``k`` among the windows ``[start, stop)``
    (whole rows along the last axis) of ``scores`` ``(K, prod(shape))``
    (see ``_local_maxima``) into ``kernel``, ``flat``, ``found`` (keys) and
    ``score`` (the scores, float64); returns how many there are.  A row
    along the last axis at a time: its keys, then
    every test as a pass along the row (no branch on the data), then the
    candidates gathered."""
    r = shape.size
    n = shape[r - 1]
    strides = np.ones(r, dtype=np.int64)
    for a in range(r - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    keys = np.empty(n)
    peak = np.empty(n, dtype=np.bool_)
    count = 0
    src = scores[k]
    for base in range(start, stop, n):
        row = src[base : base + n]
        for j in range(n):
            keys[j] = _key_of(row[j], sign)
            peak[j] = (keys[j] >= threshold) & (keys[j] > -np.inf)
        for j in range(n - 1):  # along the row
            peak[j] &= keys[j] >= keys[j + 1]
            peak[j + 1] &= keys[j + 1] > keys[j]
        for a in range(r - 1):  # against the rows before and after along each other axis
            position = base // strides[a] % shape[a]
            if position > 0:
                other = src[base - strides[a] : base - strides[a] + n]
                for j in range(n):
                    peak[j] &= keys[j] > _key_of(other[j], sign)
            if position < shape[a] - 1:
                other = src[base + strides[a] : base + strides[a] + n]
                for j in range(n):
                    peak[j] &= keys[j] >= _key_of(other[j], sign)
        for j in range(n):
            if peak[j]:
                kernel[count] = k
                flat[count] = base + j
                found[count] = keys[j]
                score[count] = row[j]
                count += 1
    return count


@jit(from_python=False)
def _key_of(value, sign):
    """The key of a score, as ``_cpu.matches._key`` (with no branch)."""
    s = np.float64(value)
    s = abs(s) if sign == 0 else s * sign
    return s if s == s else -np.inf


@jit
def greedy_cells(flat, shape, exclusion, limit, keep):
    """Greedy selection of the candidates at the flat indices ``flat`` of
    windows of ``shape`` (sorted best first): ``keep[c]`` unless a kept one
    lies within ``exclusion`` along every axis, at most ``limit`` (``-1``: no
    limit).  Returns how many are kept.

    Kept matches are found by their cell (``exclusion + 1`` windows along
    each axis; two kept in one cell would be within the zone of each other,
    so a cell holds one at most) in a hash table: a candidate looks at the
    cells around its own, ``3**r`` of them."""
    r = shape.size
    strides = np.ones(r, dtype=np.int64)
    cell_strides = np.ones(r, dtype=np.int64)
    cells = np.empty(r, dtype=np.int64)
    for a in range(r):
        cells[a] = shape[a] // (exclusion[a] + 1) + 1
    for a in range(r - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
        cell_strides[a] = cell_strides[a + 1] * cells[a + 1]
    most = flat.size if limit < 0 else min(flat.size, limit)
    bits = 1
    while (1 << bits) < 2 * most + 2:
        bits += 1
    mask = (1 << bits) - 1
    table_cell = np.full(mask + 1, -1, dtype=np.int64)
    table_flat = np.empty(mask + 1, dtype=np.int64)
    position = np.empty(r, dtype=np.int64)
    neighbours = 3**r
    own = (neighbours - 1) // 2  # (the neighbour of no offset: the candidate's own cell)
    kept = 0
    for c in range(flat.size):
        if limit >= 0 and kept >= limit:
            return kept
        for a in range(r):
            position[a] = flat[c] // strides[a] % shape[a]
        suppressed = False
        free = own_cell = -1  # the candidate's own cell, and the empty slot it probed to
        for t in range(neighbours):
            cell = 0
            inside = True
            rest = t
            for a in range(r):
                index = position[a] // (exclusion[a] + 1) + rest % 3 - 1
                rest //= 3
                if index < 0 or index >= cells[a]:
                    inside = False
                cell += index * cell_strides[a]
            if not inside:
                continue
            # (Fibonacci hashing: neighbouring cells land far apart)
            slot = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask
            while table_cell[slot] != -1 and table_cell[slot] != cell:
                slot = (slot + 1) & mask
            if table_cell[slot] == -1:
                if t == own:
                    free, own_cell = slot, cell
                continue
            near = True
            for a in range(r):
                if abs(table_flat[slot] // strides[a] % shape[a] - position[a]) > exclusion[a]:
                    near = False
            if near:
                suppressed = True
                break
        if suppressed:
            continue
        # (its own cell is empty: a kept match there would lie within the zone)
        keep[c] = True
        kept += 1
        table_cell[free] = own_cell
        table_flat[free] = flat[c]
    return kept
