"""The one decorator every CPU kernel uses.

* ``nogil=True`` so threads and Dask can run kernels side by side;
* ``cache=True`` so a second process loads compiled code instead of compiling,
  falling back to in-memory compilation when Numba finds no writable cache
  directory (read-only installs, locked-down clusters);
* ``error_model="numpy"``: division follows IEEE (inf/NaN), so the loops carry
  no hidden zero-division checks;
* no ``fastmath``: the kernels rely on NaN/inf propagating and on the written
  order of floating-point operations.  The one exception, ``contract=True``
  (for the direct dots' inner loops), lets LLVM fuse a multiply and the add
  that follows it into one fused multiply-add: rounded once instead of
  twice, still in the written order, NaN and inf kept.
"""

import warnings

import numba

_OPTIONS = dict(nogil=True, error_model="numpy")


def jit(func=None, *, njit=numba.njit, contract=False, inline=False):
    """Compile ``func`` with the project's options; usable as ``@jit`` (and
    ``@jit(contract=True)``, see the module's docstring).  ``inline=True``:
    Numba inlines it into its callers, for a short loop that a call would
    keep from being vectorised in its caller."""
    if func is None:
        return lambda f: jit(f, njit=njit, contract=contract, inline=inline)
    options = dict(_OPTIONS, fastmath={"contract"}) if contract else dict(_OPTIONS)
    if inline:
        options["inline"] = "always"
    try:
        return njit(cache=True, **options)(func)
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
        return njit(cache=False, **options)(func)
