"""find_matches against the score array alone and against the anchors,
side by side in one run.

* ``sliding_cosine`` alone: what the scores cost; find_matches computes the
  same scores (a tile at a time) and selects, so the ratio to it is the
  selection's cost (targets: at most 1.2 for ``k=10``, 1.5 for a threshold
  that keeps 10**5 matches);
* ``scipy.signal.find_peaks(key, height, distance)`` on a precomputed key
  array (``|s|``): the selection alone, the way it is done by hand (its time
  does not include the scores');
* STUMPY's ``match`` (z-normalised, ``max_matches=10``), where STUMPY is
  installed (never a dependency).

Times are the best of ``--repeat`` runs after a warm-up call, the runs
interleaved (STUMPY's, seconds each, apart: the best of two).  Ratio = time
/ time of ``sliding_cosine`` alone.

Usage::

    python benchmarks/bench_matches.py                 # n = 10**7, float32, m = 32
    python benchmarks/bench_matches.py --quick         # n = 10**5, a smoke test
    python benchmarks/bench_matches.py --m 8 32 256 --threads 1 2
    python benchmarks/bench_matches.py --signal noise bursty events offset speech sparse
"""

import argparse

import corpus  # (this folder: run as benchmarks/bench_matches.py)
import numba
import numpy as np
from bench_sliding import best_times, cpu_model


def threshold_for(signal, kernel, wanted):
    """The threshold that keeps ``wanted`` matches: the key of the
    ``wanted``-th match over all candidates (a threshold cuts the greedy
    order, so its matches are a prefix of those)."""
    from cosim_np import find_matches

    everything = find_matches(signal, kernel)
    keys = np.abs(everything.score.astype(np.float64))
    return float(keys[min(wanted, keys.size) - 1])


def run(n, m, dtype, repeat, threads, name="noise"):
    from scipy.signal import find_peaks

    from cosim_np import find_matches, sliding_cosine

    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    signal = corpus.make(name, n, dtype)
    kernel = rng.standard_normal(m)
    for start in rng.integers(0, n - m, 20):  # planted copies
        signal[start : start + m] = rng.uniform(0.5, 5) * kernel
    wanted = 10**5 if n >= 10**6 else n // (4 * m)
    threshold = threshold_for(signal, kernel, wanted)
    key = np.abs(sliding_cosine(signal, kernel))
    exclusion = ((m - 1) + 1) // 2
    found_k = find_matches(signal, kernel, k=10)
    found_t = find_matches(signal, kernel, threshold=threshold)
    peaks, _ = find_peaks(key, height=threshold, distance=exclusion + 1)
    funcs = {
        "sliding_cosine alone": lambda: sliding_cosine(signal, kernel),
        "find_matches(k=10)": lambda: find_matches(signal, kernel, k=10),
        f"find_matches(threshold) [{len(found_t)} matches]": lambda: find_matches(signal, kernel,
                                                                                 threshold=threshold),
        f"find_peaks on |s| (selection only) [{peaks.size}]": lambda: find_peaks(key, height=threshold,
                                                                                distance=exclusion + 1),
    }
    times = best_times(list(funcs.values()), repeat)
    try:
        import stumpy

        # timed on its own, twice: its seconds between the others' runs would
        # spread their timings over minutes of a shared machine's spells
        label = "stumpy.match(max_matches=10) (z-normalised)"
        funcs[label] = lambda: stumpy.match(kernel, signal.astype(np.float64), max_matches=10)
        times += best_times([funcs[label]], min(repeat, 2))
    except ImportError:
        print("(STUMPY is not installed: its row is left out)")
    base = times[0]
    print(f"\n{name}, n = {n:,}, m = {m}, {np.dtype(dtype).name}, {threads} thread(s); "
          f"k=10 found {len(found_k)}, the threshold {threshold:.4f} keeps {len(found_t)}")
    print(f"{'call':<52}{'time (ms)':>12}{'ratio':>8}")
    for (label, _), seconds in zip(funcs.items(), times):
        print(f"{label:<52}{seconds * 1e3:>12.2f}{seconds / base:>8.2f}")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**7)
    parser.add_argument("--m", type=int, nargs="+", default=[32])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, nargs="+", default=[numba.get_num_threads()])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--signal", nargs="+", default=["noise"], choices=corpus.available(),
                        help="classes of the realistic-signal corpus (benchmarks/corpus.py)")
    parser.add_argument("--quick", action="store_true", help="n = 10**5, 2 repeats")
    args = parser.parse_args()
    n, repeat = (10**5, 2) if args.quick else (args.n, args.repeat)
    print(f"CPU: {cpu_model()}; numba {numba.__version__}, numpy {np.__version__}")
    for threads in args.threads:
        for m in args.m:
            for name in args.signal:
                run(n, m, np.dtype(args.dtype), repeat, threads, name)


if __name__ == "__main__":
    main()
