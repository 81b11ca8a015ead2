"""Thread count never changes a bit; concurrent calls from user threads work."""

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

from cosim_np import _threads, sliding_cosine, windowed_norm

# every test once per FFT library (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("fft_engine")


@pytest.fixture
def small_segments(monkeypatch):
    """Split even short signals across threads."""
    monkeypatch.setattr(_threads, "MIN_WINDOWS_PER_THREAD", 500)
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("method,m,dilation", [("direct", 3, 1), ("direct", 9, 2), ("fft", 70, 1), ("fft", 20, 3)])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_thread_count_is_bit_exact(small_segments, method, m, dilation, mode):
    rng = np.random.default_rng(m)
    signal = rng.standard_normal((2, 30_000)).astype(np.float32)
    signal[0, 12_345] = np.nan
    signal[1, 20_000] = 1e30
    kernels = rng.standard_normal((3, m))
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(
            (
                sliding_cosine(signal, kernels, method=method, dilation=dilation, mode=mode, sharpness=1.5),
                windowed_norm(signal, m, dilation=dilation, mode=mode),
            )
        )
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_concurrent_calls_from_user_threads():
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal(50_000) for _ in range(4)]
    kernel = rng.standard_normal(12)
    want = [sliding_cosine(s, kernel) for s in signals]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: sliding_cosine(s, kernel), signals))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
