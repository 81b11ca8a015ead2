"""``find_matches`` over several sliding axes (images, volumes) on the CPU:
the scores of ``_cpu.spatial_driver`` for the whole signal (or the CUDA
backend's, copied to the host), candidates
(local maxima of the key along every sliding axis), then greedy selection
with a box exclusion zone, one batch index at a time.

A kept match marks the box of windows within its exclusion zone (along
every axis) in a mask, so each later candidate is judged in O(1) and each
window is marked at most a few times: the selection costs O(windows +
candidates log candidates) whatever the number of matches.
"""

import numpy as np

from .._core import spatial
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
    key = keys(scores, mplan.sign)
    threshold = mplan.threshold
    if mplan.threshold_fn is not None:
        from .._core.matches import threshold_value

        shown = np.where(key == -np.inf, np.nan, key) if np.isnan(scores).any() else key
        threshold = threshold_value(mplan.threshold_fn(shown[0] if single else shown))
    candidate = (key >= threshold) & (key > -np.inf)
    for axis in range(1, key.ndim):  # local maxima along every sliding axis
        candidate &= _rises(key, axis) & _holds(key, axis)
    kernel, *position = np.nonzero(candidate)
    position = np.stack(position, axis=-1) if position else np.zeros((kernel.size, 0), np.int64)
    found = key[candidate]
    shape = key.shape[1:]
    flat = np.ravel_multi_index(tuple(position.T), shape)
    order = np.lexsort((kernel, flat, -found))
    position, kernel, found = position[order], kernel[order], found[order]
    keep = np.zeros(found.size, dtype=np.bool_)
    greedy_boxes(position.astype(np.int64), np.array(shape, dtype=np.int64),
                 np.array(mplan.exclusion, dtype=np.int64), -1 if mplan.k is None else mplan.k,
                 np.zeros(int(np.prod(shape)), dtype=np.bool_), keep)
    position, kernel, found = position[keep], kernel[keep], found[keep]
    score = scores[(kernel,) + tuple(position.T)]
    return position.astype(np.int64), kernel.astype(np.int64), score, found


def _rises(key, axis):
    """``key[i] > key[i - 1]`` along ``axis`` (the first: above -inf)."""
    before = np.full_like(key, -np.inf)
    _shifted(before, key, axis, 1)
    return key > before


def _holds(key, axis):
    """``key[i] >= key[i + 1]`` along ``axis`` (the last: always)."""
    after = np.full_like(key, -np.inf)
    _shifted(after, key, axis, -1)
    return key >= after


def _shifted(dest, key, axis, step):
    """``dest`` along ``axis`` takes ``key`` moved by ``step`` (the rest is
    left as it is)."""
    n = key.shape[axis]
    if n <= 1:
        return
    target = [slice(None)] * key.ndim
    source = [slice(None)] * key.ndim
    target[axis] = slice(1, n) if step > 0 else slice(0, n - 1)
    source[axis] = slice(0, n - 1) if step > 0 else slice(1, n)
    dest[tuple(target)] = key[tuple(source)]


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
