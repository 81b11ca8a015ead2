"""Numba kernels of the sliding functions over several axes (images,
volumes): window statistics one axis at a time, and direct dots.

Arrays arrive planned, padded and checked (``_cpu.drivers``); nothing here
validates.

Window statistics one axis at a time
------------------------------------
A window of an r-dimensional signal is the product of one run of taps per
axis, so its sum of squares is a sum over the first axis of sums over the
second, and so on: each pass takes windows along one axis of an array
``(outer, n, inner)`` whose elements are the previous pass's window sums
(the first pass's, the samples' squares).  Along an axis, each window is
one suffix sum of a chunk of ``m * d`` positions plus one prefix sum of
the next (the blocked sums of ``_cpu.sliding``): nothing is ever
subtracted, so a window's sum holds its own samples' squares only (a
bright pixel leaves every window without it exact, a NaN stays in the
windows that hold it), and each pass costs O(1) per element whatever the
window's length.  The ``inner`` elements of a position are independent and
summed side by side (vectorised).

With ``center`` the elements are the means and M2s (sums of squared
deviations) of equal-sized groups of samples, merged by Chan, Golub and
LeVeque's update instead of added: never ``sum(w**2) - n mean(w)**2``.
"""

import numpy as np

from .._core.scalars import KERNEL_NORMAL
from ._jit import jit
from .sliding import _cosine, sharpen_value

# Windows of at most this many taps along an axis are summed tap by tap (as
# exact, and cheaper than the two scans).
DIRECT_TAPS = 4


@jit
def window_sums(src, o0, o1, q0, q1, m, d, stride, dst, suffix, prefix):
    """``dst[o, i, q]``: the sum of ``src[o, i * stride + j * d, q]`` over
    ``j < m``, for ``o`` in ``[o0, o1)`` and ``q`` in ``[q0, q1)``.
    ``suffix`` and ``prefix``: scratch of at least ``(m * d, q1 - q0)``."""
    nout = dst.shape[1]
    n = src.shape[1]
    chunk = m * d
    for o in range(o0, o1):
        if m <= DIRECT_TAPS:
            for i in range(nout):
                start = i * stride
                for q in range(q0, q1):
                    dst[o, i, q] = src[o, start, q]
                for j in range(1, m):
                    for q in range(q0, q1):
                        dst[o, i, q] += src[o, start + j * d, q]
            continue
        i = 0
        for c0 in range(0, n, chunk):
            if i >= nout:
                break
            c1 = min(c0 + chunk, n)
            # suffix sums of this chunk, each residue on its own
            for p in range(c1 - 1, c0 - 1, -1):
                if p + d < c1:
                    for q in range(q0, q1):
                        suffix[p - c0, q - q0] = suffix[p + d - c0, q - q0] + src[o, p, q]
                else:
                    for q in range(q0, q1):
                        suffix[p - c0, q - q0] = src[o, p, q]
            # prefix sums of the next one
            c2 = min(c1 + chunk, n)
            for p in range(c1, c2):
                if p - d >= c1:
                    for q in range(q0, q1):
                        prefix[p - c1, q - q0] = prefix[p - d - c1, q - q0] + src[o, p, q]
                else:
                    for q in range(q0, q1):
                        prefix[p - c1, q - q0] = src[o, p, q]
            while i < nout and i * stride < c1:
                start = i * stride
                if start - c0 < d:  # the whole of its residue in this chunk
                    for q in range(q0, q1):
                        dst[o, i, q] = suffix[start - c0, q - q0]
                else:
                    end = start + (m - 1) * d
                    for q in range(q0, q1):
                        dst[o, i, q] = suffix[start - c0, q - q0] + prefix[end - c1, q - q0]
                i += 1


@jit
def _merge(mean_a, m2_a, count_a, mean_b, m2_b, count_b):
    """Chan, Golub and LeVeque's update: the mean and M2 of two groups."""
    total = count_a + count_b
    gap = mean_b - mean_a
    return mean_a + gap * (count_b / total), m2_a + m2_b + gap * gap * (count_a * count_b / total)


