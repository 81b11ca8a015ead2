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
a list (threshold only).  Greedy selection (:func:`_greedy`) then runs on
the candidates in that order.  With ``k``, the pool is a prefix of the order
of all candidates, so greedy over it decides each of them as greedy over all
would; where it keeps fewer than ``k`` although candidates were left out,
the scan runs again for the candidates after the pool's last (and outside
the zones of the matches kept), until ``k`` are kept or none is left.
"""

import math

import numpy as np

from .._core import config
from .._core import matches as core
from .._core import sliding as plans
from . import drivers
from . import sliding as kernels
from ._jit import jit

# ---------------------------------------------------------------------------
# kernels


@jit
def _key(s, sign):
    """The key of a score: ``|s|``, ``s`` or ``-s``; NaN gives ``-inf``."""
    if math.isnan(s):
        return -np.inf
    if sign == 0:
        return abs(s)
    return s if sign > 0 else -s


@jit
def _worse(ka, ia, na, kb, ib, nb):
    """Is candidate a after candidate b in the selection's order?"""
    if ka != kb:
        return ka < kb
    if ia != ib:
        return ia > ib
    return na > nb


@jit
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


@jit
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


@jit
def _scan(tile, w0, last, sign, thresholds, prev2, prev1, prev1_score, to_pool, filtered,
          cursor_key, cursor_idx, cursor_ker, kept, kept_start, exclusion,
          hk, hi, hn, hs, size, offered, list_score, list_idx, list_code):
    """Scan the scores ``tile`` ``(R, K, T)`` of the windows ``w0 ..
    w0+T-1``: every window before the tile's last is judged (the one before
    ``w0`` with the carried keys ``prev2``, ``prev1``), and the last too
    when ``last``.  Candidates go to the pools (``to_pool``) or to the list
    arrays (``list_code = row * K + kernel``); returns the list's length.
    ``offered[r]`` counts the candidates row ``r`` had for its pool."""
    rows, nker, width = tile.shape
    count = 0
    for r in range(rows):
        thr = thresholds[r]
        cap = hk.shape[1]
        for k in range(nker):
            a = prev2[r, k]
            b = prev1[r, k]
            bs = prev1_score[r, k]
            stop = width + 1 if last else width
            for t in range(stop):
                if t < width:
                    s = tile[r, k, t]
                    c = _key(s, sign)
                else:
                    s = np.nan
                    c = -np.inf
                # window w0 + t - 1, of key b, between a and c
                if b > a and b >= c and b >= thr:
                    idx = w0 + t - 1
                    if not filtered or _allowed(r, b, idx, k, cursor_key, cursor_idx, cursor_ker,
                                                kept, kept_start, exclusion):
                        if to_pool:
                            offered[r] += 1
                            if size[r] < cap or b >= hk[r, 0]:
                                _offer(r, b, idx, k, bs, hk, hi, hn, hs, size)
                        else:
                            list_score[count] = bs
                            list_idx[count] = idx
                            list_code[count] = r * nker + k
                            count += 1
                a = b
                b = c
                bs = s
            prev2[r, k] = a
            prev1[r, k] = b
            prev1_score[r, k] = bs
    return count


@jit
def _greedy(rows, idx, exclusion, nwin, k, counts, keep):
    """Greedy selection over candidates sorted by row, then in the order
    (best first): ``keep[c]`` unless a kept candidate of its row lies within
    ``exclusion`` windows or the row has ``k`` (``k < 0``: no limit; ``counts``
    holds each row's matches so far and is updated).

    Windows are cut into buckets of ``exclusion + 1``: two kept matches are
    never in one bucket, and a candidate's zone touches its own bucket and
    the two beside it, so three look-ups decide it."""
    width = exclusion + 1
    per_row = nwin // width + 3
    n = idx.size
    bucket = np.empty(n, np.int64)
    for c in range(n):
        bucket[c] = rows[c] * per_row + idx[c] // width + 1
    distinct = np.unique(bucket)
    owner = np.full(distinct.size, -1, np.int64)
    slots = np.searchsorted(distinct, bucket)
    for c in range(n):
        r = rows[c]
        if k >= 0 and counts[r] >= k:
            continue
        s = slots[c]
        i = idx[c]
        if owner[s] >= 0:
            continue
        if s > 0 and distinct[s - 1] == bucket[c] - 1 and owner[s - 1] >= 0 and i - owner[s - 1] <= exclusion:
            continue
        if (s + 1 < distinct.size and distinct[s + 1] == bucket[c] + 1 and owner[s + 1] >= 0
                and owner[s + 1] - i <= exclusion):
            continue
        owner[s] = i
        keep[c] = True
        counts[r] += 1


