"""Numba kernels around the FFT path's transforms: plan which blocks are
transformed, cut a row into scaled overlap-save blocks, and multiply their
spectra by the kernels'."""

import math

import numpy as np

from .._core.scalars import SAFE_MIN
from ._jit import bits_float, float_bits, is_float64, jit
from .centered import rescaled_m2
from .sliding import (
    _out_of_range,
    _rescaled_sumsq,
    _scaled,
    _unit,
    count_flagged,
    is_flagged,
)

# Independent partial sums (and maxima, minima) kept by the plan's passes
# over every sample and window: a fixed-length inner loop over lanes, which
# LLVM vectorises without reassociating anything (a reduction in one chain
# would stay scalar without fastmath).
LANES = 16
# The bits of +inf: every finite non-negative float64's bits, as an int64, are less.
INF_BITS = np.int64(0x7FF0000000000000)
MAGNITUDE_BITS = np.int64(0x7FFFFFFFFFFFFFFF)  # all bits but the sign


@jit
def _block_stats(src, reference, expo, big, total, small, below):
    """Largest finite magnitude, the sum of the squares of the finite
    magnitudes under ``below`` (inf: all of them) and the smallest non-zero
    finite magnitude of ``(src - reference) * 2**-expo`` (exact scaling;
    merged with ``big``, ``total`` and ``small``), in
    ``LANES`` independent chains added pairwise.  The sum only scales an
    error bound, but it is summed in this fixed order whatever ``expo``: for
    samples whose squares stay normal, the sum for ``expo`` is exactly
    ``4**-expo`` times the one for 0."""
    unit = _unit(expo)
    most = np.zeros(LANES)
    sums = np.zeros(LANES)
    least = np.full(LANES, np.inf)
    size = src.size
    full = size - size % LANES
    for p in range(0, full, LANES):
        for lane in range(LANES):
            _add_magnitude(_magnitude(src[p + lane] - reference, expo, unit), lane, most, sums,
                           least, below)
    for lane in range(size - full):
        _add_magnitude(_magnitude(src[full + lane] - reference, expo, unit), lane, most, sums,
                       least, below)
    width = LANES
    while width > 1:
        width //= 2
        for lane in range(width):
            most[lane] = max(most[lane], most[lane + width])
            sums[lane] = sums[lane] + sums[lane + width]
            least[lane] = min(least[lane], least[lane + width])
    return max(big, most[0]), total + sums[0], min(small, least[0])


@jit(inline=True)
def _add_magnitude(v, lane, most, sums, least, below):
    """Merge the magnitude ``v`` into lane ``lane`` of ``_block_stats``."""
    most[lane] = v if v > most[lane] else most[lane]
    _add_positive(v, lane, least)
    sums[lane] += v * v if v < below else 0.0


@jit(from_python=False)
def _magnitude(value, expo, unit):
    """``|value| * 2**-expo`` (as ``_scaled``), and 0 for NaN and inf."""
    val = abs(_scaled(value, expo, unit))
    return val if val < np.inf else 0.0


