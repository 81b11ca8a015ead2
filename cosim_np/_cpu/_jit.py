"""The one decorator every CPU kernel uses.

* ``nogil=True`` so threads and Dask can run kernels side by side;
* ``cache=True`` so a second process loads compiled code instead of compiling,
  falling back to in-memory compilation when Numba finds no writable cache
  directory (read-only installs, locked-down clusters).  A ``NUMBA_CACHE_DIR``
  this process can read but not write (kernels compiled into a container
  image or a shared folder by another user) is read from, its missing
  kernels compiled in memory; a kernel that cannot be saved (a folder
  another user owns) warns once and is not saved, where Numba would raise
  out of the call;
* ``error_model="numpy"``: division follows IEEE (inf/NaN), so the loops carry
  no hidden zero-division checks;
* no ``fastmath``: the kernels rely on NaN/inf propagating and on the written
  order of floating-point operations;
* ``no_cfunc_wrapper=True``: nothing takes a kernel's C address
  (``.ctypes``, ``.cfunc``), and the wrapper's compilation is a share of
  every first call;
* ``jit(from_python=False)`` for the helpers that only compiled code calls:
  Numba builds them no CPython wrapper either (the code that unboxes their
  arguments, another share of a first call).  Such a helper's dispatcher is
  a :class:`CompiledOnly`, which refuses a call from Python: without the
  wrapper that call would reach no code at all.

:func:`fma` is a fused multiply-add written out (rounded once), for the
direct dots and sums of squares: their vectorised loops and the one-window
loops that recompute some of their windows must give the same bits, which
an explicit ``fma`` guarantees and LLVM's choice to fuse or not would not.

:func:`as_float64` hands a loop float64 samples: float32 ones converted
once, rather than once per tap that reads them.

:func:`is_float64` tells float64 arrays from narrower ones when a kernel
is compiled, so that code for float64 samples only is no code at all for
float32 ones; :func:`is_contiguous` tells C-ordered arrays from others the
same way (a loop storing into the former is vectorised).

:func:`borrowed` views an argument without counting references to its
memory, for loops that take many views of short rows.

:func:`float_bits` and :func:`bits_float` cast between a float64 and its
bits, for minima and maxima of non-negative floats taken as integers.

Constants. A ``@jit`` function called from compiled code with a constant
(``0``, ``True``), or with a variable whose first value is one (``t = 0``
before a loop), is compiled for that constant's literal type, and again for
the plain type where another call passes a variable: seconds of a first call
for nothing.  Kernels pass typed constants instead (``np.int64(0)``,
``np.bool_(True)``) or runtime flags, and small helpers called with
constants everywhere are declared with :func:`helper`.  Numba compiles such
an overload once for each set of flags its callers were compiled with: one
that kernels with and without a CPython wrapper both call would be compiled
twice, and is ``jit(inline=True)`` instead (``_tap_offsets``, ``_tap_weights``).
``tests/test_compile.py`` checks that compiling ahead compiles no function
twice for one signature.
"""

import functools
import os
import warnings

import numba
from llvmlite import ir
from numba.core import caching, cgutils, types
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic, overload, register_jitable
from numba.np.arrayobj import make_array

OPTIONS = dict(nogil=True, error_model="numpy", no_cfunc_wrapper=True)


class CompiledOnly(CPUDispatcher):
    """The dispatcher of a helper compiled without a CPython wrapper
    (``jit(from_python=False)``): compiled kernels call it as any other,
    and a call from Python raises ``TypeError`` (Numba would jump to the
    missing wrapper)."""

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.py_func.__module__}.{self.py_func.__qualname__} is a helper of "
                        "compiled kernels (jit(from_python=False)); it cannot be called from "
                        "Python")


_said = {"no cache": False, "not saved": False}


class _ReadableCacheDirLocator(caching.UserProvidedCacheLocator):
    """``NUMBA_CACHE_DIR`` where this process may read but not write: Numba
    passes over such a folder (its locators want to write), and every
    kernel compiled into it ahead of time was compiled again.  Taken where
    the folder holds this module's kernels already."""

    def ensure_cache_path(self):
        path = self.get_cache_path()
        if not (os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK)):
            raise OSError(f"no readable Numba cache folder {path}")


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [caching.UserProvidedCacheLocator, _ReadableCacheDirLocator,
                        *caching.CompileResultCacheImpl._locator_classes[1:]]


class _KernelCache(caching.FunctionCache):
    """Numba's cache of compiled functions, finding a read-only
    ``NUMBA_CACHE_DIR`` too, and warning where a kernel cannot be saved."""

    _impl_class = _KernelCacheImpl

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            if not _said["not saved"]:  # (once a process)
                _said["not saved"] = True
                warnings.warn(
                    f"cosim_np: a compiled kernel could not be saved in the Numba cache folder "
                    f"{self.cache_path} ({exc}); kernels missing there are compiled in memory "
                    "in each process. A folder that one user fills and others use must be "
                    "readable by all, and writable by all (chmod -R a+rwX, without the sticky "
                    "bit) for the others to add what they compile.",
                    RuntimeWarning,
                    stacklevel=2,
                )


