"""``find_matches`` over several sliding axes (images, volumes) on the CPU:
the scores of ``_cpu.spatial_driver`` for the whole signal (or the CUDA
backend's, copied to the host), candidates (local maxima of the key along
every sliding axis, in one pass over the scores that copies nothing), then
greedy selection with a box exclusion zone, one batch index at a time.

A kept match marks the box of windows within its exclusion zone (along
every axis) in a mask, so each later candidate is judged in O(1) and each
window is marked at most a few times: the selection costs O(windows +
candidates log candidates) whatever the number of matches.
"""

import numpy as np

from .._core import spatial
from . import spatial_driver
from ._jit import jit
from .matches import _key


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
    key = np.concatenate([f[3] for f in found])
    flat = np.ravel_multi_index(tuple(index.T), geo.nout)
    order = np.lexsort((kernel, flat, rows, -key))
    return rows[order], index[order], kernel[order], score[order]


def keys(scores, sign):
    """The keys of ``scores`` (float64): ``|s|``, ``s`` or ``-s`` for the sign
    codes 0, 1, -1; NaN as ``-inf``."""
    s = scores.astype(np.float64)
    key = np.abs(s) if sign == 0 else s * sign
    key[np.isnan(key)] = -np.inf
    return key


def _select_row(scores, mplan, single):
    """The matches of one batch index: ``(index (n, r), kernel, score,
    key)`` in greedy order."""
    threshold = mplan.threshold
    if mplan.threshold_fn is not None:
        from .._core.matches import threshold_value

        key = keys(scores, mplan.sign)
        shown = np.where(key == -np.inf, np.nan, key) if np.isnan(scores).any() else key
        threshold = threshold_value(mplan.threshold_fn(shown[0] if single else shown))
    shape = scores.shape[1:]
    kernel, flat, found = _local_maxima(scores, mplan.sign, threshold)
    order = np.lexsort((kernel, flat, -found))
    kernel, flat, found = kernel[order], flat[order], found[order]
    position = np.stack(np.unravel_index(flat, shape), axis=-1).astype(np.int64)
    keep = np.zeros(found.size, dtype=np.bool_)
    greedy_boxes(position, np.array(shape, dtype=np.int64),
                 np.array(mplan.exclusion, dtype=np.int64), -1 if mplan.k is None else mplan.k,
                 np.zeros(int(np.prod(shape)), dtype=np.bool_), keep)
    position, kernel, found = position[keep], kernel[keep], found[keep]
    score = scores[(kernel,) + tuple(position.T)]
    return position, kernel, score, found


def _local_maxima(scores, sign, threshold, room=None):
    """``(kernel, flat index, key)`` of the candidates of ``scores`` ``(K,
    n_1, ..., n_r)``, in the order of their flat index in ``scores``:
    windows whose key reaches ``threshold`` (and is not ``-inf``) and is a
    local maximum along every sliding axis (above the key before it, at
    least the one after it).  ``room``: how many the first pass keeps (by
    default enough for most calls; with more, a second pass)."""
    values = scores.reshape(scores.shape[0], -1)
    if values.dtype != np.float32 and values.dtype != np.float64:
        values = values.astype(np.float32)  # (float16: exactly)
    shape = np.array(scores.shape[1:], dtype=np.int64)
    room = 1024 + values.size // 64 if room is None else room
    while True:
        kernel = np.empty(room, dtype=np.int64)
        flat = np.empty(room, dtype=np.int64)
        found = np.empty(room)
        count = local_maxima(values, shape, sign, float(threshold), kernel, flat, found)
        if count <= room:
            return kernel[:count], flat[:count], found[:count]
        room = count


@jit
def local_maxima(scores, shape, sign, threshold, kernel, flat, found):
    """The candidates of ``scores`` ``(K, prod(shape))`` (see
    ``_local_maxima``) into ``kernel``, ``flat`` and ``found`` as far as
    they have room; returns how many there are."""
    r = shape.size
    strides = np.ones(r, dtype=np.int64)
    for a in range(r - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    coords = np.zeros(r, dtype=np.int64)
    count = 0
    for k in range(scores.shape[0]):
        row = scores[k]
        coords[:] = 0
        for p in range(row.size):
            key = _key(np.float64(row[p]), sign)
            if key >= threshold and key > -np.inf and _is_peak(row, p, key, coords, shape,
                                                                strides, sign):
                if count < kernel.size:
                    kernel[count] = k
                    flat[count] = p
                    found[count] = key
                count += 1
            a = r - 1  # the next window's coordinates, the last axis fastest
            while a > 0 and coords[a] == shape[a] - 1:
                coords[a] = 0
                a -= 1
            coords[a] += 1
    return count


@jit(inline=True)
def _is_peak(row, p, key, coords, shape, strides, sign):
    """Is ``key``, window ``p``'s, above its neighbour before it and at
    least the one after it along every axis?"""
    for a in range(shape.size):
        if coords[a] > 0 and not key > _key(np.float64(row[p - strides[a]]), sign):
            return False
        if coords[a] < shape[a] - 1 and not key >= _key(np.float64(row[p + strides[a]]), sign):
            return False
    return True


@jit
def greedy_boxes(positions, shape, exclusion, limit, suppressed, keep):
    """Greedy selection of the candidates ``positions`` ``(n, r)`` (sorted
    best first): ``keep[c]`` unless a kept one lies within ``exclusion``
    along every axis, at most ``limit`` (``-1``: no limit).  ``suppressed``:
    a zeroed mask of the windows (flattened ``shape``)."""
    n, r = positions.shape
    strides = np.ones(r, dtype=np.int64)
    for a in range(r - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    low = np.empty(r, dtype=np.int64)
    high = np.empty(r, dtype=np.int64)
    cursor = np.empty(r, dtype=np.int64)
    kept = 0
    for c in range(n):
        if limit >= 0 and kept >= limit:
            return
        flat = 0
        for a in range(r):
            flat += positions[c, a] * strides[a]
        if suppressed[flat]:
            continue
        keep[c] = True
        kept += 1
        for a in range(r):
            low[a] = max(0, positions[c, a] - exclusion[a])
            high[a] = min(shape[a] - 1, positions[c, a] + exclusion[a])
            cursor[a] = low[a]
        while True:  # every window of the box, the last axis fastest
            flat = 0
            for a in range(r):
                flat += cursor[a] * strides[a]
            suppressed[flat] = True
            a = r - 1
            while a >= 0 and cursor[a] == high[a]:
                cursor[a] = low[a]
                a -= 1
            if a < 0:
                break
            cursor[a] += 1