# ---------------------------------------------------------------------------
# scores, a tile at a time


class Scores:
    """The scores of a planned ``sliding_cosine`` call (``splan``) on the host
    signal ``x``, a tile of windows of every row at a time: ``tiles()``
    yields ``(w0, scores)``, ``scores`` ``(rows, K, T)`` of the compute dtype
    (float16 results rounded to float16), in order of ``w0``."""

    def __init__(self, x, splan, method, budget, extra_bytes=0):
        nker, nchan, m = splan.khat.shape
        self.plan = splan
        self.compute = plans.compute_dtype(splan.out_dtype)
        if splan.channel_axis is None:
            moved = drivers._moveaxis(x, splan.ax, -1)[..., None, :]
        else:
            moved = drivers._moveaxis(x, (splan.channel_axis, splan.ax), (-2, -1))
        self.lead = moved.shape[:-2]
        self.nrows = math.prod(self.lead)
        self.moved = moved
        try:
            self.rows = moved.reshape((self.nrows,) + moved.shape[-2:], copy=False)
        except ValueError:  # no view: rows are copied one by one, a tile at a time
            self.rows = None
        self.n = moved.shape[-1]
        self.method = drivers.choose_method(method, m, nchan, nker)
        self.budget = drivers.fft_error_budget(splan.out_dtype, m * nchan, splan.exponent)
        self.args = (splan.khat, splan.kernel_state, splan.d, splan.exponent, splan.floor, splan.fill)
        self.width = self.tile_width(budget, extra_bytes)

    def alignment(self):
        """Tiles start on multiples of this (windows of the unpadded signal):
        the whole call's tiles, or its FFT segments."""
        nker, _, m = self.plan.khat.shape
        tile = kernels.tile_length(m, self.plan.d)
        if self.method == "fft":
            return tile * max(1, config.SEGMENT_WINDOWS // (tile * nker))
        return tile

    def tile_width(self, budget, extra_bytes):
        """Windows per tile within ``budget`` bytes (``extra_bytes`` more per
        window and row for the caller): at most ``config.MATCH_TILE``, a whole
        number of alignments, at least one."""
        nker, nchan, _ = self.plan.khat.shape
        size = self.compute.itemsize
        per_window = self.nrows * (nchan * size + nker * size * 2 + extra_bytes)
        align = self.alignment()
        width = min(config.MATCH_TILE, budget // max(1, per_window))
        return max(align, width // align * align)

    def _take(self, s0, s1):
        """Samples ``s0 .. s1-1`` of every row, ``(rows, C, s1-s0)`` contiguous."""
        if self.rows is not None:
            return np.ascontiguousarray(self.rows[:, :, s0:s1], dtype=self.compute)
        out = np.empty((self.nrows, self.moved.shape[-2], s1 - s0), dtype=self.compute)
        for r in range(self.nrows):
            out[r] = self.moved[np.unravel_index(r, self.lead)][:, s0:s1]
        return out

    def _score(self, piece):
        nker = self.plan.khat.shape[0]
        span = self.plan.span
        result = np.empty((piece.shape[0], nker, piece.shape[-1] - span), dtype=self.compute)
        if self.method == "fft" and piece.shape[-1] - span > 0:
            drivers.run_fft(piece, *self.args, result, 0, self.budget)
        else:
            drivers.run_direct(piece, *self.args, result, 0)
        if self.plan.out_dtype != self.compute:  # float16: the whole call's rounding
            result = result.astype(self.plan.out_dtype).astype(self.compute)
        return result

    def tiles(self):
        span, left, right = self.plan.span, self.plan.pad_left, self.plan.pad_right
        n = self.n

        def pad(piece, before, after):
            return np.pad(piece, ((0, 0), (0, 0), (before, after)))

        if n <= span:  # padded modes only: one piece, as in the whole call
            yield 0, self._score(pad(self._take(0, n), left, right))
            return
        if left:
            yield 0, self._score(pad(self._take(0, span), left, 0))
        for a in range(0, n - span, self.width):
            b = min(n - span, a + self.width)
            yield left + a, self._score(self._take(a, b + span))
        if right:
            yield left + n - span, self._score(pad(self._take(n - span, n), 0, right))


class HostScores:
    """Scores already on the host, ``(rows, K, L)`` (the GPU's, or a row
    block kept for a callable threshold), served as tiles."""

    def __init__(self, scores, width):
        self.scores = scores
        self.width = max(1, width)
        self.nrows = scores.shape[0]

    def tiles(self):
        length = self.scores.shape[-1]
        for a in range(0, length, self.width):
            yield a, self.scores[:, :, a : a + self.width]


# ---------------------------------------------------------------------------
# selection


def _keys(scores, sign):
    with np.errstate(invalid="ignore"):
        return np.abs(scores) if sign == 0 else scores if sign > 0 else -scores


def _scan_all(source, nker, sign, thresholds, pool, filters=None):
    """One pass over the tiles of ``source``.  ``pool``: the pool size (the
    pools are returned, with the candidates offered per row) or 0 (the list
    of candidates is returned, as ``(score, index, code)``)."""
    rows = source.nrows
    prev2 = np.full((rows, nker), -np.inf)
    prev1 = np.full((rows, nker), -np.inf)
    prev1_score = np.full((rows, nker), np.nan)
    to_pool = pool > 0
    cap = pool if to_pool else 1
    hk = np.empty((rows, cap))
    hi = np.empty((rows, cap), dtype=np.int64)
    hn = np.empty((rows, cap), dtype=np.int64)
    hs = np.empty((rows, cap))
    size = np.zeros(rows, dtype=np.int64)
    offered = np.zeros(rows, dtype=np.int64)
    if filters is None:
        filtered = False
        filters = (np.full(rows, np.inf), np.full(rows, -1, np.int64), np.full(rows, -1, np.int64),
                   np.empty(0, np.int64), np.zeros(rows + 1, np.int64), 0)
    else:
        filtered = True
    found = []
    tiles = source.tiles()
    pending = next(tiles, None)
    while pending is not None:
        w0, tile = pending
        pending = next(tiles, None)
        width = tile.shape[-1]
        capacity = 1 if to_pool else rows * nker * (width // 2 + 2)
        ls = np.empty(capacity)
        li = np.empty(capacity, dtype=np.int64)
        lc = np.empty(capacity, dtype=np.int64)
        count = _scan(tile, w0, pending is None, sign, thresholds, prev2, prev1, prev1_score,
                      to_pool, filtered, *filters, hk, hi, hn, hs, size, offered, ls, li, lc)
        if count:
            found.append((ls[:count].copy(), li[:count].copy(), lc[:count].copy()))
    if to_pool:
        return (hk, hi, hn, hs, size), offered
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0), empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _sort_rows(rows, keys, idx, ker):
    """Order of candidates: by row, then key descending, index, kernel."""
    return np.lexsort((ker, idx, -keys, rows))


def select(source, nker, nwin, mplan, thresholds):
    """The matches of every row of ``source`` (:class:`Scores` or
    :class:`HostScores`): ``(row, index, kernel, score)`` arrays, best key
    first (ties: row, index, kernel)."""
    rows = source.nrows
    exclusion = min(mplan.exclusion, nwin)  # (any zone past the signal is the same)
    k = -1 if mplan.k is None else mplan.k
    counts = np.zeros(rows, dtype=np.int64)
    kept = []  # (row, index, kernel, score) per pass
    if mplan.k == 0:
        pass
    elif mplan.k is None:
        score, idx, code = _scan_all(source, nker, mplan.sign, thresholds, 0)
        row, ker = code // nker, code % nker
        order = _sort_rows(row, _keys(score, mplan.sign), idx, ker)
        row, idx, ker, score = row[order], idx[order], ker[order], score[order]
        keep = np.zeros(idx.size, dtype=np.bool_)
        _greedy(row, idx, exclusion, nwin, -1, counts, keep)
        kept.append((row[keep], idx[keep], ker[keep], score[keep]))
    else:
        filters = None
        while True:
            (hk, hi, hn, hs, size), offered = _scan_all(source, nker, mplan.sign, thresholds,
                                                        mplan.pool, filters)
            row = np.repeat(np.arange(rows), size)
            take = np.arange(hk.shape[1])[None, :] < size[:, None]
            keys, idx, ker, score = hk[take], hi[take], hn[take], hs[take]
            order = _sort_rows(row, keys, idx, ker)
            row, keys, idx, ker, score = row[order], keys[order], idx[order], ker[order], score[order]
            keep = np.zeros(idx.size, dtype=np.bool_)
            _greedy(row, idx, exclusion, nwin, k, counts, keep)
            kept.append((row[keep], idx[keep], ker[keep], score[keep]))
            # rows that may have more: fewer than k kept, and candidates left out
            again = (counts < k) & (offered > size)
            if not again.any():
                break
            filters = _rescan_filters(rows, again, row, keys, idx, ker, kept, exclusion)
    parts = [np.concatenate(column) if kept else np.empty(0) for column in zip(*kept)] if kept else []
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, np.empty(0)
    row, idx, ker, score = parts
    row, idx, ker = row.astype(np.int64), idx.astype(np.int64), ker.astype(np.int64)
    order = np.lexsort((ker, idx, row, -_keys(score, mplan.sign)))
    return row[order], idx[order], ker[order], score[order]


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


def find_matches(x, splan, mplan, method):
    """The matches of a planned call on the host signal ``x``: ``(row, index,
    kernel, score)`` (see :func:`select`); scores in ``splan.out_dtype``."""
    nker = splan.khat.shape[0]
    # a threshold-only search lists its candidates: room for a tile's
    extra = 12 * nker if mplan.k is None else 0
    source = Scores(x, splan, method, mplan.budget, extra)
    thresholds = np.full(source.nrows, mplan.threshold)
    if mplan.threshold_fn is not None:
        whole = np.empty((source.nrows, nker, splan.nwin), source.compute)
        for w0, tile in source.tiles():
            whole[:, :, w0 : w0 + tile.shape[-1]] = tile
        single = not splan.bank_shape and splan.channel_axis is None
        thresholds = _call_threshold(whole, mplan, splan.out_dtype, single)
        source = HostScores(whole, source.width)
    return _deliver(select(source, nker, splan.nwin, mplan, thresholds), splan.out_dtype)


def select_scores(scores, ax, channel_axis, is_bank, mplan):
    """The matches of a host score array ``scores`` in ``sliding_cosine``'s
    layout (the GPU's scores, copied back)."""
    kernel_axes, caller_axes = plans.moved_axes(ax, channel_axis, is_bank)
    single = not is_bank and channel_axis is None
    moved = drivers._moveaxis(scores, caller_axes, kernel_axes)
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
        keys = _keys(whole[r], mplan.sign).astype(out_dtype)
        values[r] = core.threshold_value(mplan.threshold_fn(keys[0] if single else keys))
    return values


def _deliver(found, out_dtype):
    row, idx, ker, score = found
    return row, idx, ker, score.astype(out_dtype)
