"""Numba kernels for sliding cosine similarity and windowed norms.

Arrays arrive planned and checked: ``x`` is ``(B, C, N)`` (batch rows, input
channels, samples; float32 or float64, C-contiguous), every window is
``x[b, :, i : i + (m-1)*d + 1 : d]``, and each entry kernel computes the windows
``w0 .. w1-1`` (``w0`` a whole number of tiles), which the caller guarantees
lie inside ``x``.  Nothing here validates.  (Kernels take the whole of ``x``
and a range rather than a slice: a slice of a multi-row array is not
contiguous, and Numba would compile every kernel a second time for it.)

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

Short windows are summed tap by tap instead, just as exact and cheaper: up
to ``DIRECT_SUM_TAPS`` taps always, and up to ``FUSED_TAPS`` taps in
``fused_kernel`` for one-channel kernels, where the squares come
from the loads of the dot products (each square added by one fused
multiply-add, rounded once, as the dots' products are).  The scans then
cost more than the ``m`` additions they save.

Range: float32/float16/integer inputs are squared in float64 and can neither
overflow nor underflow.  A float64 row with magnitudes outside
``[2**-480, 2**480]`` can; for such rows, each window whose sum of squares
leaves the safe range is recomputed with its samples scaled by a power of two
(exact) in the *same summation order*, so scaling an input by a power of two
changes no output bit whichever path a window takes.
"""

import math

import numpy as np
from numba.extending import overload

from .._core import scalars
from .._core import sliding as plans
from .._core.config import FEW_CHUNKS, FEW_WINDOWS
from .._core.scalars import KERNEL_NONFINITE, KERNEL_NORMAL, KERNEL_ZERO, SAFE_MAX, SAFE_MIN
from .._core.sliding import tile_length
from . import scratch
from ._jit import OPTIONS, as_float64, fma, helper, is_float64, jit
from .powers import (
    _narrows,
    is_unsharpened,
    narrows,
    plain_exponent,
    sharpen_in_place,
    sharpen_value,
    sharpened,
)

_out_of_range = jit(scalars.out_of_range, from_python=False)
fill_unit_kernels = jit(plans.fill_unit_kernels)

# Windows of at most this many taps are summed directly (see _tile_sumsq).
DIRECT_SUM_TAPS = 4
# Chunks of at least this many samples are scanned chain by chain in their
# natural layout; shorter ones in lanes (transposed), where the transposes
# cost less than the short chains' loop overhead, but for tiles of at most
# config.FEW_CHUNKS chunks (rows of a few hundred samples).
CHAIN_CHUNK = 128
# The fused kernels skip the dots of windows that read only exact zeros
# (silences, sparse spikes), found by chunks of this many samples and windows
# (one vectorised count of a chunk's non-zero samples); shorter chunks find
# more such windows, at more calls a run.
ZERO_CHUNK = 64


