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
summed side by side (vectorised).  Along the last axis (``inner`` 1, a row
in cache) windows of up to ``config.SPATIAL_ROW_DIRECT_TAPS`` taps are
summed four taps a pass over the row, longer ones from runs of 1, 2, 4 ...
taps (``row_window_sums``).

With ``center`` the elements are the means and M2s (sums of squared
deviations) of equal-sized groups of samples, merged by Chan, Golub and
LeVeque's update instead of added: never ``sum(w**2) - n mean(w)**2``.
Each group's mean is held as its distance from its reference, its first
sample; the first pass reads the samples themselves, groups of one.

The direct dots (:func:`spatial_cosines`) need no pass of their own for
the plain sums of squares: they read each row anyway, so they keep its sums
of squares along the last axis and add those of the rows a window spans
(no subtraction either).
"""

import math

import numpy as np
from numba.core import types
from numba.extending import overload

from .._core.config import SPATIAL_DIRECT_TAPS as DIRECT_TAPS
from .._core.scalars import KERNEL_NORMAL
from ._jit import OPTIONS, as_float64, borrowed, fma, is_contiguous, is_float64, jit
from .powers import is_unsharpened, sharpen_in_place
from .sliding import (
    _cosine,
    _fma8,
    _tap_offsets,
    _window_cosine,
    add_four_taps,
    add_up_to_four,
)


@jit
def window_sums(src, o0, o1, q0, q1, m, d, first, stride, square, dst, suffix, prefix):
    """``dst[o, i, q]``: the sum of ``src[o, first + i * stride + j * d, q]``
    over ``j < m`` (of their squares with ``square``), for ``o`` in ``[o0,
    o1)`` and ``q`` in ``[q0, q1)``.  ``suffix`` and ``prefix``: scratch of
    at least ``(m * d, q1 - q0)`` (unused for ``m <= DIRECT_TAPS``).  The
    blocks start at multiples of ``m * d`` from ``src``'s first row, so a
    window's sum depends on where it starts from there, not on ``first``
    and ``stride``.

    (The loops run over slices from 0: with a start other than 0 Numba
    cannot rule out a negative index, and LLVM leaves them scalar.)"""
    nout = dst.shape[1]
    n = src.shape[1]
    chunk = m * d
    width = q1 - q0
    for o in range(o0, o1):
        if m <= DIRECT_TAPS:
            for i in range(nout):
                _direct_sum(src[o], first + i * stride, m, d, q0, q1, square, dst[o, i, q0:q1])
            continue
        i = 0
        for c0 in range(0, n, chunk):
            if i >= nout:
                break
            c1 = min(c0 + chunk, n)
            # suffix sums of this chunk, each residue on its own
            for p in range(c1 - 1, c0 - 1, -1):
                here, values = suffix[p - c0, :width], src[o, p, q0:q1]
                if p + d < c1:
                    after = suffix[p + d - c0, :width]
                    for q in range(width):
                        here[q] = after[q] + _value(values[q], square)
                else:
                    for q in range(width):
                        here[q] = _value(values[q], square)
            # prefix sums of the next one
            c2 = min(c1 + chunk, n)
            for p in range(c1, c2):
                here, values = prefix[p - c1, :width], src[o, p, q0:q1]
                if p - d >= c1:
                    before = prefix[p - d - c1, :width]
                    for q in range(width):
                        here[q] = before[q] + _value(values[q], square)
                else:
                    for q in range(width):
                        here[q] = _value(values[q], square)
            while i < nout and first + i * stride < c1:
                start = first + i * stride
                out, head = dst[o, i, q0:q1], suffix[start - c0, :width]
                if start - c0 < d:  # the whole of its residue in this chunk
                    for q in range(width):
                        out[q] = head[q]
                else:
                    tail = prefix[start + (m - 1) * d - c1, :width]
                    for q in range(width):
                        out[q] = head[q] + tail[q]
                i += 1


@jit(from_python=False)
def _direct_sum(rows, start, m, d, q0, q1, square, out):
    """``out[q]``: the sum over ``j < m`` of ``rows[start + j d, q0 + q]``
    (squared with ``square``), two taps per pass."""
    width = q1 - q0
    first = rows[start, q0:q1]
    if m == 1:
        for q in range(width):
            out[q] = _value(first[q], square)
        return
    second = rows[start + d, q0:q1]
    for q in range(width):
        out[q] = _value(first[q], square) + _value(second[q], square)
    for j in range(2, m - 1, 2):
        first, second = rows[start + j * d, q0:q1], rows[start + (j + 1) * d, q0:q1]
        for q in range(width):
            out[q] += _value(first[q], square) + _value(second[q], square)
    if m % 2:
        last = rows[start + (m - 1) * d, q0:q1]
        for q in range(width):
            out[q] += _value(last[q], square)


@jit(from_python=False)
def _value(x, square):
    value = np.float64(x)
    return value * value if square else value


@jit
def direct_row_sums(src, o0, o1, m, d, stride, square, dst):
    """``dst[o, i]``: the sum of ``src[o, i * stride + j * d]`` over ``j < m``
    (squared with ``square``): short windows along a last axis, summed along
    the row four taps a pass (vectorised for ``stride`` 1), the taps added in
    the same order with a stride, so each window keeps its bits."""
    nout = dst.shape[1]
    for o in range(o0, o1):
        row, out = src[o], dst[o]
        if stride > 1:
            for i in range(nout):
                first = i * stride
                total = 0.0
                j = 0
                while m - j >= 4:
                    total += ((_value(row[first + j * d], square)
                               + _value(row[first + (j + 1) * d], square))
                              + (_value(row[first + (j + 2) * d], square)
                                 + _value(row[first + (j + 3) * d], square)))
                    j += 4
                for j in range(j, m):
                    total += _value(row[first + j * d], square)
                out[i] = total
            continue
        out[:] = 0.0
        j = 0
        while m - j >= 4:
            r0, r1 = row[j * d : j * d + nout], row[(j + 1) * d : (j + 1) * d + nout]
            r2, r3 = row[(j + 2) * d : (j + 2) * d + nout], row[(j + 3) * d : (j + 3) * d + nout]
            for i in range(nout):
                out[i] += ((_value(r0[i], square) + _value(r1[i], square))
                           + (_value(r2[i], square) + _value(r3[i], square)))
            j += 4
        for j in range(j, m):
            shifted = row[j * d : j * d + nout]
            for i in range(nout):
                out[i] += _value(shifted[i], square)


@jit(from_python=False)
def _merge(ref_a, mean_a, m2_a, ref_b, mean_b, m2_b, towards, weight):
    """Chan, Golub and LeVeque's update: the mean and M2 of two groups of
    ``n_a`` and ``n_b`` samples, with ``towards = n_b / (n_a + n_b)`` and
    ``weight = n_a n_b / (n_a + n_b)``; each group's mean is its distance
    from its reference (its first sample), and the union's from ``ref_a``
    (see ``_cpu.centered``: a mean rounded at an offset's scale put that
    error into every gap)."""
    gap = (ref_b - ref_a) + (mean_b - mean_a)
    return mean_a + gap * towards, m2_a + m2_b + gap * gap * weight


@jit(from_python=False)
def _ratios(count_a, count_b):
    """``(towards, weight)`` of :func:`_merge` for groups of these counts."""
    total = count_a + count_b
    return count_b / total, count_a * count_b / total


@jit(from_python=False)
def _merge_rows(refs_a, means_a, m2s_a, refs_b, means_b, m2s_b, count_a, count_b, out_means,
                out_m2s):
    """:func:`_merge` of two rows of groups, element by element (a row
    without ``means`` and ``m2s``: groups of one sample, ``refs``)."""
    towards, weight = _ratios(count_a, count_b)
    for q in range(out_means.shape[0]):
        ref_a, mean_a, m2_a = _group(refs_a, means_a, m2s_a, q)
        ref_b, mean_b, m2_b = _group(refs_b, means_b, m2s_b, q)
        out_means[q], out_m2s[q] = _merge(ref_a, mean_a, m2_a, ref_b, mean_b, m2_b, towards,
                                          weight)


@jit(from_python=False)
def _group(refs, means, m2s, q):
    """``(reference, mean, M2)`` of group ``q``; without ``means``, of the
    sample ``refs[q]`` alone: a mean of 0 from it and no spread (NaN where
    the sample is not finite)."""
    ref = np.float64(refs[q])
    if means is None:
        return ref, 0.0, ref - ref
    return ref, means[q], m2s[q]


@jit(from_python=False)
def _at(values, index):
    """``values[index]``, or None for no values."""
    if values is None:
        return None
    return values[index]


@jit(from_python=False)
def _copy_rows(means, m2s, out_means, out_m2s):
    for q in range(out_means.shape[0]):
        out_means[q] = means[q]
        out_m2s[q] = m2s[q]


@jit(from_python=False)
def _copy_groups(refs, means, m2s, out_means, out_m2s):
    """:func:`_copy_rows` of groups given as :func:`_group` takes them."""
    for q in range(out_means.shape[0]):
        _, out_means[q], out_m2s[q] = _group(refs, means, m2s, q)


@jit
def window_moments(refs, means, m2s, count, o0, o1, q0, q1, m, d, first, stride, dst_means,
                   dst_m2s, suffix, prefix):
    """:func:`window_sums` for statistics: ``dst_means[o, i, q]`` and
    ``dst_m2s[o, i, q]`` of the union of the groups ``first + i * stride + j * d``
    (``j < m``), each of ``count`` samples with mean ``means`` (its distance
    from its reference ``refs``) and M2 ``m2s``; a union's reference is its
    first group's.  Without ``means`` and ``m2s`` (None) the groups are the
    samples ``refs`` themselves (of any float dtype; ``count`` 1), read
    once.  ``suffix`` and ``prefix``: scratch ``(2, m * d, q1 - q0)``."""
    nout = dst_means.shape[1]
    n = refs.shape[1]
    chunk = m * d
    width = q1 - q0
    for o in range(o0, o1):
        i = 0
        for c0 in range(0, n, chunk):
            if i >= nout:
                break
            c1 = min(c0 + chunk, n)
            for p in range(c1 - 1, c0 - 1, -1):  # (suffix p: groups p, p + d, ...; p's reference)
                here_means, here_m2s = suffix[0, p - c0, :width], suffix[1, p - c0, :width]
                own_refs = refs[o, p, q0:q1]
                own_means, own_m2s = _at(means, (o, p, slice(q0, q1))), _at(m2s, (o, p, slice(q0, q1)))
                if p + d < c1:
                    after = count * ((c1 - 1 - p - d) // d + 1)
                    _merge_rows(own_refs, own_means, own_m2s, refs[o, p + d, q0:q1],
                                suffix[0, p + d - c0, :width], suffix[1, p + d - c0, :width],
                                count, after, here_means, here_m2s)
                else:
                    _copy_groups(own_refs, own_means, own_m2s, here_means, here_m2s)
            c2 = min(c1 + chunk, n)
            for p in range(c1, c2):  # (prefix p: groups ..., p - d, p; the first's reference)
                here_means, here_m2s = prefix[0, p - c1, :width], prefix[1, p - c1, :width]
                own_refs = refs[o, p, q0:q1]
                own_means, own_m2s = _at(means, (o, p, slice(q0, q1))), _at(m2s, (o, p, slice(q0, q1)))
                if p - d >= c1:
                    before = count * ((p - d - c1) // d + 1)
                    _merge_rows(refs[o, c1 + (p - c1) % d, q0:q1], prefix[0, p - d - c1, :width],
                                prefix[1, p - d - c1, :width], own_refs, own_means, own_m2s,
                                before, count, here_means, here_m2s)
                else:
                    _copy_groups(own_refs, own_means, own_m2s, here_means, here_m2s)
            while i < nout and first + i * stride < c1:
                start = first + i * stride
                out_means, out_m2s = dst_means[o, i, q0:q1], dst_m2s[o, i, q0:q1]
                if start - c0 < d:
                    _copy_rows(suffix[0, start - c0, :width], suffix[1, start - c0, :width],
                               out_means, out_m2s)
                else:
                    end = start + (m - 1) * d
                    head = count * ((c1 - 1 - start) // d + 1)
                    _merge_rows(refs[o, start, q0:q1], suffix[0, start - c0, :width],
                                suffix[1, start - c0, :width],
                                refs[o, c1 + (end - c1) % d, q0:q1], prefix[0, end - c1, :width],
                                prefix[1, end - c1, :width], head, m * count - head, out_means,
                                out_m2s)
                i += 1


@jit
def merge_channels(refs, means, m2s, count, dst_means, dst_m2s):
    """The statistics of the union of the channels ``means[b, c, p]``,
    ``m2s[b, c, p]`` (``count`` samples each; means as distances from
    ``refs``), merged channel by channel; the union's reference is channel
    0's."""
    nbatch, nchan, npos = means.shape
    for b in range(nbatch):
        _copy_rows(means[b, 0], m2s[b, 0], dst_means[b], dst_m2s[b])
        for c in range(1, nchan):
            _merge_rows(refs[b, 0], dst_means[b], dst_m2s[b], refs[b, c], means[b, c], m2s[b, c],
                        c * count, count, dst_means[b], dst_m2s[b])


