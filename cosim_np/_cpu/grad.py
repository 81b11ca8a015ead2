"""Numba kernels of ``sliding_cosine_grad``: the gradients of ``L = sum(g *
out)`` with respect to the signal and the kernels, from per-window
coefficients the driver forms (``_cpu.drivers.sliding_cosine_grad``), which
also takes the two sums over windows and kernels as matrix products (BLAS,
float64) of a tile of windows.

With ``s`` a window's unsharpened cosine, ``n`` its norm (centered with
``center``), ``q`` the noise floor and ``gamma = g * d out / d s``::

    dL/dw = a * khat - c * w_c / n,      a = gamma / (n + q),  c = a * s
    dL/dk = (sum_i a_i w_c,i - (sum_i gamma_i s_i) khat) / ||k_c||

where ``w_c`` is the window (less its mean with ``center``; ``khat`` is then
the unit centered kernel, and both terms already have zero mean).  The rows
arrive padded: ``x`` is ``(B, C, L)`` float64 and window ``i`` is ``x[b, :,
i : i + (m-1)*d + 1 : d]`` for ``i < a.shape[2]``.  Every sum runs in a fixed
order in float64; nothing here validates.
"""


import math

import numpy as np

from .._core import scalars
from ._jit import jit

_slope = jit(scalars.sharpen_slope, from_python=False)

# Below this magnitude a sharpened float32 cosine may have lost digits to
# underflow (the smallest normal float32).
TINY = float(np.finfo(np.float32).tiny)


@jit
def window_means(x, m, d, means):
    """``means[b, i]``: the mean of window ``i`` over its channels and taps,
    as the first sample plus the mean of the differences from it (a
    constant window gets its value exactly; an offset costs no digits of
    the spread)."""
    nchan = x.shape[1]
    nwin = means.shape[1]
    count = m * nchan
    for b in range(x.shape[0]):
        dest = means[b]
        first = x[b, 0, :nwin]
        for i in range(nwin):
            dest[i] = 0.0
        for c in range(nchan):
            for j in range(m):
                taps = x[b, c, j * d : j * d + nwin]
                for i in range(nwin):
                    dest[i] += taps[i] - first[i]
        for i in range(nwin):
            dest[i] = first[i] + dest[i] / count
            if not math.isfinite(dest[i]):
                dest[i] = _halved_mean(x, b, i, m, d)


@jit(from_python=False)
def _halved_mean(x, b, i, m, d):
    """``window_means`` of window ``i`` of row ``b`` where the sum of its
    differences left the float64 range (a first sample near the largest
    float beside small ones or ones of the other sign): the samples halved
    (exact), each difference divided by the count before it is summed, the
    mean doubled back (a NaN or inf sample still gives NaN or inf)."""
    count = m * x.shape[1]
    first = 0.5 * x[b, 0, i]
    total = 0.0
    for c in range(x.shape[1]):
        for j in range(m):
            total += (0.5 * x[b, c, i + j * d] - first) / count
    return 2.0 * (first + total)


@jit
def scatter_windows(values, b, nrows, t0, m, d, grad):
    """``grad[b + r, ch, t0 + t + j d] += values[ch * m + j, r * count +
    t]`` for ``r < nrows`` (``count`` windows a row): each window's
    gradient added to its samples, tap by tap."""
    nchan = grad.shape[1]
    count = values.shape[1] // nrows
    for r in range(nrows):
        for ch in range(nchan):
            for j in range(m):
                part = grad[b + r, ch, t0 + j * d : t0 + j * d + count]
                row = values[ch * m + j, r * count : (r + 1) * count]
                for t in range(count):
                    part[t] += row[t]


