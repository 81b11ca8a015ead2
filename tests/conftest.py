"""Hypothesis profiles.

* ``dev`` (default): quick runs while editing.
* ``ci``: thorough but sized for the CI machine (2 cores, 90 minutes in all);
  selected by ``CI=true`` (set by the CI runner) or ``HYPOTHESIS_PROFILE=ci``.
* ``thorough``: many more examples, for a long local run.

``deadline=None`` everywhere: the first example of a test pays for Numba's
compilation, which is not what a deadline is meant to catch.

CUDA tests (``tests/test_cuda.py``, marker ``cuda``) run in Numba's CUDA
simulator unless ``COSIM_REAL_GPU=1``: ``NUMBA_ENABLE_CUDASIM=1`` is set here,
before anything imports ``numba.cuda`` (cosim_np imports it only lazily, for a
device input or ``backend="cuda"``), so the CPU tests in the same process are
unaffected and no GPU is needed.  With ``COSIM_REAL_GPU=1`` on a machine with
an NVIDIA GPU they run on it, at full launch sizes.  ``-m "not cuda"`` skips
them; ``-m cuda`` runs only them.

On CI (``CI=true``) a skipped test fails the run: CI installs everything the
tests need (PyTorch for the cross-checks, ducc0 for the FFT engine), so a
skip there means a check that silently did not happen.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

if os.environ.get("COSIM_REAL_GPU", "") not in ("1", "true", "yes"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules and "numba.cuda" not in sys.modules:
        sys.modules["numba"].config.reload_config()

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("ci", max_examples=150, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_default = "ci" if ON_CI else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


_fft_runs = [0]  # calls of the FFT path's driver while fft_engine is in use


@pytest.fixture(scope="module", params=["ducc0", "numpy"])
def fft_engine(request):
    """Run a test once with each library that can do the FFT method's
    transforms (ducc0 is skipped where it is not installed).  Module-scoped,
    so Hypothesis's tests may use it.  Only tests that reach the FFT path
    use it (a test that uses it and never does fails: see
    ``pytest_runtest_call``), so the rest run once."""
    from cosim_np._core import config
    from cosim_np._cpu import drivers, spatial_driver
    from cosim_np._cpu import fft as _fft

    if request.param == "ducc0" and _fft._ducc0() is None:
        pytest.skip("ducc0 is not installed (the 'fft' extra)")
    saved, run_fft = config.FFT_ENGINE, drivers.run_fft
    band_cosines = spatial_driver._FFTPlan.cosines  # (the FFT path over several axes)

    def counted(*args, **kwargs):
        _fft_runs[0] += 1
        return run_fft(*args, **kwargs)

    def counted_bands(*args, **kwargs):
        _fft_runs[0] += 1
        return band_cosines(*args, **kwargs)

    config.FFT_ENGINE, drivers.run_fft = request.param, counted
    spatial_driver._FFTPlan.cosines = counted_bands
    yield request.param
    config.FFT_ENGINE, drivers.run_fft = saved, run_fft
    spatial_driver._FFTPlan.cosines = band_cosines


def _direct_only(item):
    """A test item parametrized with ``method="direct"``: it never transforms."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("method") == "direct"


def pytest_collection_modifyitems(config, items):
    """Items of ``method="direct"`` run with the first engine only."""
    second = [item for item in items if _direct_only(item)
              and item.callspec.params.get("fft_engine") == "numpy"]
    if second:
        config.hook.pytest_deselected(items=second)
        items[:] = [item for item in items if item not in set(second)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test run under ``fft_engine`` must reach the FFT path at least once
    (over all its examples), else the second engine checks nothing."""
    before = _fft_runs[0]
    result = yield
    if "fft_engine" in item.fixturenames and not _direct_only(item) and _fft_runs[0] == before:
        raise AssertionError(
            f"{item.nodeid} uses the fft_engine fixture but never reached the FFT path: "
            "drop the fixture (the test would run twice for nothing) or give it inputs "
            "that take method='fft'.")
    return result


def pytest_sessionfinish(session, exitstatus):
    """On CI, fail a run that skipped any test (``-rs`` lists them)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if ON_CI and skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"CI: {len(skipped)} skipped test(s); nothing may skip in CI.",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
