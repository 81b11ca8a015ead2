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

Usage::

    python benchmarks/bench_images.py                       # the issue's table
    python benchmarks/bench_images.py --quick               # a smoke test
"""

import argparse

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--m", type=int, nargs="+", default=[3, 8, 32, 128])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-skimage", action="store_true", help="leave scikit-image out")
    parser.add_argument("--quick", action="store_true", help="a 512 x 512 smoke test")
    args = parser.parse_args()
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
