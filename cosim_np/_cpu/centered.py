"""Numba kernels of ``center=True``: each window's centered sum of squares
``M2 = ||w - mean(w)||**2`` (over all its channels and taps), from pairwise
statistics merged without cancellation.

Each position of a tile enters as its ``(mean, M2)`` over its channels.
Level ``k`` holds the statistics of every run of ``2**k`` consecutive taps
(``p, p + d, ...``), each merged from two runs of level ``k - 1`` by Chan's
formula, ``M2 = M2_a + M2_b + delta**2 * n_a * n_b / n`` with ``delta`` the
gap between their means; a window of ``m`` taps gathers one run of each level
in the binary expansion of ``m``, lowest first, by the same formula.  Every
term is non-negative, so no digit is lost to cancellation under a large
offset (``sum x**2 - n * mean**2`` loses them all), a loud burst leaves the
windows without it as exact as before, and a NaN reaches only the windows
that hold it.  A window's result depends on its own samples only, whichever
tile computes it, and every level is one pass over contiguous arrays that
vectorises.

A run's mean is held as its distance from the run's first sample (channel
0's, its *reference*), and two runs' gap as the difference of their
references plus that of their distances: under an offset a mean rounded
at the offset's scale (``eps * offset``) put that error into every gap, and
so ``eps * kappa`` into the M2 (``kappa = ||w|| / ||w - mean(w)||``), where
the references' difference is exact (two samples within a factor of 2) or
rounded at the window's own spread, and so are the distances: each
window's M2 is then as accurate as a two-pass computation over it.

Every operation is a subtraction, addition or product by a constant: the
statistics of ``2**j * x`` are exactly ``2**j`` and ``4**j`` times those of
``x`` (while no intermediate leaves the normal range), and those of ``-x``
are ``-mean`` and the same ``M2``.  A constant window has ``M2`` exactly 0.

References
----------
T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
algorithm for computing sample variances", Stanford CS tech. report
STAN-CS-79-773 (1979).
"""

import math

import numpy as np

from . import scratch
from ._jit import jit
from .sliding import (
    _bank_cosines,
    _out_of_range,
    count_outside,
    fft_rescaled_cosines,
    flagged_tiles,
    rescaled_window_cosines,
    tile_length,
    window_extent,
)

# A tile holding a sample of magnitude below this (or above SAFE_MAX) may
# lose range in its windows' M2: the squares of differences of samples are
# then recomputed scaled (``rescaled_m2``) where M2 is out of range.
CENTERED_SAFE_MIN = 2.0**-400


def make_buffers(m, d, nchan, windows):
    """Tile length and scratch space for ``_tile_m2`` over tiles of at most
    ``windows`` windows: the positions' references, the statistics of one
    level and of the next over a tile's positions, and the means of the
    windows' runs gathered so far."""
    tile = tile_length(m, d)
    cover = min(tile, windows)
    room = cover + (m - 1) * d
    return tile, (
        scratch.empty("centered references", room),
        scratch.empty("centered level means", room),
        scratch.empty("centered level M2", room),
        scratch.empty("centered next level means", room),
        scratch.empty("centered next level M2", room),
        scratch.empty("centered window means", cover),
    )


@jit(from_python=False)
def _positions(x, b, i0, npos, refs, means, m2s):
    """Each position's statistics over its channels, given its reference
    ``refs[p]`` (its channel 0 sample): ``means[p]``, the mean's distance
    from the reference (and, for more than one channel, ``m2s[p]``, by
    Welford's update channel by channel, so that equal samples give 0 and 0
    exactly).  Returns how many samples of channels past the first could
    lose range."""
    nchan = x.shape[1]
    unsafe = 0
    for p in range(npos):
        means[p] = 0.0
    if nchan > 1:
        for p in range(npos):
            m2s[p] = 0.0
        for c in range(1, nchan):
            xs = x[b, c, i0 : i0 + npos]
            for p in range(npos):
                mean, m2s[p] = _add_channel(means[p], m2s[p], np.float64(xs[p]) - refs[p], c + 1)
                means[p] = mean
            unsafe += _count_unsafe(xs)
    return unsafe


@jit(from_python=False)
def _references(xs, refs):
    """``refs[p] = xs[p]`` in float64; returns how many samples could lose
    range."""
    for p in range(xs.size):
        refs[p] = np.float64(xs[p])
    return _count_unsafe(xs)


@jit(from_python=False)
def _add_channel(mean, m2, value, count):
    """Welford's update of a position's ``(mean, m2)`` by its ``count``-th
    channel's ``value``."""
    delta = value - mean
    mean = mean + delta / count
    return mean, m2 + delta * (value - mean)