@jit
def plan_blocks(x, w0, w1, step, nfft, m, d, sumsq, safe, center, sparse_share, ratio, exponents,
                noise, loud, relative, flagged_counts, quietest, references):
    """Plan the overlap-save blocks of the windows ``w0 .. w1-1`` of every row
    of ``x`` (``(B, C, N)``): block ``g`` holds the windows ``w0 + [g * step,
    (g + 1) * step)`` and reads the samples ``w0 + [g * step, g * step +
    nfft)``, but none past ``w1 + (m - 1) * d`` (zeros: so that the plan and
    the dots depend on the segment's own samples only).  ``sumsq`` is
    ``segment_sumsq``'s; ``safe``: no tile of the segment holds a sample outside
    ``[SAFE_MIN, SAFE_MAX]`` (so every square is a normal number, and the
    block norms can be scaled after summing).  Everything written is the same for the signal times
    any power of two (once ``relative_out_of_range`` has set right the sums
    of squares that left the float64 range):

    * ``references[b, g]`` are read, not written: the value the block's
      samples are transformed less (``block_references``, or 0);
    * ``exponents[b, g]``, that of the block's largest finite magnitude (its
      samples are scaled by ``2**-exponent`` before the transform);
    * ``relative[b, i - w0]``, the sum of squares of window ``i`` in those units
      (recomputed from scaled samples where it left the float64 range);
    * ``noise[b, g]``, the L2 norm of the scaled samples that are transformed
      (the FFT's error scale);
    * ``loud[b, g] = 0``: every sample is transformed (``leave_out_loud`` may
      change that); or, not centered, where the block holds fewer finite
      non-zero samples (of all channels) than ``sparse_share`` times its
      windows, within ``SPARSE_RANGE`` binades of the largest,
      ``EVERY_SAMPLE``: none is transformed, each is added to the dots one
      by one (``scatter_loud``), which costs less than the transform
      (sparse signals: spikes among exact zeros), and no window is flagged;
    * ``flagged_counts[b, g]``, the direct dots the block costs: its windows
      that ``_cpu.sliding.count_flagged`` would send to the direct method,
      estimated with the limit ``(ratio * noise)**2`` (the kernel knows the
      transform's outputs too), or the samples it scatters (``SCATTER_COST``
      windows each, per channel);
    * ``quietest[b, g]``, the smallest positive relative sum of squares of its
      windows (no window is flagged under a limit up to that).

    Returns how many blocks take ``EVERY_SAMPLE``."""
    nchan = x.shape[1]
    end = w1 + (m - 1) * d
    sparse = 0
    for b in range(x.shape[0]):
        for g in range(-(-(w1 - w0) // step)):
            start = w0 + g * step
            stop = min(end, start + nfft)
            first, last = start - w0, min(w1, start + step) - w0  # its windows, from w0
            reference = references[b, g]
            big = 0.0
            total = 0.0
            small = np.inf
            for c in range(nchan):
                big, total, small = _block_stats(x[b, c, start:stop], reference, np.int64(0),
                                                 big, total, small, np.inf)
            expo = math.frexp(big)[1] if big > 0.0 else 0
            exponents[b, g] = expo
            # (differences from a reference may be tiny where the samples are not)
            if safe and small >= SAFE_MIN:
                total = math.ldexp(total, -2 * expo)  # exact: every square was normal
            else:
                total = 0.0
                for c in range(nchan):
                    total = _block_stats(x[b, c, start:stop], reference, expo, 0.0, total,
                                         np.inf, np.inf)[1]
            noise[b, g] = math.sqrt(total)
            loud[b, g] = 0
            scattered = 0
            sparse_below = sparse_share * (last - first)
            # (every scaled square is under 1: no fewer samples than about
            # ``total``; the count decides, free of the signal's scale)
            if total < 2.0 * sparse_below and _narrow(expo, small) and not center:
                nonzero = 0
                for c in range(nchan):  # (finite, not zero)
                    nonzero += _count_at_least(x[b, c, start:stop], 0.0, np.int64(0),
                                               math.ldexp(1.0, -EVERY_SAMPLE))
                if nonzero < sparse_below:
                    noise[b, g] = 0.0
                    loud[b, g] = EVERY_SAMPLE
                    scattered = -(-SCATTER_COST * nonzero // nchan)
                    sparse += 1
            # relative sums of squares, how many are flagged, the quietest
            flagged_counts[b, g], quietest[b, g] = _relative_sums(
                sumsq[b, first:last], expo, (ratio * noise[b, g]) ** 2, relative[b, first:last])
            flagged_counts[b, g] += scattered
    return sparse


@jit
def block_references(x, w0, w1, step, nfft, m, d, references):
    """``references[b, g]`` for ``plan_blocks``, centered in a safe segment:
    the mean of the block's finite samples where it holds half their energy
    (``_block_reference``), else 0: the block's samples less it are
    transformed.  A centered kernel's taps sum to zero, so the dots keep
    their value, but the transform's error, which follows the magnitude of
    what it transforms, no longer carries an offset shared by the block, and
    neither does the flagging.  (A kernel of its own: uncentered calls never
    compile it.)"""
    end = w1 + (m - 1) * d
    for b in range(x.shape[0]):
        for g in range(-(-(w1 - w0) // step)):
            start = w0 + g * step
            references[b, g] = _block_reference(x, b, start, min(end, start + nfft))


@jit(from_python=False)
def _narrow(expo, small):
    """Whether a block's non-zero magnitudes, the largest below ``2**expo``,
    the smallest ``small`` (inf: none), all lie within ``2**-SPARSE_RANGE``
    of it, so that scaled by ``2**-expo`` none of their products with a unit
    kernel's taps loses more than a rounding against its window's norm."""
    return small == np.inf or expo - math.frexp(small)[1] < SPARSE_RANGE


@jit(inline=True)
def _relative_sums(src, expo, limit, dest):
    """``dest``: the sums of squares ``src`` in block units (``4**-expo``,
    see ``_nonzero``); returns how many of them are flagged under ``limit``
    and the smallest positive one.  The count and the least in loops of
    their own, which vectorise (in one loop they do not)."""
    if -500 <= expo <= 500:
        scale = math.ldexp(1.0, -2 * expo)
        for t in range(src.size):
            dest[t] = _nonzero(src[t], src[t] * scale)
    else:
        for t in range(src.size):
            dest[t] = _nonzero(src[t], math.ldexp(src[t], -2 * expo))
    return count_flagged(dest, limit), least_positive(dest)


@jit
def least_positive(values):
    """The smallest positive finite value of ``values``, inf if none (NaN
    and inf are passed over): the minimum of their bits as integers, which
    vectorises."""
    least = INF_BITS
    for t in range(values.size):
        key = float_bits(values[t])
        least = min(least, key if (key > 0) & (key < INF_BITS) else INF_BITS)
    return bits_float(least)


@jit
def magnitude_range(samples):
    """The largest finite and the smallest non-zero magnitudes of the float64
    ``samples`` ``(B, C, n)`` (0 and inf where there are none), from their
    bits, whose integer maxima and minima vectorise."""
    most = np.int64(0)
    least = INF_BITS
    for b in range(samples.shape[0]):
        for c in range(samples.shape[1]):
            row = samples[b, c]
            for t in range(row.size):
                key = float_bits(row[t]) & MAGNITUDE_BITS
                finite = key < INF_BITS
                most = max(most, key if finite else np.int64(0))
                least = min(least, key if (key > 0) & finite else INF_BITS)
    return bits_float(most), bits_float(least)


@jit
def flag_bound(sumsq, nwin, step, nfft, share):
    """At most how many windows of a segment (its sums of squares ``sumsq[:,
    :nwin]``) ``plan_blocks`` flags in blocks of ``nfft`` samples and
    ``step`` windows: those of each block with a positive sum of squares
    under ``share`` (``_cpu.drivers._BlockLength``) times the largest finite
    one among the windows that start in its samples."""
    total = 0
    for b in range(sumsq.shape[0]):
        row = sumsq[b, :nwin]
        for first in range(0, nwin, step):
            most = largest_finite(row[first : min(nwin, first + nfft)])
            total += count_flagged(row[first : min(nwin, first + step)], share * most)
    return total


@jit(from_python=False)
def largest_finite(values):
    """The largest finite value of the non-negative ``values``, 0 if none
    (as ``least_positive``: an integer maximum of their bits)."""
    most = np.int64(0)
    for t in range(values.size):
        key = float_bits(values[t])
        most = max(most, key if key < INF_BITS else np.int64(0))
    return bits_float(most)


@jit(inline=True)
def _add_positive(r, lane, least):
    """Lane ``lane`` of ``least`` takes ``r`` where it is positive and less."""
    least[lane] = r if (r > 0.0) & (r < least[lane]) else least[lane]


@jit
def relative_out_of_range(x, w0, w1, step, m, d, tile, sumsq, unsafe, ratio, exponents, noise,
                          relative, flagged_counts, quietest, center):
    """After ``plan_blocks``: the relative sums of squares of the windows of
    unsafe tiles whose sums of squares (``center``: centered) left the
    float64 range, from their samples scaled by a power of two (so that they
    do not depend on the signal's scale), and their blocks' counts with them."""
    for b in range(x.shape[0]):
        for ti in range(unsafe.shape[1]):
            if not unsafe[b, ti]:
                continue
            for t in range(ti * tile, min((ti + 1) * tile, w1 - w0)):
                # (a negative sum marks no window: see gather_runs)
                if _out_of_range(sumsq[b, t]) and not sumsq[b, t] < 0.0:
                    g = t // step
                    expo = exponents[b, g]
                    limit = (ratio * noise[b, g]) ** 2
                    if center:
                        e, s = rescaled_m2(x, b, w0 + t, m, d)
                    else:
                        e, s = _rescaled_sumsq(x, b, w0 + t, m, d, np.bool_(False))
                    flagged_counts[b, g] -= count_flagged(relative[b, t : t + 1], limit)
                    relative[b, t] = _nonzero(s, math.ldexp(s, 2 * (e - expo)) if s < np.inf else s)
                    flagged_counts[b, g] += count_flagged(relative[b, t : t + 1], limit)
                    if relative[b, t] > 0.0:
                        quietest[b, g] = min(quietest[b, g], relative[b, t])


@jit
def leave_out_loud(x, w0, w1, step, nfft, m, d, ratio, exponents, noise, loud, relative,
                   flagged_counts, quietest, references):
    """After ``plan_blocks``, for each block with flagged windows: ``loud[b,
    g] = s`` when the samples of scaled magnitude at least ``2**-s`` are
    better left out of the transform and added to the dots one by one
    (``scatter_loud``), which pays where a few loud samples would make many
    quiet windows flagged (spikes, short events); ``noise`` then is that of
    the samples transformed, and ``flagged_counts`` counts each loud sample
    of one channel as ``SCATTER_COST`` windows."""
    nchan = x.shape[1]
    end = w1 + (m - 1) * d
    scratch = (np.empty(MAX_LOUD_SHIFT + 1, dtype=np.int64), np.empty(MAX_LOUD_SHIFT + 1),
               np.empty(2049, dtype=np.int64), np.empty(nfft))
    for b in range(x.shape[0]):
        for g in range(-(-(w1 - w0) // step)):
            cost = flagged_counts[b, g]
            if cost == 0 or loud[b, g]:  # (none flagged, or none transformed)
                continue
            start = w0 + g * step
            stop = min(end, start + nfft)
            windows = relative[b, start - w0 : min(w1, start + step) - w0]
            expo = exponents[b, g]
            reference = references[b, g]
            # the fewest samples that could be left out: those of the top binade
            top = 0
            for c in range(nchan):
                top += _count_at_least(x[b, c, start:stop], reference, expo, 0.5)
            if 2 * SCATTER_COST * top >= cost * nchan:
                continue  # loud stretches, not spikes: leaving samples out would not pay
            shift = _cheapest_loud(x, b, start, stop, reference, expo, windows, ratio, cost,
                                   scratch)
            if shift:
                quiet = 0.0
                for c in range(nchan):
                    quiet = _block_stats(x[b, c, start:stop], reference, expo, 0.0, quiet,
                                         np.inf, math.ldexp(1.0, -shift))[1]
                limit = (LOUD_BOUND * ratio * math.sqrt(quiet)) ** 2
                if not limit >= LEAST_LIMIT:
                    continue  # (see LEAST_LIMIT: the block keeps its samples and its flags)
                loud_count = 0
                for r in range(shift):
                    loud_count += scratch[0][r]
                noise[b, g] = math.sqrt(quiet)
                loud[b, g] = shift
                flagged_counts[b, g] = -(-SCATTER_COST * loud_count // nchan) + count_flagged(
                    windows, limit)


@jit
def _block_reference(x, b, start, stop):
    """The mean of the finite samples of ``x[b, :, start:stop]`` where it holds
    at least half of their energy (``count * mean**2 >= sum of squares / 2``:
    an offset worth taking out), else 0 (taking out a small mean would only
    turn exact zeros into differences); summed in a fixed order, so that
    for ``2**j * x`` (squares normal) it is exactly ``2**j`` times that of
    ``x``, and for ``-x`` its negative."""
    total, squares, count = _block_sums(x, b, start, stop, np.bool_(False))
    if not (abs(total) < np.inf and squares < np.inf):  # a NaN or inf sample
        total, squares, count = _block_sums(x, b, start, stop, np.bool_(True))
    if count == 0:
        return 0.0
    mean = total / count
    return mean if 2.0 * (count * mean) * mean >= squares else 0.0


@jit
def _block_sums(x, b, start, stop, finite_only):
    """The sum, the sum of squares and the count of the samples of ``x[b, :,
    start:stop]`` (``finite_only``: of the finite ones), in four chains each.
    Without ``finite_only`` the sums are the same bits as with it wherever
    they come out finite (no sample was NaN or inf)."""
    s0 = s1 = s2 = s3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    count = 0
    for c in range(x.shape[1]):
        src = x[b, c, start:stop]
        p = 0
        while p + 4 <= src.size:
            v0, v1 = np.float64(src[p]), np.float64(src[p + 1])
            v2, v3 = np.float64(src[p + 2]), np.float64(src[p + 3])
            if finite_only:
                v0 = v0 if abs(v0) < np.inf else 0.0
                v1 = v1 if abs(v1) < np.inf else 0.0
                v2 = v2 if abs(v2) < np.inf else 0.0
                v3 = v3 if abs(v3) < np.inf else 0.0
                count += ((abs(src[p]) < np.inf) + (abs(src[p + 1]) < np.inf)
                          + (abs(src[p + 2]) < np.inf) + (abs(src[p + 3]) < np.inf))
            s0 += v0
            s1 += v1
            s2 += v2
            s3 += v3
            q0 += v0 * v0
            q1 += v1 * v1
            q2 += v2 * v2
            q3 += v3 * v3
            p += 4
        for p in range(p, src.size):
            v0 = np.float64(src[p])
            if finite_only:
                v0 = v0 if abs(v0) < np.inf else 0.0
                count += abs(src[p]) < np.inf
            s0 += v0
            q0 += v0 * v0
    if not finite_only:
        count = x.shape[1] * (stop - start)
    return ((s0 + s1) + (s2 + s3)), ((q0 + q1) + (q2 + q3)), count


@jit(from_python=False)
def _nonzero(s, scaled):
    """``scaled`` (``s`` in block units), but the smallest positive float where
    a window with ``s > 0`` would underflow to a zero window: far quieter
    than its block, it is flagged, not given ``fill``."""
    return 5e-324 if (scaled == 0.0) & (s > 0.0) else scaled


@jit(from_python=False)
def _count_at_least(src, reference, expo, threshold):
    """How many samples of ``(src - reference) * 2**-expo`` have a magnitude
    of at least ``threshold`` (and are finite)."""
    unit = _unit(expo)
    count = 0
    for p in range(src.size):
        count += _magnitude(src[p] - reference, expo, unit) >= threshold
    return count


@jit(from_python=False)
def _cheapest_loud(x, b, start, stop, reference, expo, windows, ratio, cost, scratch):
    """The ``s`` (0 for none) that leaves out of block ``[start, stop)`` of
    row ``b`` the samples of scaled magnitude ``>= 2**-s`` where that costs
    fewest direct dots (each left-out sample of one channel counting as
    ``SCATTER_COST`` windows), fewer than ``cost``.  Estimated from
    histograms by binade of the samples (their counts and squares) and of
    the windows' relative sums of squares ``windows`` (``scratch``: their
    arrays)."""
    counts, energies, below, differences = scratch
    nchan = x.shape[1]
    counts[:] = 0
    energies[:] = 0.0
    for c in range(nchan):
        if reference == 0.0:
            _binade_histogram(x[b, c], start, stop, expo, counts, energies)
        else:  # the samples less the reference, scaled (exact): their binades
            src = x[b, c, start:stop]
            unit = _unit(expo)
            for p in range(src.size):
                differences[p] = _scaled(src[p] - reference, expo, unit)
            _binade_histogram(differences, np.int64(0), src.size, np.int64(0), counts, energies)
    # quiet energy of each threshold: the bins at and below it, summed upwards
    for r in range(MAX_LOUD_SHIFT - 1, -1, -1):
        energies[r] += energies[r + 1]
    # below[e]: windows whose sum of squares has a biased exponent under e
    below[:] = 0
    bits = windows.view(np.int64)
    for t in range(windows.size):
        if windows[t] > 0.0:  # not zero, NaN or inf: never flagged
            below[((bits[t] >> 52) & 0x7FF) + 1] += 1
    for e in range(1, below.size):
        below[e] += below[e - 1]
    best = 0
    loud_count = 0
    for shift in range(1, MAX_LOUD_SHIFT + 1):
        loud_count += counts[shift - 1]
        scattered = -(-SCATTER_COST * loud_count // nchan)
        if scattered >= cost:
            break
        if counts[shift - 1] == 0:
            continue  # the same samples as the last threshold
        limit = (LOUD_BOUND * ratio) ** 2 * energies[shift]
        e = (np.array([limit]).view(np.int64)[0] >> 52) & 0x7FF
        # surely below the limit, and half of those in its binade
        flagged = below[e] + (below[e + 1] - below[e]) // 2
        if scattered + flagged < cost:
            cost = scattered + flagged
            best = shift
    return best


@jit(from_python=False)
def _binade_histogram(row, start, stop, expo, counts, energies):
    """Add the samples ``row[start:stop]`` to a histogram by binade of their
    magnitude scaled by ``2**-expo``: bin ``r`` holds ``[2**-(r+1), 2**-r)``,
    with counts and sums of squares, for ``r`` below the last bin (smaller
    samples are never loud, and their squares are below the rounding of the
    others'; non-finite samples are left out).  The binade comes from the
    exponent bits (a subnormal counts as zero)."""
    last = counts.size - 1
    unit = _unit(expo)
    if is_float64(row):  # (a constant when compiled: one loop per dtype)
        bits = row.view(np.int64)
        for p in range(start, stop):
            biased = (bits[p] >> 52) & 0x7FF
            r = max(0, expo - (biased - 1022))
            if r >= last or biased == 0x7FF:  # too small to be loud (zeros too), or not finite
                continue
            val = _scaled(row[p], expo, unit)
            counts[r] += 1
            energies[r] += val * val
    else:
        bits32 = row.view(np.int32)
        for p in range(start, stop):
            biased = (bits32[p] >> 23) & 0xFF
            r = max(0, expo - (biased - 126))
            if r >= last or biased == 0xFF:
                continue
            val = _scaled(row[p], expo, unit)
            counts[r] += 1
            energies[r] += val * val


# A loud sample added to the dots of its windows (one kernel's m taps, in
# ``_add_sample``) costs about this many windows' direct dots (m taps of
# each channel): the scatter's own loop costs about two taps an element, but
# each block with loud samples is also searched for them, and a lower price
# (3) left out more and measured slower on sparse and speech.
SCATTER_COST = 10
# The ``loud`` shift of a block none of whose samples is transformed: every
# finite non-zero scaled magnitude is at least 2**-1074.
EVERY_SAMPLE = 1074
# ... which only a block whose non-zero magnitudes span fewer binades than
# this takes (scaled, none is then below 2**-SPARSE_RANGE).
SPARSE_RANGE = 900
# Loud samples are those of scaled magnitude (largest in [0.5, 1)) at least
# 2**-s for some s up to this: below 2**-52 of the largest sample, leaving
# samples out cannot make the transform any more accurate.
MAX_LOUD_SHIFT = 52
# Adding the left-out samples to the dots rounds too (by at most m * C * eps
# of the window's norm, a quarter of the float64 budget): the transform of
# a block with loud samples is allowed the other three quarters.
LOUD_BOUND = 4.0 / 3.0
# The least flagging limit (a relative sum of squares, in the units of a
# block's largest sample) that loud samples may be left out for.  The quiet
# samples' windows are flagged against the limit of the quiet samples alone;
# where those lie some 2**500 below the block's largest, their squares, and
# so that limit, leave the float64 range of those units (subnormal or 0), and
# no quiet window would be flagged: every one would take the transform's
# dot, errors of up to 1 in its cosine.  Such a block keeps its samples.
LEAST_LIMIT = 2.0**-1000


@jit
def assign_slots(flagged_counts, nblocks, max_flagged, slots, chosen, counts, nwin, step, loud,
                 whole):
    """Blocks with at most ``max_flagged`` flagged windows get their dots
    from the plan: ``slots[b, g] = j`` (``chosen[b, j] = g``), numbered in
    order, first the ``counts[b]`` that are transformed, then the
    ``whole[b]`` whose samples are all scattered (``loud[b, g] ==
    EVERY_SAMPLE``, whatever their cost: ``plan_blocks`` chose them for
    costing less than a transform, and so less than direct dots); the
    others get all their dots directly, ``slots[b, g] = -1``
    (``max_flagged < 0``: every block).  Returns how many windows (of
    ``nwin`` per row) are transformed, and how many dots are left to the
    direct method (the flagged windows of the blocks transformed, the
    scattered samples' cost, every window of the others)."""
    transformed = 0
    direct = 0
    for b in range(flagged_counts.shape[0]):
        used = 0
        for g in range(nblocks):
            windows = min(step, nwin - g * step)
            if loud[b, g] == EVERY_SAMPLE and max_flagged >= 0:
                continue  # (numbered below)
            if flagged_counts[b, g] > max_flagged:
                slots[b, g] = -1
                direct += windows
            else:
                slots[b, g] = used
                chosen[b, used] = g
                used += 1
                transformed += windows
                direct += flagged_counts[b, g]
        counts[b] = used
        for g in range(nblocks):
            if loud[b, g] == EVERY_SAMPLE and max_flagged >= 0:
                slots[b, g] = used
                chosen[b, used] = g
                used += 1
                direct += flagged_counts[b, g]
        whole[b] = used - counts[b]
    return transformed, direct


@jit
def prepare_blocks(row, w0, end, chosen, step, blocks, exponents, loud, references):
    """Copy the blocks ``chosen`` of ``row`` (``(C, n)``; block ``g`` starts at
    ``w0 + g * step``, samples from ``end`` on are zeros) into ``blocks``
    (``(C, G, nfft)`` float64), each less ``references[g]`` and scaled by
    ``2**-exponents[g]`` (exact);
    NaN and inf become 0 (the norms mark their windows), and so do the loud
    samples of a block with ``loud[g]`` (see ``plan_blocks``)."""
    nchan = row.shape[0]
    nfft = blocks.shape[2]
    for j in range(chosen.size):
        g = chosen[j]
        start = w0 + g * step
        stop = min(end, start + nfft)
        expo = exponents[g]
        reference = references[g]
        unit = _unit(expo)
        threshold = math.ldexp(1.0, -loud[g]) if loud[g] else np.inf
        for c in range(nchan):
            dest = blocks[c, j]
            src = row[c, start:stop]
            for t in range(src.size):
                val = _scaled(src[t] - reference, expo, unit)
                dest[t] = val if abs(val) < threshold else 0.0
            for t in range(src.size, nfft):
                dest[t] = 0.0


@jit
def scatter_loud(row, w0, w1, chosen, step, khat, d, exponents, loud, references, dots):
    """Add to the dots ``dots[j, k, t]`` of each block ``chosen[j]`` with loud
    samples (``plan_blocks``; windows ``w0 .. w1-1``) their products with the
    kernels, in block units, sample by sample in order: window ``t`` holds
    sample ``p`` of the block as tap ``(p - t) / d``."""
    nchan = row.shape[0]
    nker, _, m = khat.shape
    flipped = khat[:, :, ::-1].copy()  # (see _add_sample)
    for j in range(chosen.size):
        g = chosen[j]
        if not loud[g]:
            continue
        start = w0 + g * step
        expo = exponents[g]
        reference = references[g]
        threshold = math.ldexp(1.0, -loud[g])
        last = min(step, w1 - start)  # this block's windows
        unit = _unit(expo)
        size = last + (m - 1) * d
        for p0 in range(0, size, 64):
            # most stretches of a block hold no loud sample: look for one first
            here = 0
            for c in range(nchan):
                here += _count_at_least(row[c, start + p0 : start + min(size, p0 + 64)],
                                        reference, expo, threshold)
            if here == 0:
                continue
            for p in range(p0, min(size, p0 + 64)):
                for c in range(nchan):
                    val = _scaled(row[c, start + p] - reference, expo, unit)
                    if threshold <= abs(val) < np.inf:
                        for k in range(nker):
                            _add_sample(dots[j, k], flipped[k, c], p, val, d, last)


@jit(from_python=False)
def _add_sample(dest, flipped, p, val, d, last):
    """``dest[t] += val * weights[(p - t) / d]`` for the windows ``0 <= t < last``
    holding sample ``p`` (at a tap), in the order of ``t``; ``flipped`` is
    ``weights[::-1]``, whose taps rise with ``t``.  Both sides are views
    indexed from 0 up: with indices that could be negative, Numba's
    wraparound keeps the loop from being vectorised (five times slower)."""
    m = flipped.size
    low = max(0, p - (m - 1) * d)  # the first window holding it, maybe at an earlier residue
    low += (p - low) % d
    high = min(last - 1, p)
    taps = flipped[m - 1 - (p - low) // d :]
    if d == 1:  # (a slice with a step is strided for Numba, and slower)
        windows = dest[low : high + 1]
        for u in range(windows.size):
            windows[u] += val * taps[u]
    else:
        strided = dest[low : high + 1 : d]
        for u in range(strided.size):
            strided[u] += val * taps[u]


@jit
def spectral_products(spectrum, spectra, product):
    """``product[g, k] = sum over c of spectrum[c, g] * spectra[k, c]``, the
    channels added in order: the transformed dots of every kernel with every
    block (NumPy's complex multiply runs one element at a time; this loop
    vectorises, on split real and imaginary parts)."""
    nchan, nblocks, nfreq = spectrum.shape
    nker = spectra.shape[0]
    for k in range(nker):
        for g in range(nblocks):
            dest = product[g, k]
            for f in range(nfreq):
                dest[f] = spectrum[0, g, f] * spectra[k, 0, f]
            for c in range(1, nchan):
                src = spectrum[c, g]
                weights = spectra[k, c]
                for f in range(nfreq):
                    dest[f] += src[f] * weights[f]


@jit
def spectral_product_in_place(spectrum, weights):
    """``spectrum *= weights``: :func:`spectral_products` of one channel and
    one kernel, into the spectrum itself (one array fewer in the caches)."""
    for f in range(spectrum.size):
        spectrum[f] = spectrum[f] * weights[f]


@jit
def block_limits(dots, noise, loud, quietest, chosen, c_block, c_output, peaks, limits):
    """``limits[j, k]``: the flagging limit of block ``g = chosen[j]`` with
    kernel ``k`` (see ``_cpu.sliding.fft_kernel``): the square of ``c_block *
    noise[g] + c_output * ||dots[j, k]||`` (``fft.error_bound``, divided by
    the error budget; every output of the inverse transform counts, the
    wrapped-around ones too), times ``LOUD_BOUND`` for a block with loud
    samples (``plan_blocks``); or 0 where no window of the block can be
    flagged, its ``quietest`` relative sum of squares lying above even the
    bound with ``||dots[j, k]|| <= peaks[k] * noise[g]`` (the spectral peak
    of kernel ``k``), which spares the outputs' pass."""
    for j in range(chosen.size):
        g = chosen[j]
        factor = LOUD_BOUND if loud[g] else 1.0
        for k in range(dots.shape[1]):
            most = factor * (c_block + c_output * peaks[k]) * noise[g]
            if quietest[g] >= most * most:
                limits[j, k] = 0.0
                continue
            src = dots[j, k]
            s0 = s1 = s2 = s3 = 0.0
            for t in range(0, src.size, 4):  # nfft is a power of two, at least 512
                s0 += src[t] * src[t]
                s1 += src[t + 1] * src[t + 1]
                s2 += src[t + 2] * src[t + 2]
                s3 += src[t + 3] * src[t + 3]
            bound = factor * (c_block * noise[g] + c_output * math.sqrt((s0 + s1) + (s2 + s3)))
            limits[j, k] = bound * bound if quietest[g] < bound * bound else 0.0


@jit
def flagged_runs(fft, w1, gap, min_flagged, runs):
    """After the transforms of a plan (``fft``: ``_cpu.sliding.fft_kernel``'s
    tuple, windows ``first .. w1-1``): the runs of windows flagged by any
    kernel in the blocks transformed, those closer than ``gap`` joined (a
    block planned direct ends a run), that hold at least ``min_flagged`` of
    them.  Writes ``(row, start, stop, count, loudness)`` of each to ``runs``
    (room for every run that long) and returns how many it wrote; the
    loudness is the binary exponent of the run's loudest flagged window's
    sum of squares (the same for the signal times any power of two, bar a
    constant)."""
    _, slots, exponents, relative, first, step, limits = fft
    written = np.int64(0)  # (typed constants: see _jit.py)
    for b in range(relative.shape[0]):
        start = last = np.int64(-1)
        count = loudness = np.int64(0)
        for g in range(-(-(w1 - first) // step) + 1):
            lo = first + g * step
            hi = min(w1, lo + step)
            slot = slots[b, g] if lo < w1 else -1
            limit = 0.0
            if slot >= 0:
                for k in range(limits.shape[2]):
                    limit = max(limit, limits[b, slot, k])
            # the loudest flagged window of the open run in this block (one
            # exponent for the block's, not one a window)
            most = 0.0
            for i0 in range(lo, hi if limit > 0.0 else lo, 64):
                i1 = min(hi, i0 + 64)
                # (most stretches hold none, or all: a vectorised count first)
                if count_flagged(relative[b, i0 - first : i1 - first], limit) == 0:
                    continue
                for i in range(i0, i1):
                    r = relative[b, i - first]
                    if not is_flagged(r, limit):
                        continue
                    if start >= 0 and i - last > gap:
                        if most > 0.0:
                            loudness = max(loudness, _level(most, exponents[b, g]))
                        written = _add_run(runs, written, b, start, last, count, loudness,
                                           min_flagged)
                        start = -1
                    if start < 0:
                        start = i
                        count = 0
                        loudness = _level(r, exponents[b, g])
                        most = 0.0
                    last = i
                    count += 1
                    most = max(most, r)
            if most > 0.0:
                loudness = max(loudness, _level(most, exponents[b, g]))
            if slot < 0 and start >= 0:  # a direct block, or past the last
                written = _add_run(runs, written, b, start, last, count, loudness, min_flagged)
                start = -1
    return written


@jit(from_python=False)
def _level(r, exponent):
    """The binary exponent of a relative sum of squares ``r`` in signal units
    (its block's are ``4**exponent``), bar a constant."""
    return math.frexp(r)[1] + 2 * exponent


@jit(from_python=False)
def _add_run(runs, written, b, start, last, count, loudness, min_flagged):
    if count >= min_flagged:
        runs[written, 0] = b
        runs[written, 1] = start
        runs[written, 2] = last + 1
        runs[written, 3] = count
        runs[written, 4] = loudness
        written += 1
    return written


def run_positions(runs, span, chunk):
    """Where ``gather_runs`` puts the first window of each run ``(row, start,
    stop, ...)`` of ``runs``, in order, and how many windows the row of runs
    holds: after the previous run's windows and the ``span`` that reach
    across into the next, at the next position congruent to ``start`` modulo
    ``chunk`` (the kernel's reach ``m * d``), so that each window's sum of
    squares is summed in the same order there as in the signal."""
    positions = np.empty(len(runs), dtype=np.int64)
    p = 0
    for r, (_, start, stop) in enumerate(runs[:, :3]):
        p += (start - p) % chunk
        positions[r] = p
        p += stop - start + span
    return positions, int(p - span)


@jit
def gather_runs(x, runs, positions, span, w0, sumsq, samples, run_sumsq):
    """Copy the windows of each run ``(row, start, stop, ...)`` of ``runs``
    into one row of their own, at ``positions`` (``run_positions``):
    ``samples[0, :, p : p + stop - start + span]`` is ``x[row, :, start : stop
    + span]``, and ``run_sumsq[0, p : p + stop - start]`` their windows' sums
    of squares (``sumsq``, from window ``w0``).  The samples between runs are
    zeros, and the windows that are no windows of the signal (they reach
    across two runs) get -1: never flagged, not counted, their cosines
    unused."""
    end = 0
    for r in range(runs.shape[0]):
        b, start, stop, p = runs[r, 0], runs[r, 1], runs[r, 2], positions[r]
        size = stop - start
        samples[0, :, end:p] = 0.0
        run_sumsq[0, max(0, end - span) : p] = -1.0
        for c in range(x.shape[1]):
            samples[0, c, p : p + size + span] = x[b, c, start : stop + span]
        run_sumsq[0, p : p + size] = sumsq[b, start - w0 : stop - w0]
        end = p + size + span


@jit
def scatter_runs(cosines, runs, positions, out, offset):
    """The inverse of ``gather_runs`` for the cosines of the runs' windows:
    ``out[row, :, offset + start : offset + stop]`` from ``cosines[0]``."""
    for r in range(runs.shape[0]):
        b, start, stop, p = runs[r, 0], runs[r, 1], runs[r, 2], positions[r]
        out[b, :, offset + start : offset + stop] = cosines[0, :, p : p + stop - start]
