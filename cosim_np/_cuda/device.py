"""The device plumbing the rest of the CUDA backend calls (never
``numba.cuda`` itself): device arrays, transfers, streams and launches.

Apart from the kernels (``kernels.py``) because Numba's simulator, for each
launch, points every global of the kernel's module that is ``numba.cuda``
at its fake module until the launch ends: host code in that module, called
from another thread meanwhile (a Dask worker's), found the fake one and
failed.  The simulator also runs one kernel at a time: its launches here
take turns.  Imported lazily with the kernels (see ``kernels.py``).
"""

import threading

import numpy as np
from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)
_one_simulated_launch = threading.Lock()


def available():
    return cuda.is_available()


def device_array(shape, dtype, stream):
    return cuda.device_array(shape, dtype=dtype, stream=stream)


def to_device(host, stream):
    host = host if host.flags.c_contiguous else host.copy(order="C")
    return cuda.to_device(host, stream=stream)


def is_numba_array(value):
    return cuda.devicearray.is_cuda_ndarray(value)


def as_device(value):
    """A Numba device array viewing ``value``'s memory (no copy, no sync)."""
    if is_numba_array(value):
        return value
    return cuda.from_cuda_array_interface(value.__cuda_array_interface__, owner=value, sync=False)


def flat_view(array, lo, extent):
    """1-D contiguous view of the ``extent`` elements that start ``lo``
    elements after ``array``'s first element (``lo <= 0`` for negative strides)."""
    if SIMULATOR:  # a NumPy array underneath: view it from its lowest address
        host = array._ary.reshape(array._ary.shape or (1,))
        corner = host[tuple(slice(n - 1 if s < 0 else 0, None) for n, s in zip(host.shape, host.strides))]
        flat = np.lib.stride_tricks.as_strided(corner, (extent,), (host.itemsize,))
        return cuda.devicearray.FakeCUDAArray(flat)
    desc = array.__cuda_array_interface__
    ptr = desc["data"][0] + lo * array.dtype.itemsize
    flat = {"shape": (extent,), "strides": None, "typestr": desc["typestr"],
            "data": (ptr, False), "version": 2}
    return cuda.from_cuda_array_interface(flat, owner=array, sync=False)


def stream_for(value, torch_module=None):
    """The stream the producer of ``value`` works on (``None``: a host input).

    The CUDA array interface (v3) names one: ``None`` (no ordering needed),
    1 (legacy default), 2 (per-thread default) or a ``cudaStream_t``.  A
    PyTorch tensor names none: its current stream is used."""
    if SIMULATOR:  # every launch is synchronous there
        return cuda.stream()
    if value is None:
        return cuda.default_stream()
    if torch_module is not None:
        ptr = torch_module.cuda.current_stream(value.device).cuda_stream
    elif is_numba_array(value):
        return value.stream or cuda.default_stream()
    else:
        ptr = value.__cuda_array_interface__.get("stream")
    if ptr is None:
        return cuda.default_stream()
    if ptr in (0, 1):
        return cuda.legacy_default_stream()
    if ptr == 2:
        return cuda.per_thread_default_stream()
    return cuda.external_stream(ptr)


def launch(kernel, blocks, threads, stream, shared_bytes, *args):
    if SIMULATOR:  # (the simulator runs one kernel at a time in a process)
        with _one_simulated_launch:
            kernel[blocks, threads, stream, shared_bytes](*args)
        return
    kernel[blocks, threads, stream, shared_bytes](*args)
