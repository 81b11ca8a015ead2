"""Sliding cosine similarity against its anchors, side by side in one run.

Anchors (each computes the same 'valid'-mode sliding cosine):

* OpenCV ``cv2.matchTemplate(img, tmpl, cv2.TM_CCORR_NORMED)`` on a 1 x n
  float32 image (float32 only);
* SciPy by hand: ``scipy.signal.correlate`` for the dots and one global
  ``cumsum`` of squares for the window norms;
* the seed-000 PyTorch function (unfold + F.cosine_similarity), when torch is
  installed.

Times are the best of ``--repeat`` runs after a warm-up call (steady state,
JIT done). Ratio = anchor time / our time (> 1: we are faster). A second
table shows the worst error of each method after a loud burst, against a
float64 reference, and a third the first call in a fresh process with a cold
and a warm Numba cache.

Usage::

    python benchmarks/bench_sliding.py                # the full table (n = 10**7)
    python benchmarks/bench_sliding.py --quick        # n = 10**5, for a smoke test
    python benchmarks/bench_sliding.py --methods direct fft --threads 1 2
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def best_time(func, repeat):
    func()  # warm-up: JIT compilation, caches, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def scipy_by_hand(x, k):
    """The usual recipe: FFT/direct correlation plus a global cumsum of squares."""
    from scipy import signal as sps

    m = k.size
    dots = sps.correlate(x, k, mode="valid")
    csum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    norms = np.sqrt(np.maximum(csum[m:] - csum[:-m], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return dots / (norms * np.linalg.norm(k))


def opencv(x, k):
    import cv2

    return cv2.matchTemplate(x[None, :], k[None, :], cv2.TM_CCORR_NORMED)[0]


def torch_seed000(x, k):
    import torch
    import torch.nn.functional as F

    signal = torch.from_numpy(x)[None, None, :]
    kernel = torch.from_numpy(k)
    windows = signal.unfold(2, kernel.size(-1), 1)
    return F.cosine_similarity(windows, kernel, dim=-1)[0, 0].numpy()


def anchors(dtype):
    found = {}
    try:
        import cv2

        cv2.setNumThreads(1)
        if dtype == np.float32:
            found["OpenCV TM_CCORR_NORMED"] = opencv
    except ImportError:
        pass
    found["SciPy correlate+cumsum"] = scipy_by_hand
    try:
        import torch

        torch.set_num_threads(1)
        found["PyTorch seed-000 (unfold)"] = torch_seed000
    except ImportError:
        pass
    return found


def speed_table(n, ms, dtypes, repeat, threads_list, methods):
    """Rows ``(dtype, m, method, threads, anchor, ours, theirs)``; each anchor
    is timed once per (dtype, m) on one thread and set against every variant
    of ours."""
    import numba

    from cosim_np import sliding_cosine

    rng = np.random.default_rng(0)
    rows = []
    for dtype in dtypes:
        x = rng.standard_normal(n).astype(dtype)
        for m in ms:
            k = rng.standard_normal(m).astype(dtype)
            numba.set_num_threads(1)
            theirs = {}
            for name, func in anchors(dtype).items():
                if name.startswith("PyTorch") and m * n > 2 * 10**8:
                    continue  # unfold materialises n*m values
                theirs[name] = best_time(lambda: func(x, k), repeat)
            for method in methods:
                for threads in threads_list:
                    numba.set_num_threads(threads)
                    ours = best_time(lambda: sliding_cosine(x, k, method=method), repeat)
                    for name, their_time in theirs.items():
                        rows.append((np.dtype(dtype).name, m, method, threads, name, ours, their_time))
            numba.set_num_threads(1)
    return rows


def accuracy_table(dtypes):
    """Worst |error| after a 1e8 burst in 1e-3 noise, vs a float64 reference."""
    from numpy.lib.stride_tricks import sliding_window_view

    from cosim_np import sliding_cosine

    rng = np.random.default_rng(1)
    m = 16
    base = rng.standard_normal(20_000) * 1e-3
    base[1000] = 1e8
    k64 = rng.standard_normal(m)
    w = sliding_window_view(base, m)
    big = np.max(np.abs(w), axis=1, keepdims=True)
    ref = ((w / big) @ k64) / (np.linalg.norm(w / big, axis=1) * np.linalg.norm(k64))
    rows = []
    for dtype in dtypes:
        x, k = base.astype(dtype), k64.astype(dtype)
        ref_d = ref if dtype == np.float64 else np.array([  # reference on the rounded inputs
            np.dot(wi / np.max(np.abs(wi)), k.astype(np.float64)) / (
                np.linalg.norm(wi / np.max(np.abs(wi))) * np.linalg.norm(k.astype(np.float64)))
            for wi in sliding_window_view(x.astype(np.float64), m)])
        methods = {"cosim_np": lambda: sliding_cosine(x, k), **{n: (lambda f=f: f(x, k)) for n, f in anchors(dtype).items()}}
        for name, func in methods.items():
            got = np.asarray(func(), dtype=np.float64)
            err = np.abs(got - ref_d)
            after = err[1000 + m :]  # windows after the burst
            rows.append((np.dtype(dtype).name, name, np.nanmax(err), np.mean(~np.isfinite(got)), np.nanmax(after)))
    return rows


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
import cosim_np
t1 = time.perf_counter()
cosim_np.sliding_cosine(np.ones(1000, np.float32), np.ones(3, np.float32))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_table():
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache", "warm cache"):
            out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True)
            imp, call = map(float, out.stdout.split())
            rows.append((label, imp, call))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**7, help="signal length (default 10**7)")
    parser.add_argument("--m", type=int, nargs="+", default=[3, 16, 64, 256, 4096], help="kernel lengths")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts for cosim_np")
    parser.add_argument("--methods", nargs="+", default=["auto"], choices=["auto", "direct", "fft"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 10**5, m in (3, 64)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.m = 10**5, [3, 64]
    dtypes = [np.dtype(d).type for d in args.dtype]

    import cosim_np

    print(f"cosim_np {cosim_np.__version__}, numpy {np.__version__}, n = {args.n}")
    print("\nSteady state (best of %d after warm-up); anchors on one thread; ratio = anchor / cosim_np" % args.repeat)
    print(f"{'dtype':<8}{'m':>6}  {'method':<7}{'thr':>4}  {'anchor':<27}{'cosim_np ms':>12}{'anchor ms':>12}{'ratio':>8}")
    rows = speed_table(args.n, args.m, dtypes, args.repeat, args.threads, args.methods)
    for dtype, m, method, thr, name, ours, theirs in rows:
        print(f"{dtype:<8}{m:>6}  {method:<7}{thr:>4}  {name:<27}{ours * 1e3:>12.1f}{theirs * 1e3:>12.1f}{theirs / ours:>8.2f}")

    print("\nAccuracy after a 1e8 burst in 1e-3 noise (m = 16, n = 20000), |error| vs float64 reference")
    print(f"{'dtype':<8}  {'method':<27}{'max error':>12}{'non-finite':>12}{'max err after':>15}")
    for dtype, name, worst, nonfinite, after in accuracy_table(dtypes):
        print(f"{dtype:<8}  {name:<27}{worst:>12.2e}{nonfinite:>12.1%}{after:>15.2e}")

    print("\nFirst call in a fresh process (float32, n = 1000, m = 3)")
    print(f"{'':<12}{'import s':>10}{'first call s':>14}")
    for label, imp, call in first_call_table():
        print(f"{label:<12}{imp:>10.2f}{call:>14.2f}")


if __name__ == "__main__":
    main()
