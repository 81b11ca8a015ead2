"""Argument checking and the dtype policy, in one place.

Every public function validates through these helpers before planning any
work, so that a bad argument raises a ``ValueError``/``TypeError`` that names
the parameter and the expected form, and no kernel ever sees unchecked input.

The dtype policy, the same for every function (docs/sliding.rst, *dtypes*):

* float32 in -> float32 out, float64 -> float64;
* integers and bools -> float64;
* float16 -> float16 out (computed in at least float32);
* complex, object, strings, datetimes and long double -> ``TypeError``;
* either byte order in, the machine's out.

Whatever the input dtype, kernels accumulate in float64.
"""

import math
import numbers
import operator

import numpy as np

__all__ = [
    "as_real_array",
    "output_dtype",
    "check_axis",
    "check_choice",
    "check_positive_int",
    "check_real",
    "check_out",
]

_FLOAT_OUT = {
    np.dtype(np.float16): np.dtype(np.float16),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
}


def output_dtype(dtype, name):
    """Return the output dtype that the policy assigns to an input dtype (of
    either byte order: the output is in the machine's)."""
    dtype = np.dtype(dtype)
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    if dtype in _FLOAT_OUT:
        return _FLOAT_OUT[dtype]
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "c":
        raise TypeError(
            f"{name} must be real-valued; got complex dtype {dtype}. "
            "Cosine similarity of complex data is not defined here: pass the "
            "real and imaginary parts (or the magnitude) explicitly."
        )
    raise TypeError(
        f"{name} must have a boolean, integer or float16/float32/float64 dtype; "
        f"got dtype {dtype}."
    )


def refuse_masked(value, name, way_out=None):
    """Refuse a masked array that masks anything: ``np.asarray`` would drop
    its mask and the kernels read the values under it as data.  ``way_out``:
    what to pass instead, where NaN for a masked value (samples) is not it."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        if way_out is None and name == "kernel":  # (every window reads every tap)
            way_out = (f"{name}.filled(0) to give the masked taps no weight (a NaN tap would "
                       "make every score NaN)")
        if way_out is None:
            way_out = (f"{name}.astype(float).filled(np.nan) to make the results that read them "
                       f"NaN, or {name}.filled(0) to read them as zeros")
        raise ValueError(f"{name} is a masked array with {np.ma.count_masked(value)} masked "
                         f"value(s), and cosim_np reads no masks; pass {way_out}.")


def is_xarray(value):
    """Is ``value`` an ``xarray.DataArray``?  (Decided without importing xarray.)"""
    return type(value).__name__ == "DataArray" and type(value).__module__.startswith("xarray")


def refuse_delayed(value, name):
    """A ``dask.delayed`` object is no array (NumPy would take it as an object)."""
    if any(kind.__name__ == "Delayed" and kind.__module__.startswith("dask")
           for kind in type(value).__mro__):  # (Delayed, DelayedLeaf, ...; Dask not imported)
        raise TypeError(f"{name} is a dask Delayed object: pass a Dask array "
                        f"(dask.array.from_delayed({name}, shape, dtype)) or its computed value.")


def as_real_array(value, name, *, min_ndim=1, native=True):
    """Convert ``value`` to an ndarray of a supported real dtype in the
    machine's byte order, without copying when it already is one.  Never
    writes to the input.  ``native=False``: in its own byte order, for a
    caller that converts what it reads a tile at a time."""
    refuse_masked(value, name)
    refuse_delayed(value, name)  # (before the sparse test: a Delayed answers every attribute)
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):  # (NumPy takes it as an object)
        raise TypeError(f"{name} is a SciPy sparse {type(value).__name__}: cosim_np takes dense "
                        f"arrays; convert it with {name}.toarray().")
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        hint = (" (a bank takes kernels of one length: search with each length apart)"
                if name == "kernel" and "inhomogeneous" in str(exc) else "")
        raise TypeError(f"{name} must be array-like; {exc}{hint}") from None
    if array.dtype == object and type(value).__module__.startswith("pandas"):
        # (nullable columns, Int64 or Float64, come out as objects)
        raise TypeError(f"{name} is a pandas {type(value).__name__} that NumPy reads as objects "
                        f"(nullable dtypes such as Int64 or Float64); convert it with "
                        f"{name}.to_numpy(dtype=float, na_value=np.nan).")
    output_dtype(array.dtype, name)
    if native and not array.dtype.isnative:
        # big-endian files (SEG-Y, SAC, FITS) read as they are: the kernels
        # read native numbers only
        array = array.astype(array.dtype.newbyteorder("="))
    check_ndim(array.ndim, name, min_ndim)
    return array


def check_ndim(ndim, name, min_ndim):
    """``name``'s array has at least ``min_ndim`` dimensions."""
    if ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension"
            f"{'s' if min_ndim > 1 else ''}; got a {ndim}-d array."
        )


