"""The one decorator every CPU kernel uses.

* ``nogil=True`` so threads and Dask can run kernels side by side;
* ``cache=True`` so a second process loads compiled code instead of compiling,
  falling back to in-memory compilation when Numba finds no writable cache
  directory (read-only installs, locked-down clusters);
* ``error_model="numpy"``: division follows IEEE (inf/NaN), so the loops carry
  no hidden zero-division checks;
* no ``fastmath``: the kernels rely on NaN/inf propagating and on the written
  order of floating-point operations.
"""

import warnings

import numba

_OPTIONS = dict(nogil=True, error_model="numpy")


def jit(func=None, *, njit=numba.njit):
    """Compile ``func`` with the project's options; usable as ``@jit``."""
    if func is None:
        return lambda f: jit(f, njit=njit)
    try:
        return njit(cache=True, **_OPTIONS)(func)
    except RuntimeError as exc:
        # Numba raises "cannot cache function ...: no locator available" at
        # decoration time when neither __pycache__ nor its user-wide cache
        # directory is writable.
        if "cannot cache" not in str(exc):
            raise
        warnings.warn(
            f"cosim_np: no writable Numba cache directory for {func.__name__}; "
            "kernels are compiled in memory on first use (set NUMBA_CACHE_DIR "
            "to a writable directory to keep them between sessions).",
            RuntimeWarning,
            stacklevel=2,
        )
        return njit(cache=False, **_OPTIONS)(func)
