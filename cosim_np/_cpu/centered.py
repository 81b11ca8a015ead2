"""Numba kernels of ``center=True``: each window's centered sum of squares
``M2 = ||w - mean(w)||**2`` (over all its channels and taps), from blocked
statistics merged without cancellation.

As for the plain sums of squares (``_cpu.sliding``), the signal is cut into
chunks of ``m * d`` positions; a window starting at offset ``t`` of chunk
``q`` is the *suffix* of chunk ``q``'s chain (residue ``t % d``) from ``t``
plus the *prefix* of chunk ``q + 1``'s same chain up to ``t - d``.  Each part
keeps ``(mean, M2)`` by Welford's update, and the window merges them by
Chan's formula, ``M2 = M2_a + M2_b + delta**2 * n_a * n_b / n``: every term is
non-negative, so no digit is lost to cancellation under a large offset
(``sum x**2 - n * mean**2`` loses them all), a loud burst leaves the windows
without it as exact as before, and a NaN reaches only the windows that hold
it.  A position of a multi-channel signal enters as its own ``(mean, M2)``
over its channels (Welford's update across them).

Every operation is a subtraction, addition or product by a constant: the
statistics of ``2**j * x`` are exactly ``2**j`` and ``4**j`` times those of
``x`` (while no intermediate leaves the normal range), and those of ``-x``
are ``-mean`` and the same ``M2``.  A constant window has ``M2`` exactly 0.
"""

import math

import numpy as np

from .._core.scalars import KERNEL_NONFINITE, SAFE_MAX
from . import scratch
from ._jit import jit
from .sliding import (
    CHAIN_CHUNK,
    _bank_cosines,
    _out_of_range,
    _rescaled_cosine,
    _rescaled_dot,
    fft_rescaled_cosines,
    tile_length,
)

# Chains scanned side by side (see _chain_m2).
CHAINS = 4

# A tile holding a sample of magnitude below this (or above SAFE_MAX) may
# lose range in its windows' M2: the squares of differences of samples are
# then recomputed scaled (``rescaled_m2``) where M2 is out of range.
CENTERED_SAFE_MIN = 2.0**-400


