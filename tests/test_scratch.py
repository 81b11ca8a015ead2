"""Per-thread scratch arrays (``cosim_np._cpu.scratch``)."""

import threading

import numpy as np

from cosim_np._core import config
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


def test_each_thread_has_its_own_arrays():
    here = _scratch.empty("test threads", 6)
    there = []
    worker = threading.Thread(target=lambda: there.append(_scratch.empty("test threads", 6)))
    worker.start()
    worker.join()
    assert there[0] is not here and not np.shares_memory(there[0], here)
