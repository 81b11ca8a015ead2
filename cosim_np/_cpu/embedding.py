"""Numba kernels for the embedding functions: small loops, no validation.

* :func:`row_stats` -- per-row scale (largest magnitude) and the norm of the
  row divided by that scale, in float64, in one read of the row; the norm of
  row ``i`` is ``scale[i] * hnorm[i]`` without ever squaring a huge or tiny
  number.
* :func:`normalise_rows` -- rows ``start:stop`` divided by their norm, written
  into a caller-owned buffer of the compute dtype (float32 or float64).
* :func:`merge_topk` -- fold one tile of scores into the running top-k lists
  of its rows (best first, ties to the lower column, NaN ranked last).
* :func:`clip_rows` -- clip a score tile to ``[-1, 1]``, writing only the rows
  that need it.
* :func:`cosines_of_rows` -- ``cosine_similarity`` of pairs of vectors, each
  pair read once, its sums in float64; :func:`cosines_of_columns` the same,
  with the same bits, for vectors that lie side by side in memory.

The matrix products themselves are BLAS calls made by the tile loop (``tiles.py``).
"""

import math

import numpy as np

from .._core import scalars
from ._jit import float_bits, fma, helper, is_float64, jit


@jit
def row_stats(x, scale, hnorm):
    """``scale[i] = max_j |x[i, j]|`` and ``hnorm[i] = ||x[i] / scale[i]||``.

    A row containing NaN gets ``scale = nan``; one containing ±inf (and no NaN)
    gets ``scale = inf``; an all-zero (or empty) row gets ``scale = 0``. In all
    three cases ``hnorm = 0``. Otherwise ``1 <= hnorm <= sqrt(d)`` (up to
    rounding).

    The norm is always taken of the row divided by its largest magnitude (in
    float64), never of the raw squares: nothing can overflow or underflow, and
    two rows whose quotients ``x / max|x|`` agree (``x`` and ``3 * x``, say)
    get bit-identical directions, so they tie exactly in every comparison.

    Each row goes through a float64 buffer (magnitudes, then squared
    quotients) so that the divisions vectorise, and is reduced in eight
    lanes: two running sums in a fixed order would keep every division
    scalar."""
    n, d = x.shape
    row = np.empty(d)
    for i in range(n):
        for j in range(d):
            row[j] = abs(np.float64(x[i, j]))
        nan = False
        for j in range(d):
            nan |= row[j] != row[j]
        big = _lane_max(row)
        hnorm[i] = 0.0
        scale[i] = np.nan if nan else big
        if nan or big == 0.0 or big == np.inf:
            continue
        for j in range(d):
            v = np.float64(x[i, j]) / big
            row[j] = v * v
        hnorm[i] = math.sqrt(_lane_sum(row))


@jit(from_python=False)
def _lane_max(v):
    """Largest entry of ``v`` (>= 0), ignoring NaN; 0 for an empty ``v``."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = 0.0
    j = 0
    while j + 8 <= v.size:
        m0 = v[j] if v[j] > m0 else m0
        m1 = v[j + 1] if v[j + 1] > m1 else m1
        m2 = v[j + 2] if v[j + 2] > m2 else m2
        m3 = v[j + 3] if v[j + 3] > m3 else m3
        m4 = v[j + 4] if v[j + 4] > m4 else m4
        m5 = v[j + 5] if v[j + 5] > m5 else m5
        m6 = v[j + 6] if v[j + 6] > m6 else m6
        m7 = v[j + 7] if v[j + 7] > m7 else m7
        j += 8
    big = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    while j < v.size:
        big = v[j] if v[j] > big else big
        j += 1
    return big


@jit(from_python=False)
def _lane_sum(v):
    """Sum of ``v`` in eight interleaved partial sums, added pairwise: a fixed
    order (the result depends only on ``v``) that vectorises."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= v.size:
        s0 += v[j]
        s1 += v[j + 1]
        s2 += v[j + 2]
        s3 += v[j + 3]
        s4 += v[j + 4]
        s5 += v[j + 5]
        s6 += v[j + 6]
        s7 += v[j + 7]
        j += 8
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while j < v.size:
        total += v[j]
        j += 1
    return total