def make_buffers(m, d, windows):
    """Tile length and scratch space (allocated once per call, outside the
    loops) for tiles of at most ``windows`` windows: room for the chunks
    holding a tile's windows and the one after, in their natural layout (the
    chains) or transposed (the lanes).  (Sized by the windows too: a tile
    spans eight chunks of ``m * d`` windows, which a huge dilation makes
    gigabytes where a short signal has a few windows.)"""
    chunk = m * d
    tile = tile_length(m, d)
    # whole chunks holding a tile's windows (the lanes' layout is a whole
    # tile's, whose chunks are short: a few thousand windows)
    cover = tile if chunk < CHAIN_CHUNK else min(tile, -(-windows // chunk) * chunk)
    width = cover // chunk + 1  # and the one after
    return tile, (
        scratch.empty("squares", chunk * width),  # squares, then suffix sums
        scratch.empty("prefix sums", chunk * width),
        scratch.empty("window sums of squares", cover),
    )


@jit(from_python=False)
def _tile_sumsq(x, b, i0, nwin, m, d, bufs):
    """Fill ``sumsq[t]`` (sum over channels and taps of the squares of window
    ``i0+t``) for ``t < nwin``.  Returns True when a sample's magnitude lies
    outside ``[SAFE_MIN, SAFE_MAX]`` (then some sums may have lost range).
    (The scan chosen at run time, for the paths rarely taken; the kernels are
    compiled for one scan each, see ``_by_scan``.)"""
    return _scan_sumsq(sumsq_scan(m, d), x, b, i0, nwin, m, d, bufs)


# The scans of ``_tile_sumsq``, by the windows' length (``sumsq_scan``), and
# for rows of few windows (``rows_scan``).
TAP_SCAN, LANE_SCAN, CHAIN_SCAN, FEW_SCAN = 0, 1, 2, 3


@helper
def sumsq_scan(m, d):
    """The scan ``_tile_sumsq`` takes for windows of ``m`` taps ``d`` apart:
    the drivers call the kernel compiled for it (``_by_scan``).  (A plain
    function from Python, compiled into ``_tile_sumsq``.)"""
    if m <= DIRECT_SUM_TAPS:
        return TAP_SCAN
    return LANE_SCAN if m * d < CHAIN_CHUNK else CHAIN_SCAN


def rows_scan(m, d, nwin):
    """The scan for rows of ``nwin`` windows (the kernel the drivers call):
    ``sumsq_scan``'s, but each window summed on its own in rows of at most
    ``FEW_WINDOWS`` windows, and the chains in place of the lanes in rows of
    at most ``FEW_CHUNKS`` chunks, whose passes over every offset of a
    chunk cost more than they save there.  The same sums in the same order
    whichever it is; each compiled only where a call's rows are that
    short."""
    scan = sumsq_scan(m, d)
    if scan == TAP_SCAN:
        return scan
    if nwin <= FEW_WINDOWS:
        return FEW_SCAN
    return CHAIN_SCAN if nwin <= FEW_CHUNKS * m * d else scan


def _compiled_for(define, constants):
    """The kernel ``define(value)`` returns, compiled apart for each
    ``(value, name)`` of ``constants`` (a tuple in their order), each named
    after its ``name`` (their cache files too) and compiled on its first use
    only."""
    kernels = []
    for value, name in constants:
        kernel = define(value)
        kernel.__name__ = kernel.__qualname__ = f"{kernel.__name__}_{name}"
        kernels.append(jit(kernel))
    return tuple(kernels)


def _by_scan(define):
    """The kernel ``define(scan)`` returns, compiled once for each scan of
    ``_tile_sumsq`` (a tuple indexed by ``rows_scan``).  Numba prunes the
    branches on the constant ``scan`` (``_scan_sumsq``) before it compiles
    anything, so that a first call compiles one scan, not all four."""
    return _compiled_for(define, ((TAP_SCAN, "taps"), (LANE_SCAN, "lanes"), (CHAIN_SCAN, "chains"),
                                  (FEW_SCAN, "windows")))


@jit
def _tap_sumsq(x, b, i0, nwin, m, d, bufs):
    """``_tile_sumsq`` for windows of at most ``DIRECT_SUM_TAPS`` taps: their
    own squares summed in tap order take fewer passes than the blocked
    scheme, and are just as exact."""
    sq, _, sumsq = bufs
    unsafe = _tile_squares(x, b, i0, nwin + (m - 1) * d, sq)
    for j in range(0, m, 4):
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        taps = min(4, m - j)  # padding taps are left out: inf must stay inf
        first = j == 0
        for t in range(nwin):
            u = np.uint64(t)
            sumsq[t] = add_up_to_four(0.0 if first else sumsq[t], sq[o0 + u], sq[o1 + u],
                                      sq[o2 + u], sq[o3 + u], taps)
    return unsafe > 0


@jit(inline=True)
def add_up_to_four(total, v0, v1, v2, v3, count):
    """``total + v0 + ...`` over the first ``count`` (1 to 4) of ``v0 ..
    v3``, added in order (inlined, so that the loops calling it still
    vectorise)."""
    total += v0
    if count > 1:
        total += v1
    if count > 2:
        total += v2
    if count > 3:
        total += v3
    return total


@jit
def _chain_sumsq(x, b, i0, nwin, m, d, bufs):
    """``_tile_sumsq`` for chunks of at least ``CHAIN_CHUNK`` samples: the
    blocked scans chain by chain, in the chunks' natural layout."""
    sq, pre, sumsq = bufs  # the squares; the scans write prefixes to pre, window sums to sumsq
    chunk = m * d
    npos = nwin + (m - 1) * d
    unsafe = _tile_squares(x, b, i0, npos, sq)
    nq = (nwin + chunk - 1) // chunk  # chunks holding window starts
    used = (nq + 1) * chunk  # and the chunk after the last one
    for p in range(npos, used):
        sq[p] = 0.0
    # Stride-d prefix sums inside chunks 1..nq, then suffix sums inside chunks
    # 0..nq-1: chain ``c`` is residue ``c % d`` of chunk ``c // d``.  Each
    # window is the suffix of its chunk, plus, when it reaches into the next
    # chunk (offset t >= d), the prefix of that chunk up to t + span; windows
    # past nwin land in sumsq's slack.
    _prefix_chains(sq, pre, d, (nq + 1) * d, m, d)
    _suffix_chains(sq, pre, sumsq, nq * d, m, d)
    return unsafe > 0


@jit
def _lane_sumsq(x, b, i0, nwin, m, d, bufs):
    """``_tile_sumsq`` for chunks shorter than ``CHAIN_CHUNK``: one chunk per
    *lane*, ``lanes[t * width + q]`` holding offset ``t`` of chunk ``q``, so
    that the scans run over all chunks in lock step on contiguous lanes and
    vectorise (the same sums, in the same order, as the chains)."""
    suf, pre, sumsq = bufs
    nchan = x.shape[1]
    chunk = m * d
    npos = nwin + (m - 1) * d
    width = suf.size // chunk
    nq = (nwin + chunk - 1) // chunk
    lanes = nq + 1
    # Squares, transposed: offset t of chunk q goes to suf[t * width + q].
    for t in range(chunk):
        row = suf[t * width : t * width + lanes]
        for q in range(lanes):
            row[q] = 0.0
    unsafe = 0
    full = min(lanes, npos // chunk)  # lanes whose chunk lies inside the data
    for c in range(nchan):
        xs = x[b, c, i0 : i0 + npos]
        if width > chunk:
            # many short chunks: read across them, write whole lanes rows
            for t in range(chunk):
                row = suf[t * width : t * width + lanes]
                for q in range(full):
                    val = np.float64(xs[q * chunk + t])
                    row[q] += val * val
                if full < lanes and full * chunk + t < npos:
                    val = np.float64(xs[full * chunk + t])
                    row[full] += val * val
        else:
            # few long chunks: read each one straight through
            for q in range(lanes):
                seg = xs[q * chunk : min(npos, (q + 1) * chunk)]
                for t in range(seg.size):
                    val = np.float64(seg[t])
                    suf[t * width + q] += val * val
        unsafe += _count_unsafe(xs)
    # Stride-d prefix sums inside each chunk but the first, all lanes in lock step.
    for t in range(chunk):
        here = suf[t * width : t * width + lanes]
        dest = pre[t * width : t * width + lanes]
        if t >= d:
            prev = pre[(t - d) * width : (t - d) * width + lanes]
            for q in range(1, lanes):
                dest[q] = prev[q] + here[q]
        else:
            for q in range(1, lanes):
                dest[q] = here[q]
    # Stride-d suffix sums inside each chunk, in place, from the chunk's end.
    for t in range(chunk - d - 1, -1, -1):
        here = suf[t * width : t * width + nq]
        after = suf[(t + d) * width : (t + d) * width + nq]
        for q in range(nq):
            here[q] = here[q] + after[q]
    # Each window: the suffix of its chunk, plus, when it reaches into the
    # next chunk (offset t >= d), the prefix of that chunk up to t + span.
    if width > chunk:
        for t in range(chunk):
            here = suf[t * width : t * width + nq]
            # windows past nwin land in sumsq's slack or are overwritten later
            if t >= d:
                nxt = pre[(t - d) * width + 1 : (t - d) * width + 1 + nq]
                for q in range(nq):
                    sumsq[q * chunk + t] = here[q] + nxt[q]
            else:
                for q in range(nq):
                    sumsq[q * chunk + t] = here[q]
    else:
        for q in range(nq):
            dest = sumsq[q * chunk : (q + 1) * chunk]
            for t in range(d):
                dest[t] = suf[t * width + q]
            for t in range(d, chunk):
                dest[t] = suf[t * width + q] + pre[(t - d) * width + q + 1]
    return unsafe > 0


@jit(inline=True)
def _scan_sumsq(scan, x, b, i0, nwin, m, d, bufs):
    """``_tile_sumsq`` by the scan ``scan`` names: inlined into the kernels
    of ``_by_scan``, where ``scan`` is a constant, so that Numba prunes the
    other scans' calls before it compiles them."""
    if scan == TAP_SCAN:
        return _tap_sumsq(x, b, i0, nwin, m, d, bufs)
    if scan == FEW_SCAN:
        return _few_window_sumsq(x, b, i0, nwin, m, d, bufs)
    if scan == LANE_SCAN:
        return _lane_sumsq(x, b, i0, nwin, m, d, bufs)
    return _chain_sumsq(x, b, i0, nwin, m, d, bufs)


@jit
def _few_window_sumsq(x, b, i0, nwin, m, d, bufs):
    """``_lane_sumsq`` or ``_chain_sumsq`` for rows of at most
    ``FEW_WINDOWS`` windows (a window or a few): each window's suffix and
    prefix summed on its own, the same sums in the same order as the scans,
    whose passes over whole chunks cost more than a few windows' taps."""
    sumsq = bufs[2]
    chunk = m * d
    for t in range(nwin):
        u = t % chunk  # offset in its chunk
        at = i0 + t - u  # its chunk's start
        suffix = 0.0  # from the chain's end back to u
        for p in range(u + (chunk - 1 - u) // d * d, u - 1, -d):
            suffix = _square_over_channels(x, b, at + p) + suffix
        if u >= d:  # and the next chunk's prefix, up to the window's end
            prefix = 0.0
            for p in range(u % d, u - d + 1, d):
                prefix += _square_over_channels(x, b, at + chunk + p)
            suffix = suffix + prefix
        sumsq[t] = suffix
    unsafe = 0
    for c in range(x.shape[1]):
        unsafe += _count_unsafe(x[b, c, i0 : i0 + nwin + (m - 1) * d])
    return unsafe > 0


@jit(inline=True)
def _square_over_channels(x, b, p):
    """The sum over channels, in channel order, of the squares of sample
    ``p`` of row ``b`` (as ``_tile_squares`` forms it)."""
    val = np.float64(x[b, 0, p])
    sq = val * val
    for c in range(1, x.shape[1]):
        val = np.float64(x[b, c, p])
        sq += val * val
    return sq


# ``_tile_sumsq``'s scans, indexed by ``sumsq_scan`` (for drivers that call
# one from Python tile by tile).
tile_sumsq_by_scan = (_tap_sumsq, _lane_sumsq, _chain_sumsq, _few_window_sumsq)


@jit(from_python=False)
def _tile_squares(x, b, i0, npos, sq):
    """``sq[p]`` = sum over channels, in channel order, of the squares of
    sample ``i0 + p``; returns how many samples could square out of range."""
    xs = x[b, 0, i0 : i0 + npos]
    for p in range(npos):
        val = np.float64(xs[p])
        sq[p] = val * val  # (0.0 + val * val would be the same bits)
    unsafe = _count_unsafe(xs)
    for c in range(1, x.shape[1]):
        xs = x[b, c, i0 : i0 + npos]
        for p in range(npos):
            val = np.float64(xs[p])
            sq[p] += val * val
        unsafe += _count_unsafe(xs)
    return unsafe


# Independent chains summed side by side: one chain is a serial sum, bound by
# the latency of an addition; four keep the adder busy.
CHAINS = 4


@jit(from_python=False)
def _chain_start(c, stop, chunk, d):
    """First position of chain ``min(c, stop - 1)``: chain ``c`` is residue ``c
    % d`` of chunk ``c // d``.  (The scans take chains four at a time, the
    last one repeated where fewer are left: scanned twice over, a chain gets
    the same sums again.)"""
    c = min(c, stop - 1)
    return (c // d) * chunk + c % d


@jit(from_python=False)
def _prefix_chains(sq, pre, first, stop, m, d):
    """``pre`` along chains ``first .. stop-1`` (see ``_chain_sumsq``), four at
    a time: the running sums ``((sq[o] + sq[o+d]) + sq[o+2d]) + ...`` of each
    chain's ``m`` samples, ``o`` being the chain's first position.  Without
    dilation the chains are contiguous views, whose stride LLVM knows (with
    ``o + j`` over ``range(0, chunk, d)``, ``d`` known at run time only, the
    scan takes twice the time)."""
    chunk = m * d
    for c in range(first, stop, CHAINS):
        o0, o1, o2, o3 = (_chain_start(c, stop, chunk, d), _chain_start(c + 1, stop, chunk, d),
                          _chain_start(c + 2, stop, chunk, d), _chain_start(c + 3, stop, chunk, d))
        a0 = a1 = a2 = a3 = 0.0
        if d == 1:
            s0, s1, s2, s3 = sq[o0 : o0 + m], sq[o1 : o1 + m], sq[o2 : o2 + m], sq[o3 : o3 + m]
            p0, p1, p2, p3 = pre[o0 : o0 + m], pre[o1 : o1 + m], pre[o2 : o2 + m], pre[o3 : o3 + m]
            for j in range(m):
                a0 += s0[j]
                p0[j] = a0
                a1 += s1[j]
                p1[j] = a1
                a2 += s2[j]
                p2[j] = a2
                a3 += s3[j]
                p3[j] = a3
        else:
            for j in range(0, chunk, d):
                a0 += sq[o0 + j]
                pre[o0 + j] = a0
                a1 += sq[o1 + j]
                pre[o1 + j] = a1
                a2 += sq[o2 + j]
                pre[o2 + j] = a2
                a3 += sq[o3 + j]
                pre[o3 + j] = a3


@jit(from_python=False)
def _suffix_chains(sq, pre, sumsq, stop, m, d):
    """``sumsq`` for chains ``0 .. stop-1`` (see ``_chain_sumsq``), four at a
    time as in ``_prefix_chains``: at each position ``p``, the suffix
    ``sq[p] + (sq[p+d] + (... + sq[o + (m-1)d]))`` to its chain's end, plus
    the next chunk's prefix ``pre[p + m*d - d]`` unless ``p`` is its chain's
    first position (offset below ``d``)."""
    chunk = m * d
    for c in range(0, stop, CHAINS):
        o0, o1, o2, o3 = (_chain_start(c, stop, chunk, d), _chain_start(c + 1, stop, chunk, d),
                          _chain_start(c + 2, stop, chunk, d), _chain_start(c + 3, stop, chunk, d))
        a0 = a1 = a2 = a3 = 0.0
        if d == 1:
            s0, s1, s2, s3 = sq[o0 : o0 + m], sq[o1 : o1 + m], sq[o2 : o2 + m], sq[o3 : o3 + m]
            # (the next chunk's prefixes, one position back: n[j] = pre[o + m - 1 + j])
            n0, n1 = pre[o0 + m - 1 : o0 + 2 * m - 1], pre[o1 + m - 1 : o1 + 2 * m - 1]
            n2, n3 = pre[o2 + m - 1 : o2 + 2 * m - 1], pre[o3 + m - 1 : o3 + 2 * m - 1]
            w0, w1 = sumsq[o0 : o0 + m], sumsq[o1 : o1 + m]
            w2, w3 = sumsq[o2 : o2 + m], sumsq[o3 : o3 + m]
            for j in range(m - 1, 0, -1):
                a0 = s0[j] + a0
                w0[j] = a0 + n0[j]
                a1 = s1[j] + a1
                w1[j] = a1 + n1[j]
                a2 = s2[j] + a2
                w2[j] = a2 + n2[j]
                a3 = s3[j] + a3
                w3[j] = a3 + n3[j]
        else:
            for j in range(chunk - d, 0, -d):
                a0 = sq[o0 + j] + a0
                sumsq[o0 + j] = a0 + pre[o0 + j + chunk - d]
                a1 = sq[o1 + j] + a1
                sumsq[o1 + j] = a1 + pre[o1 + j + chunk - d]
                a2 = sq[o2 + j] + a2
                sumsq[o2 + j] = a2 + pre[o2 + j + chunk - d]
                a3 = sq[o3 + j] + a3
                sumsq[o3 + j] = a3 + pre[o3 + j + chunk - d]
        sumsq[o0] = sq[o0] + a0
        sumsq[o1] = sq[o1] + a1
        sumsq[o2] = sq[o2] + a2
        sumsq[o3] = sq[o3] + a3


@jit(from_python=False)
def _fused_tile(x, b, khat, i0, nwin, d, samples, sumsq, acc, finish):
    """For a short one-channel kernel (at most ``FUSED_TAPS`` taps): the sums
    of squares of windows ``i0 ...`` and their dots with ``khat[0]``, both in
    tap order and one fused multiply-add a tap (as ``_tap_order_sumsq`` and
    ``_rescaled_dot``), eight taps per pass, the first pass padded in front
    (see ``_eight_taps``): the squares come from the loads the dots make
    anyway.  The samples are read as float64 (converted once into
    ``samples`` where they are not).  With ``finish = (dest, noise_floor,
    fill, kernel_state)``, the last pass writes the windows' unsharpened
    cosines into ``dest``; with None, their sums into ``sumsq`` and ``acc``
    (a pass reading those back would cost about as much as a pass of taps).
    Returns True when a sample could square out of range."""
    m = khat.shape[2]
    weights = khat[0, 0]
    tile_samples = x[b, 0, i0 : i0 + nwin + (m - 1) * d]
    row = as_float64(tile_samples, samples)
    pad = -m % 8  # padding taps before tap 0
    for j in range(-pad, m, 8):
        offsets, taps, masks = _eight_taps_from(weights, j, d)
        if finish is not None and j + 8 == m:
            # (also the first pass, where it is the only one)
            dest, noise_floor, fill, kernel_state = finish
            for t in range(nwin):
                s, a = _eight_taps(row, offsets, taps, masks, j <= 0, sumsq, acc, t)
                dest[t] = _window_cosine(a, s, noise_floor, fill, kernel_state)
        elif j < 0:
            for t in range(nwin):
                s, a = _eight_taps(row, offsets, taps, masks, True, sumsq, acc, t)
                sumsq[t] = s
                acc[t] = a
        else:
            for t in range(nwin):
                s, a = _eight_taps(row, offsets, taps, None, j == 0, sumsq, acc, t)
                sumsq[t] = s
                acc[t] = a
    return _count_unsafe(tile_samples) > 0


@jit(inline=True)
def _eight_taps_from(weights, j, d):
    """Where taps ``j .. j+7`` are read (``row[o + t]`` for window ``t``),
    their weights, and 1.0 for each tap, 0.0 for each padding tap (``j``
    below 0: a padding tap reads tap 0 with weight 0)."""
    o0, w0, q0 = _tap_from(weights, j, d)
    o1, w1, q1 = _tap_from(weights, j + 1, d)
    o2, w2, q2 = _tap_from(weights, j + 2, d)
    o3, w3, q3 = _tap_from(weights, j + 3, d)
    o4, w4, q4 = _tap_from(weights, j + 4, d)
    o5, w5, q5 = _tap_from(weights, j + 5, d)
    o6, w6, q6 = _tap_from(weights, j + 6, d)
    o7, w7, q7 = _tap_from(weights, j + 7, d)
    return ((o0, o1, o2, o3, o4, o5, o6, o7), (w0, w1, w2, w3, w4, w5, w6, w7),
            (q0, q1, q2, q3, q4, q5, q6, q7))


@jit(inline=True)
def _tap_from(weights, j, d):
    """``_eight_taps_from`` for one tap."""
    if j < 0:
        return np.uint64(0), 0.0, 0.0
    return np.uint64(j * d), weights[j], 1.0


@jit(inline=True)
def _eight_taps(row, offsets, taps, masks, first, sumsq, acc, t):
    """The sum of squares and the dot of window ``t`` (``_fused_tile``) over
    eight taps read at ``offsets`` with weights ``taps``, added to
    ``sumsq[t]`` and ``acc[t]`` (``first``: to +0), one fused multiply-add a
    term in tap order.  ``masks``: None, or each tap's square multiplied by
    its mask first.  Padding taps come first, in the first pass only: a
    padding tap reads a sample of the window, so ``x * 0`` adds a zero to
    a sum that is still +0, which leaves it +0, or NaN where ``x`` is NaN
    or inf, and then the window's cosine is NaN anyway.  (After a tap, a
    dot may be -0, a product that underflows rounding to it: a zero added
    then would make it +0.)"""
    u = np.uint64(t)
    o0, o1, o2, o3, o4, o5, o6, o7 = offsets
    v0 = row[o0 + u]
    v1 = row[o1 + u]
    v2 = row[o2 + u]
    v3 = row[o3 + u]
    v4 = row[o4 + u]
    v5 = row[o5 + u]
    v6 = row[o6 + u]
    v7 = row[o7 + u]
    w0, w1, w2, w3, w4, w5, w6, w7 = taps
    dot = _fma8(0.0 if first else acc[t], v0, v1, v2, v3, v4, v5, v6, v7,
                w0, w1, w2, w3, w4, w5, w6, w7)
    s = 0.0 if first else sumsq[t]
    if masks is None:
        return _fma8(s, v0, v1, v2, v3, v4, v5, v6, v7, v0, v1, v2, v3, v4, v5, v6, v7), dot
    q0, q1, q2, q3, q4, q5, q6, q7 = masks
    return _fma8(s, v0, v1, v2, v3, v4, v5, v6, v7, v0 * q0, v1 * q1, v2 * q2, v3 * q3,
                 v4 * q4, v5 * q5, v6 * q6, v7 * q7), dot


@jit(inline=True)
def _fma8(a, v0, v1, v2, v3, v4, v5, v6, v7, w0, w1, w2, w3, w4, w5, w6, w7):
    """``a + v0 * w0 + ... + v7 * w7``: one fused multiply-add a term, in
    that order (inlined, so that the loops calling it still vectorise)."""
    a = fma(v0, w0, a)
    a = fma(v1, w1, a)
    a = fma(v2, w2, a)
    a = fma(v3, w3, a)
    a = fma(v4, w4, a)
    a = fma(v5, w5, a)
    a = fma(v6, w6, a)
    return fma(v7, w7, a)


@jit(inline=True)
def _short_tile(x, b, khat, i0, nwin, d, sumsq, finish, taps):
    """For a one-channel kernel of ``taps`` taps, at most four: the sums of
    squares of windows ``i0 ...`` (as ``_fused_tile``) and, in the same
    pass, while the window is in registers, their unsharpened cosines with
    ``khat[0]`` written to ``dest`` of ``finish = (dest, noise_floor, fill,
    kernel_state)``.  Apart, the pass storing the dots and the pass reading
    them back cost more than the sums.  Inlined into the kernel of each
    ``taps`` (``short_kernels``), where it is a constant, so that LLVM drops
    the tests of the taps that are not there.  Returns True when a sample
    could square out of range."""
    dest, noise_floor, fill, kernel_state = finish
    row = x[b, 0]
    o0, o1, o2, o3 = _tap_offsets(i0, 0, taps, d)
    w0, w1, w2, w3 = _tap_weights(khat[0, 0], 0)
    for t in range(nwin):
        u = np.uint64(t)
        s, a = _add_taps(0.0, 0.0, row[o0 + u], row[o1 + u], row[o2 + u], row[o3 + u],
                         w0, w1, w2, w3, taps)
        sumsq[t] = s
        dest[t] = _window_cosine(a, s, noise_floor, fill, kernel_state)
    return _count_unsafe(x[b, 0, i0 : i0 + nwin + (taps - 1) * d]) > 0


@jit(from_python=False)
def _add_taps(s, a, x0, x1, x2, x3, w0, w1, w2, w3, taps):
    """``s`` plus the squares and ``a`` plus the products of the first
    ``taps`` (1 to 4) of ``x0 .. x3``, each in tap order by a fused
    multiply-add (padding taps are left out of both: less work, and the
    order of ``_tap_order_sumsq`` and ``_rescaled_dot``)."""
    v0 = np.float64(x0)
    s = fma(v0, v0, s)
    a = fma(v0, w0, a)
    if taps > 1:
        v1 = np.float64(x1)
        s = fma(v1, v1, s)
        a = fma(v1, w1, a)
    if taps > 2:
        v2 = np.float64(x2)
        s = fma(v2, v2, s)
        a = fma(v2, w2, a)
    if taps > 3:
        v3 = np.float64(x3)
        s = fma(v3, v3, s)
        a = fma(v3, w3, a)
    return s, a


@jit(inline=True)
def _tap_offsets(start, j, m, d):
    """Where taps ``j .. j+3`` of the windows that start at ``start, start+1,
    ...`` are read: ``row[o + t]`` is tap ``j + k`` of window ``t`` for the
    ``k``-th offset ``o``.  A tap at or past ``m`` reads tap ``j`` again, and
    the loops leave it out of their sums (a zero added after the last tap
    would turn a dot of -0 into +0; see ``_eight_taps``).

    Offsets into one row rather than a view a tap: the views cost each pass
    a fixed time, which short runs of windows (flagged ones) paid several
    times over their multiply-adds.  Unsigned, and added to the window's index
    as ``np.uint64(t)``: Numba then adds no wrap-around for negative
    indices, which with offsets known only at run time keeps LLVM from
    vectorising the loop."""
    o0 = start + j * d
    o1 = o0 + d if j + 1 < m else o0
    o2 = o0 + 2 * d if j + 2 < m else o0
    o3 = o0 + 3 * d if j + 3 < m else o0
    return np.uint64(o0), np.uint64(o1), np.uint64(o2), np.uint64(o3)


@jit(inline=True)
def _tap_weights(weights, j):
    """Weights of taps ``j .. j+3``, 0.0 for padding taps (see ``_tap_offsets``)."""
    m = weights.size
    return (weights[j], weights[j + 1] if j + 1 < m else 0.0,
            weights[j + 2] if j + 2 < m else 0.0, weights[j + 3] if j + 3 < m else 0.0)


@jit
def _count_unsafe(xs):
    """How many samples could square out of range (see ``count_outside``)."""
    return count_outside(xs, SAFE_MIN)


@jit(from_python=False)
def count_outside(xs, least):
    """How many samples have a finite non-zero magnitude outside ``[least,
    SAFE_MAX]``: none for float32 (whose magnitudes all lie inside).  A sum
    of flags rather than the largest and smallest magnitudes: LLVM
    vectorises an integer sum, not a floating-point max or min (without
    fastmath)."""
    if not is_float64(xs):
        # (a constant when compiled: a loop that only a run-time test skips is
        # still code in the kernels that inline this one, and there it kept
        # LLVM from simplifying the loops around it)
        return 0
    count = 0
    for p in range(xs.size):
        mag = abs(np.float64(xs[p]))
        # (inf squares to inf, whatever the scaling: its windows are NaN)
        count += ((mag > SAFE_MAX) & (mag < np.inf)) | ((mag < least) & (mag > 0.0))
    return count


@jit(from_python=False)
def window_extent(x, b, i, m, d):
    """``(big, bad)`` of window ``i`` of row ``b``: the largest finite
    magnitude of its samples, and the sum of the others' (0 where all are
    finite, else inf or NaN)."""
    big = 0.0
    bad = 0.0
    for c in range(x.shape[1]):
        for j in range(m):
            mag = abs(np.float64(x[b, c, i + j * d]))
            if mag < np.inf:
                big = max(big, mag)
            else:
                bad += mag  # inf, or NaN (inf + NaN is NaN)
    return big, bad


@jit(from_python=False)
def _unit(expo):
    """``2**-expo`` where that is a normal number (multiplying by it is then
    exact, or where the product is subnormal, rounded as ``ldexp`` rounds
    it), else 0: ``_scaled`` falls back on ``ldexp``."""
    return math.ldexp(1.0, -expo) if -1000 <= expo <= 1000 else 0.0


@jit(from_python=False)
def _scaled(value, expo, unit):
    """``value * 2**-expo``, with ``ldexp``'s bits (``unit``: ``_unit(expo)``):
    one multiplication, where ``ldexp`` costs the one-window loops below
    most of their time."""
    val = np.float64(value)
    return val * unit if unit != 0.0 else math.ldexp(val, -expo)


@jit(from_python=False)
def _rescaled_sumsq(x, b, i, m, d, fused):
    """Sum of squares of window ``i`` after scaling by ``2**-E``, summed in the
    order of ``_tile_sumsq`` (tap by tap up to ``DIRECT_SUM_TAPS`` taps), or
    of ``_fused_tile`` with ``fused``.  Returns ``(E, s)``; ``s`` is 0 for a
    zero window and NaN/inf for a window holding NaN/inf."""
    big, bad = window_extent(x, b, i, m, d)
    if bad != 0.0:
        return 0, bad
    if big == 0.0:
        return 0, 0.0
    expo = math.frexp(big)[1]
    if fused:
        return expo, _tap_order_sumsq(x, b, i, m, d, expo)
    unit = _unit(expo)
    if m <= DIRECT_SUM_TAPS:
        total = 0.0
        for j in range(m):
            total += _scaled_square(x, b, i + j * d, expo, unit)
        return expo, total
    chunk = m * d
    c1 = (i // chunk + 1) * chunk
    # suffix part: taps below c1, accumulated from the last one backwards
    jsplit = min(m, (c1 - i + d - 1) // d)
    total = 0.0
    for j in range(jsplit - 1, -1, -1):
        total = _scaled_square(x, b, i + j * d, expo, unit) + total
    if jsplit < m:
        head = 0.0
        for j in range(jsplit, m):
            head = head + _scaled_square(x, b, i + j * d, expo, unit)
        total += head
    return expo, total


@jit(from_python=False)
def _scaled_square(x, b, p, expo, unit):
    s = 0.0
    for c in range(x.shape[1]):
        val = _scaled(x[b, c, p], expo, unit)
        s += val * val
    return s


def _windowed_norm_kernel(scan):
    def windowed_norm_kernel(x, w0, w1, m, d, tile, bufs, out, offset, unsafe):
        """``out[b, offset + i]`` = L2 norm of window ``i`` of row ``b`` (all
        channels); a tile holding a sample whose square can leave the
        float64 range is flagged in ``unsafe[b, (i0 - w0) // tile]``, its
        windows left to ``norms_out_of_range``."""
        sumsq = bufs[2]
        for b in range(x.shape[0]):
            for i0 in range(w0, w1, tile):
                nwin = min(tile, w1 - i0)
                unsafe[b, (i0 - w0) // tile] = _scan_sumsq(scan, x, b, i0, nwin, m, d, bufs)
                dest = out[b, offset + i0 : offset + i0 + nwin]
                for t in range(nwin):
                    dest[t] = math.sqrt(sumsq[t])  # NaN and inf propagate

    return windowed_norm_kernel


def _norms_out_of_range(scan):
    def norms_out_of_range(x, w0, w1, m, d, tile, bufs, out, offset, unsafe):
        """After ``windowed_norm_kernel``: the norms of the windows of the
        ``unsafe`` tiles whose sums of squares left the float64 range,
        rescaled by a power of two."""
        sumsq = bufs[2]
        for tile_at in flagged_tiles(unsafe, w0, w1, tile):
            b, i0, nwin = tile_at[0], tile_at[1], tile_at[2]
            _scan_sumsq(scan, x, b, i0, nwin, m, d, bufs)
            for t in range(nwin):
                if _out_of_range(sumsq[t]):
                    e, s = _rescaled_sumsq(x, b, i0 + t, m, d, np.bool_(False))
                    out[b, offset + i0 + t] = math.ldexp(math.sqrt(s), e)

    return norms_out_of_range


windowed_norm_kernels = _by_scan(_windowed_norm_kernel)
norms_out_of_range = _by_scan(_norms_out_of_range)


@jit(from_python=False)
def _tile_dots(x, b, khat, k, i0, nwin, d, samples, acc):
    """``acc[t]`` = <window i0+t, khat[k]>; windows innermost so it vectorises.

    Taps are added in order (channel by channel, tap by tap) exactly as in
    ``_rescaled_dot``, by :func:`_add_dots`.  Each channel's samples are
    read as float64 (converted once into ``samples``, room for ``nwin +
    (m-1)*d``, where they are not)."""
    m = khat.shape[2]
    for c in range(x.shape[1]):
        row = as_float64(x[b, c, i0 : i0 + nwin + (m - 1) * d], samples)
        _add_dots(row, khat[k, c], d, np.int64(1), c == 0, acc[:nwin])


@jit(from_python=False)
def _add_dots(row, taps, d, stride, first, acc):
    """``acc[i]`` (``first``: 0) plus ``sum_j taps[j] * row[i * stride + j
    d]``, one fused multiply-add a tap in tap order: eight taps a pass over
    ``acc``, then four, then the rest (eight keep the running sums in registers
    that much longer: float64 loads of ``acc`` are rarer)."""
    m = taps.shape[0]
    nout = acc.shape[0]
    if stride != 1:
        for j in range(m):
            w = taps[j]
            start = first and j == 0
            for i in range(nout):
                acc[i] = fma(row[i * stride + j * d], w, 0.0 if start else acc[i])
        return
    j = 0
    while j + 8 <= m:
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        o4, o5, o6, o7 = _tap_offsets(0, j + 4, m, d)
        w0, w1, w2, w3 = _tap_weights(taps, j)
        w4, w5, w6, w7 = _tap_weights(taps, j + 4)
        start = first and j == 0
        for i in range(nout):
            u = np.uint64(i)
            acc[i] = _fma8(0.0 if start else acc[i], row[o0 + u], row[o1 + u], row[o2 + u],
                           row[o3 + u], row[o4 + u], row[o5 + u], row[o6 + u], row[o7 + u],
                           w0, w1, w2, w3, w4, w5, w6, w7)
        j += 8
    _add_last_taps(row, taps, d, j, first, acc)


@jit(from_python=False)
def _add_last_taps(row, taps, d, j, first, acc):
    """:func:`_add_dots` (stride 1) from tap ``j`` on, four taps a pass."""
    m = taps.shape[0]
    while j < m:
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        w0, w1, w2, w3 = _tap_weights(taps, j)
        add_four_taps(row, o0, o1, o2, o3, w0, w1, w2, w3, min(4, m - j), first and j == 0, acc)
        j += 4


@jit(from_python=False)
def add_four_taps(row, o0, o1, o2, o3, w0, w1, w2, w3, count, start, acc):
    """``acc[i]`` (``start``: 0) plus ``w_k * row[o_k + i]`` for the first
    ``count`` (1 to 4) taps ``k``, in order, one fused multiply-add each."""
    nout = acc.shape[0]
    # (a loop for each count: LLVM vectorises a loop with no branch in it)
    if count == 4:
        for i in range(nout):
            u = np.uint64(i)
            a = fma(row[o0 + u], w0, 0.0 if start else acc[i])
            acc[i] = fma(row[o3 + u], w3, fma(row[o2 + u], w2, fma(row[o1 + u], w1, a)))
    elif count == 3:
        for i in range(nout):
            u = np.uint64(i)
            a = fma(row[o0 + u], w0, 0.0 if start else acc[i])
            acc[i] = fma(row[o2 + u], w2, fma(row[o1 + u], w1, a))
    elif count == 2:
        for i in range(nout):
            u = np.uint64(i)
            acc[i] = fma(row[o1 + u], w1, fma(row[o0 + u], w0, 0.0 if start else acc[i]))
    else:
        for i in range(nout):
            u = np.uint64(i)
            acc[i] = fma(row[o0 + u], w0, 0.0 if start else acc[i])


@jit(inline=True)
def _plain_dot(x, b, khat, k, i, d):
    """<window i, khat[k]> for one window, in the order of ``_tile_dots``
    (inlined: kernels with and without a CPython wrapper call it)."""
    s = 0.0
    for c in range(x.shape[1]):
        for j in range(khat.shape[2]):
            s = fma(np.float64(x[b, c, i + j * d]), khat[k, c, j], s)
    return s


@jit(from_python=False)
def _rescaled_dot(x, b, khat, k, i, d, expo):
    """<window i scaled by 2**-expo, khat[k]>, in the order of ``_tile_dots``."""
    s = 0.0
    unit = _unit(expo)
    for c in range(x.shape[1]):
        for j in range(khat.shape[2]):
            s = fma(_scaled(x[b, c, i + j * d], expo, unit), khat[k, c, j], s)
    return s





# ---------------------------------------------------------------------------
# The sliding cosine, one entry kernel per way of computing the dots.  Each
# is compiled on its first use only, so a first call compiles the one path
# it takes (a cold Numba cache makes that the cost a new user sees first).
# Every kernel writes ``out[b, k, offset + i]`` for the windows ``i`` of
# ``x`` (``(B, C, N)``) and kernels ``khat`` (``(K, C, m)``, unit norm), and
# flags ``unsafe[b, i // tile]`` for tiles holding a sample whose square can
# leave the float64 range; the caller then runs ``fix_out_of_range`` (float64
# inputs near the limits only, so that code too is compiled only when needed).


def _short_kernel(taps):
    """One unsharpened one-channel kernel of ``taps`` taps, at most
    ``DIRECT_SUM_TAPS``: sums of squares, dots and cosines in a single pass
    (``_short_tile``).  One kernel for each number of taps: with it known
    when the loop is compiled, the loop takes two thirds of the time."""

    def short_kernel(x, w0, w1, khat, kernel_state, d, noise_floor, fill, tile, bufs, out,
                     offset, unsafe):
        sumsq = bufs[2]
        for b in range(x.shape[0]):
            for i0 in range(w0, w1, tile):
                nwin = min(tile, w1 - i0)
                dest = out[b, 0, offset + i0 : offset + i0 + nwin]
                unsafe[b, (i0 - w0) // tile] = _short_tile(
                    x, b, khat, i0, nwin, d, sumsq, (dest, noise_floor, fill, kernel_state[0]),
                    np.int64(taps))

    return short_kernel


# ``short_kernels[m]`` for kernels of m taps (1 to DIRECT_SUM_TAPS).
short_kernels = (None,) + _compiled_for(
    _short_kernel, [(taps, str(taps)) for taps in range(1, DIRECT_SUM_TAPS + 1)])


def _fused_kernel(constants):
    """A kernel of at most ``FUSED_TAPS`` taps of one channel: the window sums
    of squares summed tap by tap with the first kernel's dots
    (``_fused_tile``); ``constants = (bank, cosines)``: with ``cosines`` (one
    kernel, unsharpened), the cosines from the last pass of taps; else from
    the sums (``_finish_kernel``), and with ``bank``, the other kernels' dots
    by ``_tile_dots`` (``_bank_cosines``).  Where a tile may hold windows of
    exact zeros, only in its runs of windows that read a non-zero sample
    (``_tile_runs``)."""
    bank, cosines = constants

    def fused_kernel(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs,
                     out, offset, unsafe):
        cover = min(tile, w1 - w0)  # (the most windows a tile has)
        acc = np.empty(cover, np.float64)
        shared = np.empty(cover if bank else 0, np.float64)
        runs = np.empty(cover // ZERO_CHUNK + 3, np.int64)
        for b in range(x.shape[0]):
            nruns = 1
            for i0 in range(w0, w1, tile):
                nruns = _tile_runs(x[b, 0], i0, min(tile, w1 - i0), (khat.shape[2] - 1) * d,
                                   nruns > 1, runs)
                flag = False
                for r in range(nruns):
                    start, stop = runs[r], runs[r + 1]
                    if r % 2:
                        for k in range(khat.shape[0]):
                            _zero_windows(out[b, k, offset + start : offset + stop], noise_floor,
                                          fill, kernel_state[k])
                        continue
                    if stop == start:
                        continue
                    dest = out[b, 0, offset + start : offset + stop]
                    if cosines:
                        flag |= _fused_tile(x, b, khat, start, stop - start, d, bufs[0], bufs[2],
                                            acc, (dest, noise_floor, fill, kernel_state[0]))
                        continue
                    flag |= _fused_tile(x, b, khat, start, stop - start, d, bufs[0], bufs[2],
                                        acc, None)
                    if bank:
                        _bank_cosines(x, b, khat, kernel_state, start, stop - start, d, exponent,
                                      noise_floor, fill, bufs[2], shared, bufs[0], acc, out,
                                      offset, np.bool_(True))
                    else:
                        _finish_kernel(acc, bufs[2], shared, stop - start, exponent, noise_floor,
                                       fill, kernel_state[0], dest)
                unsafe[b, (i0 - w0) // tile] = flag

    return fused_kernel


# One kernel unsharpened, one sharpened, and a bank, compiled apart: Numba
# prunes the branches on the constants, so that a first call compiles only
# the loops it runs.
fused_kernel, sharpened_fused_kernel, fused_bank_kernel = _compiled_for(
    _fused_kernel, (((False, True), "one"), ((False, False), "sharpened"), ((True, False), "bank")))


@jit(inline=True)
def _tile_runs(row, i0, nwin, span, zeros_before, runs):
    """``_zero_runs`` for a tile whose first window reads only exact zeros,
    or after a tile where it found some (``zeros_before``); else one run
    of the whole tile.  The first window's samples are in the caches (the
    tile before read them), and a dense tile's probe stops at its first
    sample; the search itself, a pass over the tile's samples, would stall
    on memory where the dots' loops overlap those loads with their work.
    (Inlined into the kernels: a few instructions a tile.)"""
    p = i0
    while p <= i0 + span and row[p] == 0.0:
        p += 1
    if zeros_before or p > i0 + span:
        return _zero_runs(row, i0, nwin, span, runs)
    runs[0] = i0
    runs[1] = i0 + nwin
    return 1


@jit(from_python=False)
def _zero_runs(row, i0, nwin, span, runs):
    """Splits windows ``i0 .. i0+nwin`` (each reading ``row`` over ``span``
    samples past its start) into runs, alternately of windows that may read a
    non-zero sample (computed) and of windows that read only exact zeros
    (whose cosine is ``fill`` whatever the kernel): run ``r`` is
    ``runs[r] .. runs[r+1]``, for ``r`` below the count returned, computed
    for even ``r`` (run 0 may be empty).  By chunks of ``ZERO_CHUNK``
    windows; each sample is counted once, by vectorised counts of the
    non-zero ones (``-0.0`` is zero, NaN is not) in chunks of as many
    samples, whatever the span (a sample chunk holding a non-zero makes
    every window chunk that reaches into it non-zero: at most one chunk of
    zero windows is computed)."""
    stop = i0 + nwin
    runs[0] = i0
    nruns = 0
    last_nonzero = np.int64(-1)  # the end of the last sample chunk holding a non-zero
    counted = i0  # the samples before are counted
    for start in range(i0, stop, ZERO_CHUNK):
        reach = min(start + ZERO_CHUNK, stop) + span  # this chunk's windows read up to here
        while counted < reach:
            end = min(counted + ZERO_CHUNK, reach)
            nonzero = 0
            for p in range(counted, end):
                nonzero += row[p] != 0.0
            if nonzero:
                last_nonzero = end
            counted = end
        if (last_nonzero <= start) != (nruns % 2 == 1):  # this chunk starts the next run
            nruns += 1
            runs[nruns] = start
    runs[nruns + 1] = stop
    return nruns + 1


@jit(from_python=False)
def _zero_windows(dest, noise_floor, fill, kernel_state):
    """The cosines of windows of exact zeros: ``fill`` (NaN for a kernel with
    a NaN or inf tap), as ``_window_cosine`` gives them."""
    value = _window_cosine(0.0, 0.0, noise_floor, fill, kernel_state)
    for t in range(dest.shape[0]):
        dest[t] = value


def _direct_kernel(scan):
    def direct_kernel(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs,
                      out, offset, unsafe):
        """Any kernels: window sums of squares by the blocked scans
        (``_tile_sumsq``), dots by ``_tile_dots``."""
        m = khat.shape[2]
        cover = min(tile, w1 - w0)  # (the most windows a tile has)
        acc = np.empty(cover, np.float64)
        shared = np.empty(cover if khat.shape[0] > 1 else 0, np.float64)
        for b in range(x.shape[0]):
            for i0 in range(w0, w1, tile):
                nwin = min(tile, w1 - i0)
                unsafe[b, (i0 - w0) // tile] = _scan_sumsq(scan, x, b, i0, nwin, m, d, bufs)
                if scan == FEW_SCAN:  # (a pass over the tile per 8 taps costs more)
                    for t in range(nwin):
                        acc[t] = _plain_dot(x, b, khat, 0, i0 + t, d)
                # the squares' buffer (bufs[0]) is free again: the samples for the dots
                _bank_cosines(x, b, khat, kernel_state, i0, nwin, d, exponent, noise_floor, fill,
                              bufs[2], shared, bufs[0], acc, out, offset,
                              np.bool_(scan == FEW_SCAN))

    return direct_kernel


direct_kernels = _by_scan(_direct_kernel)


@jit(from_python=False)
def _bank_cosines(x, b, khat, kernel_state, i0, nwin, d, exponent, noise_floor, fill, sumsq,
                  shared, samples, acc, out, offset, first_dots_ready):
    """The cosines of a tile's windows with every kernel, from their sums of
    squares; the dots by ``_tile_dots``, but for the first kernel's when
    ``first_dots_ready`` (in ``acc`` already)."""
    nker = khat.shape[0]
    if nker > 1:
        _shared_denominators(sumsq, nwin, noise_floor, shared)
    for k in range(nker):
        if k > 0 or not first_dots_ready:
            _tile_dots(x, b, khat, k, i0, nwin, d, samples, acc)
        _finish_kernel(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state[k],
                       out[b, k, offset + i0 : offset + i0 + nwin])


@jit(from_python=False)
def _shared_denominators(sumsq, nwin, noise_floor, shared):
    """A bank shares each window's denominator ``||w|| + noise_floor``: one
    square root per window instead of one per window and kernel."""
    for t in range(nwin):
        shared[t] = math.sqrt(sumsq[t]) + noise_floor


@jit(from_python=False)
def _finish_kernel(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest):
    """Cosines (sharpened by ``exponent``) of one kernel from the dots ``acc``
    into ``dest``; sharpened in float64, before the one rounding to the
    output dtype (sharpening a rounded value would multiply its error)."""
    if is_unsharpened(exponent) or kernel_state != KERNEL_NORMAL:
        _finish_tile(acc, sumsq, shared, nwin, noise_floor, fill, kernel_state, dest)
        return
    if narrows(exponent):
        _narrow_tile(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest)
        return
    # A scalar loop, as libm's power is: _finish_tile into acc would be
    # compiled a second time, for a float64 destination.
    power = plain_exponent(exponent)
    for t in range(nwin):
        s = sumsq[t]
        if shared.shape[0]:
            cosine = _cosine(acc[t], s, shared[t], fill, kernel_state)
        else:
            cosine = _window_cosine(acc[t], s, noise_floor, fill, kernel_state)
        # fill values (zero windows) are not cosines: leave them
        dest[t] = cosine if s == 0.0 else sharpen_value(cosine, power)


def _narrow_tile(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest):
    """``_finish_kernel`` of a tile sharpened by ``(P,)`` (compiled code only)."""


@overload(_narrow_tile, jit_options=dict(OPTIONS))
def _narrow_tile_of(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest):
    if not _narrows(exponent):
        return lambda acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest: None

    def narrow(acc, sumsq, shared, nwin, exponent, noise_floor, fill, kernel_state, dest):
        # the powers' loops vectorise over a tile of float64 cosines
        _finish_tile(acc, sumsq, shared, nwin, noise_floor, fill, kernel_state, acc)
        sharpen_in_place(acc[:nwin], sumsq, exponent)  # (fill values are not cosines)
        for t in range(nwin):
            dest[t] = acc[t]
    return narrow


def _segment_sumsq(scan):
    def segment_sumsq(x, w0, w1, m, d, tile, bufs, sumsq, unsafe):
        """``sumsq[b, i - w0]``: the sum of squares of window ``i`` of row
        ``b``, tile by tile as ``direct_kernel`` sums them (the FFT path needs
        them all before it plans its blocks); ``sumsq`` has room for whole
        tiles."""
        for b in range(x.shape[0]):
            for i0 in range(w0, w1, tile):
                t0 = i0 - w0
                nwin = min(tile, w1 - i0)
                unsafe[b, t0 // tile] = _scan_sumsq(scan, x, b, i0, nwin, m, d,
                                                    (bufs[0], bufs[1], sumsq[b, t0 : t0 + tile]))

    return segment_sumsq


segment_sumsqs = _by_scan(_segment_sumsq)


# ---------------------------------------------------------------------------
# The FFT path, a segment of windows ``first ..`` at a time.  ``fft = (dots,
# slots, exponents, relative, first, step, limits)``: block ``g`` of row ``b``
# holds the windows ``first + [g * step, (g + 1) * step)``;
# ``slots[b, g]`` is where its dots lie in ``dots[b, slot, k, t]`` (in units of
# ``2**exponents[b, g]``, see ``fft.fft_dots``), or -1 for a block planned
# direct (``_cpu.blocks.plan_blocks``).  ``relative[b, i - first]`` is window ``i``'s
# sum of squares in the units of its block (``4**-exponents[b, g]``), the same
# for the signal times any power of two; ``limits[b, slot, k]`` bounds the
# square of the FFT's error in a dot of the block with kernel ``k``, divided
# by the error budget, in those units.  A window is *flagged*, and gets its
# dot directly, when its relative sum of squares lies below the limit: its
# dot's error bound is not small against its own norm (a loud sample
# nearby).


@jit(from_python=False)
def is_flagged(r, limit):
    """Whether a window of relative sum of squares ``r`` is flagged under
    ``limit`` (zero, NaN and inf windows never are: the finish settles them)."""
    return (r > 0.0) & (r < limit)


@jit(from_python=False)
def count_flagged(relative, limit):
    """How many of the windows with relative sums of squares ``relative`` are
    flagged."""
    count = 0
    for t in range(relative.size):
        count += is_flagged(relative[t], limit)
    return count


# Flagged windows closer than this are recomputed as one run (vectorised,
# the windows between them too); a window on its own is recomputed alone.
RUN_GAP = 64


@jit(from_python=False)
def _fft_tile_dots(x, b, khat, k, i0, nwin, d, fft, samples, acc, spare):
    """``acc[t]``: the dot of window ``i0 + t`` with ``khat[k]`` in signal units,
    from the FFT (an exact power-of-two shift) or, for flagged windows and
    blocks planned direct, directly (``spare``: a tile of scratch)."""
    dots, slots, exponents, relative, first, step, limits = fft
    t = np.int64(0)  # (typed: see _jit.py on constants)
    while t < nwin:
        g, stop = _tile_block(i0, t, nwin, first, step)
        slot = slots[b, g]
        if slot < 0:
            # with the blocks after it that are direct too, in one run
            while stop < nwin and slots[b, g + 1] < 0:
                g, stop = _tile_block(i0, stop, nwin, first, step)  # (the next block)
            _tile_dots(x, b, khat, k, i0 + t, stop - t, d, samples, acc[t:stop])
            t = stop
            continue
        _copy_fft_dots(fft, b, g, slot, k, i0, t, stop, acc)
        energies = relative[b, i0 - first : i0 - first + nwin]
        limit = limits[b, slot, k]  # 0: no window of the block is flagged
        if limit > 0.0 and count_flagged(energies[t:stop], limit):
            _recompute_flagged(x, b, khat, k, i0, t, stop, d, energies, limit, samples, acc,
                               spare)
        t = stop


@jit(from_python=False)
def _tile_block(i0, t, nwin, first, step):
    """The block ``g`` of the window ``i0 + t`` (blocks of ``step`` windows from
    window ``first``), and where in the tile of ``nwin`` windows from ``i0``
    its windows stop."""
    g = (i0 + t - first) // step
    return g, min(nwin, first + (g + 1) * step - i0)


@jit(from_python=False)
def _copy_fft_dots(fft, b, g, slot, k, i0, t, stop, acc):
    """``acc[t:stop]``: the FFT dots of the tile's windows ``t .. stop-1`` in
    block ``g`` (its transform in ``slot``), in signal units."""
    dots, _, exponents, _, first, step, _ = fft
    e = exponents[b, g]
    src = dots[b, slot, k, i0 + t - first - g * step : i0 + stop - first - g * step]
    dest = acc[t:stop]
    if -1000 <= e <= 1000:
        scale = math.ldexp(1.0, e)
        for u in range(stop - t):
            dest[u] = src[u] * scale
    else:
        for u in range(stop - t):
            dest[u] = math.ldexp(src[u], e)


@jit(from_python=False)
def _recompute_flagged(x, b, khat, k, i0, start, stop, d, relative, limit, samples, acc, spare):
    """Direct dots for the flagged windows among ``start .. stop-1`` of the
    tile: runs of them (gaps under ``RUN_GAP``) by the vectorised
    ``_tile_dots`` into ``spare``, of which only the flagged ones are kept
    (the others keep their FFT dots, so the result does not depend on how
    the windows were grouped); a lone window by ``_plain_dot``."""
    u = _next_flagged(relative, start, stop, limit)
    while u < stop:
        last = u
        v = u + 1
        while v < stop and v - last <= RUN_GAP:
            if is_flagged(relative[v], limit):
                last = v
            v += 1
        if last == u:
            acc[u] = _plain_dot(x, b, khat, k, i0 + u, d)
        else:
            _tile_dots(x, b, khat, k, i0 + u, last + 1 - u, d, samples, spare[u : last + 1])
            for w in range(u, last + 1):
                if is_flagged(relative[w], limit):
                    acc[w] = spare[w]
        u = _next_flagged(relative, last + 1, stop, limit)


@jit(from_python=False)
def _next_flagged(relative, u, stop, limit):
    """The first window from ``u`` on (before ``stop``) flagged under
    ``limit``, else ``stop``: stretches of 64 with none passed over by the
    vectorised count (most of a block's windows are not flagged)."""
    while u < stop:
        end = min(stop, u + 64)
        if count_flagged(relative[u:end], limit):
            while not is_flagged(relative[u], limit):
                u += 1
            return u
        u = end
    return stop


@jit
def fft_kernel(x, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, sumsq_all, fft,
               out, offset):
    """The cosines of the windows ``first .. w1-1`` (``fft``, see above) from
    FFT dots and the window sums of squares ``sumsq_all`` of
    ``segment_sumsq``; returns False, having written nothing, where some
    window's dot may not be the FFT's (``_segment_needs_direct``), for
    ``fft_direct_kernel``.  (So that a first call whose windows all take the
    FFT's dots, noise for one, compiles no direct loop.)"""
    if _segment_needs_direct(w1, fft):
        return False
    _, slots, _, _, first, step, _ = fft
    nker = khat.shape[0]
    cover = min(tile, w1 - first)  # (the most windows a tile has)
    acc = np.empty(cover, np.float64)
    shared = np.empty(cover if nker > 1 else 0, np.float64)
    for b in range(x.shape[0]):
        for i0 in range(first, w1, tile):
            nwin, sumsq = _fft_tile_sums(sumsq_all, b, i0, first, w1, tile, noise_floor, shared)
            for k in range(nker):
                t = np.int64(0)
                while t < nwin:
                    g, stop = _tile_block(i0, t, nwin, first, step)
                    _copy_fft_dots(fft, b, g, slots[b, g], k, i0, t, stop, acc)
                    t = stop
                _finish_kernel(acc, sumsq, shared, nwin, exponent, noise_floor, fill,
                               kernel_state[k], out[b, k, offset + i0 : offset + i0 + nwin])
    return True


@jit(from_python=False)
def _fft_tile_sums(sumsq_all, b, i0, first, w1, tile, noise_floor, shared):
    """The windows of the tile from ``i0`` (of a segment from ``first`` to
    ``w1``) and their sums of squares, and for a bank (``shared`` not empty)
    their shared denominators in ``shared``."""
    nwin = min(tile, w1 - i0)
    sumsq = sumsq_all[b, i0 - first : i0 - first + nwin]
    if shared.shape[0]:
        _shared_denominators(sumsq, nwin, noise_floor, shared)
    return nwin, sumsq


@jit(from_python=False)
def _segment_needs_direct(w1, fft):
    """Whether some window of the segment (``fft``, windows to ``w1``) lies in a
    block planned direct, or in one whose flagging limit with some kernel is
    not 0 (its windows may be flagged)."""
    _, slots, _, _, first, step, limits = fft
    for b in range(slots.shape[0]):
        for g in range(-(-(w1 - first) // step)):
            slot = slots[b, g]
            if slot < 0:
                return True
            for k in range(limits.shape[2]):
                if limits[b, slot, k] > 0.0:
                    return True
    return False


@jit
def fft_direct_kernel(x, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile,
                      sumsq_all, fft, out, offset):
    """``fft_kernel`` for a segment with windows whose dots may not be the
    FFT's: those of blocks planned direct and flagged windows directly."""
    first = fft[4]
    nker = khat.shape[0]
    cover = min(tile, w1 - first)  # (the most windows a tile has)
    acc = np.empty(cover, np.float64)
    spare = np.empty(cover, np.float64)
    samples = np.empty(cover + (khat.shape[2] - 1) * d, np.float64)
    shared = np.empty(cover if nker > 1 else 0, np.float64)
    for b in range(x.shape[0]):
        for i0 in range(first, w1, tile):
            nwin, sumsq = _fft_tile_sums(sumsq_all, b, i0, first, w1, tile, noise_floor, shared)
            for k in range(nker):
                _fft_tile_dots(x, b, khat, k, i0, nwin, d, fft, samples, acc, spare)
                _finish_kernel(acc, sumsq, shared, nwin, exponent, noise_floor, fill,
                               kernel_state[k], out[b, k, offset + i0 : offset + i0 + nwin])


# ---------------------------------------------------------------------------
# Windows whose sum of squares left the float64 range (float64 samples
# outside [SAFE_MIN, SAFE_MAX]), recomputed after the kernels above with
# their samples scaled by a power of two (exact), squares summed in the
# order of the kernel that flagged them, so that scaling the input by a
# power of two changes no output bit whichever path a window takes.


@jit
def fix_out_of_range(x, w0, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile, bufs,
                     out, offset, unsafe, fused):
    """After ``short_kernel`` or ``fused_kernel`` (``fused``: one channel,
    squares summed tap by tap) or ``direct_kernel``: every window of an
    unsafe tile whose sum of squares is out of range."""
    m = khat.shape[2]
    sumsq = bufs[2]
    for tile_at in flagged_tiles(unsafe, w0, w1, tile):
        b, i0, nwin = tile_at[0], tile_at[1], tile_at[2]
        if fused:
            for t in range(nwin):
                sumsq[t] = _tap_order_sumsq(x, b, i0 + t, m, d, 0)
        else:
            _tile_sumsq(x, b, i0, nwin, m, d, bufs)
        for t in range(nwin):
            if _out_of_range(sumsq[t]):
                e, s = _rescaled_sumsq(x, b, i0 + t, m, d, fused)
                rescaled_window_cosines(x, b, i0 + t, e, s, khat, kernel_state, d, exponent,
                                        noise_floor, fill, out, offset + i0 + t)


@jit(from_python=False)
def flagged_tiles(unsafe, w0, w1, tile):
    """``(b, i0, nwin)`` of each tile flagged in ``unsafe[b, ti]`` (tile
    ``ti`` of row ``b`` holds windows ``i0 = w0 + ti * tile`` on, ``nwin``
    of them up to ``w1``), row by row."""
    found = np.empty((np.count_nonzero(unsafe), 3), np.int64)
    count = 0
    for b in range(unsafe.shape[0]):
        for ti in range(unsafe.shape[1]):
            if unsafe[b, ti]:
                i0 = w0 + ti * tile
                found[count, 0], found[count, 1], found[count, 2] = b, i0, min(tile, w1 - i0)
                count += 1
    return found


@jit(from_python=False)
def rescaled_window_cosines(x, b, i, e, s, khat, kernel_state, d, exponent, noise_floor, fill,
                            out, at):
    """``out[b, k, at]``: the cosine of window ``i`` of row ``b`` with each
    finite kernel ``k``, from its samples scaled by ``2**-e`` (``s`` their
    sum of squares, or with ``center`` their M2)."""
    for k in range(khat.shape[0]):
        if kernel_state[k] != KERNEL_NONFINITE:
            dot = _rescaled_dot(x, b, khat, k, i, d, e)
            out[b, k, at] = _rescaled_cosine(dot, e, s, exponent, noise_floor, fill,
                                             kernel_state[k])


@jit
def fft_fix_out_of_range(x, w1, khat, kernel_state, d, exponent, noise_floor, fill, tile,
                         sumsq_all, fft, out, offset, unsafe):
    """``fix_out_of_range`` after ``fft_kernel``: a window's dot comes from the
    FFT unless it is flagged (its relative sum of squares is the same for
    every power-of-two scaling of the signal)."""
    first = fft[4]
    m = khat.shape[2]
    for b in range(x.shape[0]):
        for ti in range(unsafe.shape[1]):
            if not unsafe[b, ti]:
                continue
            for i in range(first + ti * tile, min(first + (ti + 1) * tile, w1)):
                if _out_of_range(sumsq_all[b, i - first]):
                    e, s = _rescaled_sumsq(x, b, i, m, d, np.bool_(False))
                    fft_rescaled_cosines(x, b, i, e, s, khat, kernel_state, d, exponent,
                                         noise_floor, fill, fft, out, offset)


@jit(from_python=False)
def fft_rescaled_cosines(x, b, i, e, s, khat, kernel_state, d, exponent, noise_floor, fill, fft,
                         out, offset):
    """The cosines of window ``i`` with every kernel, from its samples scaled
    by ``2**-e`` (``s`` their sum of squares): the FFT's dots, but for
    flagged windows and blocks planned direct."""
    dots, slots, exponents, relative, first, step, limits = fft
    g = (i - first) // step
    slot = slots[b, g]
    r = relative[b, i - first]
    for k in range(khat.shape[0]):
        if kernel_state[k] == KERNEL_NONFINITE:
            continue
        if slot < 0 or is_flagged(r, limits[b, slot, k]):
            dot = _rescaled_dot(x, b, khat, k, i, d, e)
        else:
            dot = math.ldexp(dots[b, slot, k, i - first - g * step], exponents[b, g] - e)
        out[b, k, offset + i] = _rescaled_cosine(dot, e, s, exponent, noise_floor, fill,
                                                 kernel_state[k])


@jit(from_python=False)
def _tap_order_sumsq(x, b, i, m, d, expo):
    """A one-channel window's sum of squares, its samples scaled by
    ``2**-expo``, as ``_fused_tile`` and ``_short_tile`` sum it: in tap
    order, one fused multiply-add a tap."""
    s = 0.0
    unit = _unit(expo)
    for j in range(m):
        val = _scaled(x[b, 0, i + j * d], expo, unit)
        s = fma(val, val, s)
    return s


@jit(from_python=False)
def _rescaled_cosine(dot, e, s, exponent, noise_floor, fill, kernel_state):
    """The sharpened cosine of a window whose samples were scaled by
    ``2**-e`` (``s`` their sum of squares, ``dot`` their dot)."""
    if not s < np.inf:
        return np.nan
    if s == 0.0 or kernel_state == KERNEL_ZERO:
        return fill
    cosine = _window_cosine(dot, s, math.ldexp(noise_floor, -e), fill, kernel_state)
    return sharpened(cosine, exponent)

@jit(from_python=False)
def _finish_tile(acc, sumsq, shared, nwin, noise_floor, fill, kernel_state, dest):
    """Unsharpened cosines of a tile from its dots ``acc`` into ``dest`` (the
    output, or ``acc`` itself when sharpening follows), branch-free so that
    it vectorises.  ``shared`` holds the denominators ``sqrt(sumsq) +
    noise_floor`` of a bank's tile, or is empty (computed here)."""
    if shared.shape[0]:
        for t in range(nwin):
            dest[t] = _cosine(acc[t], sumsq[t], shared[t], fill, kernel_state)
    else:
        for t in range(nwin):
            dest[t] = _window_cosine(acc[t], sumsq[t], noise_floor, fill, kernel_state)


@jit(from_python=False)
def _window_cosine(dot, s, noise_floor, fill, kernel_state):
    """The unsharpened cosine of a window with dot ``dot`` and sum of squares
    ``s``, branch-free so that the loops calling it vectorise."""
    return _cosine(dot, s, math.sqrt(s) + noise_floor, fill, kernel_state)


@jit
def _cosine(dot, s, denominator, fill, kernel_state):
    """``_window_cosine`` with its denominator ``sqrt(s) + noise_floor`` given."""
    val = dot / denominator
    # Cauchy-Schwarz holds exactly; rounding may not.
    val = 1.0 if val > 1.0 else val
    val = -1.0 if val < -1.0 else val
    val = fill if (s == 0.0 or kernel_state == KERNEL_ZERO) else val
    # a NaN or inf sample makes s NaN or inf
    return np.nan if (not s < np.inf or kernel_state == KERNEL_NONFINITE) else val



@jit
def sharpen_kernel(values, exponent, out):
    for i in range(values.size):
        out[i] = sharpen_value(np.float64(values[i]), exponent)
