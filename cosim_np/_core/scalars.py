"""Scalar formulas and constants that both backends compile from this one
source: the CPU with ``numba.njit`` (``_cpu``), the GPU as CUDA device
functions (``_cuda``).  Plain Python on floats; nothing here imports Numba.
"""

import math

# Classes of a kernel after normalisation (``_core.sliding.unit_kernels``).
KERNEL_NORMAL = 0
KERNEL_ZERO = 1
KERNEL_NONFINITE = 2

# |x| in [SAFE_MIN, SAFE_MAX] (or 0) has a normal float64 square, and a sum of
# fewer than 2**60 such squares stays finite.
SAFE_MIN = 2.0**-480
SAFE_MAX = 2.0**480
SUMSQ_LO = 2.0**-960
SUMSQ_HI = 2.0**960


def sharpen_value(s, exponent):
    """``sign(s) * |s| ** exponent`` for one float64; 0 and NaN pass through.

    A GPU's ``pow`` is not correctly rounded (CUDA bounds its error by 2
    units in the last place), so a power of ``|s| <= 1`` is held at 1 at most."""
    if exponent == 1.0 or s == 0.0 or s != s:
        return s
    magnitude = abs(s)
    power = magnitude**exponent
    if power > 1.0 and magnitude <= 1.0:
        power = 1.0
    return math.copysign(power, s)


def sharpen_slope(s, exponent):
    """``d/ds sign(s) |s| ** exponent = exponent |s| ** (exponent - 1)``, with
    the gradients' convention at ``s = 0``: 1 for ``exponent == 1``, else 0
    (where it is 0 or infinite); NaN stays NaN."""
    magnitude = abs(s)
    if exponent == 1.0:
        return 1.0
    if magnitude > 0.0:
        power = magnitude ** (exponent - 1.0)
        if power == math.inf:  # (a subnormal |s|, P < 1: the slope may be in range, 0 at P = 0)
            return exponent * magnitude**exponent / magnitude
        return exponent * power
    return magnitude * 0.0


def out_of_range(s):
    """Is the sum of squares ``s`` outside the range in which every window's
    sum is exact to rounding (or NaN)?  Its window is then recomputed scaled."""
    return not (SUMSQ_LO <= s <= SUMSQ_HI)


def better(s, j, t, q):
    """Does score ``s`` at column ``j`` rank before ``t`` at column ``q``?
    Higher first, NaN last, ties to the lower column."""
    if s != s:
        return t != t and j < q
    if t != t:
        return True
    if s > t:
        return True
    return s == t and j < q