@jit
def normalise_rows(x, start, stop, scale, hnorm, out):
    """``out[i - start] = x[i] / (scale[i] * hnorm[i])`` for ``start <= i < stop``.

    Zero rows give zeros, rows with NaN or inf give NaN.  Computed in float64
    and rounded once to ``out.dtype``."""
    d = x.shape[1]
    for i in range(start, stop):
        row = i - start
        s = scale[i]
        h = hnorm[i]
        if s == 0.0:
            for j in range(d):
                out[row, j] = 0.0
        elif not (s < np.inf):  # inf or NaN
            for j in range(d):
                out[row, j] = np.nan
        else:
            inv = 1.0 / h
            for j in range(d):
                out[row, j] = (np.float64(x[i, j]) / s) * inv


_better = jit(scalars.better, from_python=False)


# Columns screened at a time by merge_topk.
SCREEN = 64

# Lists longer than this take a row's candidates k at a time, sorted and
# merged with them in one pass: inserted one at a time, each moves up to k
# entries, and a list of most of the columns took time k times the columns.
INSERT_MAX_K = 64


@jit
def merge_topk(tile, row0, col0, flagged_rows, flagged_cols, self_col, best_s, best_i):
    """Fold ``tile`` (rows ``row0 + r``, columns ``col0 + c``) into ``best_s``
    and ``best_i`` (``(n, k)``, best first, initialised to ``(nan, sentinel)``
    with a sentinel larger than every column).

    ``flagged_rows[r]``/``flagged_cols[c]`` mark rows/columns whose tile values
    were replaced by the fill value or NaN: those are taken as they are, every
    other value is clipped to ``[-1, 1]``.  ``self_col`` >= 0 excludes column
    ``row + self_col`` from the lists (``exclude_self``); -1 excludes nothing.

    Columns are scanned in increasing order, so an equal score never displaces
    an earlier column: ties go to the lower index."""
    rows, cols = tile.shape
    k = best_s.shape[1]
    if k > INSERT_MAX_K:
        found_s = np.empty(k + SCREEN)
        found_i = np.empty(k + SCREEN, np.int64)
        merged_s = np.empty(k)
        merged_i = np.empty(k, np.int64)
        for r in range(rows):
            _merge_sorted(tile[r], row0 + r, col0, flagged_rows[r], flagged_cols, self_col,
                          best_s, best_i, found_s, found_i, merged_s, merged_i)
        return
    for r in range(rows):
        out_row = row0 + r
        threshold = best_s[out_row, k - 1]
        row_flag = flagged_rows[r]
        scores = tile[r]
        for c0 in range(0, cols, SCREEN):
            c1 = min(cols, c0 + SCREEN)
            # Most blocks hold no candidate at all: count them first, in a
            # loop that vectorises.  A NaN score never beats a number; a NaN
            # threshold (a list not yet full) takes every block.
            if threshold != threshold or _any_reaches(scores[c0:c1], threshold):
                threshold = _merge_block(scores, c0, c1, out_row, col0, row_flag, flagged_cols,
                                         self_col, best_s, best_i)


@jit(from_python=False)
def _any_reaches(block, threshold):
    """Whether a score of ``block`` is at least ``threshold``: counted in a
    loop that vectorises (most blocks hold no candidate at all)."""
    candidates = 0
    for c in range(block.size):
        candidates += 1 if block[c] >= threshold else 0
    return candidates > 0


