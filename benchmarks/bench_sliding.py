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
    python benchmarks/bench_sliding.py --extras --plot docs/_static/sliding_vs_m.png
    python benchmarks/bench_sliding.py --fft-engine numpy   # without ducc0's transforms
    python benchmarks/bench_sliding.py --signals --threads 1 2   # every signal class (below)

``--center`` times ``center=True`` (Pearson's correlation) on every class of
the corpus, one thread, against the uncentered call on the same signal,
OpenCV's ``TM_CCOEFF_NORMED`` (float32) and STUMPY's ``mass`` (float64;
its time does not depend on the data, so it runs on the noise class only),
then the accuracy of each under large offsets against a two-pass long
double reference::

    python benchmarks/bench_sliding.py --center --n 10000000 --m 16 64 256

``--signals`` times every class of the realistic-signal corpus
(``benchmarks/corpus.py``: noise, bursty, events, offset, speech, sparse and,
where ObsPy is installed, seismic) for each dtype, kernel length and thread
count: ``method="auto"``, ``"direct"`` and ``"fft"`` side by side, OpenCV and
SciPy by hand on one thread.  Two ratios show whether ``auto`` has a cliff:
its time on the class over its time on Gaussian noise of the same length and
dtype (``/noise``), and over the faster of ``direct`` and ``fft`` on that
class (``/best``).
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def best_times(funcs, repeat):
    """Best time of each function, the runs interleaved (a, b, c, a, b, c,
    ...) so that a slow spell of a shared machine hits all of them alike."""
    for func in funcs:
        func()  # warm-up
    best = [float("inf")] * len(funcs)
    for _ in range(repeat):
        for index, func in enumerate(funcs):
            start = time.perf_counter()
            func()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def on_threads(threads, func, *args, **kwargs):
    """``func(*args, **kwargs)`` with Numba set to ``threads`` threads, then
    back to one (every table starts from one thread)."""
    import numba

    numba.set_num_threads(threads)
    try:
        return func(*args, **kwargs)
    finally:
        numba.set_num_threads(1)


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
            named = {
                name: (lambda func=func: func(x, k))
                for name, func in anchors(dtype).items()
                if not (name.startswith("PyTorch") and m * n > 2 * 10**8)  # unfold: n*m values
            }
            for method in methods:
                for threads in threads_list:

                    def ours(method=method, threads=threads):
                        return on_threads(threads, sliding_cosine, x, k, method=method)

                    times = best_times([ours, *named.values()], repeat)
                    for name, their_time in zip(named, times[1:]):
                        rows.append((np.dtype(dtype).name, m, method, threads, name, times[0], their_time))
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
        methods = {"cosim_np": lambda: sliding_cosine(x, k),
                   **{n: (lambda f=f: f(x, k)) for n, f in anchors(dtype).items()}}
        for name, func in methods.items():
            got = np.asarray(func(), dtype=np.float64)
            err = np.abs(got - ref_d)
            after = err[1000 + m :]  # windows after the burst
            rows.append((np.dtype(dtype).name, name, np.nanmax(err), np.mean(~np.isfinite(got)), np.nanmax(after)))
    return rows


def bank_table(repeat, n=10**6, nker=64, m=128):
    """A bank of K kernels against PyTorch CPU conv1d plus its norms
    (avg_pool1d of the squares), float32, one thread."""
    import numba

    from cosim_np import sliding_cosine

    rng = np.random.default_rng(2)
    x = rng.standard_normal(n).astype(np.float32)
    bank = rng.standard_normal((nker, m)).astype(np.float32)
    numba.set_num_threads(1)
    funcs = {"cosim_np sliding_cosine": lambda: sliding_cosine(x, bank)}
    try:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(1)
        xt = torch.from_numpy(x)[None, None, :]
        wt = torch.from_numpy(bank)[:, None, :]
        knorm = wt.norm(dim=-1).view(1, nker, 1)

        def torch_conv():
            with torch.no_grad():
                dots = F.conv1d(xt, wt)
                norms = torch.sqrt(F.avg_pool1d(xt * xt, m, 1) * m)
                return dots / (norms * knorm)

        funcs["PyTorch conv1d + avg_pool1d norms"] = torch_conv
    except ImportError:
        pass
    times = best_times(list(funcs.values()), repeat)
    return list(zip(funcs, times))


def threads_table(n, ms, repeat):
    """One thread against all of ``numba.get_num_threads()`` (float32), each
    with a fresh result and with ``out=`` (the second leaves out the first
    touch of the result's new pages, which the OS does)."""
    import numba

    from cosim_np import sliding_cosine

    most = numba.config.NUMBA_NUM_THREADS
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    rows = []
    for m in ms:
        k = np.random.default_rng(m).standard_normal(m).astype(np.float32)
        out = np.empty(n - m + 1, dtype=np.float32)

        def run(threads, k=k, **kwargs):
            return on_threads(threads, sliding_cosine, x, k, **kwargs)

        times = best_times([lambda: run(1), lambda: run(most), lambda: run(1, out=out),
                            lambda: run(most, out=out)], repeat)
        rows.append((m, most, *times))
    return rows


def scaling_table(ns, m, repeat):
    """Time against n (float32, one thread) and the exponent of a log-log fit:
    1 means linear."""
    import numba

    from cosim_np import sliding_cosine

    numba.set_num_threads(1)
    k = np.random.default_rng(4).standard_normal(m).astype(np.float32)
    times = []
    for n in ns:
        x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
        times.append(best_times([lambda x=x: sliding_cosine(x, k)], repeat)[0])
    slope = np.polyfit(np.log(ns), np.log(times), 1)[0]
    return list(zip(ns, times)), slope


def plot_against_m(rows, path):
    """Time against m for cosim_np and each anchor (float32, one thread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    series = {}
    for dtype, m, method, thr, name, ours, theirs in rows:
        if dtype != "float32" or thr != 1:
            continue
        series.setdefault(f"cosim_np ({method})", {})[m] = ours
        series.setdefault(name, {})[m] = theirs
    for label, points in series.items():
        ms = sorted(points)
        ax.loglog(ms, [points[m] * 1e3 for m in ms], marker="o", label=label)
    ax.set_xlabel("kernel length m")
    ax.set_ylabel("time for n = 10**7 samples, ms")
    ax.set_title("Sliding cosine, float32, one thread (lower is better)")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
import numpy as np
import cosim_np
t1 = time.perf_counter()
m, dtype, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cosim_np.sliding_cosine(np.ones(n, dtype), np.ones(m, dtype))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""

# (m, dtype, n) of the first calls timed: the short kernels' path (the row of
# earlier sessions), the fused one, a long kernel on a short signal (direct
# dots since session 35) and the FFT path of long kernels.
FIRST_CALLS = ((3, "float32", 5000), (64, "float32", 5000), (100, "float32", 5000),
               (256, "float32", 5000), (256, "float32", 10**5), (3, "float64", 5000),
               (256, "float64", 10**5))


def signals_table(n, ms, dtypes, repeat, threads_list, classes):
    """Rows ``(dtype, m, threads, class, {method: seconds}, {anchor: seconds})``:
    ``sliding_cosine`` with each method on each corpus class (runs
    interleaved, best of ``repeat``), the anchors on one thread."""
    import numba

    from cosim_np import sliding_cosine

    try:
        from . import corpus
    except ImportError:  # run as a script
        import corpus

    rows = []
    for dtype in dtypes:
        signals = {name: corpus.make(name, n, dtype) for name in classes}
        for m in ms:
            k = np.random.default_rng(m).standard_normal(m).astype(dtype)
            for threads in threads_list:
                funcs, keys = [], []
                for name, x in signals.items():
                    for method in ("auto", "direct", "fft"):
                        keys.append((name, method))
                        funcs.append(lambda x=x, method=method: on_threads(
                            threads, sliding_cosine, x, k, method=method))
                    if threads == 1:
                        numba.set_num_threads(1)
                        for anchor, func in anchors(dtype).items():
                            if anchor.startswith("PyTorch"):
                                continue
                            keys.append((name, anchor))
                            funcs.append(lambda x=x, func=func: func(x, k))
                times = dict(zip(keys, best_times(funcs, repeat)))
                for name in signals:
                    ours = {meth: times[(name, meth)] for meth in ("auto", "direct", "fft")}
                    theirs = {key[1]: t for key, t in times.items()
                              if key[0] == name and key[1] not in ours}
                    rows.append((np.dtype(dtype).name, m, threads, name, ours, theirs))
    return rows


def print_signals_table(rows):
    """The ``--signals`` table and, per dtype and thread count, the worst cliff."""
    print("\nEvery signal class (benchmarks/corpus.py), best of the runs; /noise = auto on this "
          "class over auto on Gaussian noise, /best = auto over the faster of direct and fft; "
          "anchor ratio = anchor / auto")
    print(f"{'dtype':<8}{'m':>6}{'thr':>4}  {'class':<8}{'auto ms':>9}{'direct':>9}{'fft':>9}"
          f"{'/noise':>8}{'/best':>7}{'OpenCV ms':>11}{'ratio':>7}{'SciPy ms':>10}{'ratio':>7}")
    noise = {(r[0], r[1], r[2]): r[4]["auto"] for r in rows if r[3] == "noise"}
    worst = {}
    for dtype, m, thr, name, ours, theirs in rows:
        cliff = ours["auto"] / noise[(dtype, m, thr)]
        best = ours["auto"] / min(ours["direct"], ours["fft"])
        key = (dtype, thr)
        worst[key] = (max(worst.get(key, (0, 0))[0], cliff), max(worst.get(key, (0, 0))[1], best))
        line = (f"{dtype:<8}{m:>6}{thr:>4}  {name:<8}{ours['auto'] * 1e3:>9.1f}"
                f"{ours['direct'] * 1e3:>9.1f}{ours['fft'] * 1e3:>9.1f}{cliff:>8.2f}{best:>7.2f}")
        for anchor in ("OpenCV TM_CCORR_NORMED", "SciPy correlate+cumsum"):
            if anchor in theirs:
                line += f"{theirs[anchor] * 1e3:>{11 if anchor[0] == 'O' else 10}.1f}"
                line += f"{theirs[anchor] / ours['auto']:>7.2f}"
            else:
                line += " " * (18 if anchor[0] == "O" else 17)
        print(line)
    for (dtype, thr), (cliff, best) in sorted(worst.items()):
        print(f"worst over the classes and m, {dtype}, {thr} thread(s): /noise {cliff:.2f}, "
              f"/best {best:.2f}")


def opencv_ccoeff(x, k):
    import cv2

    return cv2.matchTemplate(x[None, :], k[None, :], cv2.TM_CCOEFF_NORMED)[0]


def stumpy_mass(x, k):
    """STUMPY's z-normalised distance profile (``sqrt(2 m (1 - rho))``)."""
    import stumpy

    return stumpy.mass(k, x)


def center_table(n, ms, dtypes, repeat, classes):
    """Rows ``(dtype, m, class, centered s, uncentered s, {anchor: s})`` on one
    thread, the runs of each (dtype, m, class) interleaved."""
    import numba

    from cosim_np import sliding_cosine

    try:
        from . import corpus
    except ImportError:  # run as a script
        import corpus

    numba.set_num_threads(1)
    rows = []
    for dtype in dtypes:
        signals = {name: corpus.make(name, n, dtype) for name in classes}
        for m in ms:
            k = np.random.default_rng(m).standard_normal(m).astype(dtype)
            for name, x in signals.items():
                funcs = [lambda x=x: sliding_cosine(x, k, center=True),
                         lambda x=x: sliding_cosine(x, k)]
                names = []
                if dtype == np.float32 and _has("cv2"):
                    names.append("OpenCV TM_CCOEFF_NORMED")
                    funcs.append(lambda x=x: opencv_ccoeff(x, k))
                if dtype == np.float64 and name == "noise" and _has("stumpy"):
                    names.append("STUMPY mass")
                    funcs.append(lambda x=x: stumpy_mass(x, k))
                times = best_times(funcs, repeat)
                rows.append((np.dtype(dtype).name, m, name, times[0], times[1],
                             dict(zip(names, times[2:]))))
    return rows


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def print_center_table(rows):
    print("\ncenter=True on every signal class, one thread, best of the runs; "
          "/uncentered = centered over uncentered (auto); anchor ratio = anchor / centered")
    print(f"{'dtype':<8}{'m':>6}  {'class':<8}{'centered ms':>12}{'uncentered':>11}"
          f"{'/uncent.':>9}  {'anchor':<24}{'anchor ms':>10}{'ratio':>7}")
    worst = {}
    stumpy_times = {(r[0], r[1]): r[5]["STUMPY mass"] for r in rows if "STUMPY mass" in r[5]}
    for dtype, m, name, centered, plain, theirs in rows:
        ratio = centered / plain
        worst[dtype] = max(worst.get(dtype, 0.0), ratio)
        if not theirs and (dtype, m) in stumpy_times:
            theirs = {"STUMPY mass (on noise)": stumpy_times[(dtype, m)]}
        line = (f"{dtype:<8}{m:>6}  {name:<8}{centered * 1e3:>12.1f}{plain * 1e3:>11.1f}"
                f"{ratio:>9.2f}")
        for anchor, t in theirs.items():
            line += f"  {anchor:<24}{t * 1e3:>10.1f}{t / centered:>7.2f}"
        print(line)
    for dtype, ratio in sorted(worst.items()):
        print(f"worst centered / uncentered, {dtype}: {ratio:.2f}")


def center_accuracy_table(m=64, n=10**6):
    """Rows ``(offset, method, max |error in rho|)``: ``offset + N(0, 1)``,
    float64 (OpenCV in float32), against two passes in long double."""
    from numpy.lib.stride_tricks import sliding_window_view

    from cosim_np import sliding_cosine

    rng = np.random.default_rng(0)
    noise = rng.standard_normal(n)
    k = rng.standard_normal(m)
    rows = []
    for offset in (1e4, 1e6, 1e8):
        x = offset + noise
        w = sliding_window_view(x.astype(np.longdouble), m)
        dev = w - w.mean(axis=1, keepdims=True)
        kc = k.astype(np.longdouble) - k.mean()
        rho = (dev @ kc) / np.sqrt(np.sum(dev * dev, axis=1) * np.sum(kc * kc))
        got = {"cosim_np center=True": sliding_cosine(x, k, center=True)}
        if _has("cv2"):
            got["OpenCV TM_CCOEFF_NORMED"] = opencv_ccoeff(x.astype(np.float32), k.astype(np.float32))
        if _has("stumpy"):
            got["STUMPY mass"] = 1 - stumpy_mass(x, k) ** 2 / (2 * m)
        for name, values in got.items():
            err = np.abs(np.asarray(values, dtype=np.float64) - rho.astype(np.float64))
            rows.append((offset, name, float(np.nanmax(err)), float(np.mean(~np.isfinite(values)))))
    return rows


SHORT_ROWS = [(20000, 64, 64), (20000, 128, 128), (20000, 64, 16), (20000, 200, 64),
              (2000, 640, 64), (20000, 200, 20, 3)]


def short_rows_table(repeat, dtype=np.float32):
    """Batches of short rows (a window or a few hundred each), one thread:
    ``windowed_norm`` and ``sliding_cosine`` against the same windows as
    whole arrays by NumPy where each row holds one window
    (``np.linalg.norm``, ``cosine_similarity`` of the rows), else against
    the same samples as one long row (what a row costs beyond its windows).
    Rows ``(rows, n, m[, dilation])``."""
    import cosim_np

    rng = np.random.default_rng(0)
    table = []
    for rows, n, m, *rest in SHORT_ROWS:
        dilation = rest[0] if rest else 1
        x = rng.standard_normal((rows, n)).astype(dtype)
        kernel = rng.standard_normal(m).astype(dtype)
        one_window = n == (m - 1) * dilation + 1
        if one_window:
            norm_anchor = ("np.linalg.norm", lambda: np.linalg.norm(x, axis=1))
            cos_anchor = ("cosine_similarity", lambda: cosim_np.cosine_similarity(x, kernel))
        else:
            flat = x.reshape(-1)
            norm_anchor = ("one long row", lambda: cosim_np.windowed_norm(flat, m, dilation=dilation))
            cos_anchor = ("one long row", lambda: cosim_np.sliding_cosine(flat, kernel,
                                                                          dilation=dilation))
        for name, ours, anchor in [
                ("windowed_norm", lambda: cosim_np.windowed_norm(x, m, dilation=dilation),
                 norm_anchor),
                ("sliding_cosine", lambda: cosim_np.sliding_cosine(x, kernel, dilation=dilation),
                 cos_anchor)]:
            mine, theirs = on_threads(1, best_times, [ours, anchor[1]], repeat)
            table.append((f"({rows}, {n})", m, dilation, name, anchor[0], mine, theirs))
    return table


def print_short_rows(repeat):
    print(f"\nMany short rows, float32, one thread (best of {repeat}); ratio = anchor / cosim_np")
    print(f"{'rows':<14}{'m':>5}{'d':>3}  {'call':<16}{'anchor':<19}{'cosim_np ms':>12}"
          f"{'anchor ms':>11}{'ratio':>7}")
    for shape, m, dilation, name, anchor, mine, theirs in short_rows_table(repeat):
        print(f"{shape:<14}{m:>5}{dilation:>3}  {name:<16}{anchor:<19}{mine * 1e3:>12.2f}"
              f"{theirs * 1e3:>11.2f}{theirs / mine:>7.2f}")


def cpu_model():
    """The processor's model name, family and model numbers and widest SIMD
    (from /proc/cpuinfo, as lscpu shows them), for the tables' headers."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, {simd})")


def first_call_table(calls=FIRST_CALLS):
    """``(m, dtype, n, label, import s, first call s)``: a fresh process with
    an empty Numba cache (compilation), then another with that cache warm."""
    rows = []
    for m, dtype, n in calls:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            for label in ("cold cache", "warm cache"):
                out = subprocess.run([sys.executable, "-c", FIRST_CALL, str(m), dtype, str(n)],
                                     env=env, capture_output=True, text=True, check=True)
                imp, call = map(float, out.stdout.split())
                rows.append((m, dtype, n, label, imp, call))
    return rows


def print_first_calls():
    print("\nFirst call in a fresh process (method='auto')")
    print(f"{'m':>6}  {'dtype':<8}{'n':>8}  {'':<12}{'import s':>10}{'first call s':>14}")
    for m, dtype, n, label, imp, call in first_call_table():
        print(f"{m:>6}  {dtype:<8}{n:>8}  {label:<12}{imp:>10.2f}{call:>14.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**7, help="signal length (default 10**7)")
    parser.add_argument("--m", type=int, nargs="+", default=[3, 16, 64, 256, 4096], help="kernel lengths")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts for cosim_np")
    parser.add_argument("--methods", nargs="+", default=["auto"], choices=["auto", "direct", "fft"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 10**5, m in (3, 64), small extras")
    parser.add_argument("--extras", action="store_true",
                        help="also the kernel bank, thread and n-scaling tables")
    parser.add_argument("--scaling-max", type=int, default=10**8, help="largest n of the scaling fit")
    parser.add_argument("--plot", metavar="PNG", help="write time against m (float32, one thread)")
    parser.add_argument("--fft-engine", default="auto", choices=["auto", "ducc0", "numpy"],
                        help="library for method='fft' transforms (default: ducc0 when installed)")
    parser.add_argument("--signals", action="store_true",
                        help="only the table of every signal class of the corpus (m defaults "
                             "to 3 16 64 200 256 1024 4096)")
    parser.add_argument("--classes", nargs="+",
                        help="corpus classes for --signals and --center (default: all)")
    parser.add_argument("--center", action="store_true",
                        help="only the center=True tables (m defaults to 16 64 256)")
    parser.add_argument("--first-call", action="store_true",
                        help="only the table of first calls in fresh processes, cold and warm cache")
    parser.add_argument("--short-rows", action="store_true",
                        help="only the table of batches of short rows (a window or a few each)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.m, args.scaling_max = 10**5, [3, 64], 10**6
    dtypes = [np.dtype(d).type for d in args.dtype]

    import cosim_np
    from cosim_np._core import config
    from cosim_np._cpu import fft as _fft

    config.FFT_ENGINE = args.fft_engine
    engine = _fft.engine()
    if engine == "ducc0":
        import ducc0

        engine = f"ducc0 {ducc0.__version__}"
    else:
        engine = "NumPy's pocketfft"
    import numba

    print(f"cosim_np {cosim_np.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"n = {args.n}, FFT method's transforms: {engine}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    if args.first_call:
        print_first_calls()
        return
    if args.short_rows:
        print_short_rows(args.repeat)
        return
    if args.center:
        try:
            from . import corpus
        except ImportError:
            import corpus
        given = argv if argv is not None else sys.argv
        ms = args.m if "--m" in given else [16, 64, 256]
        print_center_table(center_table(args.n, ms, dtypes, args.repeat,
                                        args.classes or corpus.available()))
        print("\nAccuracy of rho under an offset (offset + N(0, 1), n = 10**6, m = 64; float64, "
              "OpenCV float32), max |error| against two passes in long double")
        for offset, name, worst, nonfinite in center_accuracy_table():
            print(f"  offset {offset:>8.0e}  {name:<26}{worst:>12.2e}   non-finite {nonfinite:.1%}")
        return
    if args.signals:
        try:
            from . import corpus
        except ImportError:
            import corpus
        given = argv if argv is not None else sys.argv
        ms = args.m if "--m" in given else [3, 16, 64, 200, 256, 1024, 4096]
        classes = args.classes or corpus.available()
        print_signals_table(signals_table(args.n, ms, dtypes, args.repeat, args.threads, classes))
        return
    print("\nSteady state (best of %d after warm-up); anchors on one thread; ratio = anchor / cosim_np" % args.repeat)
    print(f"{'dtype':<8}{'m':>6}  {'method':<7}{'thr':>4}  {'anchor':<27}{'cosim_np ms':>12}"
          f"{'anchor ms':>12}{'ratio':>8}")
    rows = speed_table(args.n, args.m, dtypes, args.repeat, args.threads, args.methods)
    for dtype, m, method, thr, name, ours, theirs in rows:
        print(f"{dtype:<8}{m:>6}  {method:<7}{thr:>4}  {name:<27}{ours * 1e3:>12.1f}"
              f"{theirs * 1e3:>12.1f}{theirs / ours:>8.2f}")
    if args.plot:
        plot_against_m(rows, args.plot)
        print(f"(plot written to {args.plot})")

    if args.extras or args.quick:
        n_bank = 10**5 if args.quick else 10**6
        print(f"\nKernel bank K = 64, m = 128, n = {n_bank}, float32, one thread (best of {args.repeat})")
        bank = bank_table(args.repeat, n=n_bank)
        for name, seconds in bank:
            print(f"  {name:<36}{seconds * 1e3:>10.1f} ms   ratio {seconds / bank[0][1]:>6.2f}")

        print(f"\nThreads (float32, n = {args.n}, 'auto'): speed-up of all threads over one,"
              " with a fresh result and with out=")
        for m, most, one, many, one_out, many_out in threads_table(args.n, args.m, args.repeat):
            print(f"  m = {m:<6} 1 thread {one * 1e3:>8.1f} ms   {most} threads {many * 1e3:>8.1f} ms"
                  f"   speed-up {one / many:>5.2f}   with out=: {one_out * 1e3:>7.1f} / "
                  f"{many_out * 1e3:>7.1f} ms, {one_out / many_out:>5.2f}")

        ns = [n for n in (10**5, 10**6, 10**7, 10**8) if n <= args.scaling_max]
        points, slope = scaling_table(ns, 16, args.repeat)
        print("\nTime against n (float32, m = 16, one thread)")
        for n, seconds in points:
            print(f"  n = {n:<10} {seconds * 1e3:>10.2f} ms   {seconds / n * 1e9:>6.2f} ns per sample")
        print(f"  log-log slope {slope:.3f} (1 = linear)")

    print("\nAccuracy after a 1e8 burst in 1e-3 noise (m = 16, n = 20000), |error| vs float64 reference")
    print(f"{'dtype':<8}  {'method':<27}{'max error':>12}{'non-finite':>12}{'max err after':>15}")
    for dtype, name, worst, nonfinite, after in accuracy_table(dtypes):
        print(f"{dtype:<8}  {name:<27}{worst:>12.2e}{nonfinite:>12.1%}{after:>15.2e}")

    print_first_calls()


if __name__ == "__main__":
    main()
