"""Compile ahead what the common calls need: ``python -m cosim_np compile``.

cosim_np's kernels are compiled by Numba on their first use and cached on
disk (next to the package, or in ``NUMBA_CACHE_DIR``), so the first call in a
new installation pays for the compilation: seconds for a short kernel, more
for the FFT path.  Calling each public function once on a tiny input of each
dtype, the way real calls do, leaves every kernel they use in the cache: run
it when building a container or HPC image, or before a notebook session.
"""

import time

import numpy as np

# (label, function of the dtype making the calls); each label is one line of
# progress.
_RNG = np.random.default_rng(0)


def _signal(dtype, shape=(2, 700)):
    return _RNG.standard_normal(shape).astype(dtype)


def _loud_beside_quiet(dtype):
    """Noise whose second half is 10**8 times louder: for a long kernel, the
    FFT path plans again, and its quiet windows beside the loud ones take
    direct dots (kernels of their own, compiled where a call needs them)."""
    signal = _signal(dtype, (8000,))
    signal[4000:] *= 1e8
    return signal


def _sliding_calls(dtype):
    from . import find_matches, sliding_cosine, windowed_norm

    x = _signal(dtype)
    short = _signal(dtype, (6, 200))
    image = _signal(dtype, (40, 40))
    # gray and color (channels first), large enough to be cut into bands as
    # real images are (the kernels see the bands' views; config.SPATIAL_BAND_WINDOWS)
    images = (_signal(dtype, (260, 160)), _signal(dtype, (3, 260, 160)))
    tall_images = (_signal(dtype, (600, 32)), _signal(dtype, (3, 600, 32)))  # (FFT bands)

    def template(picture, shape):  # (a color template spans the three channels)
        return _signal(dtype, (1, 3) + shape if picture.ndim == 3 else shape)
    return [
        ("sliding_cosine, kernels of up to 4 taps (one kernel each)",
         lambda: [sliding_cosine(x, _signal(dtype, (m,))) for m in (1, 2, 3, 4)]),
        ("sliding_cosine, up to 127 taps, banks, with sharpness",
         lambda: (sliding_cosine(x, _signal(dtype, (16,))),
                  sliding_cosine(x, _signal(dtype, (16,)), sharpness=2.0),
                  sliding_cosine(x, _signal(dtype, (2, 5)), sharpness=2.0))),
        ("sliding_cosine, longer and multi-channel kernels, method='direct', strides",
         lambda: (sliding_cosine(x, _signal(dtype, (100,)), method="direct"),
                  sliding_cosine(x, _signal(dtype, (200,)), method="direct"),
                  sliding_cosine(x, _signal(dtype, (3, 2, 7)), method="direct"),
                  sliding_cosine(x, _signal(dtype, (16, 9)), method="direct", stride=2))),
        ("sliding_cosine over two axes (images): gray and color, templates of 3 x 3 and 8 x 8, "
         "center, banks",
         lambda: ([sliding_cosine(picture, template(picture, (m, m)), axis=(-2, -1), center=center)
                   for picture in images for m in (3, 8) for center in (False, True)],
                  sliding_cosine(images[0], _signal(dtype, (2, 5, 5)), axis=(0, 1)),
                  sliding_cosine(np.stack([images[1]] * 2), template(images[1], (8, 8)),
                                 axis=(-2, -1)))),
        ("sliding_cosine over two axes by FFT (templates of 256 pixels and more), center",
         lambda: [sliding_cosine(picture, template(picture, shape), axis=(-2, -1), center=center)
                  for picture in tall_images
                  for shape, center in (((16, 16), False), ((12, 24), False), ((16, 16), True))]),
        ("sliding_cosine, method='fft' (and 'auto' for long kernels)",
         lambda: (sliding_cosine(_signal(dtype, (2, 3000)), _signal(dtype, (200,)), method="fft"),
                  # quiet windows beside loud ones: their dots directly
                  sliding_cosine(_loud_beside_quiet(dtype), _signal(dtype, (1024,)), method="fft"),
                  sliding_cosine(x, _signal(dtype, (3, 2, 7)), method="fft"),
                  sliding_cosine(x, [1.0, 2.0, 3.0], method="fft"))),
        ("sliding_cosine and windowed_norm, batches of short rows (a window or a few each)",
         lambda: (windowed_norm(short, 16), windowed_norm(short, 200),
                  sliding_cosine(short, _signal(dtype, (200,)), method="direct"),
                  sliding_cosine(short.reshape(3, 2, 200), _signal(dtype, (4, 2, 9)),
                                 method="direct"),
                  sliding_cosine(short[:, :9], _signal(dtype, (2, 9)), method="direct"))),
        ("sliding_cosine, center=True",
         lambda: [sliding_cosine(x, _signal(dtype, (m,)), center=True, method=method)
                  for m, method in ((3, "auto"), (16, "auto"), (100, "direct"), (200, "fft"))]),
        # (kernels cut from the signals: every call finds matches, whose ordering
        # compiles kernels of its own, whatever the random draws)
        ("find_matches: threshold, k, one and several rows, images",
         lambda: (find_matches(x, x[0, 100:116], threshold=0.5),
                  find_matches(x[0], x[0, 100:116], threshold=0.5),
                  find_matches(x, x[0, 100:116], k=3),
                  find_matches(image, image[10:13, 10:13], threshold=0.5, axis=(0, 1)))),
        ("sliding_cosine_grad, one and two axes, center",
         lambda: (_grad_call(x, _signal(dtype, (16,)), -1),
                  _grad_call(x, _signal(dtype, (16,)), -1, center=True),
                  _grad_call(image, _signal(dtype, (3, 3)), (0, 1)))),
    ]