@jit(from_python=False)
def _merge_block(scores, c0, c1, out_row, col0, row_flag, flagged_cols, self_col, best_s,
                 best_i):
    """Insert the candidates among ``scores[c0:c1]`` into row ``out_row`` of the
    running lists; returns the new threshold (the k-th score)."""
    k = best_s.shape[1]
    threshold = best_s[out_row, k - 1]
    for c in range(c0, c1):
        j = col0 + c
        keep, value = _candidate(scores[c], j, out_row, row_flag, flagged_cols[c], self_col,
                                 threshold)
        if not keep:
            continue
        if not _better(value, j, best_s[out_row, k - 1], best_i[out_row, k - 1]):
            continue
        p = k - 1
        while p > 0 and _better(value, j, best_s[out_row, p - 1], best_i[out_row, p - 1]):
            best_s[out_row, p] = best_s[out_row, p - 1]
            best_i[out_row, p] = best_i[out_row, p - 1]
            p -= 1
        best_s[out_row, p] = value
        best_i[out_row, p] = j
        threshold = best_s[out_row, k - 1]
    return threshold


@jit(from_python=False)
def _candidate(s, j, out_row, row_flag, flag, self_col, threshold):
    """``(keep, value)``: whether score ``s`` of column ``j`` may enter row
    ``out_row``'s list (not below ``threshold``, the list's last score; not
    the row's own column with ``exclude_self``), and its value there,
    clipped to ``[-1, 1]`` unless its row or column is ``flag``-ged."""
    if s < threshold:  # the common case; False for NaN either side
        return False, 0.0
    if self_col >= 0 and j == out_row + self_col:
        return False, 0.0
    value = np.float64(s)
    if not (row_flag or flag):
        if value > 1.0:
            value = 1.0
        elif value < -1.0:
            value = -1.0
    return True, value


@jit(from_python=False)
def _merge_sorted(scores, out_row, col0, row_flag, flagged_cols, self_col, best_s, best_i,
                  found_s, found_i, merged_s, merged_i):
    """``merge_topk`` of one row for long lists: the row's candidates
    gathered (in ``found_*``, room for ``k + SCREEN``) and, every ``k`` of
    them and at the end, sorted best first and merged with the list
    (through ``merged_*``), whose last score then screens the rest."""
    k = best_s.shape[1]
    threshold = best_s[out_row, k - 1]
    count = 0
    for c0 in range(0, scores.size, SCREEN):
        c1 = min(scores.size, c0 + SCREEN)
        # (most blocks hold no candidate, once the list is full)
        if threshold != threshold or _any_reaches(scores[c0:c1], threshold):
            for c in range(c0, c1):
                keep, value = _candidate(scores[c], col0 + c, out_row, row_flag,
                                         flagged_cols[c], self_col, threshold)
                if keep:
                    found_s[count] = -value  # (ascending: best first, NaN last)
                    found_i[count] = col0 + c
                    count += 1
        if count >= k or (count and c1 == scores.size):  # (one call site: compiled once)
            _merge_found(out_row, count, best_s, best_i, found_s, found_i, merged_s, merged_i)
            count = 0
            threshold = best_s[out_row, k - 1]


@jit(inline=True)  # (a helper of one call site: compiled as part of it, and once)
def _merge_found(out_row, count, best_s, best_i, found_s, found_i, merged_s, merged_i):
    """Row ``out_row``'s list merged with the ``count`` candidates of
    ``found_*`` (scores negated), sorted first (a stable sort: ties and
    NaNs keep their columns' order)."""
    k = best_s.shape[1]
    order = np.argsort(found_s[:count], kind="mergesort")
    p = q = 0
    for t in range(k):
        if q < count:
            value, j = -found_s[order[q]], found_i[order[q]]
            if _better(value, j, best_s[out_row, p], best_i[out_row, p]):
                merged_s[t], merged_i[t] = value, j
                q += 1
                continue
        merged_s[t], merged_i[t] = best_s[out_row, p], best_i[out_row, p]
        p += 1
    for t in range(k):  # (a loop: a slice assignment compiles Numba's shape checks)
        best_s[out_row, t] = merged_s[t]
        best_i[out_row, t] = merged_i[t]


@jit
def mirror_upper(tile):
    """Copy the strict upper triangle of the leading square of ``tile`` onto
    its lower triangle, making that square exactly symmetric."""
    n = min(tile.shape[0], tile.shape[1])
    for r in range(n):
        for c in range(r + 1, n):
            tile[c, r] = tile[r, c]


