"""The CPU backend of ``find_matches``: score a planned call a tile of
windows at a time and select the matches, in bounded memory.

Scores.  A tile holds the same windows of every signal row, and its scores
are computed by the drivers' own loops (``drivers.run_direct`` and
``drivers.run_fft``) on a copy of just the samples it needs, with tile
starts on the boundaries where the whole call starts its tiles and FFT
segments: every score is bit for bit the one ``sliding_cosine`` gives for
the whole array (padded modes score their first and last ``span`` windows
apart, as the whole call does).

Selection.  The scan kernel (:func:`_scan`) turns each score into its key,
finds the local maxima, carrying the last two keys of each (row, kernel)
across tile borders so that a window on a border is judged with its true
neighbours, and hands every candidate at or above the threshold either to a
bounded pool per row (a heap of the best ``plan.pool`` by the selection's
order: key descending, then index, then kernel; when ``k`` is given) or to
a list (threshold only).  It tests a block of windows at once for a key
that reaches the cut and rises above the one before it, and judges one
window at a time only the blocks that hold one.
Greedy selection runs on the candidates in that order (:func:`_greedy`), or
for a list, on each cluster of candidates closer than the exclusion zone
(:func:`_greedy_clusters`).  With ``k``, the pool is a prefix of the order
of all candidates, so greedy over it decides each of them as greedy over all
would; where it keeps fewer than ``k`` from a full pool (which may have
left candidates out), the scan runs again for the candidates after the pool's last (and outside
the zones of the matches kept), until ``k`` are kept or none is left.
"""

import functools
import math

import numba
import numpy as np

from .._core import config
from .._core import matches as core
from .._core import sliding as plans
from . import drivers, powers, scratch, threads
from . import sliding as kernels
from ._jit import jit

# ---------------------------------------------------------------------------
# kernels


@jit(from_python=False)
def _key(s, sign):
    """The key of a score: ``|s|``, ``s`` or ``-s``; NaN gives ``-inf``."""
    if math.isnan(s):
        return -np.inf
    if sign == 0:
        return abs(s)
    return s if sign > 0 else -s


@jit(from_python=False)
def _worse(ka, ia, na, kb, ib, nb):
    """Is candidate a after candidate b in the selection's order?"""
    if ka != kb:
        return ka < kb
    if ia != ib:
        return ia > ib
    return na > nb


@jit(from_python=False)
def _offer(r, key, idx, ker, score, hk, hi, hn, hs, size):
    """Put a candidate into row ``r``'s pool (a heap whose root is its worst
    candidate), evicting the worst when it is full and the new one is better."""
    cap = hk.shape[1]
    n = size[r]
    if n < cap:
        j = n
        size[r] = n + 1
        while j > 0:
            parent = (j - 1) // 2
            if not _worse(key, idx, ker, hk[r, parent], hi[r, parent], hn[r, parent]):
                break
            hk[r, j], hi[r, j], hn[r, j], hs[r, j] = hk[r, parent], hi[r, parent], hn[r, parent], hs[r, parent]
            j = parent
    else:
        if not _worse(hk[r, 0], hi[r, 0], hn[r, 0], key, idx, ker):
            return
        j = 0
        while True:
            child = 2 * j + 1
            if child >= n:
                break
            if child + 1 < n and _worse(hk[r, child + 1], hi[r, child + 1], hn[r, child + 1],
                                        hk[r, child], hi[r, child], hn[r, child]):
                child += 1
            if not _worse(hk[r, child], hi[r, child], hn[r, child], key, idx, ker):
                break
            hk[r, j], hi[r, j], hn[r, j], hs[r, j] = hk[r, child], hi[r, child], hn[r, child], hs[r, child]
            j = child
    hk[r, j], hi[r, j], hn[r, j], hs[r, j] = key, idx, ker, score


@jit(from_python=False)
def _allowed(r, key, idx, ker, cursor_key, cursor_idx, cursor_ker, kept, kept_start, exclusion):
    """A rescan's filter: the candidate comes after row ``r``'s cursor in the
    order, and lies outside the zone of every match kept so far."""
    if not _worse(key, idx, ker, cursor_key[r], cursor_idx[r], cursor_ker[r]):
        return False
    lo, hi = kept_start[r], kept_start[r + 1]
    # the first kept position >= idx - exclusion
    while lo < hi:
        mid = (lo + hi) // 2
        if kept[mid] < idx - exclusion:
            lo = mid + 1
        else:
            hi = mid
    return not (lo < kept_start[r + 1] and kept[lo] <= idx + exclusion)


# Windows the scan tests at once for a key that reaches the cut and rises
# above the one before it, before judging them one by one (most blocks have
# none; short blocks, because those windows come in clusters spread over the
# signal)
_SKIP = 16


@jit(inline=True)
def _any_reaches(row, t, sign, cut):
    """Does a key of ``row[t : t + _SKIP]`` reach ``cut``?  (The cheaper
    test, first: NaN does not.)"""
    hit = False
    if sign == 0:
        for j in range(t, t + _SKIP):
            hit |= abs(row[j]) >= cut
    elif sign > 0:
        for j in range(t, t + _SKIP):
            hit |= row[j] >= cut
    else:
        for j in range(t, t + _SKIP):
            hit |= -row[j] >= cut
    return hit