def make_buffers(m, d, nchan):
    """Tile length and scratch space for ``_lane_m2`` and ``_chain_m2``: each position's mean
    (and, with channels, its M2) for the tile's chunks and the one after,
    the prefix statistics, the window M2s, and the update weights.  Short
    chunks (``m * d < CHAIN_CHUNK``) are scanned in lanes (``_lane_m2``),
    whose suffix statistics need two arrays more."""
    chunk = m * d
    tile = tile_length(m, d)
    room = chunk * (tile // chunk + 1)
    lanes = room if chunk < CHAIN_CHUNK else 0  # (the suffixes of the lanes)
    return tile, (
        scratch.empty("centered position means", room),
        scratch.empty("centered position M2", room if nchan > 1 else 0),
        scratch.empty("centered prefix means", room),
        scratch.empty("centered prefix M2", room),
        scratch.empty("window centered M2", tile),
        weights(m, nchan),
        scratch.empty("centered suffix means", lanes),
        scratch.empty("centered suffix M2", lanes),
    )


def weights(m, nchan):
    """``(inverse, growth, merge)``: ``inverse[n] = 1/n`` and ``growth[n] =
    C (n-1)/n`` (Welford's update as the n-th position joins a part),
    ``merge[j] = C j (m-j) / m`` (Chan's, for a window of ``m - j`` positions
    in one chunk and ``j`` in the next)."""
    n = np.arange(m + 1, dtype=np.float64)
    n[0] = 1.0
    inverse = 1.0 / n
    growth = nchan * (n - 1.0) / n
    j = np.arange(m, dtype=np.float64)
    merge = nchan * j * (m - j) / m
    return inverse, growth, merge


@jit
def _positions(x, b, i0, npos, used, means, m2s):
    """Each position's statistics over its channels: ``means[p]`` (and, for
    more than one channel, ``m2s[p]``, by Welford's update channel by
    channel, so that equal samples give their value and 0 exactly);
    positions from ``npos`` to ``used`` are zero.  Returns how many samples
    could lose range."""
    nchan = x.shape[1]
    unsafe = 0
    xs = x[b, 0, i0 : i0 + npos]
    for p in range(npos):
        means[p] = np.float64(xs[p])
    unsafe += _count_unsafe(xs)
    if nchan > 1:
        for p in range(npos):
            m2s[p] = 0.0
        for c in range(1, nchan):
            xs = x[b, c, i0 : i0 + npos]
            for p in range(npos):
                mean, m2s[p] = _add_channel(means[p], m2s[p], np.float64(xs[p]), c + 1)
                means[p] = mean
            unsafe += _count_unsafe(xs)
    for p in range(npos, used):
        means[p] = 0.0
        if nchan > 1:
            m2s[p] = 0.0
    return unsafe


@jit
def _add_channel(mean, m2, value, count):
    """Welford's update of a position's ``(mean, m2)`` by its ``count``-th
    channel's ``value``."""
    delta = value - mean
    mean = mean + delta / count
    return mean, m2 + delta * (value - mean)


@jit
def _count_unsafe(xs):
    """How many samples have a non-zero magnitude outside
    ``[CENTERED_SAFE_MIN, SAFE_MAX]`` (none for float32)."""
    if xs.itemsize <= 4:
        return 0
    count = 0
    for p in range(xs.size):
        mag = abs(np.float64(xs[p]))
        count += (mag > SAFE_MAX) | ((mag < CENTERED_SAFE_MIN) & (mag > 0.0))
    return count


@jit
def _chain_m2(x, b, i0, nwin, m, d, bufs):
    """Fill ``bufs[4][t]`` with the centered sum of squares of window
    ``i0 + t`` for ``t < nwin`` (windows past ``nwin`` land in its slack),
    for chunks (``m * d``) of at least ``CHAIN_CHUNK`` positions, chain by
    chain.  Returns True when a sample could lose range (see
    ``rescaled_m2``)."""
    means, m2s, pre_mean, pre_m2, out, w = bufs[:6]
    chunk = m * d
    nwin_chunks = (nwin + chunk - 1) // chunk  # chunks holding window starts
    unsafe = _positions(x, b, i0, nwin + (m - 1) * d, (nwin_chunks + 1) * chunk, means, m2s)
    # Chain c is residue c % d of chunk c // d: the prefixes of chunks
    # 1 .. nwin_chunks forward, then the suffixes of chunks 0 .. nwin_chunks-1
    # backward, each merged with the next chunk's prefix into the window
    # that starts there.  Four chains side by side: one is a chain of
    # dependent operations, four keep the units busy.
    stop = (nwin_chunks + 1) * d
    c = d
    while c + CHAINS <= stop:
        _prefixes(means, m2s, pre_mean, pre_m2, c, m, d, w)
        c += CHAINS
    for c in range(c, stop):
        _prefix(means, m2s, pre_mean, pre_m2, _chain_start(c, chunk, d), m, d, w)
    stop = nwin_chunks * d
    c = 0
    while c + CHAINS <= stop:
        _suffixes(means, m2s, pre_mean, pre_m2, out, c, m, d, w)
        c += CHAINS
    for c in range(c, stop):
        _suffix(means, m2s, pre_mean, pre_m2, out, _chain_start(c, chunk, d), m, d, w)
    return unsafe > 0


@jit
def _lane_m2(x, b, i0, nwin, m, d, bufs):
    """``_chain_m2`` for chunks shorter than ``CHAIN_CHUNK``: one chunk per
    *lane*, ``[t * width + q]`` holding offset ``t`` of chunk ``q``, so that
    the scans run over all chunks in lock step and vectorise (the same
    operations, in the same order, as the chains)."""
    means, m2s, pre_mean, pre_m2, out, w, suf_mean, suf_m2 = bufs
    inverse, growth, merge = w
    nchan = x.shape[1]
    multi = nchan > 1
    chunk = m * d
    npos = nwin + (m - 1) * d
    width = means.size // chunk
    nq = (nwin + chunk - 1) // chunk
    lanes = nq + 1
    # each position's statistics over its channels, transposed
    unsafe = 0
    xs = x[b, 0, i0 : i0 + npos]
    full = min(lanes, npos // chunk)  # lanes whose chunk lies inside the data
    for t in range(chunk):
        row = means[t * width : t * width + lanes]
        for q in range(full):
            row[q] = np.float64(xs[q * chunk + t])
        for q in range(full, lanes):
            p = q * chunk + t
            row[q] = np.float64(xs[p]) if p < npos else 0.0
        if multi:
            spread = m2s[t * width : t * width + lanes]
            for q in range(lanes):
                spread[q] = 0.0
            for c in range(1, nchan):
                for q in range(lanes):
                    p = q * chunk + t
                    if p < npos:
                        row[q], spread[q] = _add_channel(row[q], spread[q],
                                                         np.float64(x[b, c, i0 + p]), c + 1)
    for c in range(nchan):
        unsafe += _count_unsafe(x[b, c, i0 : i0 + npos])
    # prefixes of chunks 1 .. nq, forward, all lanes in lock step
    for t in range(chunk):
        j = t // d
        here = means[t * width : t * width + lanes]
        spread = m2s[t * width : t * width + lanes] if multi else here
        dest_mean = pre_mean[t * width : t * width + lanes]
        dest_m2 = pre_m2[t * width : t * width + lanes]
        inv = inverse[j + 1]
        grow = growth[j + 1]
        if t >= d:
            prev_mean = pre_mean[(t - d) * width : (t - d) * width + lanes]
            prev_m2 = pre_m2[(t - d) * width : (t - d) * width + lanes]
            for q in range(1, lanes):
                delta = here[q] - prev_mean[q]
                dest_mean[q] = prev_mean[q] + delta * inv
                dest_m2[q] = prev_m2[q] + delta * delta * grow + 0.0
        else:
            for q in range(1, lanes):
                delta = here[q] - 0.0
                dest_mean[q] = 0.0 + delta * inv
                dest_m2[q] = 0.0 + delta * delta * grow + 0.0
        if multi:  # (m2 + delta**2 growth) + spread, as in the chains
            for q in range(1, lanes):
                dest_m2[q] += spread[q]
    # suffixes of chunks 0 .. nq-1, backward, each window merged with the
    # next chunk's prefix
    for t in range(chunk - 1, -1, -1):
        j = t // d
        here = means[t * width : t * width + nq]
        spread = m2s[t * width : t * width + nq] if multi else here
        dest_mean = suf_mean[t * width : t * width + nq]
        dest_m2 = suf_m2[t * width : t * width + nq]
        inv = inverse[m - j]
        grow = growth[m - j]
        if t + d < chunk:
            prev_mean = suf_mean[(t + d) * width : (t + d) * width + nq]
            prev_m2 = suf_m2[(t + d) * width : (t + d) * width + nq]
            for q in range(nq):
                delta = here[q] - prev_mean[q]
                dest_mean[q] = prev_mean[q] + delta * inv
                dest_m2[q] = prev_m2[q] + delta * delta * grow + 0.0
        else:
            for q in range(nq):
                delta = here[q] - 0.0
                dest_mean[q] = 0.0 + delta * inv
                dest_m2[q] = 0.0 + delta * delta * grow + 0.0
        if multi:
            for q in range(nq):
                dest_m2[q] += spread[q]
        if t >= d:
            weight = merge[j]
            next_mean = pre_mean[(t - d) * width + 1 : (t - d) * width + 1 + nq]
            next_m2 = pre_m2[(t - d) * width + 1 : (t - d) * width + 1 + nq]
            for q in range(nq):
                out[q * chunk + t] = _chan(dest_mean[q], dest_m2[q], next_mean[q], next_m2[q],
                                           weight)
        else:
            for q in range(nq):
                out[q * chunk + t] = dest_m2[q]
    return unsafe > 0


@jit
def _welford(value, spread, mean, m2, inverse, growth):
    """``(mean, m2)`` after a position of mean ``value`` and M2 ``spread``
    (0 for one channel) joins them (``inverse``, ``growth``: see
    ``weights``)."""
    delta = value - mean
    return mean + delta * inverse, m2 + delta * delta * growth + spread


@jit
def _prefix(means, m2s, pre_mean, pre_m2, o, m, d, w):
    """The running statistics of the chain that starts at ``o``, forward."""
    inverse, growth, _ = w
    multi = m2s.size > 0
    mean = m2 = 0.0
    for j in range(m):
        p = o + j * d
        mean, m2 = _welford(means[p], m2s[p] if multi else 0.0, mean, m2, inverse[j + 1],
                            growth[j + 1])
        pre_mean[p] = mean
        pre_m2[p] = m2


@jit
def _suffix(means, m2s, pre_mean, pre_m2, out, o, m, d, w):
    """The windows that start on the chain from ``o``: its statistics from
    the end backward, each merged with the next chunk's prefix."""
    inverse, growth, merge = w
    multi = m2s.size > 0
    shift = m * d - d  # from a window's start to the end of its part in the next chunk
    mean = m2 = 0.0
    for j in range(m - 1, 0, -1):
        p = o + j * d
        mean, m2 = _welford(means[p], m2s[p] if multi else 0.0, mean, m2, inverse[m - j],
                            growth[m - j])
        out[p] = _chan(mean, m2, pre_mean[p + shift], pre_m2[p + shift], merge[j])
    mean, m2 = _welford(means[o], m2s[o] if multi else 0.0, mean, m2, inverse[m], growth[m])
    out[o] = m2  # a window inside one chunk


@jit
def _chan(mean, m2, other_mean, other_m2, weight):
    """M2 of two parts merged (Chan's update; ``weight`` from ``weights``)."""
    gap = other_mean - mean
    return m2 + other_m2 + gap * gap * weight


@jit
def _chain_start(c, chunk, d):
    return (c // d) * chunk + c % d


@jit
def _prefixes(means, m2s, pre_mean, pre_m2, c, m, d, w):
    """``_prefix`` of chains ``c .. c+3``, side by side."""
    inverse, growth, _ = w
    multi = m2s.size > 0
    chunk = m * d
    o0, o1 = _chain_start(c, chunk, d), _chain_start(c + 1, chunk, d)
    o2, o3 = _chain_start(c + 2, chunk, d), _chain_start(c + 3, chunk, d)
    a0 = a1 = a2 = a3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    for j in range(m):
        inv = inverse[j + 1]
        grow = growth[j + 1]
        q = j * d
        a0, s0 = _welford(means[o0 + q], m2s[o0 + q] if multi else 0.0, a0, s0, inv, grow)
        a1, s1 = _welford(means[o1 + q], m2s[o1 + q] if multi else 0.0, a1, s1, inv, grow)
        a2, s2 = _welford(means[o2 + q], m2s[o2 + q] if multi else 0.0, a2, s2, inv, grow)
        a3, s3 = _welford(means[o3 + q], m2s[o3 + q] if multi else 0.0, a3, s3, inv, grow)
        pre_mean[o0 + q] = a0
        pre_m2[o0 + q] = s0
        pre_mean[o1 + q] = a1
        pre_m2[o1 + q] = s1
        pre_mean[o2 + q] = a2
        pre_m2[o2 + q] = s2
        pre_mean[o3 + q] = a3
        pre_m2[o3 + q] = s3


@jit
def _suffixes(means, m2s, pre_mean, pre_m2, out, c, m, d, w):
    """``_suffix`` of chains ``c .. c+3``, side by side."""
    inverse, growth, merge = w
    multi = m2s.size > 0
    chunk = m * d
    shift = chunk - d
    o0, o1 = _chain_start(c, chunk, d), _chain_start(c + 1, chunk, d)
    o2, o3 = _chain_start(c + 2, chunk, d), _chain_start(c + 3, chunk, d)
    a0 = a1 = a2 = a3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    for j in range(m - 1, 0, -1):
        inv = inverse[m - j]
        grow = growth[m - j]
        weight = merge[j]
        q = j * d
        a0, s0 = _welford(means[o0 + q], m2s[o0 + q] if multi else 0.0, a0, s0, inv, grow)
        a1, s1 = _welford(means[o1 + q], m2s[o1 + q] if multi else 0.0, a1, s1, inv, grow)
        a2, s2 = _welford(means[o2 + q], m2s[o2 + q] if multi else 0.0, a2, s2, inv, grow)
        a3, s3 = _welford(means[o3 + q], m2s[o3 + q] if multi else 0.0, a3, s3, inv, grow)
        out[o0 + q] = _chan(a0, s0, pre_mean[o0 + q + shift], pre_m2[o0 + q + shift], weight)
        out[o1 + q] = _chan(a1, s1, pre_mean[o1 + q + shift], pre_m2[o1 + q + shift], weight)
        out[o2 + q] = _chan(a2, s2, pre_mean[o2 + q + shift], pre_m2[o2 + q + shift], weight)
        out[o3 + q] = _chan(a3, s3, pre_mean[o3 + q + shift], pre_m2[o3 + q + shift], weight)
    inv = inverse[m]
    grow = growth[m]
    _, out[o0] = _welford(means[o0], m2s[o0] if multi else 0.0, a0, s0, inv, grow)
    _, out[o1] = _welford(means[o1], m2s[o1] if multi else 0.0, a1, s1, inv, grow)
    _, out[o2] = _welford(means[o2], m2s[o2] if multi else 0.0, a2, s2, inv, grow)
    _, out[o3] = _welford(means[o3], m2s[o3] if multi else 0.0, a3, s3, inv, grow)


@jit
def rescaled_m2(x, b, i, m, d):
    """``(E, s)``: the centered sum of squares of window ``i`` after scaling
    its samples by ``2**-E`` (``E`` from its largest magnitude), in the order
    of ``_lane_m2`` and ``_chain_m2`` (tiles start on chunks); ``s`` is 0 for a constant window
    and NaN for one holding NaN or ±inf (``inf - mean`` is undefined)."""
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
        return 0, np.nan
    if big == 0.0:
        return 0, 0.0
    expo = math.frexp(big)[1]
    chunk = m * d
    # taps 0 .. split-1 lie in the window's first chunk, the rest in the next
    split = min(m, ((i // chunk + 1) * chunk - i + d - 1) // d)
    suffix_mean = 0.0
    suffix_m2 = 0.0
    for j in range(split - 1, -1, -1):
        n = split - j
        mean, spread = _scaled_position(x, b, i + j * d, expo)
        delta = mean - suffix_mean
        suffix_mean = suffix_mean + delta * (1.0 / n)
        suffix_m2 = suffix_m2 + delta * delta * (nchan * (n - 1.0) / n) + spread
    if split == m:
        return expo, suffix_m2
    prefix_mean = 0.0
    prefix_m2 = 0.0
    for j in range(split, m):
        n = j - split + 1
        mean, spread = _scaled_position(x, b, i + j * d, expo)
        delta = mean - prefix_mean
        prefix_mean = prefix_mean + delta * (1.0 / n)
        prefix_m2 = prefix_m2 + delta * delta * (nchan * (n - 1.0) / n) + spread
    gap = prefix_mean - suffix_mean
    j = m - split
    return expo, suffix_m2 + prefix_m2 + gap * gap * (nchan * j * (m - j) / m)


@jit
def _scaled_position(x, b, p, expo):
    """Mean and M2 over the channels of position ``p``, samples scaled by
    ``2**-expo``, as ``_positions`` forms them."""
    mean = math.ldexp(np.float64(x[b, 0, p]), -expo)
    spread = 0.0
    for c in range(1, x.shape[1]):
        mean, spread = _add_channel(mean, spread, math.ldexp(np.float64(x[b, c, p]), -expo), c + 1)
    return mean, spread


# ---------------------------------------------------------------------------
# Entry kernels.  The drivers first fill a segment's window M2s with
# ``segment_lane_m2`` or ``segment_chain_m2`` (whichever the chunk length
# takes: a call compiles one of the two), then finish from them, as the
# plain FFT path does with its sums of squares.  The dots are the raw
# windows' with the centered unit kernels.


@jit
def segment_lane_m2(x, w0, w1, m, d, tile, bufs, m2, unsafe):
    """``m2[b, i - w0]``: the centered sum of squares of window ``i`` of row
    ``b``, tile by tile (chunks shorter than ``CHAIN_CHUNK``); ``m2`` has
    room for whole tiles, ``unsafe[b, tile]`` flags tiles that could lose
    range."""
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            t0 = i0 - w0
            unsafe[b, t0 // tile] = _lane_m2(x, b, i0, min(tile, w1 - i0), m, d,
                                             _tile_buffers(bufs, m2[b, t0 : t0 + tile]))


@jit
def segment_chain_m2(x, w0, w1, m, d, tile, bufs, m2, unsafe):
    """``segment_lane_m2`` for chunks of at least ``CHAIN_CHUNK`` positions."""
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            t0 = i0 - w0
            unsafe[b, t0 // tile] = _chain_m2(x, b, i0, min(tile, w1 - i0), m, d,
                                              _tile_buffers(bufs, m2[b, t0 : t0 + tile]))


@jit
def _tile_buffers(bufs, dest):
    return (bufs[0], bufs[1], bufs[2], bufs[3], dest, bufs[5], bufs[6], bufs[7])


@jit
def norm_kernel(x, w0, w1, m, d, tile, m2_all, unsafe, out, offset):
    """``out[b, offset + i]`` = centered norm of window ``i`` of row ``b``,
    from the segment's M2s (``m2_all[b, i - w0]``)."""
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            nwin = min(tile, w1 - i0)
            m2 = m2_all[b, i0 - w0 : i0 - w0 + nwin]
            dest = out[b, offset + i0 : offset + i0 + nwin]
            for t in range(nwin):
                # inf only comes from an inf sample (float32 tiles are never
                # unsafe): its window's centered norm is undefined, as NaN's
                dest[t] = math.sqrt(m2[t]) if m2[t] < np.inf else np.nan
            if unsafe[b, (i0 - w0) // tile]:
                for t in range(nwin):
                    if _out_of_range(m2[t]):
                        e, s = rescaled_m2(x, b, i0 + t, m, d)
                        dest[t] = math.ldexp(math.sqrt(s), e)


@jit
def direct_kernel(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, m2_all,
                  out, offset):
    """Centered cosines with any kernels, from the segment's M2s; dots by
    ``_cpu.sliding._tile_dots``."""
    acc = np.empty(tile, np.float64)
    shared = np.empty(tile if khat.shape[0] > 1 else 0, np.float64)
    for b in range(x.shape[0]):
        for i0 in range(w0, w1, tile):
            nwin = min(tile, w1 - i0)
            _bank_cosines(x, b, khat, kernel_state, i0, nwin, d, exponent, noise_floor, fill,
                          m2_all[b, i0 - w0 : i0 - w0 + nwin], shared, acc, out, offset, False)


@jit
def fix_out_of_range(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, m2_all,
                     out, offset, unsafe):
    """After ``direct_kernel``: every window of an unsafe tile whose M2 is
    out of range, recomputed with its samples scaled by a power of two."""
    m = khat.shape[2]
    for b in range(x.shape[0]):
        for ti in range(unsafe.shape[1]):
            if not unsafe[b, ti]:
                continue
            for i in range(w0 + ti * tile, min(w0 + (ti + 1) * tile, w1)):
                if not _out_of_range(m2_all[b, i - w0]):
                    continue
                e, s = rescaled_m2(x, b, i, m, d)
                for k in range(khat.shape[0]):
                    if kernel_state[k] != KERNEL_NONFINITE:
                        dot = _rescaled_dot(x, b, khat, k, i, d, e)
                        out[b, k, offset + i] = _rescaled_cosine(
                            dot, e, s, exponent, noise_floor, fill, kernel_state[k])


@jit
def fft_fix_out_of_range(x, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, m2_all,
                         fft, out, offset, unsafe):
    """``fix_out_of_range`` after ``_cpu.sliding.fft_kernel`` (as
    ``_cpu.sliding.fft_fix_out_of_range`` does for the plain sums)."""
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