def check_axis(axis, ndim, name="axis"):
    """Normalise one axis index for an array of ``ndim`` dimensions (an
    integer, not a bool: NumPy refuses ``axis=True`` too)."""
    try:
        if isinstance(axis, (bool, np.bool_)):
            raise TypeError
        index = operator.index(axis)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer or a tuple of integers; got {shown(axis)}.") from None
    if not -ndim <= index < ndim:
        raise ValueError(
            f"{name}={axis} is out of bounds for an array of {ndim} dimension"
            f"{'s' if ndim != 1 else ''}."
        )
    return index % ndim


def check_choice(value, name, choices):
    """``value`` must be one of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}; got {shown(value)}.")
    return value


def check_known_shape(array, name, *, min_ndim=0):
    """A lazy array whose size is known along every axis (Dask leaves NaN
    for chunks of sizes not yet computed, as after boolean indexing), of at
    least ``min_ndim`` dimensions (as ``as_real_array``)."""
    check_ndim(array.ndim, name, min_ndim)
    if any(size != size for size in array.shape):
        raise ValueError(f"{name} has chunks of unknown size (shape {array.shape}), as after "
                         f"boolean indexing; call {name}.compute_chunk_sizes() first (of a "
                         "DataArray, on its .data).")
    return array


def shown(value):
    """``value`` as an error message shows it: an array (or tensor) of more
    than one element by its shape and dtype, not its every element, and any
    other repr cut to a line."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and math.prod(shape) > 1:
        return f"an array of shape {shape} and dtype {getattr(value, 'dtype', '?')}"
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + " ..."


def _scalar_of(value, kinds):
    """The scalar in ``value`` if it is a 0-d array of one of the dtype
    ``kinds`` (NumPy takes one for a scalar), else ``value``."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in kinds:
        return value[()]
    return value


def check_positive_int(value, name, minimum=1):
    """An integer (not a bool, not a float) of at least ``minimum``."""
    value = _scalar_of(value, "iu")
    if type(value) is not int and (isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Integral, np.integer)
    )):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {shown(value)}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_bool(value, name):
    """A Python or NumPy bool, as ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {shown(value)} of type "
                        f"{type(value).__name__}.")
    return bool(value)


def check_real(value, name, *, finite=True, nonnegative=False, allow_nan=False):
    """A real scalar; by default it must be finite.  Returns a Python float."""
    # Plain floats first: the ABC check is slow when the interpreter's caches
    # are cold, as they are after every call on a long signal.
    value = _scalar_of(value, "fiu")
    if type(value) not in (float, int) and (isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    )):
        raise TypeError(f"{name} must be a real number; got {shown(value)}.")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float64 range
        number = math.inf if value > 0 else -math.inf
    if math.isnan(number):
        if allow_nan:
            return number
        kind = "a finite real number" if finite else "a real number, not NaN"
        raise ValueError(f"{name} must be {kind}; got {number}.")
    if finite and not math.isfinite(number):
        raise ValueError(f"{name} must be a finite real number; got {number}.")
    if nonnegative and number < 0:
        raise ValueError(f"{name} must be >= 0; got {number}.")
    return number