@jit(inline=True)
def _any_rising(row, t, sign, cut):
    """Does a window of ``row[t : t + _SKIP]`` (``t >= 1``) have a key that
    reaches ``cut`` and exceeds the key before it?  Every candidate does
    (NaN keys count as -inf: a NaN window is no candidate, and any window
    after one rises).  No early exit, so that the loop is vectorised."""
    hit = False
    if sign == 0:
        for j in range(t, t + _SKIP):
            hit |= (abs(row[j]) >= cut) & ~(abs(row[j]) <= abs(row[j - 1]))
    elif sign > 0:
        for j in range(t, t + _SKIP):
            hit |= (row[j] >= cut) & ~(row[j] <= row[j - 1])
    else:
        for j in range(t, t + _SKIP):
            hit |= (-row[j] >= cut) & ~(-row[j] <= -row[j - 1])
    return hit


@jit
def _scan(tile, w0, last, skip, sign, thresholds, prev2, prev1, prev1_score, to_pool, filtered,
          cursor_key, cursor_idx, cursor_ker, kept, kept_start, exclusion,
          hk, hi, hn, hs, size, list_score, list_idx, list_code):
    """Scan the scores ``tile`` ``(R, K, T)`` of the windows ``w0 ..
    w0+T-1``: every window before the tile's last is judged (the one before
    ``w0`` with the carried keys ``prev2``, ``prev1``), and the last too
    when ``last``; windows before ``skip`` are not.  Candidates go to the
    pools (``to_pool``) or to the list arrays (``list_code = row * K +
    kernel``); returns the list's length.

    The cheapest test comes first: against the cut (the threshold, or the
    worst key of a full pool), which most windows fail once the pool is
    full, so the loop's branch is predictable."""
    rows, nker, width = tile.shape
    count = 0
    cap = hk.shape[1]
    for r in range(rows):
        thr = thresholds[r]
        for k in range(nker):
            row = tile[r, k]
            a = prev2[r, k]
            b = prev1[r, k]
            bs = prev1_score[r, k]
            cut = thr
            if to_pool and size[r] == cap and hk[r, 0] > cut:
                cut = hk[r, 0]
            stop = width + 1 if last else width
            passed = False  # blocks passed over since a, b, bs were set
            for t0 in range(0, stop, _SKIP):
                # pass over a block with no candidate, where the window
                # before it is none either (below the cut, or not above
                # its own predecessor, or in a block passed over)
                if (t0 > 0 and t0 + _SKIP <= width and (passed or b < cut or not b > a)
                        and not (_any_reaches(row, t0, sign, cut) and _any_rising(row, t0, sign, cut))):
                    passed = True
                    continue
                if passed:
                    a, b, bs = _key(row[t0 - 2], sign), _key(row[t0 - 1], sign), row[t0 - 1]
                    passed = False
                for t in range(t0, min(t0 + _SKIP, stop)):
                    if t < width:
                        s = row[t]
                        c = _key(s, sign)
                    else:
                        s = np.nan
                        c = -np.inf
                    # window w0 + t - 1, of key b, between a and c
                    if b >= cut:
                        if b > a and b >= c and w0 + t - 1 >= skip:
                            idx = w0 + t - 1
                            if not filtered or _allowed(r, b, idx, k, cursor_key, cursor_idx, cursor_ker,
                                                        kept, kept_start, exclusion):
                                if to_pool:
                                    _offer(r, b, idx, k, bs, hk, hi, hn, hs, size)
                                    if size[r] == cap and hk[r, 0] > cut:
                                        cut = hk[r, 0]
                                else:
                                    list_score[count] = bs
                                    list_idx[count] = idx
                                    list_code[count] = r * nker + k
                                    count += 1
                    a = b
                    b = c
                    bs = s
            if passed:  # (the row's last block, ending at width)
                a, b, bs = _key(row[width - 2], sign), _key(row[width - 1], sign), row[width - 1]
            prev2[r, k] = a
            prev1[r, k] = b
            prev1_score[r, k] = bs
    return count


@jit
def _greedy(rows, idx, exclusion, k, counts, keep, bucket, slots, distinct, owner):
    """Greedy selection over candidates sorted by row, then in the order
    (best first): ``keep[c]`` unless a kept candidate of its row lies within
    ``exclusion`` windows or the row has ``k`` (``k < 0``: no limit; ``counts``
    holds each row's matches so far and is updated).

    Windows are cut into buckets of ``exclusion + 1``: two kept matches are
    never in one bucket, and a candidate's zone touches its own bucket and
    the two beside it, so three look-ups decide it.  Candidate ``c`` lies in
    ``bucket[c]``, whose owner (the kept candidate's window, or -1) is
    ``owner[slots[c]]``: one slot per bucket of every row where ``distinct``
    is empty, else slots only for the buckets that hold a candidate, the
    sorted ``distinct`` ones (see :func:`_run_greedy`)."""
    n = idx.size
    direct = distinct.size == 0
    for c in range(n):
        r = rows[c]
        if k >= 0 and counts[r] >= k:
            continue
        s = slots[c]
        i = idx[c]
        if owner[s] >= 0:
            continue
        if direct:
            if owner[s - 1] >= 0 and i - owner[s - 1] <= exclusion:
                continue
            if owner[s + 1] >= 0 and owner[s + 1] - i <= exclusion:
                continue
        else:
            if (s > 0 and distinct[s - 1] == bucket[c] - 1 and owner[s - 1] >= 0
                    and i - owner[s - 1] <= exclusion):
                continue
            if (s + 1 < distinct.size and distinct[s + 1] == bucket[c] + 1 and owner[s + 1] >= 0
                    and owner[s + 1] - i <= exclusion):
                continue
        owner[s] = i
        keep[c] = True
        counts[r] += 1


# Clusters of more candidates than this are put in order by one sort in
# NumPy, all together (Numba's would cost a first call a second of
# compilation), shorter ones by insertion in the selection's loop.
LONG_CLUSTER = 32