@jit
def spatial_cosines(x, rows, tap_rows, khat, kernel_state, d, stride, own_sums, noise_floor,
                    fill, exponent, kept, scratch, out):
    """Cosines of a band of output rows: ``out[b, q, k, i]`` for window ``i``
    along the last axis of output row ``q`` of batch index ``b``.

    ``x`` is the padded signal as rows ``(R, N)``; output row ``(b, q)``
    reads the rows ``rows[b, q] + tap_rows[t]`` for each of the kernels'
    rows ``t`` (channels and the taps of every axis but the last; ascending),
    whose taps are ``khat[k, t, j]`` at ``j * d`` along the last axis; window
    ``i`` starts at ``i * stride``.  A window's dot is one fused
    multiply-add a tap, rows ``t`` in order and taps ``j`` in order within
    each (:func:`fft_cosines` recomputes its windows the same way): an
    output row's rows are read first, and its dots then taken eight taps a
    pass whatever rows they lie in (:func:`_add_flat_dots`).

    A window's denominator comes from its sum of squares (``own_sums`` an
    int), each row's sums of squares along the last axis (taps in order,
    fused) added over the rows ``t`` in order, nothing subtracted, so a
    window's sum holds its own samples only; or centered, ``own_sums =
    (means, ones, row_m2s, refine, taps)`` (scratch ``(nout,)``, ``m``
    ones, ``(S, nout)``, whether the signal is float64, and ``j d`` for
    each tap ``j`` of a row), its M2, from each row's mean and M2 along the
    last axis, kept with the row (:func:`_keep_row_sums`), merged about the
    window's mean (:func:`_centered_sums`).  Each kind compiles only its
    own helpers (:func:`_keep_row_sums`, :func:`_own_window_sums`).

    ``kept = (samples, kept_sums, tags)``: the rows read lately, as float64
    (``samples`` ``(S, N)``, unused for a float64 signal) and their sums
    (``kept_sums`` ``(S, nout)``), row ``x[r]`` in slot ``r % S`` while
    ``tags[r % S] == r``: a row is converted and squared once for the
    output rows that read it, not once for each.  The rows of an output row
    must fall in different slots (``S`` from
    ``_cpu.spatial_driver._slot_count``).  ``scratch = (acc, sums,
    denominators, slots, offsets)``: ``(K, nout)``, ``(2, nout)`` and
    ``(nout,)`` float64, ``(T,)`` and ``(T m,)`` int64 (``sums``: the output
    row's sums of squares or M2s, and a row of zeros).

    One kernel, unsharpened, into a C-ordered ``out`` (a template): the
    windows' sums, denominators and cosines are one pass
    (:func:`_finish_single`), which stores its results straight into
    ``out``."""
    # short rows: a view's reference count would cost more than its dots
    # (arrays made here would have one: the scratch comes from the caller)
    x, rows, tap_rows, khat, kernel_state = (borrowed(x), borrowed(rows), borrowed(tap_rows),
                                             borrowed(khat), borrowed(kernel_state))
    out, own_sums = borrowed(out), _borrowed(own_sums)
    samples, kept_sums, tags = borrowed(kept[0]), borrowed(kept[1]), borrowed(kept[2])
    acc, sums, denominators = borrowed(scratch[0]), borrowed(scratch[1]), borrowed(scratch[2])
    slots, offsets = borrowed(scratch[3]), borrowed(scratch[4])
    tags[:] = -1
    s, zeros = sums[0], sums[1]
    zeros[:] = 0.0
    nker, ntap, m = khat.shape
    nbatch, nrows, _, nout = out.shape
    nslot = tags.size
    flat = _flat_rows(x, samples)
    for b in range(nbatch):
        for q in range(nrows):
            for t in range(ntap):
                index = rows[b, q] + tap_rows[t]
                slot = _read_row(x, index, nslot, tags, samples, own_sums, m, d, stride,
                                 kept_sums)
                slots[t] = slot
                _tap_starts(_row_start(x, samples, index, slot), m, d,
                            offsets[t * m : (t + 1) * m])
            for k in range(nker):
                _add_flat_dots(flat, offsets, khat[k].reshape(-1), stride, acc[k])
            if nker == 1 and is_contiguous(out) and is_unsharpened(exponent):
                _finish_single(own_sums, acc[0], kept_sums, slots, m, noise_floor, fill,
                               kernel_state[0], s, zeros, out[b, q, 0])
                continue
            _own_window_sums(own_sums, kept_sums, slots, m, s)
            _denominators(s, noise_floor, denominators)
            for k in range(nker):
                _finish_row(acc[k], s, denominators, fill, kernel_state[k], exponent,
                            out[b, q, k])


