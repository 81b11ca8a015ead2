"""Scratch arrays kept per thread between calls.

A fresh scratch array of a few megabytes is fresh memory on every call: the
kernel maps and zeroes its pages when they are first touched.  On a virtual
machine that hands freed memory back to its host, two threads touching fresh
pages at once now and then stall for tens of milliseconds.  Each
thread therefore keeps the scratch buffer of each use and reuses it for any
later array of that use and dtype that it has room for, in calls one after
another (``one_call``).
"""

import functools
import math
import threading

import numpy as np

from .._core import config


class _Kept(threading.local):
    def __init__(self):
        self.levels = [{}]  # use -> array, for each thread and depth of calls
        self.depth = 0


_kept = _Kept()


def one_call(function):
    """``function``, a driver's entry, as one call of this thread: a call made
    while another is under way in the same thread (from a signal handler, a
    ``__del__`` or a weakref callback; or a driver calling another) keeps
    arrays of its own, one level down, and leaves the other's as they are
    (they were overwritten: silently wrong results)."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        kept = _kept
        kept.depth += 1
        if kept.depth > len(kept.levels):
            kept.levels.append({})
        try:
            return function(*args, **kwargs)
        finally:
            kept.depth -= 1

    return call


def empty(use, shape, dtype=np.float64):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` for the
    place in the code named ``use``: the front of this thread's kept buffer
    when that is large enough (so that the shorter last band of a call and
    the full ones share one), else a fresh one, kept if it is not larger than
    ``config.KEEP_BYTES``.  Two arrays in use at the same time in one thread
    must have different ``use`` names."""
    kept = _kept.levels[max(0, _kept.depth - 1)]
    shape = tuple(int(size) for size in shape) if np.ndim(shape) else (int(shape),)
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = kept.get(use)
    if buffer is not None and buffer.dtype == dtype and buffer.size >= size:
        return buffer[:size].reshape(shape)
    buffer = np.empty(size, dtype)
    if buffer.nbytes <= config.KEEP_BYTES:
        kept[use] = buffer
    else:
        kept.pop(use, None)
    return buffer.reshape(shape)
