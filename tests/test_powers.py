"""``_cpu.powers``: the vectorised ``|s| ** P`` and ``ln|s|`` of float32
cosines (the PyTorch layer's sharpening) and ``|s| ** P`` of float64 cosines
whose results are float32 (the forward's), against libm's in float64."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np._cpu import powers
from cosim_np._cpu.sliding import sharpen_kernel

SPECIAL = np.array([0.0, -0.0, np.nan, 1.0, -1.0, 1e-45, -3e-44, 1.1e-38, 2e-38,
                    np.float32(0.99999994), -np.float32(1e-7)], dtype=np.float32)


def cosines(seed, n=20_000):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, n).astype(np.float32)
    values[: n // 10] *= np.float32(10.0) ** rng.integers(-40, 0, n // 10).astype(np.float32)
    return np.concatenate([SPECIAL, values])


def libm(values, exponent):
    want = np.empty(values.size)
    sharpen_kernel(values, exponent, want)
    return want


@given(exponent=st.one_of(st.sampled_from([0.0, 1.0, 2.0, 0.5]), st.floats(0.0, 40.0)),
       seed=st.integers(0, 2**32 - 1))
def test_powers_are_libms_to_far_below_float32_rounding(exponent, seed):
    values = cosines(seed)
    got = np.empty(values.size)
    powers.sharpen_float32(values, values.view(np.int32), exponent, got,
                           np.empty(values.size, np.int64))
    want = libm(values, exponent)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    # the bound of the module's docstring, relative where the power is a normal
    # float32; below that, absolute (a float32 result is 0 or subnormal there)
    scale = np.maximum(np.abs(want), 2.0**-126)
    logs = np.abs(np.log(np.maximum(np.abs(values.astype(np.float64)), 1e-45)))
    bound = 1e-14 * (1 + exponent * (1 + logs))
    assert np.all(np.abs(got - want)[~np.isnan(want)] <= (bound * scale)[~np.isnan(want)])
    # so rounded to float32 they agree but for near-ties, by one unit then
    got32, want32 = got.astype(np.float32), want.astype(np.float32)
    finite = np.isfinite(want32)
    units = np.abs(got32[finite].view(np.int32).astype(np.int64)
                   - want32[finite].view(np.int32).astype(np.int64))
    assert np.max(units, initial=0) <= 1 and np.mean(units) < 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_logarithms(seed):
    values = cosines(seed)
    got = np.empty(values.size)
    powers.log_float32(values, values.view(np.int32), got)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(np.abs(values.astype(np.float64)))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
    finite = np.isfinite(want)
    assert np.all(np.abs(got[finite] - want[finite]) <= 1e-14 * (1 + np.abs(want[finite])))


@numba.njit
def _in_loops(values, keep, exponent):
    """``powers.sharpen_in_place`` (compiled code only) over a copy."""
    out = values.copy()
    powers.sharpen_in_place(out, keep, exponent)
    return out


@numba.njit
def _one_by_one(values, exponent):
    """``powers.sharpened`` of each value, as the windows recomputed one at a
    time take it."""
    out = np.empty(values.size)
    for t in range(values.size):
        out[t] = powers.sharpened(values[t], exponent)
    return out


def float64_cosines(seed, n=20_000):
    """Cosines as the forward computes them (float64, before their rounding):
    every magnitude down to subnormals, and the special values."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, n)
    values[: n // 4] *= 10.0 ** rng.integers(-320, 0, n // 4)
    special = [0.0, -0.0, np.nan, 1.0, -1.0, 5e-324, -2.2e-308, np.nextafter(1.0, 0.0), 1e-300]
    return np.concatenate([special, values])


@given(exponent=st.one_of(st.sampled_from([0.0, 2.0, 4.0, 0.25, 16.0]), st.floats(0.0, 40.0)),
       seed=st.integers(0, 2**32 - 1))
def test_float64_cosines_sharpened_for_float32_results(exponent, seed):
    """The kernels' exponent ``(P,)`` (float32 results): libm's power to far
    below a float32's rounding, the same bits in the vectorised loops (over
    every value or the ones gathered) as one at a time, and windows whose
    ``keep`` is 0 (fill values) left alone.
    The float ``P`` (float64 results): libm's own power, both ways."""
    values = float64_cosines(seed)
    narrow = powers.kernel_exponent(exponent, np.float32)
    assert narrow == ((exponent,) if exponent != 1.0 else exponent)
    assert powers.kernel_exponent(exponent, np.float64) == exponent
    keep = np.ones(values.size)
    keep[::7] = 0.0
    one_by_one = _one_by_one(values, (exponent,))
    # every value, and some (gathered), of many and of a few
    for few in (values.size, 15):
        got = _in_loops(values[:few], keep[:few], (exponent,))
        np.testing.assert_array_equal(got[keep[:few] != 0], one_by_one[:few][keep[:few] != 0])
        np.testing.assert_array_equal(got[keep[:few] == 0], values[:few][keep[:few] == 0])
    np.testing.assert_array_equal(_in_loops(values, np.ones(values.size), (exponent,)), one_by_one)
    from_python = np.empty(values.size)
    powers.narrow_powers(values, exponent, from_python)
    np.testing.assert_array_equal(from_python, one_by_one)
    want = libm(values, exponent)
    np.testing.assert_array_equal(_one_by_one(values, exponent), want)
    np.testing.assert_array_equal(_in_loops(values, np.ones(values.size), exponent), want)
    np.testing.assert_array_equal(np.isnan(one_by_one), np.isnan(want))
    np.testing.assert_array_equal(np.signbit(one_by_one), np.signbit(want))
    # relative to the power where it is a normal float32, absolute below (a
    # float32 result is 0 or subnormal there), the bound of the docstring
    scale = np.maximum(np.abs(want), 2.0**-126)
    with np.errstate(divide="ignore"):
        logs = np.abs(np.log(np.abs(values)))
    bound = 1e-14 * (1 + exponent * (1 + np.where(np.isfinite(logs), logs, 0.0)))
    finite = ~np.isnan(want)
    assert np.all(np.abs(one_by_one[finite]) <= 1.0)
    assert np.all(np.abs(one_by_one - want)[finite] <= (bound * scale)[finite])
    got32, want32 = one_by_one.astype(np.float32), want.astype(np.float32)
    units = np.abs(got32[finite].view(np.int32).astype(np.int64)
                   - want32[finite].view(np.int32).astype(np.int64))
    assert np.max(units, initial=0) <= 1 and np.mean(units) < 1e-3
