"""``find_matches`` over several sliding axes (images, volumes) on the CPU:
the scores of ``_cpu.spatial_driver`` for the whole signal (or the CUDA
backend's, copied to the host), candidates (local maxima of the key along
every sliding axis, in one pass over the scores), then greedy selection with
a box exclusion zone, one batch index at a time.

A kept match marks the box of windows within its exclusion zone (along
every axis) in a mask, so each later candidate is judged in O(1) and each
window is marked at most a few times: the selection costs O(windows +
candidates log candidates) whatever the number of matches.
"""

import math

import numpy as np

from .._core import config, spatial
from . import spatial_driver
from ._jit import jit


def find_matches(x, splan, mplan, method):
    """``(row, index, kernel, score)`` of the matches, best first, for a
    planned call (``_core.spatial.SpatialPlan`` and ``_core.matches.MatchPlan``
    with a tuple ``exclusion``); ``index`` ``(n, r)``."""
    return select(spatial_driver.sliding_cosine(x, splan, method, None), splan, mplan)


def select(scores, splan, mplan):
    """``find_matches``'s result of ``scores``, the planned call's
    ``sliding_cosine`` result (a NumPy array in the caller's layout)."""
    geo = splan.geometry
    r = len(geo.axes)
    single = not spatial.has_kernel_axis(splan)
    scores = spatial_driver.computing_layout(scores, splan.result_axes, r, not single)
    scores = scores.reshape((-1,) + scores.shape[scores.ndim - r - 1:])  # (B, K, nout...)
    found = [_select_row(scores[b], mplan, single) for b in range(scores.shape[0])]
    rows = np.concatenate([np.full(len(f[0]), b, dtype=np.int64) for b, f in enumerate(found)])
    index = np.concatenate([f[0] for f in found]).reshape(-1, r)
    kernel = np.concatenate([f[1] for f in found])
    score = np.concatenate([f[2] for f in found]).astype(scores.dtype)
    if len(found) > 1:
        # each batch index's matches are in order: a stable sort by key keeps
        # batch indices, then positions and kernels, in order among equal keys
        order = np.argsort(-np.concatenate([f[3] for f in found]), kind="stable")
        rows, index, kernel, score = rows[order], index[order], kernel[order], score[order]
    return rows, index, kernel, score


def keys(scores, sign):
    """The keys of ``scores`` (float64): ``|s|``, ``s`` or ``-s`` for the sign
    codes 0, 1, -1; NaN as ``-inf``."""
    s = scores.astype(np.float64)
    key = np.abs(s) if sign == 0 else s * sign
    key[np.isnan(key)] = -np.inf
    return key


def _select_row(scores, mplan, single):
    """The matches of one batch index: ``(index (n, r), kernel, score,
    key)`` in greedy order (best key first, ties by position, then kernel).
    With ``k``, only the best candidates are sorted, more of them until the
    greedy selection keeps ``k`` or has seen them all."""
    threshold = mplan.threshold
    if mplan.threshold_fn is not None:
        from .._core.matches import threshold_value

        key = keys(scores, mplan.sign)
        shown = np.where(key == -np.inf, np.nan, key) if np.isnan(scores).any() else key
        threshold = threshold_value(mplan.threshold_fn(shown[0] if single else shown))
    shape = scores.shape[1:]
    kernel, flat, found = _local_maxima(scores, mplan.sign, threshold)
    limit = -1 if mplan.k is None else mplan.k
    take = found.size if limit < 0 else max(config.MATCH_CANDIDATES_PER_K * limit, 1)
    while True:
        if take < found.size:  # the best ``take`` (with every tie of the last)
            best = np.flatnonzero(found >= np.partition(found, found.size - take)[-take])
        else:
            best = np.arange(found.size)
        best = best[_best_first(kernel[best], flat[best], found[best])]
        keep = np.zeros(best.size, dtype=np.bool_)
        kept = greedy_boxes(flat[best], np.array(shape, dtype=np.int64),
                            np.array(mplan.exclusion, dtype=np.int64), limit,
                            np.zeros(math.prod(shape), dtype=np.bool_), keep)
        if kept == limit or best.size == found.size:
            break
        take *= 8
    best = best[keep]
    position = np.stack(np.unravel_index(flat[best], shape), axis=-1).astype(np.int64)
    score = scores[(kernel[best],) + tuple(position.T)]
    return position, kernel[best], score, found[best]