@jit
def _greedy_clusters(row, idx, keys, exclusion, keep, long_bounds):
    """Greedy selection without a limit over candidates sorted by row, then
    index (then kernel): ``keep[c]``.

    A candidate's fate depends only on the candidates within ``exclusion``
    windows of it, so greedy over all candidates decides each *cluster*
    (a run whose neighbours lie at most ``exclusion`` apart) as greedy over
    that cluster alone: a lone candidate is kept; a cluster is put in the
    order (a stable sort by key: index, then kernel, among equal keys) and
    decided by :func:`_decide_cluster`.  Clusters of up to
    ``LONG_CLUSTER`` candidates are put in order here, by insertion; the
    longer ones are left for :func:`_greedy_long_clusters`, their first
    and last candidates in ``long_bounds`` (room for ``n // (LONG_CLUSTER +
    1) + 1`` of them); returns how many."""
    n = idx.size
    owner = np.empty(n + 3, np.int64)
    order = np.empty(LONG_CLUSTER, np.int64)
    nlong = 0
    start = np.int64(0)  # (a typed constant: see _jit, "Constants")
    while start < n:
        stop = start + 1
        while stop < n and row[stop] == row[start] and idx[stop] - idx[stop - 1] <= exclusion:
            stop += 1
        size = stop - start
        if size == 1:
            keep[start] = True
        elif size > LONG_CLUSTER:
            long_bounds[nlong, 0] = start
            long_bounds[nlong, 1] = stop
            nlong += 1
        else:
            for j in range(size):
                c = start + j
                at = j
                while at > 0 and keys[start + order[at - 1]] < keys[c]:
                    order[at] = order[at - 1]
                    at -= 1
                order[at] = j
            _decide_cluster(idx, start, order[:size], exclusion, keep, owner)
        start = stop
    return nlong


@jit
def _greedy_long_clusters(idx, bounds, orders, exclusion, keep):
    """:func:`_greedy_clusters` for its long clusters (``bounds``), each in
    its order, one after the other in ``orders`` (positions from the
    cluster's first candidate)."""
    owner = np.empty(idx.size + 3, np.int64)
    cursor = 0
    for g in range(bounds.shape[0]):
        start, stop = bounds[g, 0], bounds[g, 1]
        _decide_cluster(idx, start, orders[cursor : cursor + stop - start], exclusion, keep,
                        owner)
        cursor += stop - start


