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

# Kernel classes, as planned by the caller.
KERNEL_NORMAL = 0
KERNEL_ZERO = 1
KERNEL_NONFINITE = 2

# Windows per tile, at least; enough chunks per tile that the lock-step scans
# below have independent chains to overlap.
TILE_TARGET = 4096
# Windows of at most this many taps are summed directly (see _tile_sumsq).
DIRECT_SUM_TAPS = 4
MIN_CHUNKS_PER_TILE = 8


def make_buffers(m, d):
    """Tile length and scratch space (allocated once per call, outside the loops)."""
    chunk = m * d
    tile = chunk * max(MIN_CHUNKS_PER_TILE, -(-TILE_TARGET // chunk))
    return tile, (
        np.empty(tile + chunk, np.float64),  # squares, zero beyond the data
        np.empty(tile, np.float64),  # suffix sums
        np.empty(tile + chunk, np.float64),  # prefix sums (next chunk)
        np.empty(tile, np.float64),  # window sums of squares
    )


@jit
def _tile_sumsq(x, b, i0, nwin, m, d, bufs):
    """Fill ``sumsq[t]`` (sum over channels and taps of the squares of window
    ``i0+t``) for ``t < nwin``.  Returns True when a sample's magnitude lies
    outside ``[SAFE_MIN, SAFE_MAX]`` (then some sums may have lost range)."""
    sq, suf, pre, sumsq = bufs
    nchan = x.shape[1]
    chunk = m * d
    span = (m - 1) * d
    npos = nwin + span
    nq = (nwin + chunk - 1) // chunk
    for p in range((nq + 1) * chunk):
        sq[p] = 0.0
    unsafe = 0
    for c in range(nchan):
        xs = x[b, c, i0 : i0 + npos]
        for p in range(npos):
            val = np.float64(xs[p])
            sq[p] += val * val
            mag = abs(val)
            unsafe += (mag > SAFE_MAX) | ((mag < SAFE_MIN) & (mag > 0.0))
    if m <= DIRECT_SUM_TAPS:
        # A window of a few taps: its own squares summed in tap order take
        # fewer passes than the blocked scheme, and are just as exact.
        for t in range(nwin):
            sumsq[t] = sq[t]
        for j in range(1, m):
            shifted = sq[j * d : j * d + nwin]
            for t in range(nwin):
                sumsq[t] += shifted[t]
        return unsafe > 0
    # Suffix sums inside each chunk, chunks in lock step (independent chains).
    for t in range(chunk - 1, -1, -1):
        if t + d < chunk:
            for q in range(nq):
                p = q * chunk + t
                suf[p] = sq[p] + suf[p + d]
        else:
            for q in range(nq):
                p = q * chunk + t
                suf[p] = sq[p]
    # Prefix sums inside each following chunk.
    for t in range(chunk):
        if t >= d:
            for q in range(1, nq + 1):
                p = q * chunk + t
                pre[p] = pre[p - d] + sq[p]
        else:
            for q in range(1, nq + 1):
                p = q * chunk + t
                pre[p] = sq[p]
    # Each window: one suffix, plus one prefix if it crosses into the next chunk.
    for t in range(chunk):
        if t + span >= chunk:
            for q in range(nq):
                i = q * chunk + t
                sumsq[i] = suf[i] + pre[i + span]
        else:
            for q in range(nq):
                i = q * chunk + t
                sumsq[i] = suf[i]
    return unsafe > 0


@jit
def _out_of_range(s):
    return not (_SUMSQ_LO <= s <= _SUMSQ_HI)


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
            mag = abs(np.float64(x[b, c, i + j * d]))
            if mag < np.inf:
                big = max(big, mag)
            else:
                bad += mag  # inf, or NaN (inf + NaN is NaN)
    if bad != 0.0:
        return 0, bad
    if big == 0.0:
        return 0, 0.0
    expo = math.frexp(big)[1]
    if m <= DIRECT_SUM_TAPS:
        total = 0.0
        for j in range(m):
            total += _scaled_square(x, b, i + j * d, expo)
        return expo, total
    chunk = m * d
    c1 = (i // chunk + 1) * chunk
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
        val = math.ldexp(np.float64(x[b, c, p]), -expo)
        s += val * val
    return s


@jit
def windowed_norm_kernel(x, m, d, tile, bufs, out, offset):
    """``out[b, offset + i]`` = L2 norm of window ``i`` of row ``b`` (all channels)."""
    sumsq = bufs[3]
    nwin_total = x.shape[2] - (m - 1) * d
    for b in range(x.shape[0]):
        for i0 in range(0, nwin_total, tile):
            nwin = min(tile, nwin_total - i0)
            unsafe = _tile_sumsq(x, b, i0, nwin, m, d, bufs)
            dest = out[b, offset + i0 : offset + i0 + nwin]
            for t in range(nwin):
                dest[t] = math.sqrt(sumsq[t])  # NaN and inf propagate
            if unsafe:
                for t in range(nwin):
                    if _out_of_range(sumsq[t]):
                        e, s = _rescaled_sumsq(x, b, i0 + t, m, d)
                        dest[t] = math.ldexp(math.sqrt(s), e)


@jit
def _tile_dots(x, b, khat, k, i0, nwin, d, acc):
    """``acc[t]`` = <window i0+t, khat[k]>; windows innermost so it vectorises."""
    m = khat.shape[2]
    for t in range(nwin):
        acc[t] = 0.0
    for c in range(x.shape[1]):
        for j in range(m):
            w = khat[k, c, j]
            xs = x[b, c, i0 + j * d : i0 + j * d + nwin]
            for t in range(nwin):
                acc[t] += np.float64(xs[t]) * w


@jit
def _fft_bound(fft, b, k, block, shift):
    """Bound on the FFT error of a dot of block ``block``, in units ``2**-shift``
    relative to the block's own."""
    return fft[4][k] * math.ldexp(fft[2][b, block], shift)


@jit
def _fft_tile_dots(x, b, khat, k, i0, nwin, d, sumsq, fft, acc):
    """FFT dots of a tile in signal units (exact power-of-two shifts); windows
    whose error bound is not small against their norm are recomputed directly."""
    dots, block_exponents, block_noise, step, error_scale, allowed = fft
    t = 0
    while t < nwin:
        block = (i0 + t) // step
        stop = min(nwin, (block + 1) * step - i0)
        shift = block_exponents[b, block]
        bound = _fft_bound(fft, b, k, block, shift)
        src = dots[b, k, i0 + t : i0 + stop]
        if -1000 <= shift <= 1000:
            scale = math.ldexp(1.0, shift)
            for u in range(stop - t):
                acc[t + u] = src[u] * scale
        else:
            for u in range(stop - t):
                acc[t + u] = math.ldexp(src[u], shift)
        for u in range(t, stop):
            s = sumsq[u]
            # zero and non-finite windows are settled by the finish
            if s > 0.0 and s < np.inf and bound > allowed * math.sqrt(s):
                acc[u] = _rescaled_dot(x, b, khat, k, i0 + u, d, 0)
        t = stop


@jit
def _fft_dot(x, b, khat, k, i, d, expo, norm, fft):
    """Dot of window ``i`` with ``khat[k]`` in units of ``2**expo``, where the
    window's norm is ``norm`` (finite, non-zero) in those units: the FFT's
    value shifted (exact), or recomputed directly when its error bound is not
    small against ``norm``.  The same decision as ``_fft_tile_dots``."""
    block = i // fft[3]
    shift = fft[1][b, block] - expo
    if _fft_bound(fft, b, k, block, shift) > fft[5] * norm:
        return _rescaled_dot(x, b, khat, k, i, d, expo)
    return math.ldexp(fft[0][b, k, i], shift)


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
def _cosine_value(dot, den, exponent):
    """Clamp to [-1, 1] (Cauchy-Schwarz holds exactly; rounding may not) and sharpen."""
    val = dot / den
    val = 1.0 if val > 1.0 else val
    val = -1.0 if val < -1.0 else val
    return sharpen_value(val, exponent)


@jit
def sliding_cosine_kernel(
    x, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs, out, offset, fft
):
    """``out[b, k, offset + i]`` = sharpened cosine of window ``i`` of row ``b``
    with unit-norm kernel ``khat[k]`` (shape ``(K, C, m)``).

    ``fft`` is ``(dots, block_exponents, block_noise, step, error_scale,
    allowed)`` from the FFT path (dots in units of their block's
    ``2**exponent``), or has an empty ``dots`` for the direct method.  A window
    whose FFT error bound ``error_scale[k] * block_noise`` exceeds
    ``allowed * ||w||`` (a loud sample nearby) gets its dot recomputed directly."""
    use_fft = fft[0].shape[0] > 0
    nker, _, m = khat.shape
    sumsq = bufs[3]
    nwin_total = x.shape[2] - (m - 1) * d
    acc = np.empty(tile, np.float64)
    for b in range(x.shape[0]):
        for i0 in range(0, nwin_total, tile):
            nwin = min(tile, nwin_total - i0)
            unsafe = _tile_sumsq(x, b, i0, nwin, m, d, bufs)
            for k in range(nker):
                kst = kernel_state[k]
                dest = out[b, k, offset + i0 : offset + i0 + nwin]
                if use_fft:
                    _fft_tile_dots(x, b, khat, k, i0, nwin, d, sumsq, fft, acc)
                else:
                    _tile_dots(x, b, khat, k, i0, nwin, d, acc)
                _finish_tile(acc, sumsq, nwin, noise_floor, fill, kst, dest)
                if exponent != 1.0 and kst == KERNEL_NORMAL:
                    for t in range(nwin):
                        # fill values (zero windows) are not cosines: leave them
                        if sumsq[t] != 0.0:
                            dest[t] = sharpen_value(dest[t], exponent)
                if unsafe and kst != KERNEL_NONFINITE:
                    for t in range(nwin):
                        if _out_of_range(sumsq[t]):
                            dest[t] = _rescaled_cosine(
                                x, b, khat, k, kst, i0 + t, m, d, exponent, noise_floor, fill, fft
                            )


@jit
def _finish_tile(acc, sumsq, nwin, noise_floor, fill, kernel_state, dest):
    """Unsharpened cosines of a tile, branch-free so that it vectorises."""
    zero_kernel = kernel_state == KERNEL_ZERO
    nan_kernel = kernel_state == KERNEL_NONFINITE
    for t in range(nwin):
        s = sumsq[t]
        val = acc[t] / (math.sqrt(s) + noise_floor)
        # Cauchy-Schwarz holds exactly; rounding may not.
        val = 1.0 if val > 1.0 else val
        val = -1.0 if val < -1.0 else val
        val = fill if (s == 0.0 or zero_kernel) else val
        # a NaN or inf sample makes s NaN or inf
        dest[t] = np.nan if (not s < np.inf or nan_kernel) else val


@jit
def _rescaled_cosine(x, b, khat, k, kernel_state, i, m, d, exponent, noise_floor, fill, fft):
    """One window whose sum of squares left the float64 range, recomputed with
    its samples scaled by a power of two (exact)."""
    e, s = _rescaled_sumsq(x, b, i, m, d)
    if not s < np.inf:
        return np.nan
    if s == 0.0 or kernel_state == KERNEL_ZERO:
        return fill
    if fft[0].shape[0] > 0:
        dot = _fft_dot(x, b, khat, k, i, d, e, math.sqrt(s), fft)
    else:
        dot = _rescaled_dot(x, b, khat, k, i, d, e)
    return _cosine_value(dot, math.sqrt(s) + math.ldexp(noise_floor, -e), exponent)


@jit
def sharpen_kernel(values, exponent, out):
    for i in range(values.size):
        out[i] = sharpen_value(np.float64(values[i]), exponent)
