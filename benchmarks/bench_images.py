"""Template matching in images: cosim_np against OpenCV and scikit-image,
side by side in one run (issue 18, item 3).

For a ``--size`` x ``--size`` float32 image and square templates of
``--m`` pixels a side, best of ``--repeat`` interleaved runs after a
warm-up, one thread everywhere (``numba.set_num_threads(1)``,
``cv2.setNumThreads(1)``; scikit-image's FFTs run on one thread):

* ``TM_CCORR_NORMED``: OpenCV ``matchTemplate`` against ``sliding_cosine(image,
  template, axis=(0, 1))``;
* ``TM_CCOEFF_NORMED``: the same with ``center=True``; scikit-image's
  ``match_template`` (float64, centered, the anchor of the same scores) beside
  it, once per size (it is slow);
* two threads: cosim_np with ``numba.set_num_threads(2)`` against one.

Images: Gaussian noise and scikit-image's photographs (``corpus.image``),
the template cut from the image itself; the last column says how much
longer a photograph takes than noise (the corpus rule: at most 1.25).

``--transforms`` prints what the float64 transforms alone of
``method="fft"`` take on the image (the bound of the long templates).
``--accuracy`` prints the accuracy table instead: the largest error of
each against a long-double reference (two passes per window) on the
images where the anchors' four-corner differences fail.

``--matches`` times ``find_matches(image, template, axis=(0, 1), k=10)``
beside ``sliding_cosine`` alone (what its scores cost) and beside the
usual recipe with the anchors: OpenCV's ``matchTemplate`` then
scikit-image's ``peak_local_max`` (the ten best peaks at least half a
template apart).

``--first-call`` times the first calls in a fresh process, with an empty
Numba cache and then with that cache warm: a plain 8 x 8 match, a
centered one and an FFT one (40 x 40) on a 512 x 512 float32 image.

Usage::

    python benchmarks/bench_images.py                       # the issue's table
    python benchmarks/bench_images.py --quick               # a smoke test
    python benchmarks/bench_images.py --accuracy            # the accuracy table
    python benchmarks/bench_images.py --matches             # find_matches
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numba
import numpy as np
from bench_sliding import best_times, cpu_model  # (this folder: run as benchmarks/bench_images.py)
from corpus import IMAGES, image, template

from cosim_np import sliding_cosine


def time_row(picture, m, center, repeat, threads=(1,)):
    """``(ours per thread count..., opencv)`` seconds for one image and size."""
    import cv2

    kernel = template(picture, m).astype(np.float32)
    method = cv2.TM_CCOEFF_NORMED if center else cv2.TM_CCORR_NORMED
    funcs = []
    for count in threads:
        def ours(count=count):
            numba.set_num_threads(count)
            try:
                sliding_cosine(picture, kernel, axis=(0, 1), center=center)
            finally:
                numba.set_num_threads(1)
        funcs.append(ours)
    funcs.append(lambda: cv2.matchTemplate(picture, kernel, method))
    return best_times(funcs, repeat)


def skimage_time(picture, m, repeat):
    from skimage.feature import match_template

    kernel = template(picture, m)
    return best_times([lambda: match_template(picture.astype(np.float64), kernel)],
                      max(1, repeat // 3))[0]


def reference(x, k, center):
    """Every valid window's (centered) cosine with ``k``, two passes per
    window in long double."""
    x = np.asarray(x, dtype=np.longdouble)
    k = np.asarray(k, dtype=np.longdouble)
    w = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    if center:
        w = w - w.mean(axis=(-2, -1), keepdims=True)
        k = k - k.mean()
    dots = np.einsum("ijab,ab->ij", w, k)
    norms = np.sqrt(np.einsum("ijab,ijab->ij", w, w)) * np.sqrt(np.sum(k * k))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / norms, 0.0).astype(np.float64)


def accuracy_cases():
    """``(name, image, template, windows to judge)`` where the anchors fail."""
    import skimage.data

    rng = np.random.default_rng(0)
    bright = 1e-3 * rng.standard_normal((64, 64))
    bright[30, 30] = 1e8
    without = np.ones((57, 57), bool)
    without[23:31, 23:31] = False  # (the windows that hold the bright pixel)
    near = 0.5 + 1e-9 * np.random.default_rng(1).standard_normal((20, 20))
    half = np.ones((6, 6))
    half[:3] = 0
    page = skimage.data.page().astype(np.float64) / 255.0
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    camera = skimage.data.camera().astype(np.float64) / 255.0
    return [
        ("the cameraman, a 3 x 3 template cut from it (its flat sky)", camera,
         camera[100:103, 200:203].copy(), None),
        ("a pixel of 1e8 in 1e-3 noise (windows without it)", bright,
         rng.standard_normal((8, 8)), without),
        ("0.5 + 1e-9 noise (scikit-image's test_no_nans)", near, half, None),
        ("a page of text, a one-pixel template (test_bounding_values)", page, delta, None),
    ]


def accuracy_table():
    import cv2
    from skimage.feature import match_template

    print(f"CPU: {cpu_model()}; largest |error| against long double, and the count of "
          "scores outside [-1, 1]\n")
    print("| image | score | OpenCV (float32) | scikit-image (float64) | cosim_np float32 | "
          "cosim_np float64 |")
    print("|---|---|---|---|---|---|")
    for name, x, k, judged in accuracy_cases():
        for center in (False, True):
            # (the float32 columns against the reference of the float32 image: what the
            # cast itself loses is the data's, not the method's)
            want = reference(x, k, center)
            want32 = reference(x.astype(np.float32), k.astype(np.float32), center)
            mask = np.ones(want.shape, bool) if judged is None else judged
            cv_method = cv2.TM_CCOEFF_NORMED if center else cv2.TM_CCORR_NORMED
            k32 = k.astype(np.float32)
            results = [(cv2.matchTemplate(x.astype(np.float32), k32, cv_method), want32),
                       (match_template(x, k) if center else None, want),
                       (sliding_cosine(x.astype(np.float32), k32, axis=(0, 1), center=center),
                        want32),
                       (sliding_cosine(x, k, axis=(0, 1), center=center), want)]
            cells = []
            for got, want in results:
                if got is None:
                    cells.append("(centered only)")
                    continue
                error = np.abs(got.astype(np.float64) - want)[mask]
                outside = int(np.sum(np.abs(got[mask]) > 1))
                cells.append(f"{np.nanmax(error):.1e}" + (f", {outside} outside" if outside else ""))
            label = "centered" if center else "plain"
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")


def transform_bound(size, sizes):
    """What the forward and inverse float64 transforms of the FFT path's
    bands take for an ``size`` x ``size`` image and ``m`` x ``m`` templates
    (the blocks ``_cpu.spatial_driver._FFTPlan`` transforms, one thread)."""
    from cosim_np._core import config
    from cosim_np._cpu import fft

    use_ducc0 = fft.engine() == "ducc0"
    for m in sizes:
        span = m - 1
        rows = fft.fast_length(max(config.SPATIAL_FFT_ROWS, 4 * (span + 1)))
        width = fft.fast_length(size)
        bands = -(-(size - span) // (rows - span))
        block = np.random.default_rng(0).standard_normal((1, rows, width))
        spectrum = np.empty((1, rows, width // 2 + 1), complex)
        out = np.empty_like(block)
        forward, inverse, copy = best_times([
            lambda: fft.forward_nd(block, spectrum, use_ducc0),
            lambda: fft.inverse_nd(spectrum.copy(), out, use_ducc0),
            lambda: spectrum.copy()], 7)
        inverse -= copy
        print(f"m={m}: bands {bands} of {rows} x {width}; forward {forward * 1e3:.2f} ms + "
              f"inverse {inverse * 1e3:.2f} ms a band; {bands * (forward + inverse) * 1e3:.1f} "
              "ms a call")


def matches_table(size, sizes, images, repeat):
    """``find_matches`` against its own scores and against OpenCV's scores
    with scikit-image's peak finding, one thread."""
    import cv2
    from skimage.feature import peak_local_max

    from cosim_np import find_matches

    print("| image | m | scores ms | find_matches ms | matching's share | OpenCV + "
          "peak_local_max ms | vs anchors |")
    print("|---|---|---|---|---|---|---|")
    for m in sizes:
        for name in images:
            picture = image(name, size)
            kernel = template(picture, m).astype(np.float32)

            def anchors():
                scores = cv2.matchTemplate(picture, kernel, cv2.TM_CCORR_NORMED)
                return peak_local_max(scores, min_distance=max(1, m // 2), num_peaks=10)

            scores, ours, theirs = best_times([
                lambda: sliding_cosine(picture, kernel, axis=(0, 1)),
                lambda: find_matches(picture, kernel, axis=(0, 1), k=10),
                anchors], repeat)
            print(f"| {name} | {m} | {scores * 1e3:.1f} | {ours * 1e3:.1f} | "
                  f"{(ours - scores) / ours:.0%} | {theirs * 1e3:.1f} | {theirs / ours:.2f} |",
                  flush=True)


FIRST_CALLS = """
import time
start = time.perf_counter()
import numpy as np
from cosim_np import sliding_cosine
times = [time.perf_counter() - start]
image = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
for options in (dict(), dict(center=True), dict(method="fft")):
    side = 40 if options.get("method") else 8
    template = np.arange(side * side, dtype=np.float64).reshape(side, side) % 7
    start = time.perf_counter()
    sliding_cosine(image, template, axis=(0, 1), **options)
    times.append(time.perf_counter() - start)
print(*times)
"""


def first_calls():
    """The first calls in fresh processes: an empty Numba cache, then warm."""
    print(f"CPU: {cpu_model()}; first calls in a fresh process, 512 x 512 float32 image",
          flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache", "warm cache"):
            done = subprocess.run([sys.executable, "-c", FIRST_CALLS], env=env, check=True,
                                  capture_output=True, text=True)
            imp, plain, centered, fft = map(float, done.stdout.split())
            print(f"  {label}: import {imp:.2f} s, first plain 8x8 {plain:.2f} s, first "
                  f"centered {centered:.2f} s, first FFT 40x40 {fft:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--m", type=int, nargs="+", default=[3, 8, 32, 128])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-skimage", action="store_true", help="leave scikit-image out")
    parser.add_argument("--quick", action="store_true", help="a 512 x 512 smoke test")
    parser.add_argument("--accuracy", action="store_true", help="the accuracy table")
    parser.add_argument("--transforms", action="store_true",
                        help="what the FFT path's transforms alone take")
    parser.add_argument("--first-call", action="store_true",
                        help="the first calls in a fresh process, cold and warm Numba cache")
    parser.add_argument("--matches", action="store_true",
                        help="find_matches against its scores and against OpenCV + "
                             "scikit-image's peak_local_max")
    args = parser.parse_args()
    if args.first_call:
        first_calls()
        return
    if args.transforms:
        transform_bound(args.size, [m for m in args.m if m * m >= 256])
        return
    if args.accuracy:
        accuracy_table()
        return
    if args.matches:
        import cv2

        cv2.setNumThreads(1)
        numba.set_num_threads(1)
        print(f"CPU: {cpu_model()}; image {args.size} x {args.size} float32; one thread\n")
        matches_table(args.size, args.m, args.images, args.repeat)
        return
    if args.quick:
        args.size, args.m, args.repeat, args.images = 512, [3, 32], 2, ["noise", "camera"]
    import cv2

    cv2.setNumThreads(1)
    numba.set_num_threads(1)
    print(f"CPU: {cpu_model()}; image {args.size} x {args.size} float32; one thread unless "
          "said; ratios = theirs / ours (above 1: cosim_np is faster)\n")
    for center in (False, True):
        anchor = "TM_CCOEFF_NORMED" if center else "TM_CCORR_NORMED"
        print(f"center={center} (OpenCV {anchor})")
        print("| image | m | ours ms | OpenCV ms | vs OpenCV | ours, 2 threads ms | 2 threads "
              "speed-up | vs noise |" + (" skimage ms | vs skimage |" if center else ""))
        print("|---|---|---|---|---|---|---|---|" + ("---|---|" if center else ""))
        for m in args.m:
            noise_time = None
            for name in args.images:
                picture = image(name, args.size)
                one, two, theirs = time_row(picture, m, center, args.repeat, threads=(1, 2))
                if name == "noise":
                    noise_time = one
                relative = one / noise_time if noise_time else float("nan")
                row = (f"| {name} | {m} | {one * 1e3:.1f} | {theirs * 1e3:.1f} | "
                       f"{theirs / one:.2f} | {two * 1e3:.1f} | {one / two:.2f} | {relative:.2f} |")
                if center:
                    if args.no_skimage:
                        row += " | |"
                    else:
                        slow = skimage_time(picture, m, args.repeat)
                        row += f" {slow * 1e3:.0f} | {slow / one:.1f} |"
                print(row, flush=True)
        print()


if __name__ == "__main__":
    main()