@jit
def transpose_into(src, dst):
    """``dst[c, r] = src[r, c]`` in 32 x 32 blocks (``dst`` is ``src.T``'s shape
    and may live in the same buffer as long as the two regions are disjoint)."""
    rows, cols = src.shape
    for r0 in range(0, rows, 32):
        r1 = min(rows, r0 + 32)
        for c0 in range(0, cols, 32):
            c1 = min(cols, c0 + 32)
            for c in range(c0, c1):
                for r in range(r0, r1):
                    dst[c, r] = src[r, c]


@jit
def clip_rows(tile):
    """Clip a C-contiguous score tile to ``[-1, 1]`` in place (NaN stays NaN,
    as with ``np.clip``).  Rounding takes a score past +-1 only for nearly
    parallel rows, so each row is read once and written only when it holds
    such a score: half the memory traffic of ``np.clip(out=)``, which writes
    every entry."""
    for i in range(tile.shape[0]):
        row = tile[i]
        outside = False
        for j in range(row.shape[0]):
            outside |= (row[j] > 1.0) | (row[j] < -1.0)
        if outside:
            for j in range(row.shape[0]):
                if row[j] > 1.0:
                    row[j] = 1.0
                elif row[j] < -1.0:
                    row[j] = -1.0


# ---------------------------------------------------------------------------
# cosine_similarity: each pair of vectors reduced alone, in float64


@jit(from_python=False)
def _load_vector(v, buf):
    """The 1-D vector ``v`` (float32 or float64, any strides) into ``buf`` as
    float64, and the factor that ``buf`` is to be multiplied by to give ``v``.

    A float64 vector is multiplied by the power of two that brings its
    largest magnitude into ``[1, 2)``, exactly: its squares can then neither
    overflow nor underflow, and ``2**k * v`` loads as the same values.  Its
    largest magnitude is found as an integer maximum of its bits, which
    vectorises (a NaN, its sign cleared, comes out above inf).  A zero vector,
    or one holding NaN or inf, is copied as it is (factor 1): its sums tell.
    float32 samples need no factor: their squares and products lie within
    float64's normal range."""
    n = v.size
    if is_float64(v):
        top = 0
        for j in range(n):
            top = max(top, float_bits(abs(v[j])))
        factor, scale = _power_of_two_factor(top)
        if factor != 1.0:
            for j in range(n):
                buf[j] = v[j] * factor
            return scale
    for j in range(n):
        buf[j] = v[j]
    return 1.0


@helper
def _power_of_two_factor(top):
    """``(2**-e, 2**e)`` for a float64 vector whose largest magnitude has the
    bits ``top``, ``e`` its exponent (-1023 if subnormal; both factors
    exact, ``2**-1023`` included), or ``(1, 1)`` for a zero vector or one
    holding NaN or inf: what :func:`_load_vector` multiplies it by, and
    what :func:`_column_factors` gives each column."""
    if 0 < top < 0x7FF0000000000000:
        exponent = (top >> 52) - 1023
        return math.ldexp(1.0, -exponent), math.ldexp(1.0, exponent)
    return 1.0, 1.0


