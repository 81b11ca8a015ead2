"""``_cpu.powers``: the vectorised ``|s| ** P`` and ``ln|s|`` of float32
cosines (the PyTorch layer's sharpening), against libm's in float64."""

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
