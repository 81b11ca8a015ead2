"""Embedding similarity, side by side with its anchors, in one run.

* ``pairwise_cosine(a, b)`` (float32, N x M, D) against a raw matrix product
  of pre-normalised float32 inputs (``an @ bn.T``: the normalisation is *not*
  counted for it, as in the issue) and ``sklearn.metrics.pairwise.
  cosine_similarity``.
* ``topk_cosine(q, c, k)`` against ``faiss.IndexFlatIP`` (normalising copies
  with ``faiss.normalize_L2``, building the index and searching are all
  counted, as our normalisation is) and against sklearn's full matrix plus
  ``numpy.argpartition`` and a sort of the k best.
* ``cosine_similarity(a, b)`` (each row of ``a`` with the same row of ``b``)
  against the same by hand in NumPy (float32 sums) and
  ``torch.nn.functional.cosine_similarity`` (float32 sums) where PyTorch is
  installed, with each one's largest error against float64 arithmetic.
* Peak working memory of ours (``tracemalloc``; the result arrays are not
  counted) against ``max_memory``.
* Steady state is the best (minimum) of ``--repeat`` runs after a warm-up call
  (JIT compiled or loaded from cache): on a shared machine the minimum is the
  least disturbed run; the first call in a fresh process (import,
  Numba cache load or compilation, and the call) is timed separately in a
  subprocess.

Run ``python benchmarks/bench_embedding.py`` for the issue's sizes
(N = M = 20000, D = 256, k = 10) or e.g. ``--n 4000 --m 4000 --repeat 2`` for
a quick run.  Missing anchors (sklearn, faiss) are reported as such.
"""

import argparse
import gc
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import cosim_np
from cosim_np import cosine_similarity, pairwise_cosine, topk_cosine

# The environment as started, for the fresh processes (--faiss-openblas-coretype
# changes this one's).
STARTING_ENVIRONMENT = dict(os.environ)


def timed(func, repeat):
    """Best (minimum) wall time of ``repeat`` calls (after the caller's warm-up)."""
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return float(np.min(times)), result


def traced_peak(func):
    gc.collect()
    tracemalloc.start()
    try:
        result = func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, result


