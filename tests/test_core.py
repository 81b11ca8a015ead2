"""The core shared by the backends (``cosim_np._core``): it runs without
Numba, and its plans are what the public functions promise."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cosim_np
from cosim_np import sharpen, sliding_cosine, windowed_norm
from cosim_np._core import sliding as plans
from cosim_np._core.scalars import KERNEL_NONFINITE, KERNEL_NORMAL, KERNEL_ZERO


def test_the_core_imports_and_plans_without_numba():
    """Nothing in ``_core`` needs Numba (or a backend): it is loaded here with
    ``numba`` made unimportable and the package's ``__init__`` (which loads
    the CPU backend) bypassed."""
    script = textwrap.dedent(f"""
        import sys, types
        sys.modules["numba"] = None
        package = types.ModuleType("cosim_np")
        package.__path__ = [{str(cosim_np.__path__[0])!r}]
        sys.modules["cosim_np"] = package
        import numpy as np
        from cosim_np._core import config, embedding, scalars, sliding, validate
        plan = sliding.plan_sliding(np.zeros((2, 50), np.float32), [[1.0, 2.0], [0.0, 0.0]], -1,
                                    "same", "auto", 3, 2.0, 0.0, 0.0, None)
        assert plan.final_shape == (2, 2, 50) and plan.out_dtype == np.float32, plan
        assert list(plan.kernel_state) == [scalars.KERNEL_NORMAL, scalars.KERNEL_ZERO]
        assert "numba" not in {{m.split(".")[0] for m, v in sys.modules.items() if v is not None}}
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


finite_kernels = hnp.arrays(
    np.float64, st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 40)),
    elements=st.floats(-1e300, 1e300, allow_nan=False, allow_subnormal=True))


@given(finite_kernels, st.integers(-1000, 1000))
@example(np.array([[[2.22507386e-311]]]), 0)  # a subnormal kernel
@example(np.array([[[3.77029395e22, 8.94468923e-290]]]), 0)  # a tap that scales to a subnormal
@example(np.array([[[8.94468923e-290, 8.94468923e-290]]]), -62)  # scaling that loses digits
def test_unit_kernels_have_unit_norm_and_ignore_power_of_two_scaling(taps, shift):
    khat, state = plans.unit_kernels(taps)
    with np.errstate(over="ignore"):
        scaled = np.ldexp(taps, shift)
    if np.all(np.ldexp(scaled, -shift) == taps):  # the scaling is exact
        again, state_again = plans.unit_kernels(scaled)
        np.testing.assert_array_equal(again, khat)  # bit for bit
        np.testing.assert_array_equal(state_again, state)
    for k in range(taps.shape[0]):
        if not np.any(taps[k]):
            assert state[k] == KERNEL_ZERO and not np.any(khat[k])
            continue
        assert state[k] == KERNEL_NORMAL
        norm = math.sqrt(math.fsum(khat[k].ravel() ** 2))
        assert abs(norm - 1.0) <= 4 * np.finfo(np.float64).eps
        # the direction is kept: khat is the taps (scaled by a power of two
        # into [0.5, 1)) over one positive number, where both are normal
        scaled = np.ldexp(taps[k], -math.frexp(np.max(np.abs(taps[k])))[1])
        tiny = np.finfo(np.float64).tiny
        normal = (np.abs(khat[k]) >= tiny) & (np.abs(scaled) >= tiny)
        ratio = khat[k][normal] / scaled[normal]
        assert np.all(ratio > 0) and np.ptp(ratio) <= 4 * np.finfo(np.float64).eps * np.max(ratio)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 40)),
                  elements=st.floats(allow_subnormal=True)))
@example(np.array([[[1.0, np.nan]], [[0.0, 0.0]], [[np.inf, 1e-310]]]))
def test_unit_kernels_compiled_equal_the_python_formula(taps):
    """Each backend compiles ``fill_unit_kernels``; compiled, it gives the
    plain-Python formula's bits."""
    from cosim_np._cpu.drivers import fill_unit_kernels

    khat, state = plans.unit_kernels(taps)
    compiled, compiled_state = plans.unit_kernels(taps, fill_unit_kernels)
    np.testing.assert_array_equal(compiled, khat)
    np.testing.assert_array_equal(compiled_state, state)


def test_unit_kernels_classes():
    taps = np.array([[[1.0, np.nan]], [[0.0, 0.0]], [[np.inf, 1.0]], [[3.0, 4.0]]])
    khat, state = plans.unit_kernels(taps)
    assert list(state) == [KERNEL_NONFINITE, KERNEL_ZERO, KERNEL_NONFINITE, KERNEL_NORMAL]
    assert np.all(np.isnan(khat[[0, 2]])) and not np.any(khat[1])
    np.testing.assert_allclose(khat[3], [[0.6, 0.8]], rtol=0, atol=1e-16)


# --- out= on every sliding function that returns one array


def test_windowed_norm_writes_into_out():
    x = np.random.default_rng(0).standard_normal((3, 200)).astype(np.float32)
    out = np.full((3, 196), np.nan, dtype=np.float32)
    assert windowed_norm(x, 5, out=out) is out
    np.testing.assert_array_equal(out, windowed_norm(x, 5))
    # another axis, another mode: out has the result's own shape
    out = np.empty((200, 3), dtype=np.float32)
    assert windowed_norm(x.T, 5, axis=0, mode="same", out=out) is out
    np.testing.assert_array_equal(out, windowed_norm(x.T, 5, axis=0, mode="same"))


def test_sharpen_writes_into_out():
    s = np.linspace(-1, 1, 11)
    out = np.empty(11)
    assert sharpen(s, 1.5, out=out) is out
    np.testing.assert_array_equal(out, sharpen(s, 1.5))
    scalar = np.empty(())
    assert sharpen(0.5, 2.0, out=scalar) is scalar and scalar[()] == 0.0625


@pytest.mark.parametrize("call", [
    lambda out: windowed_norm(np.ones(10), 3, out=out),
    lambda out: sharpen(np.ones(8), 2.0, out=out),
    lambda out: sliding_cosine(np.ones(10), [1.0, 2.0, 3.0], out=out),
])
def test_out_is_checked_and_named(call):
    with pytest.raises(ValueError, match=r"out has shape \(7,\); the result needs shape"):
        call(np.empty(7))
    with pytest.raises(ValueError, match=r"out has dtype float32; the result needs dtype float64"):
        call(np.empty(8 if call(None).shape == (8,) else call(None).shape, np.float32))
    with pytest.raises(TypeError, match=r"out must be a numpy.ndarray; got list"):
        call([0.0] * 8)