@jit
def spread_term(x, weights, norms, means, m, d, grad):
    """``grad[b, ch, i + j d] -= weights[b, i] * (x[b, ch, i + j d] -
    means[b, i]) / norms[b, i]`` for every window ``i`` and tap ``j``:
    ``weights`` is ``c`` summed over the kernels; ``means`` of no columns:
    the windows as they are.  ``(x - mean) / n`` before the product: ``c``
    grows as ``1 / n``, so their product stays in range as the true
    gradient does.  A window of weight 0 adds nothing, though it hold NaN
    (the windows a stride leaves out) or have a norm of 0."""
    nchan = x.shape[1]
    nwin = weights.shape[1]
    less_means = means.shape[1] > 0
    for b in range(x.shape[0]):
        weight = weights[b]
        norm = norms[b]
        for ch in range(nchan):
            for j in range(m):
                taps = x[b, ch, j * d : j * d + nwin]
                part = grad[b, ch, j * d : j * d + nwin]
                if less_means:
                    mean = means[b]
                    for i in range(nwin):
                        part[i] -= (weight[i] * ((taps[i] - mean[i]) / norm[i])
                                    if weight[i] != 0.0 else 0.0)
                else:
                    for i in range(nwin):
                        part[i] -= weight[i] * (taps[i] / norm[i]) if weight[i] != 0.0 else 0.0


@jit
def coefficients(cosines, norms, g, exponent, floor, live_kernels, want_log, a, c, along):
    """Per window and kernel, from the unsharpened cosines ``s`` ``(K, T)``,
    the windows' norms ``(T,)`` and ``g = dL/d out``: ``a = gamma / (n +
    q)`` and ``c = a s`` (0 for windows of norm 0 and zero kernels, which
    give ``fill``), with ``gamma = g P |s|**(P-1)`` (at ``s = 0``: 0 for
    ``P < 1``, ``g`` for ``P = 1``).  Adds ``gamma s`` to ``along[k]``;
    returns the sums of ``g out ln|s|`` (with ``want_log``; 0 at ``s = 0``)
    and of ``c``.  NaN windows give NaN."""
    log_sum = 0.0
    c_sum = 0.0
    for k in range(cosines.shape[0]):
        s_k, g_k, a_k, c_k = cosines[k], g[k], a[k], c[k]
        along_k = 0.0
        for t in range(s_k.size):
            n = norms[t]
            if n == 0.0 or not live_kernels[k]:
                a_k[t] = 0.0
                c_k[t] = 0.0
                continue
            value = s_k[t]
            magnitude = abs(value)
            gamma = g_k[t] * _slope(value, exponent)
            a_t = gamma / (n + floor)
            a_k[t] = a_t
            c_k[t] = a_t * value
            c_sum += a_t * value
            along_k += gamma * value
            if want_log and magnitude != 0.0:
                out = math.copysign(magnitude**exponent, value) if exponent != 1.0 else value
                log_sum += g_k[t] * out * math.log(magnitude)
        along[k] += along_k
    return log_sum, c_sum


# ---------------------------------------------------------------------------
# A sharpness per kernel (the PyTorch layer's per-channel p), row by row of
# the unsharpened cosines ``s`` ``(B, K, L)``, in float64 whatever the dtype
# (float32 rows take their powers and logarithms from ``_cpu.powers``).


@jit
def log_row(row, logs):
    """``logs[t] = ln|row[t]|`` (``-inf`` at 0)."""
    for t in range(row.size):
        logs[t] = math.log(abs(np.float64(row[t])))


@jit
def sharpen_row_grad(s, out, g, power, logs, grad):
    """One row: ``grad = g P |s|**(P-1)`` with ``P = power`` (the
    conventions of ``coefficients`` at ``s = 0``), from the sharpened
    ``out`` where it holds the digits (``out / s = |s|**(P-1)``: a
    division, not a power); returns the sum of ``g out ln|s|`` (0 at ``s =
    0``) from ``logs`` (``ln|s|``), or 0 where ``logs`` is empty."""
    total = 0.0
    want_log = logs.size > 0
    for t in range(s.size):
        value = np.float64(s[t])
        magnitude = abs(value)
        sharpened = np.float64(out[t])
        if power == 1.0:
            slope = 1.0
        elif magnitude > 0.0:
            # (no digits to divide where |s|**P underflowed the dtype; a ratio
            # past the range, a subnormal s with P < 1, where the slope may not be)
            ratio = sharpened / value if abs(sharpened) >= TINY else math.inf
            slope = power * ratio if abs(ratio) != math.inf else _slope(value, power)
        else:
            slope = magnitude * 0.0  # (NaN stays NaN)
        weight = np.float64(g[t])
        grad[t] = weight * slope
        if want_log and magnitude != 0.0:
            total += weight * sharpened * logs[t]
    return total
