"""Scratch arrays kept per thread between calls.

A fresh scratch array of a few megabytes is fresh memory on every call: the
kernel maps and zeroes its pages when they are first touched.  On a virtual
machine that hands freed memory back to its host, two threads touching fresh
pages at once now and then stall for tens of milliseconds.  Each
thread therefore keeps the scratch buffer of each use and reuses it for any
later array of that use and dtype that it has room for, in calls one after
another (``one_call``): each buffer of at most ``config.KEEP_BYTES``, and
at most ``config.KEEP_TOTAL_BYTES`` of them in all, the least recently used
let go first.
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
    ``config.KEEP_BYTES`` (and others let go, the least recently used first,
    while the thread's kept buffers would hold more than
    ``config.KEEP_TOTAL_BYTES``).  Two arrays in use at the same time in one
    thread must have different ``use`` names (a buffer let go stays valid
    where it is in use)."""
    kept = _kept.levels[max(0, _kept.depth - 1)]
    shape = tuple(int(size) for size in shape) if np.ndim(shape) else (int(shape),)
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = kept.pop(use, None)
    if buffer is not None and buffer.dtype == dtype and buffer.size >= size:
        kept[use] = buffer  # (the most recently used last)
        return buffer[:size].reshape(shape)
    buffer = np.empty(size, dtype)
    if buffer.nbytes <= config.KEEP_BYTES:
        held = buffer.nbytes + sum(other.nbytes for other in kept.values())
        while held > config.KEEP_TOTAL_BYTES:
            held -= kept.pop(next(iter(kept))).nbytes
        kept[use] = buffer
    return buffer.reshape(shape)