@jit
def window_moments(means, m2s, count, o0, o1, q0, q1, m, d, stride, dst_means, dst_m2s,
                   suffix, prefix):
    """:func:`window_sums` for statistics: ``dst_means[o, i, q]`` and
    ``dst_m2s[o, i, q]`` of the union of the groups ``i * stride + j * d``
    (``j < m``), each of ``count`` samples with mean ``means`` and M2
    ``m2s``.  ``suffix`` and ``prefix``: scratch ``(2, m * d, q1 - q0)``."""
    nout = dst_means.shape[1]
    n = means.shape[1]
    chunk = m * d
    for o in range(o0, o1):
        i = 0
        for c0 in range(0, n, chunk):
            if i >= nout:
                break
            c1 = min(c0 + chunk, n)
            for p in range(c1 - 1, c0 - 1, -1):
                if p + d < c1:
                    after = count * ((c1 - 1 - p - d) // d + 1)
                    for q in range(q0, q1):
                        suffix[0, p - c0, q - q0], suffix[1, p - c0, q - q0] = _merge(
                            means[o, p, q], m2s[o, p, q], count, suffix[0, p + d - c0, q - q0],
                            suffix[1, p + d - c0, q - q0], after)
                else:
                    for q in range(q0, q1):
                        suffix[0, p - c0, q - q0] = means[o, p, q]
                        suffix[1, p - c0, q - q0] = m2s[o, p, q]
            c2 = min(c1 + chunk, n)
            for p in range(c1, c2):
                if p - d >= c1:
                    before = count * ((p - d - c1) // d + 1)
                    for q in range(q0, q1):
                        prefix[0, p - c1, q - q0], prefix[1, p - c1, q - q0] = _merge(
                            prefix[0, p - d - c1, q - q0], prefix[1, p - d - c1, q - q0], before,
                            means[o, p, q], m2s[o, p, q], count)
                else:
                    for q in range(q0, q1):
                        prefix[0, p - c1, q - q0] = means[o, p, q]
                        prefix[1, p - c1, q - q0] = m2s[o, p, q]
            while i < nout and i * stride < c1:
                start = i * stride
                if start - c0 < d:
                    for q in range(q0, q1):
                        dst_means[o, i, q] = suffix[0, start - c0, q - q0]
                        dst_m2s[o, i, q] = suffix[1, start - c0, q - q0]
                else:
                    end = start + (m - 1) * d
                    head = count * ((c1 - 1 - start) // d + 1)
                    for q in range(q0, q1):
                        dst_means[o, i, q], dst_m2s[o, i, q] = _merge(
                            suffix[0, start - c0, q - q0], suffix[1, start - c0, q - q0], head,
                            prefix[0, end - c1, q - q0], prefix[1, end - c1, q - q0],
                            m * count - head)
                i += 1


@jit
def merge_channels(means, m2s, count, dst_means, dst_m2s):
    """The statistics of the union of the channels ``means[b, c, p]``,
    ``m2s[b, c, p]`` (``count`` samples each), merged channel by channel."""
    nbatch, nchan, npos = means.shape
    for b in range(nbatch):
        for p in range(npos):
            dst_means[b, p] = means[b, 0, p]
            dst_m2s[b, p] = m2s[b, 0, p]
        for c in range(1, nchan):
            for p in range(npos):
                dst_means[b, p], dst_m2s[b, p] = _merge(
                    dst_means[b, p], dst_m2s[b, p], c * count, means[b, c, p], m2s[b, c, p], count)


@jit
def spatial_cosines(x, rows, tap_rows, khat, kernel_state, d, stride, sumsq, noise_floor, fill,
                    exponent, q0, q1, acc, out):
    """Cosines of the output rows ``q0 .. q1-1``: ``out[q, k, i]`` for window
    ``i`` along the last axis of output row ``q``.

    ``x`` is the padded signal as rows ``(R, N)``; output row ``q``'s
    windows read the rows ``rows[q] + tap_rows[t]`` for each of the
    kernels' rows ``t`` (channels and the taps of every axis but the last),
    whose taps are ``khat[k, t, j]`` at ``j * d`` along the last axis;
    window ``i`` starts at ``i * stride``.  ``sumsq[q, i]``: the window's
    sum of squares (or M2, centered).  ``acc``: scratch ``(K, nout)``."""
    nker, ntap, m = khat.shape
    nout = out.shape[2]
    for q in range(q0, q1):
        for k in range(nker):
            for i in range(nout):
                acc[k, i] = 0.0
        for t in range(ntap):
            row = rows[q] + tap_rows[t]
            for j in range(m):
                start = j * d
                if stride == 1:
                    line = x[row, start:start + nout]
                    for k in range(nker):
                        w = khat[k, t, j]
                        for i in range(nout):
                            acc[k, i] += w * line[i]
                else:
                    for k in range(nker):
                        w = khat[k, t, j]
                        for i in range(nout):
                            acc[k, i] += w * x[row, start + i * stride]
        s = sumsq[q]
        for k in range(nker):
            state = kernel_state[k]
            for i in range(nout):
                value = _cosine(acc[k, i], s[i], np.sqrt(s[i]) + noise_floor, fill, state)
                if exponent != 1.0 and state == KERNEL_NORMAL and s[i] != 0.0:
                    value = sharpen_value(value, exponent)
                out[q, k, i] = value


# Rows of an axis whose elements are single numbers (the last axis) are
# scanned this many side by side, transposed into lanes: the scans' chains
# are then independent and vectorise, as along the other axes.
LANES = 16


@jit
def window_sums_rows(src, o0, o1, m, d, stride, dst, lanes, lane_out, suffix, prefix):
    """:func:`window_sums` along the last axis of ``src`` ``(outer, n)``
    into ``dst`` ``(outer, nout)``, for rows ``o0 .. o1-1``, ``LANES`` rows
    at a time.  Scratch: ``lanes`` ``(1, n, LANES)``, ``lane_out`` ``(1,
    nout, LANES)``, ``suffix`` and ``prefix`` ``(m * d, LANES)``."""
    n, nout = src.shape[1], dst.shape[1]
    for r0 in range(o0, o1, LANES):
        count = min(LANES, o1 - r0)
        for p in range(n):
            for lane in range(count):
                lanes[0, p, lane] = src[r0 + lane, p]
        window_sums(lanes, 0, 1, 0, count, m, d, stride, lane_out, suffix, prefix)
        for lane in range(count):
            for i in range(nout):
                dst[r0 + lane, i] = lane_out[0, i, lane]


@jit
def window_moments_rows(means, m2s, count, o0, o1, m, d, stride, dst_means, dst_m2s, lanes,
                        lane_out, suffix, prefix):
    """:func:`window_moments` along the last axis of ``(outer, n)`` arrays,
    ``LANES`` rows at a time (scratch as :func:`window_sums_rows`, each with
    a leading axis of 2: means and M2s)."""
    n, nout = means.shape[1], dst_means.shape[1]
    for r0 in range(o0, o1, LANES):
        rows = min(LANES, o1 - r0)
        for p in range(n):
            for lane in range(rows):
                lanes[0, 0, p, lane] = means[r0 + lane, p]
                lanes[1, 0, p, lane] = m2s[r0 + lane, p]
        window_moments(lanes[0], lanes[1], count, 0, 1, 0, rows, m, d, stride, lane_out[0],
                       lane_out[1], suffix, prefix)
        for lane in range(rows):
            for i in range(nout):
                dst_means[r0 + lane, i] = lane_out[0, 0, i, lane]
                dst_m2s[r0 + lane, i] = lane_out[1, 0, i, lane]