@jit(from_python=False)
def _lane_dots(a, b, n):
    """``(a . b, a . a, b . b)`` over the first ``n`` entries, in one read of
    ``a`` and ``b``: for each, four interleaved sums of fused multiply-adds,
    added pairwise, then the last ``n % 4`` terms in order.  A fixed order
    (each result depends on the two vectors alone) that keeps twelve
    multiply-adds in flight in registers (eight lanes would spill on AVX2)."""
    d0 = d1 = d2 = d3 = 0.0
    p0 = p1 = p2 = p3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    j = 0
    while j + 4 <= n:
        d0, p0, q0 = fma(a[j], b[j], d0), fma(a[j], a[j], p0), fma(b[j], b[j], q0)
        d1, p1, q1 = fma(a[j + 1], b[j + 1], d1), fma(a[j + 1], a[j + 1], p1), fma(b[j + 1], b[j + 1], q1)
        d2, p2, q2 = fma(a[j + 2], b[j + 2], d2), fma(a[j + 2], a[j + 2], p2), fma(b[j + 2], b[j + 2], q2)
        d3, p3, q3 = fma(a[j + 3], b[j + 3], d3), fma(a[j + 3], a[j + 3], p3), fma(b[j + 3], b[j + 3], q3)
        j += 4
    d = (d0 + d1) + (d2 + d3)
    p = (p0 + p1) + (p2 + p3)
    q = (q0 + q1) + (q2 + q3)
    while j < n:
        d, p, q = fma(a[j], b[j], d), fma(a[j], a[j], p), fma(b[j], b[j], q)
        j += 1
    return d, p, q


@jit(from_python=False)
def _cosine(dot, xsq, ysq, xscale, yscale, eps, fill):
    """The cosine of two vectors from their dot and sums of squares (of the
    loaded vectors, which times ``xscale`` and ``yscale`` are the inputs):
    NaN where either holds NaN or inf, ``fill`` (or 0 with ``eps > 0``) where
    either is zero, else clipped to ``[-1, 1]``, each norm clamped to at
    least ``eps`` when ``eps > 0`` (as PyTorch clamps)."""
    if not (xsq < np.inf and ysq < np.inf):
        return np.nan
    if xsq == 0.0 or ysq == 0.0:
        return fill if eps == 0.0 else 0.0
    # (two square roots: a one-component pair of one sign gives exactly 1)
    xnorm = math.sqrt(xsq)
    ynorm = math.sqrt(ysq)
    cos = dot / (xnorm * ynorm)
    if eps > 0.0:
        cos *= min(xscale * xnorm / eps, 1.0) * min(yscale * ynorm / eps, 1.0)
    return min(max(cos, -1.0), 1.0)


@jit
def cosines_of_rows(x, y, shape, xsteps, ysteps, start, stop, eps, fill, out):
    """``out[i - start]`` = the cosine of ``x[a]`` and ``y[b]`` for ``start
    <= i < stop`` (2-D float32 or float64 arrays of vectors, one a row, any
    strides), see :func:`_cosine` for ``eps`` and ``fill``.  ``i`` is the
    flat index of an output of ``shape``, and ``a`` and ``b`` the sums of
    its indices along each axis times ``xsteps`` and ``ysteps`` (0 along an
    axis the side is broadcast along); an empty ``shape``: ``a = b = i``.
    Each pair is read once and gives its three sums; a vector met by a run
    of others is loaded once."""
    n = x.shape[1]
    xbuf = np.empty(n)
    ybuf = np.empty(n)
    last_x = last_y = -1
    xscale = yscale = 1.0
    ndim = shape.size
    digits = np.zeros(ndim, np.int64)
    a = b = start
    if ndim:
        a = b = 0
        rest = start
        for axis in range(ndim - 1, -1, -1):
            digits[axis] = rest % shape[axis]
            rest //= shape[axis]
            a += digits[axis] * xsteps[axis]
            b += digits[axis] * ysteps[axis]
    for i in range(start, stop):
        if a != last_x:
            xscale = _load_vector(x[a], xbuf)
            last_x = a
        if b != last_y:
            yscale = _load_vector(y[b], ybuf)
            last_y = b
        dot, xsq, ysq = _lane_dots(xbuf, ybuf, n)
        out[i - start] = _cosine(dot, xsq, ysq, xscale, yscale, eps, fill)
        if ndim == 0:
            a += 1
            b += 1
            continue
        axis = ndim - 1  # the next output's indices, the last axis fastest
        digits[axis] += 1
        a += xsteps[axis]
        b += ysteps[axis]
        while digits[axis] == shape[axis] and axis > 0:
            a -= xsteps[axis] * shape[axis]
            b -= ysteps[axis] * shape[axis]
            digits[axis] = 0
            axis -= 1
            digits[axis] += 1
            a += xsteps[axis]
            b += ysteps[axis]


