"""Numba kernels for sliding cosine similarity and windowed norms.

Arrays arrive planned and checked: ``x`` is ``(B, C, N)`` (batch rows, input
channels, samples; float32 or float64, C-contiguous), every window is
``x[b, :, i : i + (m-1)*d + 1 : d]`` and the caller guarantees ``N >= (m-1)*d + 1``.
Nothing here validates.

Windowed sums of squares: blocked prefix sums that never subtract
----------------------------------------------------------------------
Windows are processed in tiles whose starts are multiples of ``m*d``.  Split
the window starts into chunks ``[c0, c0 + m*d)``.  Window ``i`` in chunk
``[c0, c1)`` covers ``i, i+d, ..., e = i+(m-1)*d``; the part below ``c1`` is the
stride-``d`` *suffix* sum of the chunk starting at ``i`` and the rest is the
stride-``d`` *prefix* sum of the next chunk ending at ``e``.  Every window is one
suffix plus one prefix, each a sum of the window's own squares only, so a loud
sample or a NaN elsewhere cannot touch it (a global ``cumsum`` with differences
loses every digit after a burst and spreads one NaN to everything after it).

Range: float32/float16/integer inputs are squared in float64 and can neither
overflow nor underflow.  A float64 row with magnitudes outside
``[2**-480, 2**480]`` can; for such rows, each window whose sum of squares
leaves the safe range is recomputed with its samples scaled by a power of two
(exact) in the *same summation order*, so scaling an input by a power of two
changes no output bit whichever path a window takes.
"""

import math

import numpy as np

from ._jit import jit

# |x| in [SAFE_MIN, SAFE_MAX] (or 0) has a normal float64 square, and a sum of
# fewer than 2**60 such squares stays finite.
SAFE_MIN = 2.0**-480
SAFE_MAX = 2.0**480
_SUMSQ_LO = 2.0**-960
_SUMSQ_HI = 2.0**960

# Window classes produced by _tile_norms.
_NORMAL = 0
_ZERO = 1
_NONFINITE = 2
_RESCALED = 3

# Kernel classes, as planned by the caller.
KERNEL_NORMAL = 0
KERNEL_ZERO = 1
KERNEL_NONFINITE = 2

TILE_TARGET = 2048