def _narrow_sharpened_calls(dtype):
    """Float32 results sharpened take a power of their own, in kernels
    compiled for it (``_cpu/powers.py``): one call per path."""
    from . import sliding_cosine

    if dtype.itemsize >= 8:
        return []
    x = _signal(dtype)
    image, tall_image = _signal(dtype, (260, 160)), _signal(dtype, (600, 32))
    return [
        ("sliding_cosine sharpened, float32 results: one and two axes, direct and FFT, center",
         lambda: ([sliding_cosine(x, _signal(dtype, shape), sharpness=1.5, method=method)
                   for shape, method in (((16,), "auto"), ((100,), "direct"), ((200,), "fft"),
                                         ((3, 2, 7), "direct"))],
                  sliding_cosine(x, _signal(dtype, (16,)), sharpness=1.5, center=True),
                  [sliding_cosine(picture, _signal(dtype, shape), axis=(0, 1), sharpness=1.5)
                   for picture, shape in ((image, (3, 3)), (image, (8, 8)),
                                          (tall_image, (16, 16)))])),
    ]


def _grad_call(signal, kernel, axis, center=False):
    """``sliding_cosine_grad`` with a gradient of ones for every score."""
    from . import sliding_cosine, sliding_cosine_grad

    ones = np.ones_like(sliding_cosine(signal, kernel, axis=axis))
    return sliding_cosine_grad(signal, kernel, ones, axis=axis, center=center)


def _other_calls(dtype):
    from . import (
        cosine_similarity,
        pairwise_cosine,
        scaled_cosine,
        set_similarity,
        sharpen,
        topk_cosine,
        windowed_norm,
    )

    x = _signal(dtype)
    rows = _signal(dtype, (40, 8))
    return [
        ("windowed_norm, one and two axes, center",
         lambda: (windowed_norm(x, 3), windowed_norm(x, 16), windowed_norm(x, 200),
                  windowed_norm(x, 16, center=True),
                  windowed_norm(_signal(dtype, (40, 40)), (5, 5), axis=(0, 1)))),
        ("sharpen", lambda: sharpen(x, 2.0)),
        ("cosine_similarity",  # (contiguous, strided and side-by-side vectors: compiled apart)
         lambda: [cosine_similarity(first, second, axis=axis)
                  for first in (rows, rows[::-1], np.asfortranarray(rows))
                  for second in (rows, rows[::-1]) for axis in (-1, 0)]),
        ("pairwise_cosine, topk_cosine",
         lambda: (pairwise_cosine(rows), pairwise_cosine(rows, rows[:5]),
                  # views (columns of a wider array) and Fortran order (a transpose)
                  pairwise_cosine(rows[:, ::2]), pairwise_cosine(np.asfortranarray(rows)),
                  pairwise_cosine(_signal(dtype, (300, 64))),  # (row blocks per thread)
                  topk_cosine(rows, rows, 3))),
        ("set_similarity", lambda: [set_similarity(rows, rows[:7], measure=measure)
                                    for measure in ("mean", "centroid", "greedy", "chamfer")]),
        ("scaled_cosine", lambda: scaled_cosine(rows, rows[::-1])),
        ("the PyTorch layer's powers per channel", lambda: _layer_powers(dtype)),
    ]