# Vectors side by side (a column each) are reduced this many at a time: runs
# this long along each row keep the prefetchers ahead (64 took 1.1x to 1.4x
# the time), and the twelve sums of each still fit the first-level cache.
COLUMN_BLOCK = 256


@jit
def cosines_of_columns(x, y, start, stop, eps, fill, out):
    """``out[k - start]`` = the cosine of the columns ``x[:, k]`` and ``y[:,
    k]`` for ``start <= k < stop`` (2-D float32 or float64 arrays of one shape whose
    rows are contiguous: vectors side by side, as ``axis=0`` of a C array
    holds them), with the bits :func:`cosines_of_rows` gives each pair: the
    same loaded values and the same sums in the same order, taken for
    :data:`COLUMN_BLOCK` columns at a time along the rows, in loops that
    vectorise across the columns."""
    n = x.shape[0]
    sums = np.empty((12, COLUMN_BLOCK))
    factors = np.empty((4, COLUMN_BLOCK))  # x's and y's factors, then their scales
    top = np.empty(COLUMN_BLOCK, dtype=np.int64)
    xfactor, yfactor, xscale, yscale = factors[0], factors[1], factors[2], factors[3]
    for k0 in range(start, stop, COLUMN_BLOCK):
        width = min(COLUMN_BLOCK, stop - k0)
        _column_factors(x, k0, width, top, xfactor, xscale)
        _column_factors(y, k0, width, top, yfactor, yscale)
        for row in range(12):
            for k in range(width):
                sums[row, k] = 0.0
        j = 0
        while j + 4 <= n:
            for lane in range(4):
                xs = x[j + lane, k0 : k0 + width]
                ys = y[j + lane, k0 : k0 + width]
                d = sums[lane]
                p = sums[4 + lane]
                q = sums[8 + lane]
                for k in range(width):
                    u = _column_value(xs, k, xfactor)
                    v = _column_value(ys, k, yfactor)
                    d[k], p[k], q[k] = fma(u, v, d[k]), fma(u, u, p[k]), fma(v, v, q[k])
            j += 4
        for k in range(width):
            dot = (sums[0, k] + sums[1, k]) + (sums[2, k] + sums[3, k])
            xsq = (sums[4, k] + sums[5, k]) + (sums[6, k] + sums[7, k])
            ysq = (sums[8, k] + sums[9, k]) + (sums[10, k] + sums[11, k])
            for t in range(j, n):
                u = _column_value(x[t, k0:], k, xfactor)
                v = _column_value(y[t, k0:], k, yfactor)
                dot, xsq, ysq = fma(u, v, dot), fma(u, u, xsq), fma(v, v, ysq)
            out[k0 + k - start] = _cosine(dot, xsq, ysq, xscale[k], yscale[k], eps, fill)


@jit(from_python=False)
def _column_factors(x, k0, width, top, factor, scale):
    """``factor[k]`` and ``scale[k]`` for the column ``k0 + k`` of ``x``, as
    :func:`_load_vector` multiplies that vector and returns (1 and 1 for
    float32 columns, which are not multiplied); ``top``: room for ``width``
    integers."""
    if not is_float64(x):
        for k in range(width):
            factor[k] = scale[k] = 1.0
    else:
        for k in range(width):
            top[k] = 0
        for j in range(x.shape[0]):
            xs = x[j, k0 : k0 + width]
            for k in range(width):
                top[k] = max(top[k], float_bits(abs(xs[k])))
        for k in range(width):
            factor[k], scale[k] = _power_of_two_factor(top[k])


@jit(inline=True, from_python=False)
def _column_value(xs, k, factor):
    """``xs[k]`` as :func:`_load_vector` loads it, given its column's factor
    ``factor[k]`` (float32 samples only converted)."""
    return xs[k] * factor[k] if is_float64(xs) else np.float64(xs[k])