def _best_first(kernel, flat, found):
    """The order of candidates listed by kernel, then position: best key
    first, ties by position, then kernel."""
    if not (kernel.size and kernel[0] == kernel[-1]):
        return np.lexsort((kernel, flat, -found))
    # one kernel, the list in position order: a quicksort by key, then each
    # run of equal keys put back in list order (faster than a stable sort)
    order = np.argsort(-found, kind="quicksort")
    ranked = found[order]
    tied = ranked[1:] == ranked[:-1]
    if tied.any():
        members = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
        runs = np.cumsum(np.r_[True, ~tied])[members]
        order[members] = order[members][np.lexsort((order[members], runs))]
    return order


def _local_maxima(scores, sign, threshold):
    """``(kernel, flat index, key)`` of the candidates of ``scores`` ``(K,
    n_1, ..., n_r)``, in the order of their flat index in ``scores``:
    windows whose key reaches ``threshold`` (and is not ``-inf``) and is a
    local maximum along every sliding axis (above the key before it, at
    least the one after it)."""
    values = scores.reshape(scores.shape[0], -1)
    if values.dtype != np.float32 and values.dtype != np.float64:
        values = values.astype(np.float32)  # (float16: exactly)
    shape = np.array(scores.shape[1:], dtype=np.int64)
    n = int(shape[-1])
    # Rows along the last axis, a block at a time, each with room for every
    # candidate it can hold (of two neighbours along a row at most one is):
    # memory follows the candidates found, not the windows' count.
    room = (n + 1) // 2
    rows = max(1, config.MATCH_CANDIDATE_ROOM // room)
    kernel = np.empty(rows * room, dtype=np.int64)
    flat = np.empty_like(kernel)
    found = np.empty(kernel.size)
    blocks = [(k, start) for k in range(values.shape[0])
              for start in range(0, values.shape[1], rows * n)]
    parts = []
    for k, start in blocks:
        stop = min(values.shape[1], start + rows * n)
        count = local_maxima(values, shape, sign, float(threshold), k, start, stop, kernel, flat,
                             found)
        part = (kernel[:count], flat[:count], found[:count])
        # (with blocks to come, the arrays serve them: what this one found is copied out)
        parts.append(part if len(blocks) == 1 else tuple(array.copy() for array in part))
    if len(parts) <= 1:
        return parts[0] if parts else (kernel[:0], flat[:0], found[:0])
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


@jit
def local_maxima(scores, shape, sign, threshold, k, start, stop, kernel, flat, found):
    """The candidates of kernel ``k`` among the windows ``[start, stop)``
    (whole rows along the last axis) of ``scores`` ``(K, prod(shape))``
    (see ``_local_maxima``) into ``kernel``, ``flat`` and ``found``; returns
    how many there are.  A row along the last axis at a time: its keys, then
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
                count += 1
    return count


@jit
def _key_of(value, sign):
    """The key of a score, as ``_cpu.matches._key`` (with no branch)."""
    s = np.float64(value)
    s = abs(s) if sign == 0 else s * sign
    return s if s == s else -np.inf


@jit
def greedy_boxes(flat, shape, exclusion, limit, suppressed, keep):
    """Greedy selection of the candidates at the flat indices ``flat`` of
    windows of ``shape`` (sorted best first): ``keep[c]`` unless a kept one
    lies within ``exclusion`` along every axis, at most ``limit`` (``-1``: no
    limit).  ``suppressed``: a zeroed mask of the windows (flattened
    ``shape``).  Returns how many are kept."""
    r = shape.size
    strides = np.ones(r, dtype=np.int64)
    for a in range(r - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    low = np.empty(r, dtype=np.int64)
    high = np.empty(r, dtype=np.int64)
    cursor = np.empty(r, dtype=np.int64)
    kept = 0
    for c in range(flat.size):
        if limit >= 0 and kept >= limit:
            return kept
        if suppressed[flat[c]]:
            continue
        keep[c] = True
        kept += 1
        for a in range(r):
            position = flat[c] // strides[a] % shape[a]
            low[a] = max(0, position - exclusion[a])
            high[a] = min(shape[a] - 1, position + exclusion[a])
            cursor[a] = low[a]
        while True:  # every window of the box, the last axis fastest
            at = 0
            for a in range(r):
                at += cursor[a] * strides[a]
            suppressed[at] = True
            a = r - 1
            while a >= 0 and cursor[a] == high[a]:
                cursor[a] = low[a]
                a -= 1
            if a < 0:
                break
            cursor[a] += 1
    return kept
