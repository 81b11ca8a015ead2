"""CUDA kernels (with ``device.py``, the only modules of cosim_np that
import ``numba.cuda``).

It is imported lazily (by :mod:`cosim_np._cuda`, itself imported only when a
device array or ``backend="cuda"`` is seen), so ``import cosim_np`` never
touches CUDA.  ``NUMBA_ENABLE_CUDASIM=1`` must be set before this import to run
everything in Numba's simulator.

Arrays arrive planned and checked; nothing here validates.  Conventions:

* A signal is a flat 1-D device array ``x`` and a geometry: row ``b``, channel
  ``c``, sample ``j`` is ``x[roff[b] + c*cs + j*ts]`` (any strides, no copy),
  ``0 <= j < n``.  Kernels index a *padded* coordinate ``q = j + pl``; samples
  outside the signal read as zeros, so no mode ever copies the signal.
* Outputs are written through offsets the same way (``out[ooff[b] + k*oks +
  i*ols]``), so results land directly in the caller's axis order.
* Everything accumulates in float64; no fastmath (NaN/inf must propagate).
  The compiler may fuse a multiply and an add (FMA), which only removes a
  rounding.

Windowed sums of squares: blocked scans that never subtract
-----------------------------------------------------------
As on the CPU (see ``cosim_np/_cpu/sliding.py``): the dilation-strided
sequence of each residue ``r`` (mod ``d``) is cut into blocks of ``m``
samples; block ``q`` starts at ``q*m*d + r``.  A window starting at element
``j`` of block ``q`` is the suffix of block ``q`` from ``j`` plus the prefix of
block ``q+1`` up to ``j-1``: each sum holds the window's own squares only, so
a loud burst or a NaN elsewhere cannot reach it.  One thread scans one block
(its suffix, then the next block's prefix): O(n) work, ``n/m`` parallel scans.

Centered sums of squares (``center=True``): the same scan of statistics
-----------------------------------------------------------------------
``M2 = ||w - mean(w)||**2`` (over all taps and channels of a window) comes
from the same blocks, as on the CPU (see ``cosim_np/_cpu/centered.py``): the
thread of block ``q`` keeps the ``(mean, M2)`` of its suffix by Welford's
update (stored for each window start), then those of block ``q+1``'s prefix,
and merges each window's two parts by Chan's formula ``M2 = M2_a + M2_b +
gap**2 * C * j * (m - j) / m``.  Every term is non-negative (never
``sum x**2 - n * mean**2``, which cancels under an offset), a constant window
gives exactly 0, a NaN or inf sample reaches only its windows (their centered
norm is NaN: ``inf - mean`` is undefined), and every operation is a
subtraction, an addition or a product by a constant, so a power-of-two
scaling of the signal scales the statistics exactly.  A position of a
multi-channel signal enters as its own mean and M2 over its channels
(Welford's update across them, so that equal samples give exactly their
value and 0).

Float64 sums (plain or centered) outside ``[2**-960, 2**960]`` are
recomputed for their window from its samples scaled by ``2**-E`` (``E`` from
its largest magnitude), by the same formula in the same order.
"""

import math

import numpy as np
from numba import cuda, njit, types

from .._core import scalars
from .._core import sliding as plans
from .._core.scalars import KERNEL_NONFINITE, KERNEL_ZERO

# The core's scalar formulas, compiled for the device from the CPU's source.
_sharpen = cuda.jit(device=True)(scalars.sharpen_value)
_out_of_range = cuda.jit(device=True)(scalars.out_of_range)
_better = cuda.jit(device=True)(scalars.better)
_slope = cuda.jit(device=True)(scalars.sharpen_slope)
# ... and the plans' unit kernels, compiled for the host (in memory: this
# backend has no cache fallback of its own, and it compiles once a process).
fill_unit_kernels = njit(nogil=True, error_model="numpy")(plans.fill_unit_kernels)


# ---------------------------------------------------------------------------
# sliding: loads, window sums of squares, norms, cosines


@cuda.jit(device=True)
def _least(a, b):
    """``min(a, b)``: the builtin does not type on this CUDA target."""
    return a if a < b else b


@cuda.jit(device=True)
def _load(x, base, ts, n, pl, q):
    """Sample ``q`` (padded coordinate) of the row at ``base``, as float64."""
    j = q - pl
    if j < 0 or j >= n:
        return 0.0
    return np.float64(x[base + j * ts])


@cuda.jit(device=True)
def _square(x, base, cs, nchan, ts, n, pl, q, expo):
    """Sum over channels of the squares of sample ``q`` times ``2**-expo``."""
    s = 0.0
    for c in range(nchan):
        val = _load(x, base + c * cs, ts, n, pl, q)
        if expo != 0:
            val = math.ldexp(val, -expo)
        s += val * val
    return s