@jit(inline=True)
def _read_row(x, index, nslot, tags, samples, own_sums, m, d, stride, kept_sums):
    """Row ``index`` of ``x`` into :func:`spatial_cosines`' cache: its slot
    (converted to float64 and its sums kept there unless it is there
    already)."""
    slot = index % nslot
    fresh = tags[slot] != index
    tags[slot] = index
    row = as_float64(x[index], samples[slot], fresh)
    _keep_row_sums(own_sums, fresh, slot, row, m, d, stride, kept_sums)
    return slot


@jit(from_python=False)
def _add_flat_dots(flat, offsets, taps, stride, acc):
    """``acc[i]``: the sum over ``p`` of ``taps[p] * flat[offsets[p] + i *
    stride]``, one fused multiply-add a tap in the order of ``p``: a
    window's dot over every row it reads (the order of
    ``_cpu.sliding._add_dots``, row after row), eight taps a pass over
    ``acc`` whatever rows they lie in, then four (three rows of three taps
    take two passes, not three)."""
    ntap = taps.size
    nout = acc.shape[0]
    if stride != 1:
        for p in range(ntap):
            start, w = offsets[p], taps[p]
            for i in range(nout):
                acc[i] = fma(flat[start + i * stride], w, 0.0 if p == 0 else acc[i])
        return
    p = 0
    while p + 8 <= ntap:
        o0, o1, o2, o3 = _offsets_at(offsets, p)
        o4, o5, o6, o7 = _offsets_at(offsets, p + 4)
        w0, w1, w2, w3 = taps[p], taps[p + 1], taps[p + 2], taps[p + 3]
        w4, w5, w6, w7 = taps[p + 4], taps[p + 5], taps[p + 6], taps[p + 7]
        start = p == 0
        for i in range(nout):
            u = np.uint64(i)
            acc[i] = _fma8(0.0 if start else acc[i], flat[o0 + u], flat[o1 + u], flat[o2 + u],
                           flat[o3 + u], flat[o4 + u], flat[o5 + u], flat[o6 + u],
                           flat[o7 + u], w0, w1, w2, w3, w4, w5, w6, w7)
        p += 8
    while p < ntap:
        count = min(4, ntap - p)
        o0, o1, o2, o3 = _offsets_at(offsets, p, count)
        w0, w1, w2, w3 = (taps[p], taps[p + 1] if count > 1 else 0.0,
                          taps[p + 2] if count > 2 else 0.0, taps[p + 3] if count > 3 else 0.0)
        add_four_taps(flat, o0, o1, o2, o3, w0, w1, w2, w3, count, p == 0, acc)
        p += 4


