"""Per-thread scratch arrays (``cosim_np._cpu.scratch``)."""

import threading

import numpy as np
import pytest

from cosim_np._core import config
from cosim_np._cpu import fft as _fft
from cosim_np._cpu import scratch as _scratch


def _address(array):
    return array.__array_interface__["data"][0]


def test_same_shape_and_dtype_reuse_the_memory():
    first = _scratch.empty("test reuse", (3, 4))
    again = _scratch.empty("test reuse", (3, 4))
    assert again.shape == (3, 4) and _address(again) == _address(first)
    assert not np.shares_memory(_scratch.empty("test reuse", (3, 4), np.float32), first)
    other = _scratch.empty("test reuse", 12)
    assert other.shape == (12,) and other.dtype == np.float64


def test_a_smaller_array_is_the_front_of_the_kept_buffer():
    full = _scratch.empty("test front", (4, 5))
    short = _scratch.empty("test front", (3, 5))
    assert short.shape == (3, 5) and short.flags.c_contiguous
    assert _address(short) == _address(full)
    # a larger one is fresh memory, and is kept in its place
    large = _scratch.empty("test front", (6, 5))
    assert not np.shares_memory(large, full)
    assert _address(_scratch.empty("test front", (4, 5))) == _address(large)


def test_other_uses_get_other_arrays():
    a = _scratch.empty("test use a", 5)
    b = _scratch.empty("test use b", 5)
    assert a is not b and not np.shares_memory(a, b)


def test_large_arrays_are_not_kept(monkeypatch):
    monkeypatch.setattr(config, "KEEP_BYTES", 64)
    small = _scratch.empty("test size", 8)
    assert np.shares_memory(_scratch.empty("test size", 8), small)
    large = _scratch.empty("test size", 9)
    assert not np.shares_memory(_scratch.empty("test size", 9), large)
    # the large one replaced the small one, and is not kept either
    assert not np.shares_memory(_scratch.empty("test size", 8), small)


def test_a_thread_keeps_at_most_its_total_the_least_recently_used_let_go(monkeypatch):
    """Each buffer was capped, not their sum: a thread that used many FFT
    lengths or shapes kept 160 to 290 MiB for good (an exploratory
    tester's reading)."""
    monkeypatch.setattr(config, "KEEP_TOTAL_BYTES", 3 * 80)

    def run():
        a, b, c = (_scratch.empty(f"test total {name}", 10) for name in "abc")
        assert np.shares_memory(_scratch.empty("test total a", 10), a)  # (a: used last)
        d = _scratch.empty("test total d", 10)  # (b, used least recently, let go)
        assert not np.shares_memory(_scratch.empty("test total b", 10), b)  # (c let go)
        for name, array in (("a", a), ("d", d)):
            assert np.shares_memory(_scratch.empty(f"test total {name}", 10), array)
        assert not np.shares_memory(_scratch.empty("test total c", 10), c)
        held = sum(buffer.nbytes for buffer in _scratch._kept.levels[0].values())
        assert held <= 3 * 80

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # (a thread of its own: no buffers kept before)
        pool.submit(run).result()


def test_each_thread_has_its_own_arrays():
    here = _scratch.empty("test threads", 6)
    there = []
    worker = threading.Thread(target=lambda: there.append(_scratch.empty("test threads", 6)))
    worker.start()
    worker.join()
    assert there[0] is not here and not np.shares_memory(there[0], here)


@pytest.mark.parametrize("call", ["signal", "image", "matches", "grad"])
def test_a_call_made_during_another_in_one_thread_leaves_it_exact(monkeypatch, call):
    """A call made while another is under way in the same thread (as from a
    signal handler, a ``__del__`` or a weakref callback) keeps its own
    arrays: it overwrote the other's kept ones, whose results were then
    wrong (100 000 of 10**6 cosines off by up to 0.9)."""
    import numba

    from cosim_np import find_matches, sliding_cosine, sliding_cosine_grad

    rng = np.random.default_rng(3)
    x, other = rng.standard_normal(60_000), rng.standard_normal(50_000)
    image, other_image = rng.standard_normal((300, 300)), rng.standard_normal((200, 250))
    kernel, template = rng.standard_normal(300), rng.standard_normal((20, 20))
    calls = {
        "signal": lambda: sliding_cosine(x, kernel, method="fft"),
        "image": lambda: sliding_cosine(image, template, axis=(0, 1), method="fft"),
        "matches": lambda: find_matches(x, kernel, k=20, method="fft").score,
        "grad": lambda: sliding_cosine_grad(image, template, np.ones((281, 281)), axis=(0, 1),
                                            method="fft").signal,
    }
    interrupting = {
        "signal": lambda: sliding_cosine(other, kernel[::-1], method="fft"),
        "image": lambda: sliding_cosine(other_image, template.T, axis=(0, 1), method="fft"),
        "matches": lambda: sliding_cosine(other, kernel[::-1], method="fft"),
        "grad": lambda: sliding_cosine_grad(other_image, template.T, np.ones((181, 231)),
                                            axis=(0, 1), method="fft").signal,
    }
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # (every part in this thread)
    try:
        want, want_inner = calls[call](), interrupting[call]()
        # interrupted where it asks for an array, and between transforms
        for module, name in ((_scratch, "empty"), (_fft, "_inverse"), (_fft, "inverse_nd")):
            real = getattr(module, name)
            seen = []
            monkeypatch.setattr(module, name, lambda *args: seen.append(1) or real(*args))
            calls[call]()
            monkeypatch.setattr(module, name, real)
            for at in range(1, min(len(seen), 4) + 1):  # at the at-th of them
                seen, inner = [], []

                def interrupted(*args):
                    result = real(*args)
                    seen.append(1)
                    if len(seen) == at and not inner:
                        inner.append(interrupting[call]())
                    return result

                monkeypatch.setattr(module, name, interrupted)
                got = calls[call]()
                monkeypatch.setattr(module, name, real)
                assert inner
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(inner[0], want_inner)
    finally:
        numba.set_num_threads(before)