def first_call(kind, args):
    """Time import + first call in a fresh interpreter."""
    code = f"""
import time, numpy as np
rng = np.random.default_rng(0)
a = rng.standard_normal(({args.n}, {args.d}), dtype=np.float32)
b = rng.standard_normal(({args.m}, {args.d}), dtype=np.float32)
t0 = time.perf_counter()
import cosim_np
t1 = time.perf_counter()
if {kind!r} == "pairwise":
    cosim_np.pairwise_cosine(a, b)
elif {kind!r} == "cosine":
    cosim_np.cosine_similarity(a, b)
else:
    cosim_np.topk_cosine(a, b, {args.k})
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=STARTING_ENVIRONMENT)
    imp, call = map(float, out.stdout.split())
    return imp, call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="rows of a / queries")
    parser.add_argument("--m", type=int, default=20000, help="rows of b / corpus")
    parser.add_argument("--d", type=int, default=256, help="vector length")
    parser.add_argument("--k", type=int, default=10, help="top-k")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per entry (best of)")
    parser.add_argument("--max-memory", default="256MiB", help="max_memory passed to ours")
    parser.add_argument("--no-first-call", action="store_true", help="skip the fresh-process timings")
    parser.add_argument("--faiss-openblas-coretype", metavar="CORE",
                        help="OPENBLAS_CORETYPE for faiss's own OpenBLAS only (e.g. SkylakeX): "
                             "set after NumPy's OpenBLAS has loaded")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.n, args.d), dtype=np.float32)
    b = rng.standard_normal((args.m, args.d), dtype=np.float32)
    budget = cosim_np._core.validate.check_memory(args.max_memory, "max_memory", 0)

    try:
        from sklearn.metrics.pairwise import cosine_similarity as sk_cosine
    except ImportError:
        sk_cosine = None
    if args.faiss_openblas_coretype:
        # NumPy's OpenBLAS read the variable when NumPy was imported; faiss's
        # own (older) OpenBLAS reads it now, when faiss is.
        os.environ["OPENBLAS_CORETYPE"] = args.faiss_openblas_coretype
    try:
        import faiss
    except ImportError:
        faiss = None

    import numba
    from threadpoolctl import threadpool_info

    blas = "; ".join(sorted(
        f"{os.path.basename(i['filepath'])}: {i['internal_api']} {i.get('version')} "
        f"{i.get('architecture')} kernels, {i['num_threads']} threads"
        for i in threadpool_info() if i["user_api"] == "blas"))
    print(f"cosim_np {cosim_np.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{os.cpu_count()} CPUs")
    print(f"BLAS libraries: {blas}")
    print(f"N={args.n} M={args.m} D={args.d} k={args.k} float32, max_memory={budget} bytes, "
          f"best of {args.repeat}")
    rows = []

    # ---------------- pairwise
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    pairwise_cosine(a[:50], b[:50])  # JIT warm-up
    ours_t, ours = timed(lambda: pairwise_cosine(a, b, max_memory=budget), args.repeat)
    del ours
    raw_t, raw = timed(lambda: an @ bn.T, args.repeat)
    del raw
    rows.append(("pairwise_cosine", "raw an @ bn.T (pre-normalised)", ours_t, raw_t))
    if sk_cosine is not None:
        sk_cosine(a[:50], b[:50])
        sk_t, sk = timed(lambda: sk_cosine(a, b), args.repeat)
        del sk
        sk_self = sk_cosine(a[:2000])  # self-similarity: the diagonal should be 1
        sk_above = int(np.count_nonzero(np.abs(sk_self) > 1.0))
        sk_max = float(np.abs(sk_self).max())
        del sk_self
        rows.append(("pairwise_cosine", "sklearn cosine_similarity", ours_t, sk_t))
    self_t, ours = timed(lambda: pairwise_cosine(a, max_memory=budget), args.repeat)
    ours_above = int(np.count_nonzero(np.abs(ours[:2000, :2000]) > 1.0))
    del ours
    raw_self_t, raw = timed(lambda: an @ an.T, args.repeat)
    del raw
    rows.append(("pairwise_cosine(a)", "raw an @ an.T (syrk)", self_t, raw_self_t))
    out = np.empty((args.n, args.m), dtype=np.float32)
    peak_pw, _ = traced_peak(lambda: pairwise_cosine(a, b, out=out, max_memory=budget))
    check = pairwise_cosine(a[:200], b)
    err_pw = float(np.abs(check - an[:200] @ bn.T).max())
    out = check = None  # (freed before the next case)
    gc.collect()

    # ---------------- top-k
    topk_cosine(a[:50], b[:50], min(args.k, 50))  # JIT warm-up
    ours_k_t, (scores, idx) = timed(lambda: topk_cosine(a, b, args.k, max_memory=budget), args.repeat)
    if faiss is not None:
        def faiss_search():
            qn, cn = a.copy(), b.copy()
            faiss.normalize_L2(qn)
            faiss.normalize_L2(cn)
            index = faiss.IndexFlatIP(args.d)
            index.add(cn)
            return index.search(qn, args.k)

        faiss_search()
        faiss_t, (fs, fi) = timed(faiss_search, args.repeat)
        rows.append(("topk_cosine", "faiss IndexFlatIP (+normalize_L2)", ours_k_t, faiss_t))
        agree = float(np.mean(fi == idx))
    if sk_cosine is not None:
        def sk_topk():
            sim = sk_cosine(a, b)
            part = np.argpartition(-sim, args.k - 1, axis=1)[:, : args.k]
            part_s = np.take_along_axis(sim, part, 1)
            order = np.argsort(-part_s, axis=1, kind="stable")
            return np.take_along_axis(part_s, order, 1), np.take_along_axis(part, order, 1)

        sk_k_t, _ = timed(sk_topk, args.repeat)
        rows.append(("topk_cosine", "sklearn + argpartition", ours_k_t, sk_k_t))
    peak_k, _ = traced_peak(lambda: topk_cosine(a, b, args.k, max_memory=budget))
    peak_k -= scores.nbytes + idx.nbytes

    # ---------------- cosine_similarity: row i of a with row i of b
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = np.einsum("ij,ij->i", a64, b64) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    del a64, b64
    cosine_similarity(a[:50], b[:50])
    ours_c_t, ours_c = timed(lambda: cosine_similarity(a, b), args.repeat)
    errors = {"ours": float(np.abs(ours_c - exact).max())}

    def by_hand():
        return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    hand_t, hand = timed(by_hand, args.repeat)
    errors["NumPy by hand"] = float(np.abs(hand - exact).max())
    rows.append(("cosine_similarity", "NumPy by hand (float32 sums)", ours_c_t, hand_t))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        torch.nn.functional.cosine_similarity(ta[:50], tb[:50], dim=-1)
        torch_t, by_torch = timed(lambda: torch.nn.functional.cosine_similarity(ta, tb, dim=-1),
                                  args.repeat)
        errors["torch"] = float(np.abs(by_torch.numpy() - exact).max())
        rows.append(("cosine_similarity", "torch F.cosine_similarity", ours_c_t, torch_t))
    del ours_c, hand

    # ---------------- table
    print()
    print(f"{'ours':<20}{'anchor':<34}{'ours [s]':>10}{'anchor [s]':>12}{'ours/anchor':>13}")
    for name, anchor, t_ours, t_anchor in rows:
        print(f"{name:<20}{anchor:<34}{t_ours:>10.3f}{t_anchor:>12.3f}{t_ours / t_anchor:>13.2f}")
    print()
    print(f"peak working memory, pairwise_cosine (out given): {peak_pw / 2**20:8.1f} MiB "
          f"(bound {budget / 2**20:.0f} MiB, {'within' if peak_pw <= budget else 'OVER'})")
    print(f"peak working memory, topk_cosine:                 {peak_k / 2**20:8.1f} MiB "
          f"(bound {budget / 2**20:.0f} MiB, {'within' if peak_k <= budget else 'OVER'}; "
          f"full matrix would be {args.n * args.m * 4 / 2**20:.0f} MiB)")
    print(f"max |pairwise - raw| on 200 rows: {err_pw:.2e}")
    print("cosine_similarity, largest error against float64 arithmetic: "
          + ", ".join(f"{name} {err:.2e}" for name, err in errors.items()))
    if sk_cosine is not None:
        print(f"self-similarity of the first 2000 rows, entries with |s| > 1: sklearn "
              f"{sk_above} (max |s| = {sk_max:.9f}); ours {ours_above}")
    if faiss is not None:
        print(f"top-{args.k} indices equal to faiss: {100 * agree:.3f}% "
              f"(differences only among near-ties in float32)")
    if not args.no_first_call:
        for kind, steady in (("pairwise", ours_t), ("topk", ours_k_t), ("cosine", ours_c_t)):
            imp, call = first_call(kind, args)
            print(f"first call in a fresh process, {kind:<8}: import {imp:.2f} s, "
                  f"call {call:.3f} s (steady state {steady:.3f} s)")


if __name__ == "__main__":
    main()