@jit(from_python=False)
def _decide_cluster(idx, start, order, exclusion, keep, owner):
    """Greedy over the cluster of candidates ``start ..`` taken in ``order``
    (positions from ``start``), with a table of buckets of ``exclusion + 1``
    windows, as :func:`_greedy`, which has a slot per bucket the cluster
    spans (``owner``: room for them, fewer than its candidates plus three)."""
    width = exclusion + 1
    base = idx[start]
    owner[: (idx[start + order.size - 1] - base) // width + 3] = -1
    for j in range(order.size):
        c = start + order[j]
        i = idx[c]
        b = (i - base) // width + 1
        if owner[b] >= 0:
            continue
        if owner[b - 1] >= 0 and i - owner[b - 1] <= exclusion:
            continue
        if owner[b + 1] >= 0 and owner[b + 1] - i <= exclusion:
            continue
        owner[b] = i
        keep[c] = True


def _run_greedy(row, idx, exclusion, nwin, k, counts):
    """:func:`_greedy`, with a slot per bucket where that takes little memory
    (no more than the candidates' own: a slot per bucket of a long signal
    took megabytes past ``max_memory`` for a few candidates), else one per
    bucket that holds a candidate (found by binary search: in NumPy, which a
    first call need not compile)."""
    keep = np.zeros(idx.size, dtype=np.bool_)
    if idx.size:
        width = exclusion + 1
        per_row = nwin // width + 3  # (a bucket of zeros each side)
        bucket = row.astype(np.int64) * per_row + idx.astype(np.int64) // width + 1
        buckets = (int(row[-1]) + 1) * per_row
        if buckets <= 8 * idx.size:
            slots, distinct = bucket, np.empty(0, np.int64)
        else:
            distinct = np.unique(bucket)
            slots = np.searchsorted(distinct, bucket)
            buckets = distinct.size
        owner = np.full(buckets, -1, np.int64)
        _greedy(row, idx, exclusion, k, counts, keep, bucket, slots, distinct, owner)
    return keep


# ---------------------------------------------------------------------------
# scores, a tile at a time


class Scores:
    """The scores of a planned ``sliding_cosine`` call (``splan``) on the host
    signal ``x``, a tile of windows of every row at a time: ``tiles()``
    yields ``(w0, scores)``, ``scores`` ``(rows, K, T)`` of the compute dtype
    (float16 results rounded to float16), in order of ``w0``."""

    def __init__(self, x, splan, method, budget, extra_bytes=0, rows=None):
        nker, nchan, m = splan.khat.shape
        self.plan = splan
        self.compute = plans.compute_dtype(splan.out_dtype)
        if splan.channel_axis is None:
            moved = drivers.moveaxis(x, splan.ax, -1)[..., None, :]
        else:
            moved = drivers.moveaxis(x, (splan.channel_axis, splan.ax), (-2, -1))
        self.lead = moved.shape[:-2]
        # ``rows``: the rows r0 .. r1-1 only (of all, in C order)
        self.first, last = (0, math.prod(self.lead)) if rows is None else rows
        self.nrows = last - self.first
        self.moved = moved
        try:
            whole = moved.reshape((math.prod(self.lead),) + moved.shape[-2:], copy=False)
            self.rows = whole[self.first : last]
        except ValueError:  # no view: rows are copied one by one, a tile at a time
            self.rows = None
        self.n = self.length = moved.shape[-1]  # (the signal's; the problem's)
        self.compact = None
        if splan.nwin < splan.d:  # read as the compact problem (plans.compacted)
            self.compact = functools.partial(plans.compact_taps, m, splan.d, splan.pad_left,
                                             splan.nwin, self.n)
            splan = self.plan = plans.compact_plan(splan, m)
            self.length = m * splan.nwin
        self.method = drivers.choose_method(method, m, nchan, nker, self.nrows, splan.nwin,
                                            splan.span)
        self.budget = drivers.fft_error_budget(splan.out_dtype, m * nchan, splan.exponent)
        exponent = powers.kernel_exponent(splan.exponent, self.compute)
        self.args = (splan.khat, splan.kernel_state, splan.d, exponent, splan.floor, splan.fill)
        self.width = self.tile_width(budget, extra_bytes)

    def alignment(self):
        """Tiles start on multiples of this (windows of the unpadded signal):
        the whole call's tiles, or its FFT segments."""
        nker, _, m = self.plan.khat.shape
        tile = kernels.tile_length(m, self.plan.d)
        if self.method == "fft":
            return drivers.segment_length(tile, nker)
        return tile

    def _window_bytes(self, extra_bytes):
        """Bytes a window of one row takes, in all the threads that score and
        scan at once (``extra_bytes`` more per window and row for the caller)."""
        nker, nchan, _ = self.plan.khat.shape
        size = self.compute.itemsize
        return (nchan * size + nker * size * 2 + extra_bytes) * threads.thread_count()

    def tile_width(self, budget, extra_bytes):
        """Windows per tile within ``budget`` bytes: at most
        ``config.MATCH_TILE``, a whole number of alignments, at least one."""
        per_window = self.nrows * self._window_bytes(extra_bytes)
        align = self.alignment()
        width = min(config.MATCH_TILE, budget // max(1, per_window))
        return max(align, width // align * align)

    def rows_within(self, budget, extra_bytes):
        """How many rows a tile of one alignment may hold within ``budget``
        (at least one): more rows are taken a block of them at a time."""
        return max(1, budget // max(1, self.alignment() * self._window_bytes(extra_bytes)))

    def _take(self, s0, s1):
        """Samples ``s0 .. s1-1`` of every row, ``(rows, C, s1-s0)`` contiguous
        (of the compact problem where there is one)."""
        if self.compact is not None:
            return self._take_compact(s0, s1)
        if self.rows is not None:
            return np.ascontiguousarray(self.rows[:, :, s0:s1], dtype=self.compute)
        out = np.empty((self.nrows, self.moved.shape[-2], s1 - s0), dtype=self.compute)
        for r in range(self.nrows):
            out[r] = self.moved[np.unravel_index(self.first + r, self.lead)][:, s0:s1]
        return out

    def _take_compact(self, s0, s1):
        """``_take`` of the compact problem: each position's sample, zeros
        for the padding."""
        source, inside = self.compact(np.arange(s0, s1, dtype=np.int64))
        out = np.zeros((self.nrows, self.moved.shape[-2], s1 - s0), dtype=self.compute)
        if self.rows is not None:
            out[..., inside] = self.rows[..., source]
        else:
            for r in range(self.nrows):
                out[r][:, inside] = self.moved[np.unravel_index(self.first + r, self.lead)][:, source]
        return out

    def _score(self, piece):
        nker = self.plan.khat.shape[0]
        span = self.plan.span
        result = np.empty((piece.shape[0], nker, piece.shape[-1] - span), dtype=self.compute)
        if self.method == "fft" and piece.shape[-1] - span > 0:
            drivers.run_fft(piece, *self.args, result, 0, self.budget, self.plan.center)
        else:
            drivers.run_direct(piece, *self.args, result, 0, self.plan.center)
        if self.plan.out_dtype != self.compute:  # float16: the whole call's rounding
            # (a fill past float16's range is ±inf, a tiny score 0: no warning)
            with np.errstate(over="ignore", under="ignore"):
                result = result.astype(self.plan.out_dtype).astype(self.compute)
        return result

    def tiles(self):
        """The tiles in order, as ``(w0, width, make)``: ``make()`` computes
        the tile's scores."""
        span, left, right = self.plan.span, self.plan.pad_left, self.plan.pad_right
        n = self.length

        def pad(piece, before, after):
            return np.pad(piece, ((0, 0), (0, 0), (before, after)))

        if n <= span:  # padded modes only: one piece, as in the whole call
            return [(0, self.plan.nwin, lambda: self._score(pad(self._take(0, n), left, right)))]
        found = []
        if left:
            found.append((0, left, lambda: self._score(pad(self._take(0, span), left, 0))))
        for a in range(0, n - span, self.width):
            b = min(n - span, a + self.width)
            found.append((left + a, b - a, lambda a=a, b=b: self._score(self._take(a, b + span))))
        if right:
            found.append((left + n - span, right,
                          lambda: self._score(pad(self._take(n - span, n), 0, right))))
        return found


class HostScores:
    """Scores already on the host, ``(rows, K, L)`` (the GPU's, or a row
    block kept for a callable threshold), served as tiles."""

    def __init__(self, scores, width):
        self.scores = scores
        self.width = max(1, width)
        self.nrows = scores.shape[0]

    def tiles(self):
        length = self.scores.shape[-1]
        return [(a, min(self.width, length - a), lambda a=a: self.scores[:, :, a : a + self.width])
                for a in range(0, length, self.width)]


# ---------------------------------------------------------------------------
# selection


def _keys(scores, sign, out=None):
    """The keys of ``scores`` for ``sign`` (the scores themselves for
    ``sign > 0``), or made into ``out`` in its dtype at once."""
    key = np.abs if sign == 0 else np.positive if sign > 0 else np.negative
    with np.errstate(invalid="ignore"):
        if out is None:
            return scores if sign > 0 else key(scores)
        return key(scores, out=out, casting="same_kind")


def _groups(tiles, parts):
    """Split the tiles into at most ``parts`` runs of about equal windows,
    each of at least two windows and each after the first starting with a
    tile of at least two (so that its first two windows' scores are its
    own, for judging the windows on either side of the border)."""
    starts = np.cumsum([0] + [width for _, width, _ in tiles])
    total = starts[-1]
    bounds = [0]
    for j in range(1, parts):
        target = total * j / parts
        for i in range(bounds[-1] + 1, len(tiles)):
            if starts[i] >= max(target, starts[bounds[-1]] + 2) and tiles[i][1] >= 2:
                bounds.append(i)
                break
    bounds.append(len(tiles))
    groups = [tiles[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if len(groups) > 1 and sum(width for _, width, _ in groups[-1]) < 2:
        groups[-2:] = [groups[-2] + groups[-1]]
    return groups


class _Pass:
    """One scan's state: pools (``cap`` candidates a row) or a list, and the
    keys carried across tiles."""

    def __init__(self, rows, nker, cap, to_pool):
        self.rows, self.nker, self.to_pool = rows, nker, to_pool
        self.prev2 = np.full((rows, nker), -np.inf)
        self.prev1 = np.full((rows, nker), -np.inf)
        self.prev1_score = np.full((rows, nker), np.nan)
        cap = cap if to_pool else 1
        self.pools = (np.empty((rows, cap)), np.empty((rows, cap), dtype=np.int64),
                      np.empty((rows, cap), dtype=np.int64), np.empty((rows, cap)),
                      np.zeros(rows, dtype=np.int64))
        self.found = []

    def scan(self, tile, w0, last, skip, sign, thresholds, filtered, filters):
        width = tile.shape[-1]
        capacity = 1 if self.to_pool else self.rows * self.nker * (width // 2 + 2)
        ls = np.empty(capacity, dtype=tile.dtype)
        li = np.empty(capacity, dtype=np.int64)
        lc = np.empty(capacity, dtype=np.int64)
        count = _scan(tile, w0, last, skip, sign, thresholds, self.prev2, self.prev1, self.prev1_score,
                      self.to_pool, filtered, *filters, *self.pools, ls, li, lc)
        if count:
            self.found.append((ls[:count].copy(), li[:count].copy(), lc[:count].copy()))


@jit
def _merge_pools(hk, hi, hn, hs, size, hk2, hi2, hn2, hs2, size2):
    """Offer every candidate of the second pools to the first."""
    for r in range(size2.size):
        for j in range(size2[r]):
            _offer(r, hk2[r, j], hi2[r, j], hn2[r, j], hs2[r, j], hk, hi, hn, hs, size)


def _scan_all(source, nker, sign, thresholds, pool, filters=None):
    """One pass over the tiles of ``source``.  ``pool``: the pool size (the
    pools are returned) or 0 (the list
    of candidates is returned, as ``(score, index, code)``).

    The tiles are split into runs, ``config.MATCH_RUNS_PER_THREAD`` per
    thread (``numba`` threads), which the threads take in turn, each run
    scored (on its thread) and scanned with its own pools or list; then the
    two windows on either side of each border are judged with their
    neighbours' keys, and the pools merged or the lists joined in order."""
    rows = source.nrows
    to_pool = pool > 0
    filtered = filters is not None
    if not filtered:
        filters = (np.full(rows, np.inf), np.full(rows, -1, np.int64), np.full(rows, -1, np.int64),
                   np.empty(0, np.int64), np.zeros(rows + 1, np.int64), 0)
    tiles = source.tiles()
    workers = threads.thread_count()
    groups = _groups(tiles, workers * config.MATCH_RUNS_PER_THREAD)
    passes = [_Pass(rows, nker, pool, to_pool) for _ in groups]
    heads = [None] * len(groups)  # the scores of each run's first two windows
    end = tiles[-1][0] + tiles[-1][1]

    queue = iter(range(len(groups)))  # (next() on it is atomic under the GIL)

    def work(first, stop):
        saved = numba.get_num_threads()
        numba.set_num_threads(1)  # (the drivers then score on this thread alone)
        try:
            for g in queue:
                skip = groups[g][0][0] + 1 if g else 0
                for w0, width, make in groups[g]:
                    tile = make()
                    if heads[g] is None:
                        heads[g] = tile[:, :, :2].copy()
                    passes[g].scan(tile, w0, w0 + width == end, skip, sign, thresholds, filtered, filters)
        finally:
            numba.set_num_threads(saved)

    threads.run_parts([(t, t + 1) for t in range(min(workers, len(groups)))], work)
    whole = passes[0]
    for g in range(1, len(groups)):
        # the border's windows: the last of run g-1, the first of run g
        w = groups[g][0][0]
        before, head = passes[g - 1], heads[g]
        border = _Pass(rows, nker, pool, to_pool)
        border.prev2, border.prev1 = before.prev2.copy(), before.prev1.copy()
        border.prev1_score = before.prev1_score.copy()
        border.pools = whole.pools
        border.scan(head[:, :, :1], w, False, 0, sign, thresholds, filtered, filters)
        border.scan(head[:, :, 1:2], w + 1, False, 0, sign, thresholds, filtered, filters)
        if to_pool:
            _merge_pools(*whole.pools, *passes[g].pools)
        else:
            whole.found += border.found + passes[g].found
    if to_pool:
        return whole.pools
    if not whole.found:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0), empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*whole.found))


@jit
def _ties_by_position(order, ranked):
    """Within each run of equal ``ranked`` keys, put ``order`` in ascending
    order (runs are mostly one long, but not always: the windows around
    isolated spikes in zeros share a few scores by the thousand)."""
    n = order.size
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and ranked[stop] == ranked[start]:
            stop += 1
        if stop - start > 1:
            order[start:stop].sort()
        start = stop


def _sort_rows(rows, keys, idx, ker):
    """Order of candidates: by row, then key descending, index, kernel.

    Candidates of one row and kernel come in index order: a sort by key,
    with equal keys in their list order, orders them."""
    if rows.size and rows.min() == rows.max() and ker.min() == ker.max() and np.all(idx[1:] > idx[:-1]):
        return _best_first(keys)
    return np.lexsort((ker, idx, -keys, rows))


def _best_first(keys):
    """The order of ``keys`` descending, equal keys in their list order (a
    quicksort, then each run of ties sorted by position: faster than a
    stable sort)."""
    order = np.argsort(-keys, kind="quicksort")
    _ties_by_position(order, keys[order])
    return order


def select(source, nker, nwin, mplan, thresholds):
    """The matches of every row of ``source`` (:class:`Scores` or
    :class:`HostScores`): ``(row, index, kernel, score)`` arrays, best key
    first (ties: row, index, kernel)."""
    rows = source.nrows
    exclusion = min(mplan.exclusion, nwin)  # (any zone past the signal is the same)
    if mplan.k is None:
        score, idx, code = _scan_all(source, nker, mplan.sign, thresholds, 0)
        return _select_listed(score, idx, code, nker, exclusion, mplan.sign)
    if mplan.k == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, np.empty(0)
    k = mplan.k
    # pools of k candidates, larger than MATCH_POOL, where half of max_memory
    # holds them (one each run, 32 bytes a candidate): fewer scans again
    runs = threads.thread_count() * config.MATCH_RUNS_PER_THREAD
    room = mplan.budget // 2 // (32 * runs * max(1, rows))
    pool = core.pool_size(k, nker, mplan.exclusion, nwin, room)
    counts = np.zeros(rows, dtype=np.int64)
    kept = []  # (row, index, kernel, score) per pass
    filters = None
    while True:
        hk, hi, hn, hs, size = _scan_all(source, nker, mplan.sign, thresholds, pool, filters)
        row = np.repeat(np.arange(rows), size)
        take = np.arange(hk.shape[1])[None, :] < size[:, None]
        keys, idx, ker, score = hk[take], hi[take], hn[take], hs[take]
        order = _sort_rows(row, keys, idx, ker)
        row, keys, idx, ker, score = row[order], keys[order], idx[order], ker[order], score[order]
        keep = _run_greedy(row, idx, exclusion, nwin, k, counts)
        kept.append((row[keep], idx[keep], ker[keep], score[keep]))
        # rows that may have more: fewer than k kept from a full pool
        # (a pool never full took every candidate; a full one may have
        # left some out, uncounted: the scan passes over keys below its worst)
        again = (counts < k) & (size == hk.shape[1])
        if not again.any():
            break
        filters = _rescan_filters(rows, again, row, keys, idx, ker, kept, exclusion)
        # (a pool of candidates crowded into a few zones keeps a few matches
        # a scan: twice the pool a scan, where memory holds it, scans the
        # signal O(log) times, not O(k))
        pool = max(pool, min(2 * pool, room, nker * nwin))
    row, idx, ker, score = (np.concatenate(column) for column in zip(*kept))
    row, idx, ker = row.astype(np.int64), idx.astype(np.int64), ker.astype(np.int64)
    # each pass's matches are sorted by row, then in the order: a stable sort
    # by key keeps rows, then index and kernel, in order among equal keys
    if len(kept) > 1:
        first = np.lexsort((ker, idx, row))
        row, idx, ker, score = row[first], idx[first], ker[first], score[first]
    if rows > 1 or len(kept) > 1:
        order = np.argsort(-_keys(score, mplan.sign), kind="stable")
        row, idx, ker, score = row[order], idx[order], ker[order], score[order]
    return row, idx, ker, score


def _cluster_orders(keys, bounds):
    """The order of each cluster ``bounds[g, 0] .. bounds[g, 1] - 1`` (best
    key first; equal keys in list order), as positions from the cluster's
    first candidate, cluster after cluster: one stable sort for all."""
    sizes = bounds[:, 1] - bounds[:, 0]
    first = np.repeat(bounds[:, 0], sizes)
    members = first + np.arange(first.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    order = np.lexsort((-keys[members], np.repeat(np.arange(sizes.size), sizes)))
    return members[order] - first


def _select_listed(score, idx, code, nker, exclusion, sign):
    """Greedy selection without a limit over the scan's list of candidates
    (``code = row * nker + kernel``): ``(row, index, kernel, score)`` as
    :func:`select`.  The list is in index order where it holds one row and
    one kernel (the scan lists a run's tiles in order); else it is sorted."""
    one_code = code.size > 0 and code.min() == code.max()
    if code.size and not (one_code and np.all(idx[1:] > idx[:-1])):
        order = np.lexsort((code % nker, idx, code // nker))
        score, idx, code = score[order], idx[order], code[order]
    row = code // nker
    keys = _keys(score, sign)
    keep = np.zeros(idx.size, dtype=np.bool_)
    bounds = np.empty((idx.size // (LONG_CLUSTER + 1) + 1, 2), np.int64)
    nlong = _greedy_clusters(row, idx, keys, exclusion, keep, bounds)
    if nlong:
        bounds = bounds[:nlong]
        _greedy_long_clusters(idx, bounds, _cluster_orders(keys, bounds), exclusion, keep)
    if one_code and score.dtype == np.float32 and idx[-1] < 1 << 31:
        idx, score = _ordered_by_packed_sort(score, idx, keep, sign)
        return (np.full(idx.size, code[0] // nker), idx, np.full(idx.size, code[0] % nker), score)
    kept = np.flatnonzero(keep)
    # best first; equal keys in list order, which is row, index, kernel
    kept = kept[_best_first(keys[kept])]
    code = code[kept]
    return code // nker, idx[kept], code % nker, score[kept]


def _ordered_by_packed_sort(score, idx, keep, sign):
    """``(index, score)`` of the kept candidates of one row and one kernel,
    float32 scores and indices below ``2**31``, best first (ties to the
    lower index): each packed into one integer that orders as the selection
    does (the key's bits, order-preserving and reversed, above the index and
    the score's sign bit), so that a sort of the integers orders them, with
    no permutation to gather by."""
    packed = np.empty(np.count_nonzero(keep), np.uint64)
    _pack_kept(score.view(np.uint32), idx, keep, sign, packed)
    packed.sort()
    out_idx = np.empty(packed.size, np.int64)
    out_score = np.empty(packed.size, np.float32)
    _unpack_kept(packed, out_idx, out_score.view(np.uint32))
    return out_idx, out_score


_SIGN_BIT = np.uint32(1 << 31)


@jit(from_python=False)
def _key_bits(bits, sign):
    """The float32 key of the score whose bits are ``bits``, as bits that
    order as the key descending: ``|s|``, ``s`` or ``-s`` (a zero key of
    either sign as +0, equal keys then tie by index), order-preserving
    (negative values inverted, positive ones above them), then reversed."""
    if sign == 0:
        bits &= ~_SIGN_BIT
    elif sign < 0:
        bits ^= _SIGN_BIT
    if bits == _SIGN_BIT:  # -0
        bits = np.uint32(0)
    ascending = ~bits if bits & _SIGN_BIT else bits | _SIGN_BIT
    return ~ascending


@jit
def _pack_kept(bits, idx, keep, sign, packed):
    j = 0
    for c in range(bits.size):
        if keep[c]:
            low = (np.uint64(idx[c]) << np.uint64(1)) | np.uint64(bits[c] >> np.uint32(31))
            packed[j] = (np.uint64(_key_bits(bits[c], sign)) << np.uint64(32)) | low
            j += 1


@jit
def _unpack_kept(packed, out_idx, out_bits):
    """Index and score bits back from :func:`_pack_kept`'s integers."""
    for j in range(packed.size):
        low = packed[j] & np.uint64(0xFFFFFFFF)
        out_idx[j] = np.int64(low >> np.uint64(1))
        ascending = ~np.uint32(packed[j] >> np.uint64(32))
        key = ascending & ~_SIGN_BIT if ascending & _SIGN_BIT else ~ascending
        # the score: the key's magnitude with the score's own sign bit
        out_bits[j] = (key & ~_SIGN_BIT) | (np.uint32(low & np.uint64(1)) << np.uint32(31))


def select_candidates(row, idx, ker, score, offered, nwin, mplan, out_dtype):
    """Greedy selection over candidates gathered elsewhere (the Dask
    backend's blocks: every local maximum at or above the threshold, or
    with ``k`` each block's best ``mplan.pool`` of each row), ``offered``
    holding how many each row had in all.  Returns ``(row, index, kernel,
    score)`` best first, as :func:`select`, or None where a row kept fewer
    than ``k`` from a pool that left candidates out (then only a scan of
    the scores in order is exact)."""
    rows = offered.size
    # (float16 scores' keys in float32, exactly: the compiled sorts take no float16)
    keys = _keys(score.astype(plans.compute_dtype(score.dtype), copy=False), mplan.sign)
    order = _sort_rows(row, keys, idx, ker)
    row, keys, idx, ker, score = row[order], keys[order], idx[order], ker[order], score[order]
    k = -1 if mplan.k is None else mplan.k
    if mplan.k is not None:  # each row's best pool, over all blocks
        take = core.first_per_row(row, mplan.pool)
        row, keys, idx, ker, score = row[take], keys[take], idx[take], ker[take], score[take]
    counts = np.zeros(rows, dtype=np.int64)
    if mplan.k == 0:
        keep = np.zeros(row.size, dtype=np.bool_)
    else:
        keep = _run_greedy(row, idx, min(mplan.exclusion, nwin), nwin, k, counts)
    if mplan.k is not None and np.any((counts < mplan.k) & (offered > np.bincount(row, minlength=rows))):
        return None
    row, idx, ker, score = row[keep], idx[keep], ker[keep], score[keep]
    order = np.argsort(-keys[keep], kind="stable")
    return _deliver((row[order].astype(np.int64), idx[order].astype(np.int64),
                     ker[order].astype(np.int64), score[order]), out_dtype)


def _rescan_filters(rows, again, row, keys, idx, ker, kept, exclusion):
    """The filters of the next pass: each row in ``again`` continues after
    its pool's last candidate (``row``, ... sorted as ``_sort_rows``), outside
    the zones of its matches so far; the others are done."""
    cursor_key = np.full(rows, -np.inf)
    cursor_idx = np.full(rows, np.iinfo(np.int64).max)
    cursor_ker = np.full(rows, np.iinfo(np.int64).max)
    last = np.flatnonzero(np.r_[row[1:] != row[:-1], True]) if row.size else np.empty(0, np.int64)
    for c in last:
        r = row[c]
        if again[r]:
            cursor_key[r], cursor_idx[r], cursor_ker[r] = keys[c], idx[c], ker[c]
    all_rows = np.concatenate([part[0] for part in kept])
    all_idx = np.concatenate([part[1] for part in kept])
    order = np.lexsort((all_idx, all_rows))
    positions = all_idx[order].astype(np.int64)
    start = np.searchsorted(all_rows[order], np.arange(rows + 1)).astype(np.int64)
    return cursor_key, cursor_idx, cursor_ker, positions, start, exclusion


# ---------------------------------------------------------------------------
# entry points


@scratch.one_call
def find_matches(x, splan, mplan, method):
    """The matches of a planned call on the host signal ``x``: ``(row, index,
    kernel, score)`` (see :func:`select`); scores in ``splan.out_dtype``."""
    nker = splan.khat.shape[0]
    # a threshold-only search lists its candidates: room for a tile's
    extra = 12 * nker if mplan.k is None else 0
    # half the budget for the tiles where pools or whole rows take the other
    held = mplan.k or mplan.threshold_fn is not None
    budget = mplan.budget // 2 if held else mplan.budget
    scores = Scores(x, splan, method, budget, extra)
    per_block = min(scores.rows_within(budget, extra),
                    _rows_held(mplan, nker, splan.nwin, scores.compute.itemsize))
    if per_block >= scores.nrows:
        return select_source(scores, splan, mplan)
    # Rows beyond what the budget holds: blocks of rows, each searched alone
    # (a row's matches depend on its scores only), by the method of the whole
    found = []
    for r0 in range(0, scores.nrows, per_block):
        rows = (r0, min(scores.nrows, r0 + per_block))
        row, idx, ker, score = select_source(
            Scores(x, splan, scores.method, budget, extra, rows), splan, mplan)
        found.append((row + r0, idx, ker, score))
    row, idx, ker, score = (np.concatenate(column) for column in zip(*found))
    # best first, ties by row, index and kernel, as one block's
    order = np.lexsort((ker, idx, row))
    order = order[np.argsort(-_keys(score[order], mplan.sign), kind="stable")]
    return row[order], idx[order], ker[order], score[order]


def _rows_held(mplan, nker, nwin, itemsize):
    """Rows whose candidate pools (``k``: 32 bytes a candidate, in each of
    the scan's runs) or whole scores (a callable threshold) fit half the
    budget: at least one."""
    if mplan.threshold_fn is not None:
        row_bytes = nker * nwin * itemsize
    elif mplan.k:
        runs = threads.thread_count() * config.MATCH_RUNS_PER_THREAD
        row_bytes = 32 * (runs + 1) * mplan.pool  # (and a border's, one at a time)
    else:
        return math.inf
    return max(1, mplan.budget // 2 // row_bytes)


@scratch.one_call
def select_source(source, splan, mplan):
    """The matches of the scores served by ``source`` (``nrows`` and
    ``tiles()`` as :class:`Scores`: this module's, or the Dask backend's
    blocks) of the planned call ``splan``."""
    nker = splan.khat.shape[0]
    thresholds = np.full(source.nrows, mplan.threshold)
    if mplan.threshold_fn is not None:
        whole = np.empty((source.nrows, nker, splan.nwin), source.compute)
        for w0, width, make in source.tiles():
            whole[:, :, w0 : w0 + width] = make()
        single = not splan.bank_shape and splan.channel_axis is None
        thresholds = _call_threshold(whole, mplan, splan.out_dtype, single)
        # (tiles as the budget has them: the scan lists a tile's candidates)
        source = HostScores(whole, getattr(source, "width", config.MATCH_TILE))
    return _deliver(select(source, nker, splan.nwin, mplan, thresholds), splan.out_dtype)


def select_scores(scores, ax, channel_axis, is_bank, mplan):
    """The matches of a host score array ``scores`` in ``sliding_cosine``'s
    layout (the GPU's scores, copied back)."""
    kernel_axes, caller_axes = plans.moved_axes(ax, channel_axis, is_bank)
    single = not is_bank and channel_axis is None
    moved = drivers.moveaxis(scores, caller_axes, kernel_axes)
    nwin = moved.shape[-1]
    rows = moved.reshape((-1, 1 if single else moved.shape[-2], nwin))
    nker = rows.shape[1]
    compute = plans.compute_dtype(scores.dtype)
    rows = np.ascontiguousarray(rows, dtype=compute)
    thresholds = np.full(rows.shape[0], mplan.threshold)
    if mplan.threshold_fn is not None:
        thresholds = _call_threshold(rows, mplan, scores.dtype, single)
    width = max(1, config.MATCH_TILE)
    return _deliver(select(HostScores(rows, width), nker, nwin, mplan, thresholds), scores.dtype)


def _call_threshold(whole, mplan, out_dtype, single):
    """Each row's threshold: the callable on the row's keys (``(L,)`` for one
    kernel, ``(K, L)`` for several; NaN where the score is NaN)."""
    values = np.empty(whole.shape[0])
    for r in range(whole.shape[0]):
        # (the keys made in their dtype at once: one array a row beside the
        # scores, where the keys and then their cast were two)
        keys = _keys(whole[r], mplan.sign, np.empty(whole.shape[1:], out_dtype))
        values[r] = core.threshold_value(mplan.threshold_fn(keys[0] if single else keys))
    return values


def _deliver(found, out_dtype):
    row, idx, ker, score = found
    return row, idx, ker, score.astype(out_dtype)