def tile_length(m, d):
    """Windows per tile: a multiple of the chunk length ``m*d``."""
    chunk = m * d
    return chunk * max(1, -(-TILE_TARGET // chunk))


@jit
def rows_need_rescaling(x):
    """For each row, whether a finite non-zero magnitude lies outside
    ``[SAFE_MIN, SAFE_MAX]`` (only float64 data can)."""
    nrows, nchan, n = x.shape
    flags = np.zeros(nrows, dtype=np.bool_)
    for b in range(nrows):
        lo = np.inf
        hi = 0.0
        for c in range(nchan):
            for p in range(n):
                v = abs(np.float64(x[b, c, p]))
                if v != 0.0 and v < np.inf:
                    lo = min(lo, v)
                    hi = max(hi, v)
        flags[b] = lo < SAFE_MIN or hi > SAFE_MAX
    return flags


@jit
def _tile_sumsq(x, b, i0, nwin, m, d, sq, suf, pre, sumsq):
    """``sumsq[t]`` = sum over channels and taps of squares of window ``i0+t``."""
    nchan = x.shape[1]
    span = (m - 1) * d
    npos = nwin + span
    for p in range(npos):
        sq[p] = 0.0
    for c in range(nchan):
        for p in range(npos):
            v = np.float64(x[b, c, i0 + p])
            sq[p] += v * v
    chunk = m * d
    for c0 in range(0, nwin, chunk):
        c1 = c0 + chunk
        hi0 = min(c1, npos)
        for p in range(hi0 - 1, c0 - 1, -1):
            acc = sq[p]
            if p + d < hi0:
                acc += suf[p + d - c0]
            suf[p - c0] = acc
        hi1 = min(c1 + chunk, npos)
        for p in range(c1, hi1):
            acc = sq[p]
            if p - d >= c1:
                acc = pre[p - d - c1] + acc
            pre[p - c1] = acc
        for t in range(c0, min(c1, nwin)):
            e = t + span
            s = suf[t - c0]
            if e >= c1:
                s += pre[e - c1]
            sumsq[t] = s


@jit
def _rescaled_sumsq(x, b, i, m, d):
    """Sum of squares of window ``i`` after scaling by ``2**-E``, summed in the
    order of ``_tile_sumsq``.  Returns ``(E, s)``; ``s`` is 0 for a zero window
    and NaN/inf for a window holding NaN/inf."""
    nchan = x.shape[1]
    big = 0.0
    bad = 0.0
    for c in range(nchan):
        for j in range(m):
            v = abs(np.float64(x[b, c, i + j * d]))
            if v < np.inf:
                big = max(big, v)
            else:
                bad += v  # inf, or NaN (inf + NaN is NaN)
    if bad != 0.0:
        return 0, bad
    if big == 0.0:
        return 0, 0.0
    expo = math.frexp(big)[1]
    chunk = m * d
    c1 = (i // chunk + 1) * chunk
    e = i + (m - 1) * d
    # suffix part: taps below c1, accumulated from the last one backwards
    jsplit = min(m, (c1 - i + d - 1) // d)
    total = 0.0
    for j in range(jsplit - 1, -1, -1):
        total = _scaled_square(x, b, i + j * d, expo) + total
    if jsplit < m:
        head = 0.0
        for j in range(jsplit, m):
            head = head + _scaled_square(x, b, i + j * d, expo)
        total += head
    return expo, total


@jit
def _scaled_square(x, b, p, expo):
    s = 0.0
    for c in range(x.shape[1]):
        v = math.ldexp(np.float64(x[b, c, p]), -expo)
        s += v * v
    return s


@jit
def _tile_norms(x, b, i0, nwin, m, d, rescale, noise_floor, bufs, state, expo, den):
    """Classify every window of the tile and store its denominator.

    ``den[t]`` is ``sqrt(S) + noise_floor``, in units of ``2**expo[t]`` for
    rescaled windows; NaN/inf for windows with non-finite samples."""
    sq, suf, pre, sumsq = bufs
    _tile_sumsq(x, b, i0, nwin, m, d, sq, suf, pre, sumsq)
    for t in range(nwin):
        s = sumsq[t]
        if rescale and not (_SUMSQ_LO <= s <= _SUMSQ_HI):
            e, s = _rescaled_sumsq(x, b, i0 + t, m, d)
            if s == 0.0:
                state[t] = _ZERO
            elif not s < np.inf:
                state[t] = _NONFINITE
                den[t] = math.sqrt(s)
            else:
                state[t] = _RESCALED
                expo[t] = e
                den[t] = math.sqrt(s) + math.ldexp(noise_floor, -e)
        elif s == 0.0:
            state[t] = _ZERO
        elif not s < np.inf:
            state[t] = _NONFINITE
            den[t] = math.sqrt(s)
        else:
            state[t] = _NORMAL
            den[t] = math.sqrt(s) + noise_floor


def make_buffers(m, d):
    """Scratch space for one tile (allocated once per call, outside the loops)."""
    tile = tile_length(m, d)
    chunk = m * d
    return tile, (
        np.empty(tile + (m - 1) * d, np.float64),
        np.empty(chunk, np.float64),
        np.empty(chunk, np.float64),
        np.empty(tile, np.float64),
    )


@jit
def windowed_norm_kernel(x, m, d, rescale_rows, tile, bufs, out, offset):
    """``out[b, offset + i]`` = L2 norm of window ``i`` of row ``b`` (all channels)."""
    nrows = x.shape[0]
    nwin_total = x.shape[2] - (m - 1) * d
    state = np.empty(tile, np.int8)
    expo = np.zeros(tile, np.int64)
    den = np.empty(tile, np.float64)
    for b in range(nrows):
        for i0 in range(0, nwin_total, tile):
            nwin = min(tile, nwin_total - i0)
            _tile_norms(x, b, i0, nwin, m, d, rescale_rows[b], 0.0, bufs, state, expo, den)
            for t in range(nwin):
                st = state[t]
                if st == _ZERO:
                    out[b, offset + i0 + t] = 0.0
                elif st == _RESCALED:
                    out[b, offset + i0 + t] = math.ldexp(den[t], expo[t])
                else:
                    out[b, offset + i0 + t] = den[t]


@jit
def _tile_dots(x, b, khat, k, i0, nwin, d, acc):
    """``acc[t]`` = <window i0+t, khat[k]>; windows innermost so it vectorises."""
    nchan = x.shape[1]
    m = khat.shape[2]
    for t in range(nwin):
        acc[t] = 0.0
    for c in range(nchan):
        for j in range(m):
            w = khat[k, c, j]
            base = i0 + j * d
            for t in range(nwin):
                acc[t] += np.float64(x[b, c, base + t]) * w


@jit
def _rescaled_dot(x, b, khat, k, i, d, expo):
    """<window i scaled by 2**-expo, khat[k]>, in the order of ``_tile_dots``."""
    s = 0.0
    for c in range(x.shape[1]):
        for j in range(khat.shape[2]):
            s += math.ldexp(np.float64(x[b, c, i + j * d]), -expo) * khat[k, c, j]
    return s


@jit
def sharpen_value(s, exponent):
    """``sign(s) * |s| ** exponent`` for one float64; 0 and NaN pass through."""
    if exponent == 1.0 or s == 0.0 or s != s:
        return s
    return math.copysign(abs(s) ** exponent, s)


@jit
def sliding_cosine_kernel(
    x, khat, kernel_state, d, exponent, noise_floor, fill, rescale_rows, tile, bufs, out, offset
):
    """``out[b, k, offset + i]`` = sharpened cosine of window ``i`` of row ``b``
    with unit-norm kernel ``khat[k]`` (shape ``(K, C, m)``)."""
    nrows = x.shape[0]
    nker, _, m = khat.shape
    nwin_total = x.shape[2] - (m - 1) * d
    state = np.empty(tile, np.int8)
    expo = np.zeros(tile, np.int64)
    den = np.empty(tile, np.float64)
    acc = np.empty(tile, np.float64)
    for b in range(nrows):
        rescale = rescale_rows[b]
        for i0 in range(0, nwin_total, tile):
            nwin = min(tile, nwin_total - i0)
            _tile_norms(x, b, i0, nwin, m, d, rescale, noise_floor, bufs, state, expo, den)
            for k in range(nker):
                kst = kernel_state[k]
                _tile_dots(x, b, khat, k, i0, nwin, d, acc)
                for t in range(nwin):
                    st = state[t]
                    if st == _NONFINITE or kst == KERNEL_NONFINITE:
                        v = np.nan
                    elif st == _ZERO or kst == KERNEL_ZERO:
                        v = fill
                    else:
                        a = acc[t]
                        if st == _RESCALED:
                            a = _rescaled_dot(x, b, khat, k, i0 + t, d, expo[t])
                        v = a / den[t]
                        # Cauchy-Schwarz holds exactly; rounding may not.
                        if v > 1.0:
                            v = 1.0
                        elif v < -1.0:
                            v = -1.0
                        v = sharpen_value(v, exponent)
                    out[b, k, offset + i0 + t] = v


@jit
def sharpen_kernel(values, exponent, out):
    for i in range(values.size):
        out[i] = sharpen_value(np.float64(values[i]), exponent)