def _read_only(array):
    """A read-only copy, as pandas' ``to_numpy()`` and a memory map opened
    ``'r'`` give: Numba compiles the kernels that read it in place apart."""
    array = np.array(array)
    array.setflags(write=False)
    return array


def _read_only_calls(dtype):
    from . import find_matches, pairwise_cosine, sliding_cosine, windowed_norm

    x = _read_only(_signal(dtype, (2, 20000)))
    image = _read_only(_signal(dtype, (260, 160)))
    return [
        ("read-only signals (pandas' to_numpy, memory maps opened 'r'): sliding_cosine, "
         "windowed_norm, find_matches, images, pairwise_cosine",
         lambda: ([sliding_cosine(x, _signal(dtype, (m,))) for m in (1, 2, 3, 4, 16, 64)],
                  sliding_cosine(x, _signal(dtype, (256,)), center=True),
                  sliding_cosine(x, _signal(dtype, (1024,))),
                  windowed_norm(x, 50), find_matches(x, _signal(dtype, (50,)), k=3),
                  [sliding_cosine(image, _signal(dtype, (m, m)), axis=(0, 1), center=center)
                   for m in (3, 8) for center in (False, True)],
                  # (contiguous, and a view of columns)
                  pairwise_cosine(_read_only(_signal(dtype, (300, 64)))),
                  pairwise_cosine(_read_only(_signal(dtype, (300, 128)))[:, :64]))),
    ]


def _layer_powers(dtype):
    """What ``cosim_np.torch.SharpenedCosine1d`` adds to the kernels of
    ``sliding_cosine`` and ``sliding_cosine_grad`` (torch itself not needed)."""
    from ._cpu import drivers

    scores = np.clip(_signal(dtype, (2, 3, 50)), -1, 1)
    exponents = np.array([0.5, 1.0, 2.0])
    sharpened = scores.copy()
    drivers.sharpen_rows(sharpened, exponents)
    drivers.sharpen_rows_grad(scores, sharpened, np.ones_like(scores), exponents, True)


def _near_the_limits():
    """float64 signals whose squares leave the float64 range take a
    recomputation of their own, on every path."""
    from . import sliding_cosine, windowed_norm

    x = _signal(np.float64) * 1e300
    return [
        ("sliding_cosine and windowed_norm, float64 near the overflow limit",
         lambda: [sliding_cosine(x, _signal(np.float64, (m,)), method=method)
                  for m, method in ((3, "direct"), (16, "direct"), (100, "direct"), (200, "fft"))]
         + [sliding_cosine(x, _signal(np.float64, (3, 2, 7)), method="direct"),
            windowed_norm(x, 16)]),
    ]


def calls(dtypes=("float32", "float64"), only=None):
    """``[(label, dtype, call)]``: every call that ``compile`` makes (those
    whose line, ``"label (dtype)"`` as ``--list`` prints it, contains
    ``only``, if given)."""
    planned = []
    for dtype in dict.fromkeys(np.dtype(d) for d in dtypes):  # (each once, named twice too)
        for label, call in (_sliding_calls(dtype) + _narrow_sharpened_calls(dtype)
                            + _other_calls(dtype) + _read_only_calls(dtype)):
            planned.append((label, dtype.name, call))
    if np.dtype(np.float64).name in [np.dtype(d).name for d in dtypes]:
        planned += [(label, "float64", call) for label, call in _near_the_limits()]
    return [entry for entry in planned if only is None or only in line(entry)]