@jit(from_python=False)
def _count_unsafe(xs):
    """How many samples have a non-zero magnitude outside
    ``[CENTERED_SAFE_MIN, SAFE_MAX]`` (none for float32)."""
    return count_outside(xs, CENTERED_SAFE_MIN)


@jit
def _tile_m2(x, b, i0, nwin, m, d, bufs, out):
    """Fill ``out[t]`` with the centered sum of squares of window ``i0 + t``
    for ``t < nwin``.  Returns True when a sample could lose range (see
    ``rescaled_m2``)."""
    refs, means, m2s, next_means, next_m2s, window_means = bufs
    nchan = x.shape[1]
    npos = nwin + (m - 1) * d
    unsafe = _references(x[b, 0, i0 : i0 + npos], refs)
    if nchan == 1 and m % 4 == 0:
        # no window takes a run of one or two taps: runs of four straight
        # from the samples
        _quads(refs[:npos], d, means, m2s)
        _pairwise_m2(refs, means, m2s, next_means, next_m2s, window_means, out, npos, nwin, m, d,
                     np.int64(1), np.int64(4))
    elif nchan == 1 and m % 2 == 0:
        # no window takes a run of one tap: pairs straight from the samples
        _pairs(refs[:npos], d, means, m2s)
        _pairwise_m2(refs, means, m2s, next_means, next_m2s, window_means, out, npos, nwin, m, d,
                     np.int64(1), np.int64(2))
    else:
        unsafe += _positions(x, b, i0, npos, refs, means, m2s)
        _pairwise_m2(refs, means, m2s, next_means, next_m2s, window_means, out, npos, nwin, m, d,
                     nchan, np.int64(1))
    return unsafe > 0


@jit(from_python=False)
def _pairs(refs, d, means, m2s):
    """Level 1 of one channel from its samples (``refs``): ``_next_level``
    of the positions, the same operations."""
    first = refs[: refs.size - d]
    second = refs[d:]
    for p in range(first.size):
        gap = second[p] - first[p]
        means[p] = gap * 0.5
        m2s[p] = gap * gap * 0.5


@jit(from_python=False)
def _quads(refs, d, means, m2s):
    """Level 2 of one channel from its samples (``refs``): ``_pairs``, then
    ``_next_level``, the same operations on each run of four taps."""
    first = refs[: refs.size - 3 * d]
    second = refs[d : refs.size - 2 * d]
    third = refs[2 * d : refs.size - d]
    fourth = refs[3 * d :]
    for p in range(first.size):
        gap_a = second[p] - first[p]
        mean_a = gap_a * 0.5
        gap_c = fourth[p] - third[p]
        gap = (third[p] - first[p]) + (gap_c * 0.5 - mean_a)
        means[p] = mean_a + gap * 0.5
        m2s[p] = gap_a * gap_a * 0.5 + gap_c * gap_c * 0.5 + gap * gap * 1.0


@jit(from_python=False)
def _pairwise_m2(refs, means, m2s, next_means, next_m2s, window_means, out, npos, nwin, m, d,
                 nchan, taps):
    """``out[t]``: the M2 of taps ``t, t + d, ... t + (m-1) d`` for ``t <
    nwin`` from the statistics of each run of ``taps`` taps (1: the
    positions', whose ``m2s`` are read only for more than one channel;
    2 or 4: see ``_pairs`` and ``_quads``), ``npos - (taps - 1) * d`` of
    them, run ``p``'s mean as its distance from ``refs[p]``; the level
    arrays are overwritten."""
    gathered = 0  # taps of each window gathered so far
    spread = nchan > 1 or taps > 1  # (else the positions' M2s are zeros, left unread)
    while True:
        if m & taps:
            _gather(refs, means, m2s, spread, window_means, out, nwin, gathered * d,
                    gathered * nchan, taps * nchan)
            gathered += taps
        if 2 * taps > m:
            return
        count = npos - (2 * taps - 1) * d
        if 2 * taps == m:  # m a power of two: the last level is the windows' (count = nwin)
            _next_level(refs, means, m2s, spread, window_means, out, count, taps * d,
                        0.5 * nchan * taps)
            return
        _next_level(refs, means, m2s, spread, next_means, next_m2s, count, taps * d,
                    0.5 * nchan * taps)
        means, next_means = next_means, means
        m2s, next_m2s = next_m2s, m2s
        spread = True
        taps *= 2