def check_out(out, shape, dtype, name="out"):
    """``out`` must be a writeable ndarray of exactly ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(out).__name__}.")
    if type(out) is not np.ndarray and not isinstance(out, np.memmap):
        # (a subclass reshapes and views as it likes: np.matrix stays 2-d,
        # and the kernels, which check no bounds, wrote past its end)
        raise TypeError(f"{name} must be a plain numpy.ndarray or numpy.memmap; got "
                        f"{type(out).__module__}.{type(out).__name__}: pass an ndarray (for "
                        f"instance {name}.view(np.ndarray), which writes into the same memory).")
    if out.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {out.shape}; the result needs shape {tuple(shape)}."
        )
    if out.dtype != dtype:
        check_byte_order(out, name)
        raise ValueError(
            f"{name} has dtype {out.dtype}; the result needs dtype {np.dtype(dtype)}."
        )
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; pass a writeable array.")
    return out


def check_byte_order(out, name="out"):
    """Results are written in the machine's byte order: an ``out`` of the
    other one is refused, saying so."""
    if not out.dtype.isnative:
        raise ValueError(f"{name} has dtype {out.dtype.str}, of the other byte order: results are "
                         f"written in the machine's byte order ({out.dtype.newbyteorder('=')}); "
                         "pass such an array, and convert it after if need be.")


def on_device(value):
    """Does ``value`` live in GPU memory?  (It has the CUDA array interface:
    CuPy arrays, PyTorch CUDA tensors, Numba device arrays; or it is a Numba
    device array of the simulator, which has none.)"""
    return hasattr(value, "__cuda_array_interface__") or bool(
        getattr(type(value), "__cuda_ndarray__", False)
    )


# --- embedding helpers

_MEMORY_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def check_memory(value, name, default):
    """A memory size in bytes: ``None`` (``default``), a positive integer (or
    a float of a whole number, ``1e6``), or a string such as ``"256MiB"``,
    ``"1.5 GB"``, ``"4096"`` (binary and decimal units, case-insensitive).
    Returns an int number of bytes."""
    if value is None:
        return int(default)
    if isinstance(value, str):
        import re

        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _MEMORY_UNITS:
            raise ValueError(
                f"{name} must be a number of bytes or a string such as '256MiB', "
                f"'64MB' or '1.5GiB'; got {value!r}."
            )
        number = float(match.group(1)) * _MEMORY_UNITS[unit]
        if unit in ("", "b") and number != math.floor(number):  # (as a float is refused)
            raise ValueError(f"{name} must be a whole number of bytes; got {value!r}.")
    elif isinstance(value, (numbers.Real, np.floating)) and not isinstance(
            value, (bool, np.bool_, numbers.Integral, np.integer)):
        number = float(value)  # (1e6, as '1e6' is taken; whole bytes, checked below)
        if math.isfinite(number) and number != math.floor(number):
            raise ValueError(f"{name} must be a whole number of bytes; got {value!r}.")
    elif isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Integral, np.integer)
    ):
        raise TypeError(
            f"{name} must be a number of bytes or a string such as '256MiB'; got "
            f"{shown(value)}."
        )
    else:
        number = int(value)
    if not number >= 1:
        raise ValueError(f"{name} must be at least 1 byte; got {value!r}.")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of bytes; got {value!r}.")
    return int(number)


def check_matrix(value, name):
    """A 2-d real array ``(rows, d)`` (see :func:`as_real_array`)."""
    array = as_real_array(value, name)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-d array of shape (rows, d), one vector per row; "
            f"got a {array.ndim}-d array of shape {array.shape}."
        )
    return array


def check_axes(axis, ndim, name="axis"):
    """One axis or a non-empty tuple of distinct axes; returns a sorted tuple
    of non-negative axes."""
    if isinstance(axis, (tuple, list)):
        if len(axis) == 0:
            raise ValueError(f"{name} must name at least one axis; got {axis!r}.")
        axes = tuple(check_axis(item, ndim, name) for item in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{name} must not repeat an axis; got {tuple(axis)!r}.")
        return tuple(sorted(axes))
    return (check_axis(axis, ndim, name),)


def check_dtype_choice(dtype, name):
    """``None`` or one of float16, float32, float64 (as a dtype)."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{name} must be float16, float32 or float64; got {shown(dtype)}.") from None
    if dt not in _FLOAT_OUT:
        raise TypeError(f"{name} must be float16, float32 or float64; got {dt}.")
    return dt
