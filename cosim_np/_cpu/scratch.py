"""Scratch arrays kept per thread between calls.

A fresh scratch array of a few megabytes is fresh memory on every call: the
kernel maps and zeroes its pages when they are first touched.  On a virtual
machine that hands freed memory back to its host, two threads touching fresh
pages at once now and then stall for tens of milliseconds.  Each
thread therefore keeps the scratch arrays of its latest call and reuses them
when the next call asks for the same shape and dtype.
"""

import threading

import numpy as np

from .._core import config


class _Kept(threading.local):
    def __init__(self):
        self.arrays = {}  # use -> array, for each thread


_kept = _Kept()


def empty(use, shape, dtype=np.float64):
    """An uninitialised array of ``shape`` and ``dtype`` for the place in the
    code named ``use``, this thread's kept one when it fits.  Two arrays in
    use at the same time in one thread must have different ``use`` names."""
    kept = _kept.arrays
    shape = tuple(int(size) for size in shape) if np.ndim(shape) else (int(shape),)
    dtype = np.dtype(dtype)
    array = kept.get(use)
    if array is not None and array.shape == shape and array.dtype == dtype:
        return array
    array = np.empty(shape, dtype)
    if array.nbytes <= config.KEEP_BYTES:
        kept[use] = array
    else:
        kept.pop(use, None)
    return array