@jit(from_python=False)
def _next_level(refs, means, m2s, spread, next_means, next_m2s, count, step, weight):
    """Runs of twice the taps: run ``p`` of this level merged with run ``p +
    step`` (``weight`` = ``n_a n_b / n`` for their counts)."""
    first_refs = refs[:count]
    second_refs = refs[step : step + count]
    first_means = means[:count]
    second_means = means[step : step + count]
    if spread:
        first_m2s = m2s[:count]
        second_m2s = m2s[step : step + count]
        for p in range(count):
            gap = (second_refs[p] - first_refs[p]) + (second_means[p] - first_means[p])
            next_means[p] = first_means[p] + gap * 0.5
            next_m2s[p] = first_m2s[p] + second_m2s[p] + gap * gap * weight
    else:  # the same operations with M2s of zero (0 + 0 + y is y)
        for p in range(count):
            gap = (second_refs[p] - first_refs[p]) + (second_means[p] - first_means[p])
            next_means[p] = first_means[p] + gap * 0.5
            next_m2s[p] = gap * gap * weight


@jit(from_python=False)
def _gather(refs, means, m2s, spread, window_means, out, nwin, shift, before, count):
    """Each window's statistics so far (``before`` samples, in ``window_means``
    and ``out``, window ``t``'s mean as its distance from ``refs[t]``)
    merged with the run of ``count`` samples that follows them, this level's
    run ``shift`` positions on."""
    # (views from the shift: indexed ``m2s[shift + t]``, which LLVM cannot rule
    # out being negative, the loop takes three times as long)
    runs, run_m2s = means[shift : shift + nwin], m2s[shift : shift + nwin]
    if before == 0:
        for t in range(nwin):
            window_means[t] = runs[t]
            # (without spread, a run of one sample: 0, or NaN for NaN or inf)
            out[t] = run_m2s[t] if spread else refs[t] - refs[t]
        return
    run_refs, own_refs = refs[shift : shift + nwin], refs[:nwin]
    total = before + count
    towards = count / total
    weight = before * count / total
    for t in range(nwin):
        gap = (run_refs[t] - own_refs[t]) + (runs[t] - window_means[t])
        window_means[t] = window_means[t] + gap * towards
        out[t] = out[t] + (run_m2s[t] if spread else 0.0) + gap * gap * weight


@jit
def rescaled_m2(x, b, i, m, d):
    """``(E, s)``: the centered sum of squares of window ``i`` after scaling
    its samples by ``2**-E`` (``E`` from its largest magnitude), by the same
    operations as ``_tile_m2`` (a window's result does not depend on its
    tile); ``s`` is 0 for a constant window and NaN for one holding NaN or
    ±inf (``inf - mean`` is undefined)."""
    big, bad = window_extent(x, b, i, m, d)
    if bad != 0.0:
        return 0, np.nan
    if big == 0.0:
        return 0, 0.0
    expo = math.frexp(big)[1]
    refs = np.empty(m)
    means = np.empty(m)
    m2s = np.empty(m)
    for j in range(m):  # the window's taps side by side: runs of its own taps only
        refs[j], means[j], m2s[j] = _scaled_position(x, b, i + j * d, expo)
    out = np.empty(1)
    one = np.int64(1)
    _pairwise_m2(refs, means, m2s, np.empty(m), np.empty(m), np.empty(1), out, m, one, m, one,
                 x.shape[1], one)
    return expo, out[0]


@jit(from_python=False)
def _scaled_position(x, b, p, expo):
    """Reference, mean (as its distance from the reference) and M2 over the
    channels of position ``p``, samples scaled by ``2**-expo``, as
    ``_positions`` forms them."""
    ref = math.ldexp(np.float64(x[b, 0, p]), -expo)
    mean = 0.0
    spread = 0.0
    for c in range(1, x.shape[1]):
        mean, spread = _add_channel(mean, spread,
                                    math.ldexp(np.float64(x[b, c, p]), -expo) - ref, c + 1)
    return ref, mean, spread


# ---------------------------------------------------------------------------
# Entry kernels.  The FFT path first fills a segment's window M2s with
# ``segment_m2``, then finishes from them, as it does with the plain sums of
# squares; the direct path and the norms go tile by tile.  The dots are the
# raw windows' with the centered unit kernels.


@jit
def segment_m2(x, w0, w1, m, d, tile, bufs, m2, unsafe):
    """``m2[b, i - w0]``: the centered sum of squares of window ``i`` of row
    ``b``, tile by tile; ``m2`` has room for whole tiles, ``unsafe[b, tile]``
    flags tiles that could lose range."""
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            t0 = i0 - w0
            unsafe[b, t0 // tile] = _tile_m2(x, b, i0, min(tile, w1 - i0), m, d, bufs,
                                             m2[b, t0 : t0 + tile])


