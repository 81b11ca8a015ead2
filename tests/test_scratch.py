"""Per-thread scratch arrays (``cosim_np._cpu.scratch``)."""

import threading

import numpy as np

from cosim_np._core import config
from cosim_np._cpu import scratch as _scratch


def test_same_shape_and_dtype_reuse_the_array():
    first = _scratch.empty("test reuse", (3, 4))
    assert _scratch.empty("test reuse", (3, 4)) is first
    assert _scratch.empty("test reuse", (3, 4), np.float32) is not first
    other = _scratch.empty("test reuse", 12)
    assert other.shape == (12,) and other.dtype == np.float64


def test_other_uses_get_other_arrays():
    a = _scratch.empty("test use a", 5)
    b = _scratch.empty("test use b", 5)
    assert a is not b and not np.shares_memory(a, b)


def test_large_arrays_are_not_kept(monkeypatch):
    monkeypatch.setattr(config, "KEEP_BYTES", 64)
    small = _scratch.empty("test size", 8)
    assert _scratch.empty("test size", 8) is small
    large = _scratch.empty("test size", 9)
    assert _scratch.empty("test size", 9) is not large
    # the large one replaced the small one, and is not kept either
    assert _scratch.empty("test size", 8) is not small


def test_each_thread_has_its_own_arrays():
    here = _scratch.empty("test threads", 6)
    there = []
    worker = threading.Thread(target=lambda: there.append(_scratch.empty("test threads", 6)))
    worker.start()
    worker.join()
    assert there[0] is not here and not np.shares_memory(there[0], here)