@jit(inline=True)
def _tap_starts(row_start, m, d, dest):
    """``dest[j]``: where tap ``j`` of a row's first window lies in
    :func:`_flat_rows`."""
    for j in range(m):
        dest[j] = row_start + j * d


@jit(inline=True)
def _offsets_at(offsets, p, count=4):
    """``offsets[p .. p+3]`` as unsigned indices (those past ``count``:
    ``offsets[p]``, unread)."""
    o0 = offsets[p]
    return (np.uint64(o0), np.uint64(offsets[p + 1] if count > 1 else o0),
            np.uint64(offsets[p + 2] if count > 2 else o0),
            np.uint64(offsets[p + 3] if count > 3 else o0))


def _flat_rows(x, samples):
    """The rows :func:`spatial_cosines` reads as float64, flat: ``x``
    itself (float64), or the cache ``samples`` they are converted into."""


@overload(_flat_rows, jit_options=dict(OPTIONS))
def _ol_flat_rows(x, samples):
    if x.dtype == types.float64:
        return lambda x, samples: x.reshape(-1)
    return lambda x, samples: samples.reshape(-1)


@jit(inline=True)
def _row_start(x, samples, index, slot):
    """Where row ``index`` (cached in ``slot``) starts in :func:`_flat_rows`."""
    return index * x.shape[1] if is_float64(x) else slot * samples.shape[1]


def _borrowed(own_sums):
    """:func:`spatial_cosines`' ``own_sums`` with its arrays borrowed."""


@overload(_borrowed, jit_options=dict(OPTIONS))
def _ol_borrowed(own_sums):
    if isinstance(own_sums, types.Integer):
        return lambda own_sums: own_sums
    return lambda own_sums: (borrowed(own_sums[0]), borrowed(own_sums[1]), borrowed(own_sums[2]),
                             own_sums[3], borrowed(own_sums[4]))


def _keep_row_sums(own_sums, fresh, slot, row, m, d, stride, kept_sums):
    """What a row just read into slot ``slot`` of :func:`spatial_cosines`'s
    cache (``fresh``) keeps besides its samples, for each window ``i``
    along it: its sum of squares in ``kept_sums[slot, i]`` (``own_sums`` an
    int); centered (a tuple), its mean there and its M2 in
    ``own_sums[2][slot, i]`` (:func:`_row_moments`: nothing cancels but
    the deviations themselves)."""


@overload(_keep_row_sums, jit_options=dict(OPTIONS))
def _ol_keep_row_sums(own_sums, fresh, slot, row, m, d, stride, kept_sums):
    if isinstance(own_sums, types.Integer):
        def squares(own_sums, fresh, slot, row, m, d, stride, kept_sums):
            if fresh:
                _row_squares(row, m, d, stride, kept_sums[slot])

        return squares

    def moments(own_sums, fresh, slot, row, m, d, stride, kept_sums):
        if fresh:
            _row_moments(row, own_sums[1], own_sums[4], d, stride, own_sums[3], kept_sums[slot],
                         own_sums[2][slot])

    return moments


