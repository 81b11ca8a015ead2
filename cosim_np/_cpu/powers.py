"""``|s| ** P`` and ``ln|s|`` of float32 cosines, in loops that vectorise.

The sharpening of a float32 result takes a power per element, and glibc's
``pow`` is a scalar call (about 24 ns here; Numba has no vectorised one
without Intel's SVML).  For float32 ``s`` in ``[-1, 1]`` the power is taken
in float64 from the float32's own bits instead, branch-free:

* ``|s| = 2**e * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``, read from the
  exponent and mantissa fields (no division by powers of two, exact);
* ``ln m = 2 atanh(f)``, ``f = (m - 1) / (m + 1)``, ``|f| <= 0.1716``, by
  its series to ``f**19`` (truncation below ``3e-16``);
* ``y = P (e ln 2 + ln m)`` and ``exp(y) = 2**k exp(r)``, ``|r| <= ln(2)/2``,
  ``exp(r)`` by its Taylor polynomial to ``r**11`` (below ``7e-15``), ``2**k``
  written as the bits of a float64 (``k`` at least -200: smaller powers
  are 0 in float32).

The relative error of the power stays below ``1e-14 (1 + P (1 + |ln s|))``
(tested), far below a float32's rounding (``6e-8``): rounded to float32 it
is libm's power rounded, but for near-ties of a rounding boundary, one unit
then.  Zeros, subnormals, infinities and NaN (exponent fields 0 and 255)
are left to the scalar formula.  Nothing here validates.
"""

import math

import numpy as np

from ._jit import jit
from .sliding import sharpen_value

_LN2 = math.log(2.0)
_LN2_HI = 0.6931471803691238  # ln 2 in two parts: k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = math.sqrt(2.0)
_ROUNDING = 1.5 * 2.0**52
# exp(y) is taken as 2**k exp(r) with k at least -MIN_POWER: below, a float32
# result is 0 anyway
MIN_POWER = 200


@jit(from_python=False)
def _log_parts(bits):
    """``(e, m)`` of a positive normal float32 given as its int32 bits:
    ``x = 2**e m``, ``m`` in ``[sqrt(1/2), sqrt(2))``."""
    e = ((bits >> 23) & 0xFF) - 127
    m = 1.0 + (bits & 0x7FFFFF) * (1.0 / 8388608.0)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    return e, m


@jit(from_python=False)
def _log(bits):
    """``ln x`` of a positive normal float32 ``x`` given as its int32 bits."""
    e, m = _log_parts(bits)
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    f4 = f2 * f2
    f8 = f4 * f4
    # (Estrin's scheme: shorter chains of dependent operations than Horner's)
    series = (((1.0 + f2 * (1.0 / 3)) + f4 * (1.0 / 5 + f2 * (1.0 / 7)))
              + f8 * (((1.0 / 9 + f2 * (1.0 / 11)) + f4 * (1.0 / 13 + f2 * (1.0 / 15)))
                      + f8 * (1.0 / 17 + f2 * (1.0 / 19))))
    return e * _LN2_HI + (2.0 * f * series + e * _LN2_LO)


@jit(from_python=False)
def _exp_parts(y):
    """``(poly, k)`` with ``exp(y) = poly * 2**k`` for ``y <= 0``, ``k`` at
    least ``-MIN_POWER`` (below it a float32 result is 0 anyway)."""
    # k = y / ln 2 rounded to the nearest integer, by adding and taking away
    # 1.5 * 2**52 (exact below 2**51; math.floor would be a call per element)
    k = (y * (1.0 / _LN2) + _ROUNDING) - _ROUNDING
    below = k < -MIN_POWER
    k = -float(MIN_POWER) if below else k
    r = (y - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    poly = (((1.0 + r) + r2 * (1.0 / 2 + r * (1.0 / 6)))
            + r4 * ((1.0 / 24 + r * (1.0 / 120)) + r2 * (1.0 / 720 + r * (1.0 / 5040)))
            + r8 * ((1.0 / 40320 + r * (1.0 / 362880))
                    + r2 * (1.0 / 3628800 + r * (1.0 / 39916800))))
    # (through int32: AVX2 converts four doubles to int32 at once, not to int64)
    return 0.0 if below else poly, np.int64(np.int32(k))


@jit(from_python=False)
def _special(bits):
    """Zero, subnormal, infinite or NaN: left to the scalar formula."""
    field = (bits >> 23) & 0xFF
    return field == 0 or field == 0xFF


@jit
def sharpen_float32(values, bits, exponent, out, scales):
    """``out[t] = sign(s) |s| ** exponent`` (float64) for the float32
    ``values`` (``bits``: the same memory as int32; ``scales``: room for as
    many int64)."""
    if exponent == 1.0:
        for t in range(values.size):
            out[t] = values[t]
        return
    # (three loops: fused into one, LLVM vectorises none of it)
    for t in range(values.size):
        out[t] = exponent * _log(bits[t] & 0x7FFFFFFF)
    for t in range(values.size):
        poly, k = _exp_parts(out[t])
        out[t] = poly
        scales[t] = (k + 1023) << 52  # the bits of the float64 2**k
    powers_of_two = scales.view(np.float64)
    for t in range(values.size):
        out[t] = math.copysign(out[t] * powers_of_two[t], values[t])
    for t in range(values.size):
        if _special(bits[t]):
            out[t] = sharpen_value(np.float64(values[t]), exponent)


@jit
def log_float32(values, bits, out):
    """``out[t] = ln|s|`` (float64) for the float32 ``values``, ``-inf`` at 0."""
    for t in range(values.size):
        out[t] = _log(bits[t] & 0x7FFFFFFF)
    for t in range(values.size):
        if _special(bits[t]):
            out[t] = math.log(abs(np.float64(values[t])))