@jit
def norm_kernel(x, w0, w1, m, d, tile, bufs, m2, out, offset, unsafe):
    """``out[b, offset + i]`` = centered norm of window ``i`` of row ``b``,
    tile by tile (``m2``: room for a tile's M2s); a tile holding a sample
    whose squared differences could leave the float64 range is flagged in
    ``unsafe[b, (i0 - w0) // tile]``, its windows left to
    ``norms_out_of_range``."""
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            nwin = min(tile, w1 - i0)
            unsafe[b, (i0 - w0) // tile] = _tile_m2(x, b, i0, nwin, m, d, bufs, m2)
            dest = out[b, offset + i0 : offset + i0 + nwin]
            for t in range(nwin):
                # inf only comes from an inf sample (float32 tiles are never
                # unsafe): its window's centered norm is undefined, as NaN's
                dest[t] = math.sqrt(m2[t]) if m2[t] < np.inf else np.nan


@jit
def norms_out_of_range(x, w0, w1, m, d, tile, bufs, m2, out, offset, unsafe):
    """After ``norm_kernel``: the norms of the windows of the ``unsafe``
    tiles whose M2 left the float64 range, from their samples scaled by a
    power of two."""
    for tile_at in flagged_tiles(unsafe, w0, w1, tile):
        b, i0, nwin = tile_at[0], tile_at[1], tile_at[2]
        _tile_m2(x, b, i0, nwin, m, d, bufs, m2)
        for t in range(nwin):
            if _out_of_range(m2[t]):
                e, s = rescaled_m2(x, b, i0 + t, m, d)
                out[b, offset + i0 + t] = math.ldexp(math.sqrt(s), e)


@jit
def direct_kernel(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs, m2,
                  out, offset, unsafe):
    """Centered cosines with any kernels, tile by tile: the windows' M2s
    (into ``m2``, room for a tile's), then the dots by
    ``_cpu.sliding._tile_dots`` and the cosines; tiles holding a sample
    whose squared differences could leave the float64 range are flagged in
    ``unsafe`` (as ``norm_kernel`` flags them), their windows left to
    ``fix_out_of_range``."""
    m = khat.shape[2]
    cover = min(tile, w1 - w0)  # (the most windows a tile has)
    acc = np.empty(cover, np.float64)
    shared = np.empty(cover if khat.shape[0] > 1 else 0, np.float64)
    samples = np.empty(cover + (m - 1) * d, np.float64)
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            nwin = min(tile, w1 - i0)
            unsafe[b, (i0 - w0) // tile] = _tile_m2(x, b, i0, nwin, m, d, bufs, m2)
            _bank_cosines(x, b, khat, kernel_state, i0, nwin, d, exponent, noise_floor, fill,
                          m2, shared, samples, acc, out, offset, np.bool_(False))


@jit
def fix_out_of_range(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs,
                     m2, out, offset, unsafe):
    """After ``direct_kernel``: every window of an ``unsafe`` tile whose M2
    left the float64 range, recomputed with its samples scaled by a power of
    two."""
    m = khat.shape[2]
    for tile_at in flagged_tiles(unsafe, w0, w1, tile):
        b, i0, nwin = tile_at[0], tile_at[1], tile_at[2]
        _tile_m2(x, b, i0, nwin, m, d, bufs, m2)
        for t in range(nwin):
            if _out_of_range(m2[t]):
                e, s = rescaled_m2(x, b, i0 + t, m, d)
                rescaled_window_cosines(x, b, i0 + t, e, s, khat, kernel_state, d, exponent,
                                        noise_floor, fill, out, offset + i0 + t)


@jit
def fft_fix_out_of_range(x, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, m2_all,
                         fft, out, offset, unsafe):
    """After ``_cpu.sliding.fft_kernel``: every window of an unsafe tile
    whose M2 left the float64 range, recomputed with its samples scaled by
    a power of two (as ``_cpu.sliding.fft_fix_out_of_range`` does for the
    plain sums)."""
    first = fft[4]
    m = khat.shape[2]
    for b in range(x.shape[0]):
        for ti in range(unsafe.shape[1]):
            if not unsafe[b, ti]:
                continue
            for i in range(first + ti * tile, min(first + (ti + 1) * tile, w1)):
                if _out_of_range(m2_all[b, i - first]):
                    e, s = rescaled_m2(x, b, i, m, d)
                    fft_rescaled_cosines(x, b, i, e, s, khat, kernel_state, d, exponent,
                                         noise_floor, fill, fft, out, offset)