def line(entry):
    """A call's line in ``--list`` and the progress: ``"label (dtype)"``."""
    return f"{entry[0]} ({entry[1]})"


def cache_location():
    """Where Numba caches this package's kernels, as Numba chose it (the
    first of ``NUMBA_CACHE_DIR``, the package's ``__pycache__`` folders and
    Numba's per-user cache folder that it can write to), said in words."""
    import os

    import numba

    path = cache_path()
    asked = numba.config.CACHE_DIR
    if path is None and _read_only_cache():
        return (f"nowhere: NUMBA_CACHE_DIR={asked} can be read but not written (its kernels "
                "load, and those it lacks are compiled in memory in each process); compile "
                "ahead as a user who can write it, or set NUMBA_CACHE_DIR to a writable folder")
    if path is None:
        return ("nowhere: Numba finds no writable cache folder, so kernels are compiled in "
                "memory in each process; set NUMBA_CACHE_DIR to a writable folder")
    package = os.path.dirname(os.path.abspath(__file__))
    if asked and _is_within(path, asked):
        return asked
    where = (f"next to the package, in the __pycache__ folders of {package}"
             if _is_within(path, package) else
             f"{path}, in Numba's per-user cache")
    if asked:
        return f"{where}: NUMBA_CACHE_DIR={asked} cannot be written to"
    if not _is_within(path, package):
        where += ("; the package's folder is not writable: set NUMBA_CACHE_DIR to share the "
                  "kernels between users")
    return where


def cache_path():
    """The folder Numba caches this package's kernels in, or None where it
    can write to none."""
    # Numba tries each place in turn and keeps the first it can write to: an
    # unusable NUMBA_CACHE_DIR is passed over without a word
    if _read_only_cache():
        return None
    return getattr(_kernel_cache(), "_cache_path", None)


def _read_only_cache():
    """Whether the kernels' cache is a NUMBA_CACHE_DIR read but not written."""
    from ._cpu import _jit

    locator = getattr(getattr(_kernel_cache(), "_impl", None), "locator", None)
    return isinstance(locator, _jit._ReadableCacheDirLocator)


def _kernel_cache():
    """The Numba cache of the package's kernels (a kernel's; None where JIT is off)."""
    from ._cpu import sliding

    return getattr(sliding.sharpen_kernel, "_cache", None)


def _is_within(path, folder):
    import os

    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _print_now(text):
    """A line of progress shown as it is written, piped too (a container
    build's log held every line until the end: minutes of silence)."""
    print(text, flush=True)


def compile_ahead(dtypes=("float32", "float64"), only=None, write=_print_now):
    """Make every call of :func:`calls` (those whose line contains ``only``,
    if given), writing a line of progress for each; returns the seconds taken."""
    import numba

    if numba.config.DISABLE_JIT:
        raise ValueError("nothing can be compiled ahead: NUMBA_DISABLE_JIT is set, and "
                         "cosim_np's kernels do not run as Python; unset it.")
    planned = calls(dtypes, only)
    if not planned:
        raise ValueError(f"no compiled function matches {only!r}; see 'python -m cosim_np "
                         "compile --list'.")
    where = cache_location()
    if cache_path() is None:
        raise ValueError(f"nothing can be compiled ahead: the cache lies {where}.")
    write(f"Compiling cosim_np's kernels into Numba's cache ({where}).")
    start = time.perf_counter()
    for index, (label, dtype, call) in enumerate(planned, 1):
        began = time.perf_counter()
        call()
        write(f"[{index}/{len(planned)}] {line((label, dtype))}: "
              f"{time.perf_counter() - began:.1f} s")
    total = time.perf_counter() - start
    write(f"Done in {total:.1f} s; later processes load these kernels from the cache.")
    return total
