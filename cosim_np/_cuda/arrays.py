"""Device arrays in and out, and the launch geometry.

* :class:`Call` -- one public call: the stream it runs on and the kind of
  array its result comes back as (the kind of its first device input).
* :class:`Operand` -- one input as the kernels see it, used in place: a Numba
  device view of the caller's memory (or a copy of a host input), its shape,
  dtype and element strides, and a zero-memory host *stand-in* of the same
  shape and dtype for the CPU's validators.
* :data:`settings` -- threads per block and tile sizes.  Tests shrink them:
  the simulator runs every thread as a Python thread.
"""

import sys
from dataclasses import dataclass

import numpy as np

from .._core import validate as v
from . import device


@dataclass
class Settings:
    """Launch geometry: ``threads`` per block of the 1-D kernels, ``tile``
    (``tile x tile`` threads) for the row-matrix products, ``shared_bytes`` of
    shared memory for the sliding cosine's signal and kernel tiles,
    ``max_blocks`` for grid-stride loops, and ``min_blocks`` that top-k
    spreads its column partitions over."""

    threads: int = 256
    tile: int = 16
    shared_bytes: int = 32 * 1024
    max_blocks: int = 8192
    min_blocks: int = 512


settings = Settings()


def blocks(total, threads=None):
    """Blocks for a grid-stride loop over ``total`` items."""
    threads = threads or settings.threads
    return max(1, min(settings.max_blocks, -(-total // threads)))


def standin(shape, dtype):
    """A read-only host array of ``shape`` and ``dtype`` that owns one element:
    shape-only checks (the CPU's validators, ``np.moveaxis``) run on it."""
    one = np.zeros(1, dtype=dtype)
    return np.lib.stride_tricks.as_strided(one, shape, (0,) * len(shape), writeable=False)


def strided_offsets(shape, strides, base=0):
    """Element offsets of every index of ``(shape, strides)``, in C order."""
    off = np.full((), base, dtype=np.int64)
    for n, s in zip(shape, strides):
        off = np.add.outer(off, np.arange(n, dtype=np.int64) * s)
    return off.reshape(-1)


def _kind(value):
    top = type(value).__module__.split(".")[0]
    return top if top in ("cupy", "torch") else "numba"


class Call:
    """The stream and result kind of one call, from its inputs."""

    def __init__(self, *values):
        if not device.available():
            raise RuntimeError(
                "backend='cuda' (or a CUDA device array as input) needs an NVIDIA GPU "
                "with a working driver, and numba.cuda finds none; use backend='cpu' "
                "with host (NumPy) arrays."
            )
        on_device = [value for value in values if v.on_device(value)]
        self.first = on_device[0] if on_device else None
        self.kind = _kind(self.first) if on_device else "host"
        torch = sys.modules.get("torch") if self.kind == "torch" else None
        self.stream = device.stream_for(self.first, torch)

    def operand(self, value, name, min_ndim=1):
        return Operand(value, name, self.stream, min_ndim)

    def empty(self, shape, dtype):
        return device.device_array(tuple(shape), np.dtype(dtype), self.stream)

    def to_device(self, host):
        return device.to_device(host, self.stream)

    def launch(self, kernel, grid, threads, shared_bytes, *args):
        device.launch(kernel, grid, threads, self.stream, shared_bytes, *args)

    def deliver(self, result, out=None, scalar=False):
        """The result as the kind of array that came in: CuPy, PyTorch, a Numba
        device array, or for host inputs a NumPy array; a host ``out`` (checked
        by the caller) is filled and returned whatever the inputs."""
        if self.kind == "host" or out is not None:
            host = result.copy_to_host(stream=self.stream)
            self.stream.synchronize()
            if out is not None:
                np.copyto(out, host)
                return out
            return host[()] if scalar else host
        if self.kind == "cupy":
            import cupy

            return cupy.asarray(result)
        if self.kind == "torch":
            import torch

            return torch.as_tensor(result, device=self.first.device)
        return result


class Operand:
    """One input array on the device, used in place (host inputs are copied)."""

    def __init__(self, value, name, stream, min_ndim=1):
        if v.on_device(value):
            self.array = device.as_device(value)
        else:
            host = v.as_real_array(value, name, min_ndim=min_ndim)
            self.array = device.to_device(host, stream)
        self.stream = stream
        self.dtype = np.dtype(self.array.dtype)
        self.shape = tuple(self.array.shape)
        byte_strides = tuple(self.array.strides)
        if any(s % self.dtype.itemsize for s in byte_strides):
            raise ValueError(f"{name} has strides {byte_strides} that are not whole elements.")
        self.strides = tuple(s // self.dtype.itemsize for s in byte_strides)
        self.standin = v.as_real_array(standin(self.shape, self.dtype), name, min_ndim=min_ndim)
        self.ndim = len(self.shape)

    def flat(self):
        """``(flat, base)``: a 1-D device array over all elements the input
        spans, and the offset in it of element ``[0, ..., 0]``."""
        if 0 in self.shape:  # nothing is read: any one-element array will do
            return device.device_array((1,), self.dtype, self.stream), 0
        lo = sum((n - 1) * s for n, s in zip(self.shape, self.strides) if s < 0)
        hi = sum((n - 1) * s for n, s in zip(self.shape, self.strides) if s > 0)
        return device.flat_view(self.array, lo, hi - lo + 1), -lo