@jit(from_python=False)
def _row_moments(row, ones, taps, d, stride, refine, means, m2s):
    """``means[i]`` and ``m2s[i]``: the mean and M2 of the ``m`` samples of
    window ``i`` along ``row`` (``ones``: ``m`` ones, at ``taps``, ``j d``):
    the sum over ``m`` (:func:`_add_flat_dots`, as the dots),
    then the squares of the samples' deviations from it.  A flat run's
    mean must be its value exactly (then its M2 is 0): so it is when the
    samples have at most 24 significant bits (float32 and narrower: equal
    ones sum exactly in float64); with ``refine`` (float64 samples) the mean
    is first corrected by the mean of the deviations from it, which for a
    flat run are equal and exact."""
    m = ones.size
    _add_flat_dots(row, taps, ones, stride, means)
    for i in range(means.size):
        means[i] = means[i] / m
    # step 0 (refine only) corrects the means, step 1 takes the M2s; the
    # flag a runtime value, so that one _add_deviations is compiled, not two
    for step in range(0 if refine else 1, 2):
        _add_deviations(row, means, m, d, stride, np.bool_(True), step == 1, m2s)
        if step == 0:
            for i in range(means.size):
                means[i] = means[i] + m2s[i] / m


def _own_window_sums(own_sums, kept_sums, slots, m, dest):
    """``dest[i]``: the sum of squares (``own_sums`` an int) or M2 (a tuple,
    :func:`_centered_sums`) of window ``i`` of the output row whose rows
    are kept in ``slots``."""


@overload(_own_window_sums, jit_options=dict(OPTIONS))
def _ol_own_window_sums(own_sums, kept_sums, slots, m, dest):
    if isinstance(own_sums, types.Integer):
        return lambda own_sums, kept_sums, slots, m, dest: _sum_rows(kept_sums, slots, dest)
    return lambda own_sums, kept_sums, slots, m, dest: _centered_sums(
        own_sums[0], kept_sums, own_sums[2], slots, m, own_sums[3], dest)


@jit(from_python=False)
def _centered_sums(means, row_means, row_m2s, slots, m, refine, dest):
    """``dest[i]``: the M2 of window ``i`` of an output row from the means
    and M2s of its rows' ``m`` samples (kept in ``slots`` of ``row_means``
    and ``row_m2s``): the window's mean ``mu`` is the mean of its rows'
    (into ``means``), and each row adds ``M2_row + m (mean_row - mu)**2``,
    rows in order: terms that are never negative, so nothing cancels (an
    exact identity about the rows' own means; about rounded means it is off
    by ``2 (mean_row - mu) m (true mean_row - mean_row)``, about ``2 eps
    kappa`` of the M2, inside the centered bound of the docs).  With
    ``refine`` (float64 samples) the window's mean is corrected once by its
    rows' means' mean deviation from it, as :func:`_row_moments` does, so
    that a flat window's is its value exactly and its M2 0."""
    n = dest.size
    means = means[:n]
    _sum_rows(row_means, slots, means)
    for i in range(n):
        means[i] = means[i] / slots.size
    for step in range(0 if refine else 1, 2):  # (as in _row_moments)
        _row_deviations(row_means, row_m2s, slots, means, m, step == 1, dest)
        if step == 0:
            for i in range(n):
                means[i] = means[i] + dest[i] / slots.size


@jit(from_python=False)
def _row_deviations(row_means, row_m2s, slots, means, m, squared, dest):
    """``dest[i]``: the sum over the rows in ``slots`` of ``mean_row[i] -
    means[i]``, or (``squared``) of ``M2_row[i] + m (mean_row[i] -
    means[i])**2``, rows in order, four a pass (as :func:`_sum_rows`)."""
    n = dest.size
    for t in range(0, slots.size, 4):
        count = min(4, slots.size - t)
        p0 = slots[t]
        p1 = slots[t + 1] if count > 1 else p0
        p2 = slots[t + 2] if count > 2 else p0
        p3 = slots[t + 3] if count > 3 else p0
        a0, a1, a2, a3 = row_means[p0, :n], row_means[p1, :n], row_means[p2, :n], row_means[p3, :n]
        b0, b1, b2, b3 = row_m2s[p0, :n], row_m2s[p1, :n], row_m2s[p2, :n], row_m2s[p3, :n]
        first = t == 0
        for i in range(n):
            mu = means[i]
            e0, e1, e2, e3 = a0[i] - mu, a1[i] - mu, a2[i] - mu, a3[i] - mu
            if squared:
                e0 = fma(m * e0, e0, b0[i])
                e1 = fma(m * e1, e1, b1[i])
                e2 = fma(m * e2, e2, b2[i])
                e3 = fma(m * e3, e3, b3[i])
            dest[i] = add_up_to_four(0.0 if first else dest[i], e0, e1, e2, e3, count)


