"""``|s| ** P`` and ``ln|s|`` of cosines whose results are float32, without libm.

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

The forward's kernels take the same power of a float64 cosine (its 52
mantissa bits read instead of 23) where the result is stored as float32
(or narrower): its windows are sharpened in float64 before their one
rounding, and libm's scalar ``pow`` cost more than their dots and norms.
Float64 results keep libm's power.  The choice is the *type* of the
exponent the kernels are given (:func:`kernel_exponent`): a float, or the
1-tuple ``(P,)``.  Numba compiles a kernel for each, so a call that does
not sharpen a float32 result compiles none of this module's power.
:func:`sharpened`, :func:`sharpen_in_place` and :func:`is_unsharpened`
pick the power from that type.
"""

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from .._core import scalars
from ._jit import OPTIONS, bits_float, float_bits, jit

_LN2 = math.log(2.0)
_LN2_HI = 0.6931471803691238  # ln 2 in two parts: k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = math.sqrt(2.0)
_ROUNDING = 1.5 * 2.0**52
# exp(y) is taken as 2**k exp(r) with k at least -MIN_POWER: below, a float32
# result is 0 anyway
MIN_POWER = 200
_MANTISSA64 = (1 << 52) - 1
_ONE_BITS = 1023 << 52  # the bits of 1.0
_MAGNITUDE = (1 << 63) - 1  # all bits but the sign

sharpen_value = jit(scalars.sharpen_value, from_python=False)


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
    return _log_of_parts(e, m)


@jit(from_python=False)
def _log_of_parts(e, m):
    """``ln(2**e m)`` for ``m`` in ``[sqrt(1/2), sqrt(2))``."""
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
def _log_parts64(bits):
    """``(e, m)`` of a positive normal float64 given as its int64 bits (as
    ``_log_parts``)."""
    e = ((bits >> 52) & 0x7FF) - 1023
    m = 1.0 + (bits & _MANTISSA64) * (1.0 / 4503599627370496.0)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    return e, m


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


# ---------------------------------------------------------------------------
# the forward's power of float64 cosines whose results are float32


@jit
def narrow_powers(values, exponent, out):
    """``out[i] = _narrow_power(values[i], exponent)`` (from Python: the
    windows the image drivers recompute one at a time)."""
    for i in range(values.size):
        out[i] = _narrow_power(values[i], exponent)


@jit
def sharpen_narrow(values, exponent, out, block):
    """``out[t] = sign(s) |s| ** exponent`` of the float32 ``values`` into
    the float32 ``out`` (public ``sharpen``): ``_narrow_sharpen``'s loops
    over ``block`` values at a time, converted to float64 in scratch that
    stays in the first cache (``|s| > 1`` is left to libm)."""
    scratch = np.empty((4, block))
    samples, keep, logs, powers_of_two = scratch[0], scratch[1], scratch[2], scratch[3]
    keep[:] = 1.0
    for start in range(0, values.size, block):
        count = min(block, values.size - start)
        for t in range(count):
            samples[t] = values[start + t]
        _narrow_sharpen(samples[:count], keep[:count], exponent, logs[:count],
                        powers_of_two[:count])
        for t in range(count):
            out[start + t] = samples[t]


def kernel_exponent(exponent, out_dtype):
    """The sharpening exponent as the forward's kernels take it for results of
    ``out_dtype``: the float, or ``(exponent,)`` where they are narrower than
    float64 and sharpened (see the module's description)."""
    if exponent != 1.0 and np.dtype(out_dtype).itemsize < 8:
        return (float(exponent),)
    return exponent


@jit(from_python=False)
def _narrow_special(bits, exponent):
    """Whether ``_narrow_power`` leaves a cosine with the magnitude bits
    ``bits`` to ``sharpen_value``: 0, subnormal, above 1 or not finite, or
    the exponent 1, negative or not finite."""
    return (bits < (1 << 52) or bits > _ONE_BITS or not 0.0 <= exponent < np.inf
            or exponent == 1.0)


@jit(from_python=False)
def _narrow_log(s, exponent):
    """``exponent * ln|s|`` for ``_narrow_power`` (``|s|`` normal)."""
    e, m = _log_parts64(float_bits(s) & _MAGNITUDE)
    return exponent * _log_of_parts(e, m)


@jit(from_python=False)
def _narrow_finish(poly, power_of_two, s):
    """``sign(s) |s| ** P`` from ``_exp_parts``'s parts, at most 1 in
    magnitude (as in ``sharpen_value``: here ``|s| <= 1``)."""
    power = poly * power_of_two
    return math.copysign(1.0 if power > 1.0 else power, s)