def jit(func=None, *, njit=numba.njit, inline=False, from_python=True):
    """Compile ``func`` with the project's options; usable as ``@jit``.
    ``inline=True``: Numba inlines it into its callers, for a short loop
    that a call would keep from being vectorised in its caller.
    ``from_python=False``: only compiled code calls it (no CPython wrapper,
    see above)."""
    if func is None:
        return lambda f: jit(f, njit=njit, inline=inline, from_python=from_python)
    if numba.config.DISABLE_JIT:
        return _refused_without_jit(func)
    options = dict(OPTIONS)
    if inline:
        options["inline"] = "always"
    if not from_python:
        options["no_cpython_wrapper"] = True
    dispatcher = njit(cache=False, **options)(func)
    try:
        # (what cache=True does, with the cache above)
        dispatcher._cache = _KernelCache(dispatcher.py_func)
    except RuntimeError as exc:
        # Numba raises "cannot cache function ...: no locator available"
        # when neither __pycache__ nor its user-wide cache directory is
        # writable (nor NUMBA_CACHE_DIR readable).
        if "cannot cache" not in str(exc):
            raise
        if not _said["no cache"]:  # (once a process, not once for each of ~200 kernels)
            _said["no cache"] = True
            warnings.warn(
                "cosim_np: no writable Numba cache directory; its kernels are compiled in "
                "memory on first use in each process (set NUMBA_CACHE_DIR to a writable "
                "directory to keep them between sessions).",
                RuntimeWarning,
                stacklevel=2,
            )
    return _compiled_only(dispatcher, from_python)


def _refused_without_jit(func):
    """``func`` as a function that refuses to run: under NUMBA_DISABLE_JIT
    the kernels would run as Python, where the intrinsics have no code and
    NumPy scalars do not behave as the compiled types do (in a try, some
    results came out wrong by up to 0.99, silently)."""

    @functools.wraps(func)
    def refused(*args, **kwargs):
        raise RuntimeError(
            "cosim_np's kernels do not run with NUMBA_DISABLE_JIT=1: as Python they would "
            "lose the compiled arithmetic they are written for (LLVM intrinsics, fixed-width "
            "numbers) and could give wrong results; unset NUMBA_DISABLE_JIT in the process "
            f"that calls cosim_np (kernel {func.__module__}.{func.__qualname__}).")

    return refused


def _compiled_only(dispatcher, from_python):
    if not from_python and isinstance(dispatcher, CPUDispatcher):
        dispatcher.__class__ = CompiledOnly  # (a subclass adding no state)
    return dispatcher


def helper(func):
    """Compile a small helper of the kernels once for its argument types,
    whatever constants its callers pass (an overload, which Numba types
    with plain ints and bools first; see "Constants" above).  Usable from
    compiled code only; its compiled code is cached with its callers'."""
    return register_jitable(**OPTIONS)(func)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (float64; LLVM's ``llvm.fma``): one
    instruction on a CPU with fused multiply-add, the same bits in a
    vectorised loop as in a scalar one."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(double, [double] * 3), "llvm.fma.f64")
        return builder.call(function, args)

    return sig, codegen


@intrinsic
def is_float64(typingctx, array):
    """Whether ``array`` holds float64 (or wider float) samples: a constant
    of the compiled code, which LLVM folds into the branches testing it (a
    test of ``array.itemsize`` is made at run time)."""
    wide = isinstance(array.dtype, types.Float) and array.dtype.bitwidth >= 64

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, wide)

    return types.boolean(array), codegen


@intrinsic
def is_contiguous(typingctx, array):
    """Whether ``array`` is typed C-contiguous: a constant of the compiled
    code (see :func:`is_float64`).  A loop storing into such an array is
    vectorised; one storing into an array of any layout is not."""
    contiguous = array.layout == "C"

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, contiguous)

    return types.boolean(array), codegen


@intrinsic
def float_bits(typingctx, value):
    """The bits of a float64 as an int64 (a bit cast).  For finite
    non-negative floats their order is the order of the ints, and an integer
    minimum or maximum vectorises where a floating one without ``fastmath``
    does not."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def bits_float(typingctx, bits):
    """The float64 whose bits are the int64 ``bits`` (:func:`float_bits` undone)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def borrowed(typingctx, array):
    """``array`` as a view that holds no reference to its memory: the
    views taken of it (rows, slices) then cost no atomic reference count
    each, which in a loop over short rows was most of its time.  Only for
    an argument of the kernel that borrows it (its caller keeps the memory
    alive for the call), and never returned or stored."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        view = make_array(signature.args[0])(context, builder, value=args[0])
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        return view._getvalue()

    return array(array), codegen


def as_float64(xs, buf, convert=True):
    """``xs`` (1-D) as float64: ``xs`` itself when it is float64, else
    ``buf[:xs.size]``, into which its values are converted (exactly) unless
    ``convert`` is False (``buf`` holds them already).  For a loop that
    reads each sample once per tap: converting float32 on every read costs
    the dots' loops as much as a third of their time (two micro-operations
    on the ports the multiply-adds use)."""
    if xs.dtype == buf.dtype:
        return xs
    if convert:
        buf[: xs.size] = xs
    return buf[: xs.size]


@overload(as_float64, jit_options=dict(OPTIONS))
def _as_float64(xs, buf, convert=True):
    if xs.dtype == types.float64:
        return lambda xs, buf, convert=True: xs

    def converted(xs, buf, convert=True):
        out = buf[: xs.size]
        if convert:
            for p in range(xs.size):
                out[p] = xs[p]
        return out

    return converted