@jit(from_python=False)
def _add_deviations(row, means, m, d, stride, first, squared, dest):
    """``dest[i]`` (``first``: 0) plus the sum over ``j < m`` of the
    deviations ``row[i * stride + j d] - means[i]`` (``squared``: of their
    squares), one fused multiply-add a tap (by 1.0: one rounding, as an
    addition) in tap order: eight taps a pass, then four (as
    :func:`_row_squares`)."""
    nout = dest.shape[0]
    if stride != 1:
        for j in range(m):
            start = first and j == 0
            for i in range(nout):
                v = row[i * stride + j * d] - means[i]
                dest[i] = fma(v, v if squared else 1.0, 0.0 if start else dest[i])
        return
    j = 0
    while j + 8 <= m:
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        o4, o5, o6, o7 = _tap_offsets(0, j + 4, m, d)
        start = first and j == 0
        for i in range(nout):
            u = np.uint64(i)
            mean = means[i]
            v0, v1 = row[o0 + u] - mean, row[o1 + u] - mean
            v2, v3 = row[o2 + u] - mean, row[o3 + u] - mean
            v4, v5 = row[o4 + u] - mean, row[o5 + u] - mean
            v6, v7 = row[o6 + u] - mean, row[o7 + u] - mean
            if squared:
                dest[i] = _fma8(0.0 if start else dest[i], v0, v1, v2, v3, v4, v5, v6, v7,
                                v0, v1, v2, v3, v4, v5, v6, v7)
            else:
                dest[i] = _fma8(0.0 if start else dest[i], v0, v1, v2, v3, v4, v5, v6, v7,
                                1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
        j += 8
    for j in range(j, m, 4):
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        taps = min(4, m - j)
        start = first and j == 0
        for i in range(nout):
            u = np.uint64(i)
            mean = means[i]
            v0, v1 = row[o0 + u] - mean, row[o1 + u] - mean
            v2, v3 = row[o2 + u] - mean, row[o3 + u] - mean
            if squared:
                dest[i] = _add_squares(0.0 if start else dest[i], v0, v1, v2, v3, taps)
            else:
                dest[i] = add_up_to_four(0.0 if start else dest[i], v0, v1, v2, v3, taps)


@jit(from_python=False)
def _row_squares(row, m, d, stride, dest):
    """``dest[i]``: the sum of ``row[i * stride + j d]**2`` over ``j < m``,
    one fused multiply-add a tap in tap order: eight taps a pass, then four
    (the order of ``_cpu.sliding._add_dots``)."""
    nout = dest.shape[0]
    if stride != 1:
        for j in range(m):
            start = j == 0
            for i in range(nout):
                v = row[i * stride + j * d]
                dest[i] = fma(v, v, 0.0 if start else dest[i])
        return
    j = 0
    while j + 8 <= m:
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        o4, o5, o6, o7 = _tap_offsets(0, j + 4, m, d)
        start = j == 0
        for i in range(nout):
            u = np.uint64(i)
            v0, v1, v2, v3 = row[o0 + u], row[o1 + u], row[o2 + u], row[o3 + u]
            v4, v5, v6, v7 = row[o4 + u], row[o5 + u], row[o6 + u], row[o7 + u]
            dest[i] = _fma8(0.0 if start else dest[i], v0, v1, v2, v3, v4, v5, v6, v7,
                            v0, v1, v2, v3, v4, v5, v6, v7)
        j += 8
    for j in range(j, m, 4):
        o0, o1, o2, o3 = _tap_offsets(0, j, m, d)
        taps = min(4, m - j)
        start = j == 0
        for i in range(nout):
            u = np.uint64(i)
            dest[i] = _add_squares(0.0 if start else dest[i], row[o0 + u], row[o1 + u],
                                   row[o2 + u], row[o3 + u], taps)


@jit(inline=True)
def _add_squares(a, v0, v1, v2, v3, taps):
    """``a`` plus the squares of the first ``taps`` (1 to 4) of ``v0 ..
    v3``, in order, one fused multiply-add each."""
    a = fma(v0, v0, a)
    if taps > 1:
        a = fma(v1, v1, a)
    if taps > 2:
        a = fma(v2, v2, a)
    if taps > 3:
        a = fma(v3, v3, a)
    return a


@jit(from_python=False)
def _sum_rows(rows, picks, dest):
    """``dest[i]``: the sum of ``rows[p, i]`` over ``p`` in ``picks``, in
    order, four rows a pass over ``dest``."""
    n = dest.size
    for t in range(0, picks.size, 4):
        count = min(4, picks.size - t)
        r0 = rows[picks[t], :n]
        r1 = rows[picks[t + 1], :n] if count > 1 else r0
        r2 = rows[picks[t + 2], :n] if count > 2 else r0
        r3 = rows[picks[t + 3], :n] if count > 3 else r0
        start = t == 0
        for i in range(n):
            dest[i] = add_up_to_four(0.0 if start else dest[i], r0[i], r1[i], r2[i], r3[i], count)


@jit(from_python=False)
def _denominators(s, noise_floor, out):
    """``out[i] = sqrt(s[i]) + noise_floor``: a row of windows' denominators,
    shared by every kernel."""
    for i in range(out.size):
        out[i] = np.sqrt(s[i]) + noise_floor


def _finish_single(own_sums, dots, kept_sums, slots, m, noise_floor, fill, state, sums, zeros,
                   dest):
    """:func:`spatial_cosines`' output row of one kernel, unsharpened, into
    a C-ordered ``dest``: the cosines of its windows from their ``dots``,
    their sums of squares or M2s (into ``sums``; :func:`_own_window_sums`)
    and their denominators in one pass, or two centered (whose M2s take
    passes of their own).  ``zeros``: a row of zeros."""


@overload(_finish_single, jit_options=dict(OPTIONS))
def _ol_finish_single(own_sums, dots, kept_sums, slots, m, noise_floor, fill, state, sums, zeros,
                      dest):
    if isinstance(own_sums, types.Integer):
        def summed(own_sums, dots, kept_sums, slots, m, noise_floor, fill, state, sums, zeros,
                   dest):
            _summed_cosines(dots, kept_sums, slots, noise_floor, fill, state, sums, zeros, dest)

        return summed

    def centered(own_sums, dots, kept_sums, slots, m, noise_floor, fill, state, sums, zeros,
                 dest):
        # (_centered_sums itself, not the overload _own_window_sums: an overload
        # called from here and from spatial_cosines is compiled twice)
        _centered_sums(own_sums[0], kept_sums, own_sums[2], slots, m, own_sums[3], sums)
        for i in range(dest.shape[0]):
            dest[i] = _window_cosine(dots[i], sums[i], noise_floor, fill, state)

    return centered


@jit(from_python=False)
def _summed_cosines(dots, rows, picks, noise_floor, fill, state, sums, zeros, dest):
    """``dest[i]``: the unsharpened cosine of window ``i`` from its dot and
    its sum of squares, the sum over the rows ``picks`` of ``rows[p, i]``
    (as :func:`_sum_rows`, whose last pass of up to four rows is this
    one's: padded with ``zeros``, which add nothing to a sum of squares)."""
    n = dest.size
    last = (picks.size - 1) // 4 * 4
    if last:
        _sum_rows(rows, picks[:last], sums)
    count = picks.size - last
    r0 = rows[picks[last], :n]
    r1 = rows[picks[last + 1], :n] if count > 1 else zeros[:n]
    r2 = rows[picks[last + 2], :n] if count > 2 else zeros[:n]
    r3 = rows[picks[last + 3], :n] if count > 3 else zeros[:n]
    start = zeros[:n] if last == 0 else sums[:n]  # (0.0 + the first: as _sum_rows)
    for i in range(n):
        total = add_up_to_four(start[i], r0[i], r1[i], r2[i], r3[i], np.int64(4))
        dest[i] = _window_cosine(dots[i], total, noise_floor, fill, state)


@jit(from_python=False)
def _finish_row(dots, s, denominators, fill, state, exponent, dest):
    """The (sharpened) cosines of a row of windows from their dots (a
    contiguous scratch row, overwritten), sums of squares and
    :func:`_denominators`, into ``dest``: computed in place, branch-free
    where there is no sharpening, so that the loop vectorises whatever
    ``dest``'s strides, then copied."""
    nout = dest.shape[0]
    for i in range(nout):
        dots[i] = _cosine(dots[i], s[i], denominators[i], fill, state)
    if not is_unsharpened(exponent) and state == KERNEL_NORMAL:
        # fill values (zero windows) are not cosines: leave them
        sharpen_in_place(dots[:nout], s, exponent)
    for i in range(nout):
        dest[i] = dots[i]


@jit
def load_block(values, dest_rows, block, center):
    """Copy the rows of ``values`` ``(R, n)`` into the rows ``dest_rows`` of
    ``block`` ``(rows, N)`` (``N >= n``; the rest of the block stays as it
    is), NaN and inf as 0 (the norms mark their windows), with ``center``
    less their mean (the transforms' error grows with the block's norm).
    Returns the sum of squares of the values copied."""
    n = values.shape[1]
    shift = 0.0
    if center:
        total = 0.0
        for r in range(values.shape[0]):
            total += _finite_sum(values[r])
        shift = total / values.size
    sumsq = 0.0
    for r in range(values.shape[0]):
        sumsq += _copy_row(values[r], shift, block[dest_rows[r], :n])
    return sumsq


@jit(from_python=False)
def _finite_sum(src):
    """The sum of ``src``'s finite values, four partial sums side by side
    (not one chain of adds)."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = src.shape[0] - src.shape[0] % 4
    for p in range(0, n4, 4):
        s0 += _finite(src[p])
        s1 += _finite(src[p + 1])
        s2 += _finite(src[p + 2])
        s3 += _finite(src[p + 3])
    for p in range(n4, src.shape[0]):
        s0 += _finite(src[p])
    return (s0 + s1) + (s2 + s3)


@jit(from_python=False)
def _copy_row(src, shift, dest):
    """``dest[p] = src[p] - shift`` (NaN and inf as 0 first); returns the
    sum of their squares, four partial sums side by side."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = src.shape[0] - src.shape[0] % 4
    for p in range(0, n4, 4):
        v0 = _finite(src[p]) - shift
        v1 = _finite(src[p + 1]) - shift
        v2 = _finite(src[p + 2]) - shift
        v3 = _finite(src[p + 3]) - shift
        dest[p], dest[p + 1], dest[p + 2], dest[p + 3] = v0, v1, v2, v3
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
    for p in range(n4, src.shape[0]):
        value = _finite(src[p]) - shift
        dest[p] = value
        s0 += value * value
    return (s0 + s1) + (s2 + s3)


@jit(from_python=False)
def _finite(value):
    """``value`` in float64, or 0 where it is NaN or infinite."""
    value = np.float64(value)
    return value if abs(value) < np.inf else 0.0


@jit
def fft_cosines(dots, bounds, budget, sumsq, x, rows, tap_rows, khat, d, stride,
                noise_floor, fill, kernel_state, exponent, acc, out):
    """``out[q, k, i]``: the (sharpened) cosines of a band from the FFT's dots
    ``dots[k, q, i]``, each window whose FFT error bound ``bounds[k]`` exceeds ``budget``
    times its norm ``sqrt(sumsq[q, i])`` with its dot taken directly (as
    :func:`spatial_cosines` takes them).  ``acc``: scratch ``(nout,)``."""
    nker, nrows, nout = dots.shape
    ntap, m = khat.shape[1], khat.shape[2]
    denominators = np.empty(nout)
    for q in range(nrows):
        s = sumsq[q]
        _denominators(s, noise_floor, denominators)
        for k in range(nker):
            src = dots[k, q]
            for i in range(nout):
                acc[i] = src[i]
            limit = bounds[k] / budget
            limit *= limit
            for i in range(nout):
                if limit > s[i]:  # (rare: a loud sample near a quiet window)
                    total = 0.0
                    for t in range(ntap):
                        row = x[rows[q] + tap_rows[t]]
                        for j in range(m):
                            total = fma(np.float64(row[i * stride + j * d]), khat[k, t, j],
                                        total)
                    acc[i] = total
            _finish_row(acc, s, denominators, fill, kernel_state[k], exponent, out[q, k])


@jit
def window_columns(x, rows, tap_rows, m, d, stride, nout, columns):
    """``columns[t * m + j, r * nout + i] = x[rows[r] + tap_rows[t], i *
    stride + j * d]``: the windows of the output rows ``rows`` as the
    columns of a matrix, for their dots with every kernel as one matrix
    product (banks and multi-channel kernels)."""
    for r in range(rows.size):
        for t in range(tap_rows.size):
            row = x[rows[r] + tap_rows[t]]
            for j in range(m):
                dest = columns[t * m + j, r * nout : (r + 1) * nout]
                if stride == 1:
                    src = row[j * d : j * d + nout]
                    for i in range(nout):
                        dest[i] = src[i]
                else:
                    for i in range(nout):
                        dest[i] = row[i * stride + j * d]


@jit
def gather_stacks(x, rows, tap_rows, stacks):
    """``stacks[r, t] = x[rows[r] + tap_rows[t]]`` (float64): the rows each
    output row reads, as the multi-channel rows of one axis."""
    for r in range(rows.size):
        for t in range(tap_rows.size):
            src = x[rows[r] + tap_rows[t]]
            dest = stacks[r, t]
            for i in range(src.size):
                dest[i] = src[i]


@jit
def add_stacks(values, rows, tap_rows, dest):
    """``dest[rows[r] + tap_rows[t]] += values[r, t]``: the stacks' gradients
    added back to the rows they were read from, in order."""
    for r in range(rows.size):
        for t in range(tap_rows.size):
            src = values[r, t]
            row = dest[rows[r] + tap_rows[t]]
            for i in range(src.size):
                row[i] += src[i]


@jit
def finish_rows(dots, sumsq, noise_floor, fill, kernel_state, exponent, out):
    """``out[q, k, i]``: the (sharpened) cosines from the dots ``dots[k, q,
    i]`` (scratch, overwritten) and the windows' sums of squares ``sumsq[q,
    i]``."""
    nker, nrows, nout = dots.shape
    denominators = np.empty(nout)
    for q in range(nrows):
        _denominators(sumsq[q], noise_floor, denominators)
        for k in range(nker):
            _finish_row(dots[k, q], sumsq[q], denominators, fill, kernel_state[k], exponent,
                        out[q, k])


@jit
def finish_norms(sums, scale, center, out):
    """``out[b, q, i]``: the norm ``sqrt(sums) * 2**scale``; with ``center``
    an M2 that is not finite (the window holds ±inf or NaN) gives NaN."""
    nbatch, nrows, nout = out.shape
    for b in range(nbatch):
        for q in range(nrows):
            s, dest = sums[b, q], out[b, q]
            if scale:
                for i in range(nout):
                    dest[i] = math.ldexp(_norm(s[i], center), scale)
            else:  # (the common case, vectorised)
                for i in range(nout):
                    dest[i] = _norm(s[i], center)


@jit(from_python=False)
def _norm(sum_of_squares, center):
    """The square root; with ``center`` (an M2) NaN where not finite."""
    value = np.sqrt(sum_of_squares)
    if center and not value < np.inf:
        return np.nan
    return value


@jit
def row_window_sums(src, o0, o1, m, d, stride, square, dst, runs, next_runs, windows):
    """``dst[o, i]``: the sum of ``src[o, i * stride + j * d]`` over ``j <
    m`` (squared with ``square``), for rows ``o0 .. o1-1``: windows along a
    last axis, where the scans' chains would run one sample at a time.
    Runs of 1, 2, 4 ... taps are summed level by level (each level's sums
    of pairs of the previous one's, vectorised along the row) and each
    window gathers the runs of its length's binary digits: sums of its own
    samples only, O(log m) passes over a row held in cache.  Scratch:
    ``runs``, ``next_runs`` and ``windows``, each of the row's length."""
    n = src.shape[1]
    nwin = n - (m - 1) * d
    for o in range(o0, o1):
        _load_row(src[o], square, runs)
        taps, gathered, count = 1, 0, n
        level, spare = runs, next_runs
        while True:
            if m & taps:
                part = level[gathered * d : gathered * d + nwin]
                if gathered == 0:
                    for t in range(nwin):
                        windows[t] = part[t]
                else:
                    for t in range(nwin):
                        windows[t] += part[t]
                gathered += taps
            if 2 * taps > m:
                break
            count -= taps * d
            later = level[taps * d : taps * d + count]
            for p in range(count):
                spare[p] = level[p] + later[p]
            level, spare = spare, level
            taps *= 2
        _store_row(windows, stride, dst[o])


@jit(from_python=False)
def _load_row(row, square, dest):
    """``dest[p] = row[p]`` (squared with ``square``) in float64."""
    if square:
        for p in range(row.shape[0]):
            value = np.float64(row[p])
            dest[p] = value * value
    else:
        for p in range(row.shape[0]):
            dest[p] = row[p]


@jit(from_python=False)
def _store_row(values, stride, dest):
    """``dest[i] = values[i * stride]``."""
    if stride == 1:
        head = values[: dest.shape[0]]
        for i in range(dest.shape[0]):
            dest[i] = head[i]
    else:
        for i in range(dest.shape[0]):
            dest[i] = values[i * stride]


@jit
def row_window_moments(refs, means, m2s, count, o0, o1, m, d, stride, dst_means, dst_m2s, runs,
                       next_runs, windows, next_windows):
    """:func:`row_window_sums` for statistics: the mean and M2 of the
    union of the groups ``i * stride + j * d`` (``j < m``) of each row, each
    of ``count`` samples (``means``, distances from their references
    ``refs``, and ``m2s``), runs of equal size merged by Chan's update; a
    run's reference is its first group's.  Scratch: ``(2, n)`` each (means,
    M2s)."""
    n, nout = refs.shape[1], dst_means.shape[1]
    nwin = n - (m - 1) * d
    for o in range(o0, o1):
        own = refs[o]
        _copy_rows(means[o], m2s[o], runs[0], runs[1])
        gathered, taps, npos = 0, 1, n
        level, spare = runs, next_runs
        while True:
            if m & taps:
                run_means = level[0, gathered * d : gathered * d + nwin]
                run_m2s = level[1, gathered * d : gathered * d + nwin]
                if gathered == 0 and taps == m:  # (one run a window: read where it is)
                    windows = level
                elif gathered == 0:
                    for t in range(nwin):
                        windows[0, t] = run_means[t]
                        windows[1, t] = run_m2s[t]
                else:  # (into the other buffer: merges in place do not vectorise)
                    _merge_rows(own[:nwin], windows[0, :nwin], windows[1, :nwin],
                                own[gathered * d : gathered * d + nwin], run_means, run_m2s,
                                gathered * count, taps * count, next_windows[0, :nwin],
                                next_windows[1, :nwin])
                    windows, next_windows = next_windows, windows
                gathered += taps
            if 2 * taps > m:
                break
            npos -= taps * d
            size = taps * count
            first_means, first_m2s = level[0, :npos], level[1, :npos]
            later_means = level[0, taps * d : taps * d + npos]
            later_m2s = level[1, taps * d : taps * d + npos]
            _merge_rows(own[:npos], first_means, first_m2s, own[taps * d : taps * d + npos],
                        later_means, later_m2s, size, size, spare[0, :npos], spare[1, :npos])
            level, spare = spare, level
            taps *= 2
        for i in range(nout):
            dst_means[o, i] = windows[0, i * stride]
            dst_m2s[o, i] = windows[1, i * stride]