@jit(from_python=False)
def _narrow_power(s, exponent):
    """``sign(s) |s| ** exponent`` of a float64 cosine ``s`` whose result is
    rounded to float32 or narrower: the module's power from ``s``'s 52
    bits, libm's where ``_narrow_special``.  The same bits as
    ``_narrow_sharpen``'s loops."""
    if _narrow_special(float_bits(s) & _MAGNITUDE, exponent):
        return sharpen_value(s, exponent)
    poly, k = _exp_parts(_narrow_log(s, exponent))
    return _narrow_finish(poly, bits_float((k + 1023) << 52), s)


@jit(from_python=False)
def _narrow_sharpen(values, keep, exponent, logs, powers_of_two):
    """``values[t] = _narrow_power(values[t], exponent)`` where ``keep[t]``
    is non-zero, in loops that vectorise (``logs`` and ``powers_of_two``:
    room for as many).  (Four loops: fused into one, LLVM vectorises none of
    it.)"""
    n = values.size
    for t in range(n):
        logs[t] = _narrow_log(values[t], exponent)
    for t in range(n):
        poly, k = _exp_parts(logs[t])
        logs[t] = poly
        powers_of_two[t] = bits_float((k + 1023) << 52)
    for t in range(n):
        logs[t] = _narrow_finish(logs[t], powers_of_two[t], values[t])
    for t in range(n):
        if keep[t] != 0.0:
            value = values[t]
            if _narrow_special(float_bits(value) & _MAGNITUDE, exponent):
                values[t] = sharpen_value(value, exponent)
            else:
                values[t] = logs[t]


def _narrows(exponent):
    """Whether the kernels' ``exponent`` (its Numba type) asks for this
    module's power."""
    return isinstance(exponent, types.BaseTuple)


# The kernels' tests of the exponent: constants of the compiled code where
# its type decides, inline code, not functions of their own to compile.


@intrinsic
def narrows(typingctx, exponent):
    """Whether the kernels' ``exponent`` is ``(P,)``: a constant."""
    flag = _narrows(exponent)

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, flag)

    return types.boolean(exponent), codegen


@intrinsic
def plain_exponent(typingctx, exponent):
    """``P`` of the kernels' ``exponent``, ``P`` or ``(P,)``."""
    if _narrows(exponent):
        def codegen(context, builder, signature, args):
            return builder.extract_value(args[0], 0)

        return types.float64(exponent), codegen

    def same(context, builder, signature, args):
        return context.cast(builder, args[0], exponent, types.float64)

    return types.float64(exponent), same


@intrinsic
def is_unsharpened(typingctx, exponent):
    """Whether the kernels' ``exponent`` leaves the cosines as they are
    (``(P,)`` never does)."""
    if _narrows(exponent):
        def never(context, builder, signature, args):
            return context.get_constant(types.boolean, False)

        return types.boolean(exponent), never

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], exponent, types.float64)
        return builder.fcmp_ordered("==", value, ir.Constant(ir.DoubleType(), 1.0))

    return types.boolean(exponent), codegen


def sharpened(s, exponent):
    """``sign(s) |s| ** P`` of the float64 cosine ``s`` by the kernels'
    ``exponent``: libm's power for a float, ``_narrow_power`` for ``(P,)``
    (compiled code only, and only code without a CPython wrapper: kernels
    with one calling it too would compile it twice, see ``_jit.py``)."""


@overload(sharpened, jit_options=dict(OPTIONS))
def _sharpened(s, exponent):
    if _narrows(exponent):
        return lambda s, exponent: _narrow_power(s, exponent[0])
    return lambda s, exponent: sharpen_value(s, exponent)


def sharpen_in_place(values, keep, exponent):
    """``values[t] = sharpened(values[t], exponent)`` where ``keep[t]`` is
    non-zero (float64 ``values``): for ``(P,)`` in loops that vectorise
    (compiled code only)."""


@overload(sharpen_in_place, jit_options=dict(OPTIONS))
def _sharpen_in_place(values, keep, exponent):
    if _narrows(exponent):
        def narrow(values, keep, exponent):
            n = values.size
            count = 0
            for t in range(n):
                count += keep[t] != 0.0
            if count == 0:
                return
            scratch = np.empty(3 * count)
            if count == n:
                _narrow_sharpen(values, keep, exponent[0], scratch[:n], scratch[n : 2 * n])
                return
            # a sparse run: the values to sharpen gathered, and scattered back
            picked = scratch[2 * count :]
            c = 0
            for t in range(n):
                if keep[t] != 0.0:
                    picked[c] = values[t]
                    c += 1
            # (a picked 0 is left 0, as its power would be)
            _narrow_sharpen(picked, picked, exponent[0], scratch[:count], scratch[count : 2 * count])
            c = 0
            for t in range(n):
                if keep[t] != 0.0:
                    values[t] = picked[c]
                    c += 1
        return narrow

    def by_libm(values, keep, exponent):
        for t in range(values.size):
            if keep[t] != 0.0:
                values[t] = sharpen_value(values[t], exponent)
    return by_libm
