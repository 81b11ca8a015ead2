"""Which backend runs a call: the CPU kernels or the CUDA ones.

Deciding never imports ``numba.cuda``: an input lives on the GPU when it has
the CUDA array interface (CuPy arrays, PyTorch CUDA tensors, Numba device
arrays) or is a Numba device array (the simulator's have no interface).
Only :func:`cuda_impl` imports :mod:`cosim_np._cuda`, and with it
``numba.cuda``.
"""

import importlib

from ._core import validate as v

BACKENDS = ("auto", "cpu", "cuda")

# The ``backend`` parameter's description, shared by every public array
# function's docstring (where it stands as ``{backend}``).
BACKEND_DOC = """'auto' (default) follows the inputs: CUDA device arrays (CuPy, PyTorch,
        Numba) run on the GPU and give the same kind of array back. 'cuda'
        forces the GPU, 'cpu' the CPU. See :doc:`/gpu`."""


def documented(func):
    """Fill in the ``backend`` description of ``func``'s docstring (none
    under ``python -OO``, which strips docstrings)."""
    if func.__doc__ is not None:
        func.__doc__ = func.__doc__.replace("{backend}", BACKEND_DOC)
    return func


def wants_cuda(backend, **arrays):
    """Validate ``backend`` and say whether the call runs on the GPU:
    ``"cuda"`` always, ``"auto"`` when any of ``arrays`` is on the device,
    ``"cpu"`` never (a device array then raises a ``TypeError``)."""
    v.check_choice(backend, "backend", BACKENDS)
    device = [name for name, value in arrays.items() if v.on_device(value)]
    if backend == "cpu" and device:
        name = device[0]
        raise TypeError(
            f"{name} is a CUDA device array ({type(arrays[name]).__name__}) but "
            "backend='cpu' computes on host memory: copy it to the host first "
            "(cupy.asnumpy(x), tensor.cpu().numpy(), device_array.copy_to_host()) "
            "or use backend='auto' or 'cuda'."
        )
    return backend == "cuda" or (backend == "auto" and bool(device))


def is_dask(value):
    """Is ``value`` a Dask array?  (Decided without importing Dask.)"""
    return type(value).__module__.startswith("dask.array") and hasattr(value, "__dask_graph__")


is_xarray = v.is_xarray


def _implementation(package, name, needs):
    """``name`` of the private package ``package``, imported on first use;
    ``needs`` says what its import needs, for the error."""
    try:
        module = importlib.import_module(f".{package}", __package__)
    except ImportError as exc:
        raise RuntimeError(f"{needs}, which cannot be imported here: {exc}") from exc
    return getattr(module, name)


def xarray_impl(name, backend=None):
    """The DataArray wrapper of the public function ``name`` (``backend``
    checked here, where given: the wrapper passes it on to the call)."""
    if backend is not None:
        v.check_choice(backend, "backend", BACKENDS)
    return _implementation("_xarray", name, "an xarray.DataArray as input needs xarray")


def dask_impl(name, backend=None):
    """The Dask implementation of the public function ``name`` (``backend``
    checked here, where given, not in a worker when the graph runs)."""
    if backend is not None:
        v.check_choice(backend, "backend", BACKENDS)
    return _implementation("_dask", name, "a Dask array as input needs dask.array "
                                          "(pip install 'cosim_np[dask]')")


def cuda_impl(name):
    """The CUDA implementation of the public function ``name``."""
    return _implementation("_cuda", name, "backend='cuda' (or a CUDA device array as input) "
                                          "needs numba.cuda")