@cuda.jit
def window_sumsq(x, roff, cs, nchan, ts, n, pl, m, d, ss):
    """``ss[b, i]`` = sum of squares of window ``i`` of row ``b`` (all
    channels): one thread per block ``(b, q, r)``, see the module docstring."""
    nwin = ss.shape[1]
    chunk = m * d
    per_row = ((nwin + chunk - 1) // chunk) * d
    for t in range(cuda.grid(1), ss.shape[0] * per_row, cuda.gridsize(1)):
        b = t // per_row
        s0 = (t - b * per_row) // d * chunk + (t - b * per_row) % d
        if s0 < nwin:
            base = roff[b]
            acc = 0.0
            for j in range(m - 1, -1, -1):  # suffix sums of block q
                p = s0 + j * d
                acc = _square(x, base, cs, nchan, ts, n, pl, p, 0) + acc
                if p < nwin:
                    ss[b, p] = acc
            acc = 0.0
            for j in range(1, m):  # prefix sums of block q + 1
                i = s0 + j * d
                if i < nwin:
                    acc = acc + _square(x, base, cs, nchan, ts, n, pl, s0 + chunk + (j - 1) * d, 0)
                    ss[b, i] = ss[b, i] + acc


@cuda.jit(device=True)
def _rescaled_sumsq(x, base, cs, nchan, ts, n, pl, m, d, i):
    """Window ``i``'s sum of squares after scaling by ``2**-E``, in the order
    of ``window_sumsq``; returns ``(E, s)``, ``s`` NaN/inf if the window is."""
    big = 0.0
    bad = 0.0
    for c in range(nchan):
        for j in range(m):
            mag = abs(_load(x, base + c * cs, ts, n, pl, i + j * d))
            if mag < math.inf:
                big = mag if mag > big else big
            else:
                bad += mag
    if bad != 0.0 or big == 0.0:
        return 0, bad  # NaN or inf; or 0.0 for a zero window
    expo = math.frexp(big)[1]
    chunk = m * d
    s0 = i - i % chunk + i % d
    first = (i - s0) // d
    acc = 0.0
    for j in range(m - 1, first - 1, -1):
        acc = _square(x, base, cs, nchan, ts, n, pl, s0 + j * d, expo) + acc
    if first == 0:
        return expo, acc
    head = 0.0
    for j in range(first):
        head = head + _square(x, base, cs, nchan, ts, n, pl, s0 + chunk + j * d, expo)
    return expo, acc + head


@cuda.jit(device=True)
def _scaled_load(x, base, ts, n, pl, q, expo):
    """Sample ``q`` times ``2**-expo``."""
    val = _load(x, base, ts, n, pl, q)
    return math.ldexp(val, -expo) if expo != 0 else val


@cuda.jit(device=True)
def _position(x, base, cs, nchan, ts, n, pl, q, expo, ref):
    """``(mean - ref, M2)`` over the channels of sample ``q`` times
    ``2**-expo``, by Welford's update channel by channel of the samples'
    distances from ``ref`` (equal samples give their distance and 0
    exactly; M2 is 0 for one channel), as ``_cpu.centered._positions``."""
    mean = _scaled_load(x, base, ts, n, pl, q, expo) - ref
    spread = 0.0
    for c in range(1, nchan):
        val = _scaled_load(x, base + c * cs, ts, n, pl, q, expo) - ref
        delta = val - mean
        mean = mean + delta / (c + 1)
        spread = spread + delta * (val - mean)
    return mean, spread


@cuda.jit(device=True)
def _welford(mean, m2, value, spread, count, nchan):
    """A part's ``(mean, M2)`` after its ``count``-th position (mean
    ``value``, own M2 ``spread`` over its ``nchan`` channels) joins it."""
    delta = value - mean
    mean = mean + delta * (1.0 / count)
    m2 = m2 + delta * delta * (nchan * (count - 1.0) / count)
    if nchan > 1:
        m2 = m2 + spread
    return mean, m2


@cuda.jit(device=True)
def _chan_weight(nchan, j, m):
    """Chan's weight ``C * j * (m - j) / m`` for a window of ``m - j``
    positions in one block and ``j`` in the next."""
    return np.float64(nchan * j * (m - j)) / m


@cuda.jit
def window_m2(x, roff, cs, nchan, ts, n, pl, m, d, means, m2):
    """``m2[b, i]`` = centered sum of squares of window ``i`` of row ``b``
    (all channels): one thread per block ``(b, q, r)`` as ``window_sumsq``.
    It stores its suffix statistics in ``means``/``m2`` (one per window
    start), then merges each with the next block's prefix.  Means are
    distances from a sample every window that takes them holds (channel 0
    of the block's last position for its suffixes, of the next block's
    first for its prefixes): a mean rounded at an offset's scale put that
    error into each gap, where the samples' difference is exact or rounded
    at the window's spread (see ``_cpu.centered``)."""
    nwin = m2.shape[1]
    chunk = m * d
    per_row = ((nwin + chunk - 1) // chunk) * d
    for t in range(cuda.grid(1), m2.shape[0] * per_row, cuda.gridsize(1)):
        b = t // per_row
        s0 = (t - b * per_row) // d * chunk + (t - b * per_row) % d
        if s0 < nwin:
            base = roff[b]
            suffix_ref = _load(x, base, ts, n, pl, s0 + (m - 1) * d)
            mean = 0.0
            acc = 0.0
            for j in range(m - 1, -1, -1):  # suffix statistics of block q
                p = s0 + j * d
                val, spread = _position(x, base, cs, nchan, ts, n, pl, p, 0, suffix_ref)
                mean, acc = _welford(mean, acc, val, spread, m - j, nchan)
                if p < nwin:
                    means[b, p] = mean
                    m2[b, p] = acc
            prefix_ref = _load(x, base, ts, n, pl, s0 + chunk) if m > 1 else 0.0
            apart = prefix_ref - suffix_ref
            mean = 0.0
            acc = 0.0
            for j in range(1, m):  # prefix statistics of block q + 1, merged
                i = s0 + j * d
                if i < nwin:
                    val, spread = _position(x, base, cs, nchan, ts, n, pl,
                                            s0 + chunk + (j - 1) * d, 0, prefix_ref)
                    mean, acc = _welford(mean, acc, val, spread, j, nchan)
                    gap = apart + (mean - means[b, i])
                    m2[b, i] = m2[b, i] + acc + gap * gap * _chan_weight(nchan, j, m)


@cuda.jit(device=True)
def _rescaled_m2(x, base, cs, nchan, ts, n, pl, m, d, i):
    """Window ``i``'s centered sum of squares after scaling by ``2**-E``, in
    the order of ``window_m2``; returns ``(E, s)``: ``s`` is 0 for a constant
    window, NaN for one holding NaN or inf (``inf - mean`` is undefined)."""
    big = 0.0
    bad = 0.0
    for c in range(nchan):
        for j in range(m):
            mag = abs(_load(x, base + c * cs, ts, n, pl, i + j * d))
            if mag < math.inf:
                big = mag if mag > big else big
            else:
                bad += mag
    if bad != 0.0:
        return 0, math.nan
    if big == 0.0:
        return 0, 0.0  # a zero window
    expo = math.frexp(big)[1]
    chunk = m * d
    s0 = i - i % chunk + i % d
    first = (i - s0) // d
    suffix_ref = _scaled_load(x, base, ts, n, pl, s0 + (m - 1) * d, expo)
    mean = 0.0
    acc = 0.0
    for j in range(m - 1, first - 1, -1):
        val, spread = _position(x, base, cs, nchan, ts, n, pl, s0 + j * d, expo, suffix_ref)
        mean, acc = _welford(mean, acc, val, spread, m - j, nchan)
    if first == 0:
        return expo, acc
    prefix_ref = _scaled_load(x, base, ts, n, pl, s0 + chunk, expo)
    head_mean = 0.0
    head = 0.0
    for j in range(first):
        val, spread = _position(x, base, cs, nchan, ts, n, pl, s0 + chunk + j * d, expo,
                                prefix_ref)
        head_mean, head = _welford(head_mean, head, val, spread, j + 1, nchan)
    gap = (prefix_ref - suffix_ref) + (head_mean - mean)
    return expo, acc + head + gap * gap * _chan_weight(nchan, first, m)


@cuda.jit(device=True)
def _rescaled(x, base, cs, nchan, ts, n, pl, m, d, i, center):
    """``_rescaled_m2`` with ``center``, else ``_rescaled_sumsq``."""
    if center:
        return _rescaled_m2(x, base, cs, nchan, ts, n, pl, m, d, i)
    return _rescaled_sumsq(x, base, cs, nchan, ts, n, pl, m, d, i)


@cuda.jit
def finish_norms(ss, x, roff, cs, nchan, ts, n, pl, m, d, wide, center, stride, out, ooff, ols):
    """``out[ooff[b] + (i/stride)*ols] = sqrt(ss[b, i])`` for every
    ``stride``-th window ``i``; float64 sums that left the safe range
    (``wide`` inputs only) are recomputed scaled by a power of two.  With
    ``center``, ``ss`` holds centered sums of squares, and a window holding
    NaN or inf has a NaN norm."""
    nwin = ss.shape[1]
    nout = (nwin + stride - 1) // stride
    for t in range(cuda.grid(1), ss.shape[0] * nout, cuda.gridsize(1)):
        b = t // nout
        i = (t - b * nout) * stride
        s = ss[b, i]
        if center and s == math.inf:
            s = math.nan  # an inf sample (an overflow of finite ones is rescaled below)
        val = math.sqrt(s)
        if wide and _out_of_range(s):
            expo, s = _rescaled(x, roff[b], cs, nchan, ts, n, pl, m, d, i, center)
            val = _ldexp(math.sqrt(s), expo)
        out[ooff[b] + (i // stride) * ols] = val


@cuda.jit(device=True)
def _ldexp(value, e):
    """``math.ldexp(value, e)``, and inf where that overflows: as on a GPU,
    where the simulator's ``math.ldexp`` (Python's) raises ``OverflowError``."""
    if value != 0.0 and value - value == 0.0 and math.frexp(value)[1] + e > 1024:
        return math.copysign(math.inf, value)
    return math.ldexp(value, e)


@cuda.jit(device=True)
def _clamp(val):
    if val > 1.0:
        return 1.0
    if val < -1.0:
        return -1.0
    return val


@cuda.jit(device=True)
def _window_cosine(x, base, cs, nchan, ts, n, pl, khat, k, d, i, dot, s, kst, wide, center,
                   exponent, floor, fill):
    """The sharpened cosine of window ``i`` from its dot with ``khat[k]`` and
    its sum of squares ``s`` (centered with ``center``: ``khat`` is then the
    unit centered kernel), as ``_finish_tile``/``_rescaled_cosine`` on the CPU."""
    if kst == KERNEL_NONFINITE:
        return math.nan
    expo = 0
    if wide and _out_of_range(s):  # zero, tiny, huge, or holding NaN/inf
        m = khat.shape[2]
        expo, s = _rescaled(x, base, cs, nchan, ts, n, pl, m, d, i, center)
        dot = 0.0
        for c in range(nchan):
            for j in range(m):
                val = math.ldexp(_load(x, base + c * cs, ts, n, pl, i + j * d), -expo)
                dot += val * khat[k, c, j]
    if not s < math.inf:
        return math.nan
    if s == 0.0 or kst == KERNEL_ZERO:
        return fill
    return _sharpen(_clamp(dot / (math.sqrt(s) + _ldexp(floor, -expo))), exponent)


@cuda.jit
def sliding_cosine(x, roff, cs, nchan, ts, n, pl, khat, kstate, d, taps, ss, wide, center,
                   exponent, floor, fill, stride, out, ooff, oks, ols):
    """``out[...b, k, i / stride]`` for the windows ``i`` of this block (one
    per thread) that are multiples of ``stride``, and every ``(b, k)`` of a
    grid-stride loop over ``blockIdx.y``; ``ss`` holds the windows' sums of
    squares, centered with ``center``.  (With a stride, the threads of the
    windows left out only load the block's samples.)

    Dynamic shared memory holds ``taps`` kernel taps and the signal tile
    they meet (``blockDim.x + (taps-1)*d`` samples, float64)."""
    width = cuda.blockDim.x
    tx = cuda.threadIdx.x
    nker = khat.shape[0]
    m = khat.shape[2]
    nwin = ss.shape[1]
    i0 = cuda.blockIdx.x * width
    i = i0 + tx
    tile = cuda.shared.array(0, types.float64)
    for bk in range(cuda.blockIdx.y, ss.shape[0] * nker, cuda.gridDim.y):
        b = bk // nker
        k = bk - b * nker
        base = roff[b]
        dot = 0.0
        for c in range(nchan):
            for j0 in range(0, m, taps):
                count = _least(taps, m - j0)
                cuda.syncthreads()  # the previous tile is used up
                for u in range(tx, count, width):
                    tile[u] = khat[k, c, j0 + u]
                for u in range(tx, width + (count - 1) * d, width):
                    tile[taps + u] = _load(x, base + c * cs, ts, n, pl, i0 + j0 * d + u)
                cuda.syncthreads()
                for j in range(count):
                    dot += tile[taps + tx + j * d] * tile[j]
        if i < nwin and i % stride == 0:
            out[ooff[b] + k * oks + (i // stride) * ols] = _window_cosine(
                x, base, cs, nchan, ts, n, pl, khat, k, d, i, dot, ss[b, i], kstate[k],
                wide, center, exponent, floor, fill)


# ---------------------------------------------------------------------------
# sliding: gradients (``sliding_cosine_grad``; the formulas of ``_cpu.grad``).
# The windows' cosines and norms come from the kernels above; each gradient
# is gathered by its own thread (no atomics: the same bits on every run),
# and the sums over windows are taken in chunks whose partial sums the host
# adds in a fixed order.


@cuda.jit
def window_means(x, roff, cs, nchan, ts, n, pl, m, d, means):
    """``means[b, i]``: the mean of window ``i`` over its channels and taps,
    as its first sample plus the mean of the differences from it (a constant
    window gets its value exactly), as ``_cpu.grad.window_means``."""
    nwin = means.shape[1]
    for t in range(cuda.grid(1), means.shape[0] * nwin, cuda.gridsize(1)):
        b = t // nwin
        i = t - b * nwin
        base = roff[b]
        first = _load(x, base, ts, n, pl, i)
        total = 0.0
        for c in range(nchan):
            for j in range(m):
                total += _load(x, base + c * cs, ts, n, pl, i + j * d) - first
        mean = first + total / (m * nchan)
        if not math.isfinite(mean):  # (the differences' sum overflowed: as _cpu.grad._halved_mean)
            first *= 0.5
            total = 0.0
            for c in range(nchan):
                for j in range(m):
                    total += (0.5 * _load(x, base + c * cs, ts, n, pl, i + j * d)
                              - first) / (m * nchan)
            mean = 2.0 * (first + total)
        means[b, i] = mean


@cuda.jit
def grad_coefficients(s, norms, g, goff, gks, gls, stride, kstate, exponent, floor, want_log,
                      a, along, spread, logs):
    """One thread per window ``i`` of row ``b``, for every kernel ``k``: from
    the unsharpened cosine ``s[b, k, i]``, the norm ``norms[b, i]`` and
    ``dL/d out`` (``g[goff[b] + k*gks + (i/stride)*gls]`` for the windows
    kept, else 0): ``a[b, k, i] = gamma / (n + q)`` and ``along[k, b, i] =
    gamma s`` (both 0 for a window of norm 0 or a zero kernel), ``spread[b,
    i]`` the sum over kernels of ``a s`` and ``logs[b, i]`` that of ``g out
    ln|s|`` (with ``want_log``; 0 at ``s = 0``); ``gamma = g P |s|**(P-1)``
    with the conventions of ``_cpu.grad.coefficients``."""
    nker = s.shape[1]
    nwin = s.shape[2]
    for t in range(cuda.grid(1), s.shape[0] * nwin, cuda.gridsize(1)):
        b = t // nwin
        i = t - b * nwin
        norm = norms[b, i]
        kept = i % stride == 0
        c_total = 0.0
        log_total = 0.0
        for k in range(nker):
            if norm == 0.0 or kstate[k] == KERNEL_ZERO or not kept:
                # (a window left out passes on nothing, though it hold NaN)
                a[b, k, i] = 0.0
                along[k, b, i] = 0.0
                continue
            weight = np.float64(g[goff[b] + k * gks + (i // stride) * gls])
            value = s[b, k, i]
            magnitude = abs(value)
            gamma = weight * _slope(value, exponent)
            coefficient = gamma / (norm + floor)
            a[b, k, i] = coefficient
            along[k, b, i] = gamma * value
            c_total += coefficient * value
            if want_log and magnitude != 0.0:
                out = value if exponent == 1.0 else math.copysign(magnitude**exponent, value)
                log_total += weight * out * math.log(magnitude)
        spread[b, i] = c_total
        logs[b, i] = log_total


@cuda.jit
def grad_signal(x, roff, cs, nchan, ts, n, pl, khat, d, a, spread, norms, means, center, out,
                ooff, ocs, ols):
    """``out[ooff[b] + c*ocs + p*ols] = dL/dx[b, c, p]``, one thread per
    sample: over the windows ``i = p + pl - j d`` that hold it (tap ``j``),
    ``sum_k a[b, k, i] khat[k, c, j] - spread[b, i] (x - mean_i) / n_i``
    (``mean_i`` 0 without ``center``; a window of norm 0 has ``spread`` 0;
    one of ``spread`` 0 adds nothing, though it hold NaN: those a stride
    leaves out)."""
    nker = khat.shape[0]
    m = khat.shape[2]
    nwin = a.shape[2]
    for t in range(cuda.grid(1), a.shape[0] * nchan * n, cuda.gridsize(1)):
        b = t // (nchan * n)
        r = t - b * nchan * n
        c = r // n
        p = r - c * n
        val = np.float64(x[roff[b] + c * cs + p * ts])
        total = 0.0
        for j in range(m):
            i = p + pl - j * d
            if i < 0 or i >= nwin:
                continue
            for k in range(nker):
                total += a[b, k, i] * khat[k, c, j]
            weight = spread[b, i]
            if weight != 0.0:
                norm = norms[b, i]
                mean = means[b, i] if center else 0.0
                total -= weight * ((val - mean) / (norm if norm != 0.0 else 1.0))
        out[ooff[b] + c * ocs + p * ols] = total


@cuda.jit
def grad_kernel_sums(x, roff, cs, nchan, ts, n, pl, d, a, means, center, chunk, partials):
    """``partials[k, c, j, u]``: the sum over the windows ``(b, i)`` of chunk
    ``u`` (of ``chunk`` windows, rows one after another) of ``a[b, k, i]
    (x[b, c, i + j d] - mean_i)`` (nothing where ``a`` is 0, NaN or not:
    the windows a stride leaves out)."""
    nker = a.shape[1]
    nwin = a.shape[2]
    m = partials.shape[2]
    nchunks = partials.shape[3]
    windows = a.shape[0] * nwin
    for t in range(cuda.grid(1), nker * nchan * m * nchunks, cuda.gridsize(1)):
        u = t % nchunks
        rest = t // nchunks
        j = rest % m
        rest = rest // m
        c = rest % nchan
        k = rest // nchan
        total = 0.0
        for w in range(u * chunk, _least(windows, (u + 1) * chunk)):
            b = w // nwin
            i = w - b * nwin
            coefficient = a[b, k, i]
            if coefficient != 0.0:
                mean = means[b, i] if center else 0.0
                total += coefficient * (_load(x, roff[b] + c * cs, ts, n, pl, i + j * d) - mean)
        partials[k, c, j, u] = total


@cuda.jit
def chunk_sums(values, chunk, partials):
    """``partials[r, u]``: the sum of ``values[r, u*chunk : (u+1)*chunk]``."""
    size = values.shape[1]
    nchunks = partials.shape[1]
    for t in range(cuda.grid(1), values.shape[0] * nchunks, cuda.gridsize(1)):
        r = t // nchunks
        u = t - r * nchunks
        total = 0.0
        for w in range(u * chunk, _least(size, (u + 1) * chunk)):
            total += values[r, w]
        partials[r, u] = total


# ---------------------------------------------------------------------------
# elementwise and broadcast reductions (any strides, through offsets)


@cuda.jit(device=True)
def _offset(o, base, shape, strides):
    """Element offset of C-order index ``o`` of an array ``(shape, strides)``."""
    off = base
    for dim in range(shape.size - 1, -1, -1):
        q = o // shape[dim]
        off += (o - q * shape[dim]) * strides[dim]
        o = q
    return off


@cuda.jit
def sharpen(x, base, shape, strides, exponent, out):
    for o in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[o] = _sharpen(np.float64(x[_offset(o, base, shape, strides)]), exponent)


@cuda.jit(device=True)
def _vector_scale(x, base, offsets):
    """Largest magnitude of a vector; NaN if it holds a NaN (as ``np.max``)."""
    big = 0.0
    for r in range(offsets.size):
        mag = abs(np.float64(x[base + offsets[r]]))
        if mag != mag:
            return math.nan
        if mag > big:
            big = mag
    return big


@cuda.jit
def cosine_pairs(a, abase, astr, aoff, b, bbase, bstr, boff, shape, eps, fill, out):
    """``out[o]``: cosine of the vectors of ``a`` and ``b`` at kept index ``o``
    (offsets by ``shape``/``astr``/``bstr``, reduced elements at ``aoff``/``boff``;
    broadcast axes have stride 0).  Each vector is divided by its largest
    magnitude before anything is squared, as on the CPU."""
    for o in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        pa = _offset(o, abase, shape, astr)
        pb = _offset(o, bbase, shape, bstr)
        sa = _vector_scale(a, pa, aoff)
        sb = _vector_scale(b, pb, boff)
        val = 0.0 if eps > 0.0 else fill
        if not (sa < math.inf and sb < math.inf):
            val = math.nan
        elif sa > 0.0 and sb > 0.0:
            na = 0.0
            nb = 0.0
            dot = 0.0
            for r in range(aoff.size):
                u = np.float64(a[pa + aoff[r]]) / sa
                w = np.float64(b[pb + boff[r]]) / sb
                na += u * u
                nb += w * w
                dot += u * w
            val = dot / (math.sqrt(na) * math.sqrt(nb))
            if eps > 0.0:
                val *= _least(sa * math.sqrt(na) / eps, 1.0) * _least(sb * math.sqrt(nb) / eps, 1.0)
            val = _clamp(val)
        out[o] = val


# ---------------------------------------------------------------------------
# row matrices: statistics, tiled products, fused top-k


@cuda.jit
def row_stats(x, scale, hnorm):
    """``scale[i] = max|x[i]|`` (NaN for a NaN row) and ``hnorm[i] =
    ||x[i] / scale[i]||`` (0 for zero, NaN and inf rows), as on the CPU."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        big = 0.0
        nan = False
        for j in range(x.shape[1]):
            mag = abs(np.float64(x[i, j]))
            nan |= mag != mag
            if mag > big:
                big = mag
        hnorm[i] = 0.0
        scale[i] = math.nan if nan else big
        if not nan and big > 0.0 and big < math.inf:
            s = 0.0
            for j in range(x.shape[1]):
                val = np.float64(x[i, j]) / big
                s += val * val
            hnorm[i] = math.sqrt(s)


@cuda.jit(device=True)
def _unit(x, scale, hnorm, i, j, single):
    """Component ``j`` of row ``i`` divided by the row's norm, rounded to the
    compute dtype (float32 when ``single``); 0 outside the matrix."""
    if i >= x.shape[0] or j >= x.shape[1] or not 0.0 < scale[i] < math.inf:
        return 0.0  # padding, or a flagged row (its scores are patched)
    val = (np.float64(x[i, j]) / scale[i]) * (1.0 / hnorm[i])
    return np.float64(np.float32(val)) if single else val


@cuda.jit(device=True)
def _tile_dot(a, sa, ha, b, sb, hb, row0, col0, single, tile):
    """Dot of row ``row0 + threadIdx.y`` of ``a`` with row ``col0 +
    threadIdx.x`` of ``b`` (both normalised), through two ``T x T`` shared
    tiles of pitch ``T + 1`` (no bank conflicts reading down a column); uses
    ``tile[:2*T*(T+1)]``."""
    width = cuda.blockDim.x
    pitch = width + 1
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    area = width * pitch
    acc = 0.0
    for k0 in range(0, a.shape[1], width):
        cuda.syncthreads()
        tile[ty * pitch + tx] = _unit(a, sa, ha, row0 + ty, k0 + tx, single)
        tile[area + ty * pitch + tx] = _unit(b, sb, hb, col0 + ty, k0 + tx, single)
        cuda.syncthreads()
        for kk in range(_least(width, a.shape[1] - k0)):
            acc += tile[ty * pitch + kk] * tile[area + tx * pitch + kk]
    return acc


@cuda.jit(device=True)
def _score(acc, sa, sb, i, j, same, fill, single):
    """A similarity as the CPU reports it: rounded to the compute dtype and
    clipped; NaN/inf rows give NaN, zero rows ``fill``, the diagonal of a
    matrix with itself 1."""
    if not (sa[i] < math.inf and sb[j] < math.inf):
        return math.nan
    if sa[i] == 0.0 or sb[j] == 0.0:
        return fill
    if same and i == j:
        return 1.0
    return _clamp(np.float64(np.float32(acc)) if single else acc)


@cuda.jit
def pairwise(a, sa, ha, b, sb, hb, same, fill, single, out):
    """``out[i, j]``: one thread per entry, ``T x T`` blocks (row blocks in a
    grid-stride loop over ``blockIdx.y``)."""
    width = cuda.blockDim.x
    col0 = cuda.blockIdx.x * width
    tile = cuda.shared.array(0, types.float64)
    for row0 in range(cuda.blockIdx.y * width, out.shape[0], cuda.gridDim.y * width):
        acc = _tile_dot(a, sa, ha, b, sb, hb, row0, col0, single, tile)
        i = row0 + cuda.threadIdx.y
        j = col0 + cuda.threadIdx.x
        if i < out.shape[0] and j < out.shape[1]:
            out[i, j] = _score(acc, sa, sb, i, j, same, fill, single)


@cuda.jit(device=True)
def _insert(value, j, scores, index):
    """Put ``(value, j)`` into the sorted list ``scores``/``index`` if it
    ranks before its last entry (higher first, NaN last, ties to lower j)."""
    k = scores.size
    if not _better(value, j, scores[k - 1], index[k - 1]):
        return
    p = k - 1
    while p > 0 and _better(value, j, scores[p - 1], index[p - 1]):
        scores[p] = scores[p - 1]
        index[p] = index[p - 1]
        p -= 1
    scores[p] = value
    index[p] = j


@cuda.jit
def topk_tiles(a, sa, ha, b, sb, hb, same, exclude_self, fill, single, span, best_s, best_i):
    """Partial top-k lists: block ``(x, y)`` scans rows ``x*T ...`` against
    columns ``[y*span, (y+1)*span)`` tile by tile; after each score tile,
    thread ``(0, r)`` folds row ``r``'s scores, in column order, into
    ``best_s[y, row]``/``best_i[y, row]`` (initialised to NaN and M)."""
    width = cuda.blockDim.x
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.x * width
    part = cuda.blockIdx.y
    stop = _least(b.shape[0], (part + 1) * span)
    tile = cuda.shared.array(0, types.float64)
    scores = tile[2 * width * (width + 1):]
    for col0 in range(part * span, stop, width):
        cuda.syncthreads()  # the previous score tile is merged
        acc = _tile_dot(a, sa, ha, b, sb, hb, row0, col0, single, tile)
        i = row0 + ty
        j = col0 + tx
        if i < a.shape[0] and j < stop:
            scores[ty * width + tx] = _score(acc, sa, sb, i, j, same, fill, single)
        cuda.syncthreads()
        row = row0 + tx
        if ty == 0 and row < a.shape[0]:
            for c in range(_least(width, stop - col0)):
                if not (exclude_self and col0 + c == row):
                    _insert(scores[tx * width + c], col0 + c, best_s[part, row], best_i[part, row])


@cuda.jit
def topk_merge(best_s, best_i, sentinel, scores, index):
    """Merge the partial lists of each row (partitions in column order, so
    ties still go to the lower index) into ``scores``/``index``."""
    for row in range(cuda.grid(1), scores.shape[0], cuda.gridsize(1)):
        final_s = best_s[0, row]
        final_i = best_i[0, row]
        for part in range(1, best_s.shape[0]):
            for t in range(best_s.shape[2]):
                if best_i[part, row, t] < sentinel:
                    _insert(best_s[part, row, t], best_i[part, row, t], final_s, final_i)
        for t in range(scores.shape[1]):
            scores[row, t] = final_s[t]
            index[row, t] = final_i[t]


@cuda.jit
def fill(flat, value):
    for o in range(cuda.grid(1), flat.size, cuda.gridsize(1)):
        flat[o] = value


@cuda.jit
def times_power_of_two(flat, shift):
    """``flat *= 2**shift`` (exact; past the dtype's range inf, as the true
    value is)."""
    for o in range(cuda.grid(1), flat.size, cuda.gridsize(1)):
        flat[o] = _ldexp(np.float64(flat[o]), shift)


# ---------------------------------------------------------------------------
# several sliding axes (images, volumes): one thread per output

# Sliding axes a kernel of several axes takes at most (its per-axis indices
# are local arrays of this length).
MAX_AXES = 8


@cuda.jit(device=True)
def _product(values, r):
    """The product of ``values[:r]``."""
    total = 1
    for a in range(r):
        total *= values[a]
    return total


@cuda.jit(device=True)
def _spatial_sample(x, base, c, cs, u, taps_per_channel, starts, d, sizes, strides, m, r):
    """Tap ``u`` (of channel ``c``) of the window whose first sample along
    axis ``a`` is ``starts[a]`` (padded coordinates less the padding: may be
    negative), taps ``d[a]`` apart; 0 outside the signal."""
    rem = u - c * taps_per_channel
    offset = base + c * cs
    for a in range(r - 1, -1, -1):
        j = rem % m[a]
        rem //= m[a]
        p = starts[a] + j * d[a]
        if p < 0 or p >= sizes[a]:
            return 0.0
        offset += p * strides[a]
    return np.float64(x[offset])


@cuda.jit
def spatial_windows(x, roff, cs, nchan, strides, sizes, pads, m, d, stride, nout, khat, kstate,
                    center, norms, exponent, floor, fill, out, ooff, oks, ostrides):
    """One thread per output: window ``(b, i_1, ..., i_r)``'s norm
    (``norms``) or its (sharpened) cosine with kernel ``k``, from its own
    samples only, scaled by the power of two of its largest magnitude (no
    square leaves the range; a power-of-two scaling of the signal changes
    no bit): a pass for the largest magnitude and NaN/inf, then (centered:
    a pass for the mean) the sum of squares (M2) and the dot.  ``out[ooff[b]
    + k*oks + sum_a i_a*ostrides[a]]``."""
    r = sizes.shape[0]
    count = _product(nout, r)
    taps = _product(m, r)
    nker = 1 if norms else khat.shape[0]
    total = roff.shape[0] * nker * count
    starts = cuda.local.array(MAX_AXES, types.int64)
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        rest = t
        where = 0
        for a in range(r - 1, -1, -1):
            i = rest % nout[a]
            rest //= nout[a]
            starts[a] = i * stride[a] - pads[a]
            where += i * ostrides[a]
        k = rest % nker
        b = rest // nker
        base = roff[b]
        size = nchan * taps
        largest = 0.0
        has_nan = False
        has_inf = False
        for u in range(size):
            c = u // taps
            value = _spatial_sample(x, base, c, cs, u, taps, starts, d, sizes, strides, m, r)
            if value != value:
                has_nan = True
            elif abs(value) == math.inf:
                has_inf = True
            elif abs(value) > largest:
                largest = abs(value)
        dest = ooff[b] + k * oks + where
        if has_nan or has_inf:
            out[dest] = math.inf if (norms and not center and not has_nan) else math.nan
            continue
        if largest == 0.0:  # (a NaN kernel's cosine is NaN, a zero window's too)
            out[dest] = 0.0 if norms else math.nan if kstate[k] == KERNEL_NONFINITE else fill
            continue
        e = math.frexp(largest)[1]
        mean = 0.0
        if center:  # the first sample plus the mean of the differences from it: a
            # constant window gets its value exactly, and M2 exactly 0
            first = math.ldexp(_spatial_sample(x, base, 0, cs, 0, taps, starts, d, sizes,
                                               strides, m, r), -e)
            for u in range(size):
                c = u // taps
                mean += math.ldexp(_spatial_sample(x, base, c, cs, u, taps, starts, d,
                                                   sizes, strides, m, r), -e) - first
            mean = first + mean / size
        s = 0.0
        dot = 0.0
        for u in range(size):
            c = u // taps
            value = math.ldexp(_spatial_sample(x, base, c, cs, u, taps, starts, d, sizes,
                                               strides, m, r), -e)
            deviation = value - mean
            s += deviation * deviation
            if not norms:
                dot += value * khat[k, u]
        if norms:
            out[dest] = _ldexp(math.sqrt(s), e)
            continue
        state = kstate[k]
        if state == KERNEL_NONFINITE:
            out[dest] = math.nan
        elif s == 0.0 or state == KERNEL_ZERO:
            out[dest] = fill
        else:
            out[dest] = _sharpen(_clamp(dot / (math.sqrt(s) + _ldexp(floor, -e))), exponent)


@cuda.jit(device=True)
def _window_starts(w, nout, stride, pads, starts, r):
    """``starts[a]``: the first sample along axis ``a`` (less its padding) of
    window ``w``, a C-order index over the windows ``nout``."""
    for a in range(r - 1, -1, -1):
        i = w % nout[a]
        w //= nout[a]
        starts[a] = i * stride[a] - pads[a]


@cuda.jit
def spatial_means(x, roff, cs, nchan, strides, sizes, pads, m, d, stride, nout, means):
    """``means[b, w]``: the mean of window ``w`` (C order over ``nout``) of
    row ``b`` over its channels and taps, as its first sample plus the mean
    of the differences from it (as ``window_means``)."""
    r = sizes.shape[0]
    taps = _product(m, r)
    count = means.shape[1]
    starts = cuda.local.array(MAX_AXES, types.int64)
    for t in range(cuda.grid(1), means.shape[0] * count, cuda.gridsize(1)):
        b = t // count
        _window_starts(t - b * count, nout, stride, pads, starts, r)
        base = roff[b]
        first = _spatial_sample(x, base, 0, cs, 0, taps, starts, d, sizes, strides, m, r)
        total = 0.0
        for u in range(nchan * taps):
            total += _spatial_sample(x, base, u // taps, cs, u, taps, starts, d, sizes, strides,
                                     m, r) - first
        mean = first + total / (nchan * taps)
        if not math.isfinite(mean):  # (as window_means)
            first *= 0.5
            total = 0.0
            for u in range(nchan * taps):
                total += (0.5 * _spatial_sample(x, base, u // taps, cs, u, taps, starts, d, sizes,
                                                strides, m, r) - first) / (nchan * taps)
            mean = 2.0 * (first + total)
        means[b, t - b * count] = mean


@cuda.jit
def spatial_grad_signal(x, roff, cs, nchan, strides, sizes, pads, m, d, stride, nout, khat, a,
                        spread, norms, means, center, out, ooff, ocs, ostrides):
    """``dL/dx`` over several axes, one thread per sample ``(b, c, p_1, ...,
    p_r)``, written to ``out[ooff[b] + c*ocs + sum_a p_a*ostrides[a]]``: over
    the windows ``w`` that hold it at tap ``u`` (``p_a + pads[a] - j_a d[a]``
    a multiple of ``stride[a]``, window ``i_a`` of it below ``nout[a]``),
    ``sum_k a[b, k, w] khat[k, c*T + u] - spread[b, w] (x - mean_w) / n_w``,
    as ``grad_signal`` along one axis."""
    r = sizes.shape[0]
    samples = _product(sizes, r)
    taps = _product(m, r)
    nker = khat.shape[0]
    position = cuda.local.array(MAX_AXES, types.int64)
    for t in range(cuda.grid(1), roff.shape[0] * nchan * samples, cuda.gridsize(1)):
        rest = t
        source = 0
        dest = 0
        for ax in range(r - 1, -1, -1):
            p = rest % sizes[ax]
            rest //= sizes[ax]
            position[ax] = p
            source += p * strides[ax]
            dest += p * ostrides[ax]
        c = rest % nchan
        b = rest // nchan
        val = np.float64(x[roff[b] + c * cs + source])
        total = 0.0
        for u in range(taps):
            rem = u
            w = 0
            step = 1
            inside = True
            for ax in range(r - 1, -1, -1):
                j = rem % m[ax]
                rem //= m[ax]
                q = position[ax] + pads[ax] - j * d[ax]
                if q < 0 or q % stride[ax] != 0 or q // stride[ax] >= nout[ax]:
                    inside = False
                    break
                w += (q // stride[ax]) * step
                step *= nout[ax]
            if not inside:
                continue
            for k in range(nker):
                total += a[b, k, w] * khat[k, c * taps + u]
            norm = norms[b, w]
            mean = means[b, w] if center else 0.0
            total -= spread[b, w] * ((val - mean) / (norm if norm != 0.0 else 1.0))
        out[ooff[b] + c * ocs + dest] = total


@cuda.jit
def spatial_grad_kernel_sums(x, roff, cs, nchan, strides, sizes, pads, m, d, stride, nout, a,
                             means, center, chunk, partials):
    """``partials[k, u, v]``: the sum over the windows ``(b, w)`` of chunk
    ``v`` (of ``chunk`` windows, rows one after another) of ``a[b, k, w]
    (x_u(b, w) - mean_w)``, ``x_u`` the window's sample at tap ``u`` (over
    channels and taps, C order), as ``grad_kernel_sums`` along one axis."""
    r = sizes.shape[0]
    nker = a.shape[1]
    count = a.shape[2]
    size = partials.shape[1]
    nchunks = partials.shape[2]
    taps = size // nchan
    windows = a.shape[0] * count
    starts = cuda.local.array(MAX_AXES, types.int64)
    for t in range(cuda.grid(1), nker * size * nchunks, cuda.gridsize(1)):
        v = t % nchunks
        rest = t // nchunks
        u = rest % size
        k = rest // size
        c = u // taps
        total = 0.0
        for w in range(v * chunk, _least(windows, (v + 1) * chunk)):
            b = w // count
            i = w - b * count
            _window_starts(i, nout, stride, pads, starts, r)
            mean = means[b, i] if center else 0.0
            total += a[b, k, i] * (_spatial_sample(x, roff[b], c, cs, u, taps, starts, d, sizes,
                                                   strides, m, r) - mean)
        partials[k, u, v] = total
