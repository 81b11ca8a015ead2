"""The Dask backend at scale (issue 15, item 6): out of core through zarr,
two workers against one, and the embeddings' top-k from zarr.

(a) Out of core.  A float32 signal of ``--n`` samples (default 10**9, 4 GB)
    is written to a zarr store on disk, chunk by chunk, never whole in any
    process: each chunk is a class of the realistic-signal corpus
    (``benchmarks/corpus.py``; the classes in turn, each chunk from its own
    seed) plus a noise floor of ``--noise-floor`` (a sensor's).  Then, for
    each kernel length ``m`` and each LocalCluster of ``w`` workers::

        sliding_cosine(da.from_zarr(signal), kernel).to_zarr(scores)

    is timed against two baselines measured in the same run:

    * *in memory*: ``sliding_cosine`` on NumPy blocks of the same signal
      (``--memory-block`` samples plus the ``m - 1`` of the next), on ``w``
      Numba threads (what ``w`` workers of one thread have), no Dask, the
      blocks read from the store beforehand (reading is not timed), the
      times of the calls summed over the signal;
    * *copy*: ``da.from_zarr(signal).to_zarr(copy)`` on the same cluster,
      Dask alone moving the same bytes through the same codec.

    Target: total time at most 1.5 x (in memory + copy), and a peak memory
    per worker of at most 1 GiB.

(b) Compute-bound, in memory.  The first ``--n-memory`` samples (default
    2*10**8) of the store, rechunked to ``--memory-chunk`` samples and
    persisted on the workers first (so that the timing is the compute), an
    equal run of consecutive blocks on each, then
    ``wait(sliding_cosine(x, kernel).persist())`` with ``m = 1024`` on one
    worker and on two (each a fresh LocalCluster; the same graph, chunks and
    warm-up), best of ``--repeat-memory``.  Target: two workers at least 1.6 x
    one.  Two references: the in-memory call on one and on two Numba
    threads, and the ceiling for two processes: the same in-memory call
    (``--solo-n`` samples) run in every worker at once by ``client.run``, no
    Dask scheduling in between, two workers doing twice the work of one.

(c) ``topk_cosine`` of ``--queries`` rows (default 2*10**5) against
    ``--corpus`` rows (default 10**6), ``D = --d`` (256), float32, both read
    from zarr stores (rows around 1000 cluster centres), k = 10, computed to
    the client on ``--workers-topk`` workers.  Target: a peak memory per
    worker under 2 GiB.  The work is linear in the queries: a run with fewer
    prints the time extrapolated to 2*10**5 queries.  The in-memory call (no
    Dask, every Numba thread) on the first chunk of queries against the whole
    corpus is timed and compared with the Dask results.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (freed
memory goes back to the OS at once); ``--malloc-trim off`` starts them
without it, with glibc's defaults, to show what that costs.

Set-up, as docs/dask.rst recommends: ``LocalCluster(n_workers=w,
threads_per_worker=1, processes=True, env={"NUMBA_NUM_THREADS": "1"})`` with
a generous ``memory_limit`` (``--memory-limit``, so that nothing is paused,
spilled or killed: the peak is measured, not enforced).  Each worker loads
the compiled kernels (a small call of each) before anything is timed, as the
in-memory baselines are timed after a warm-up call.

Peak memory per worker: the worker process's own high-water mark of resident
memory, ``VmHWM`` in ``/proc/<pid>/status``, reset to the current resident
size (``echo 5 > /proc/self/clear_refs``, Linux) just before each timed job
and read right after it, through ``client.run``.  It is exact, not sampled,
and counts everything the process holds (Python, the imported libraries and
the compiled kernels, Dask's buffers, the blocks); the page cache of the
zarr files is not the process's memory and is not counted.  Where
``clear_refs`` cannot be written, a thread in each worker samples its RSS
(psutil) every 5 ms instead, and the tables say so.

Chunks: 2**24 samples (64 MiB of float32) along the signal by default: a
whole number of the CPU kernels' tiles for both kernel lengths (4096 and
8192 samples), so the Dask backend keeps the store's chunks as they are (no
rechunk), and large enough that the per-task overhead is small, small enough
that a worker holds a few blocks (its input, the overlapped copy
``map_overlap`` makes, the scores) well within 1 GiB.  Zarr's default codec
(zstd) for every store.

Usage (needs ``pip install "cosim_np[dask,bench]"``: dask, distributed, zarr)::

    python benchmarks/bench_dask.py                    # (a), (b), (c) at the issue's sizes
    python benchmarks/bench_dask.py --quick            # tiny sizes, a smoke test (about a minute)
    python benchmarks/bench_dask.py --parts a b        # (a) and (b) only
    python benchmarks/bench_dask.py --parts c --queries 100000
    python benchmarks/bench_dask.py --dir /scratch     # stores under /scratch (removed at the end)
    python benchmarks/bench_dask.py --quick --progress # Dask's progress bar over each job

Times are wall-clock seconds (``time.perf_counter``) around the whole
statement, graph construction included.
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from bench_sliding import cpu_model  # (this folder: run as benchmarks/bench_dask.py)

MiB = 2**20
GiB = 2**30
FULL_QUERIES = 2 * 10**5  # the query count, for the extrapolation of (c)


# --- peak memory of a worker process (run in the workers by client.run) ---

def _reset_peak(dask_worker=None):
    """Reset this process's high-water mark of resident memory to its current
    resident size; without ``clear_refs``, (re)start a sampling thread."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return "VmHWM"
    except OSError:
        pass
    import psutil

    state = getattr(dask_worker, "_bench_rss", None)
    if state is None:
        state = dask_worker._bench_rss = {"peak": 0}
        process = psutil.Process()

        def sample():
            while True:
                state["peak"] = max(state["peak"], process.memory_info().rss)
                time.sleep(0.005)

        threading.Thread(target=sample, daemon=True).start()
    state["peak"] = psutil.Process().memory_info().rss
    return "sampled RSS"


def _read_peak(dask_worker=None):
    """This process's peak resident memory since :func:`_reset_peak`, in bytes."""
    state = getattr(dask_worker, "_bench_rss", None)
    if state is not None:
        return state["peak"]
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _numba_threads():
    import numba

    return numba.get_num_threads()


def _warm_up(ms, topk_d):
    """Load (or compile) the kernels each timed job runs: the same lengths,
    dtype and methods, on small arrays."""
    import numpy as np

    from cosim_np import sliding_cosine, topk_cosine

    x = np.random.default_rng(0).standard_normal(2**21).astype(np.float32)
    for m in ms:
        kernel = np.random.default_rng(m).standard_normal(m).astype(np.float32)
        sliding_cosine(x, kernel)
        sliding_cosine(x[: 4 * m], kernel)
    if topk_d:
        rows = np.random.default_rng(1).standard_normal((2000, topk_d)).astype(np.float32)
        topk_cosine(rows[:100], rows, 10)
    return True


def _solo(n, m, repeat):
    """Best time of ``sliding_cosine`` on ``n`` samples (made here) with a
    kernel of ``m`` taps, on this process's Numba threads: run on every
    worker at once by ``client.run``, it shows what the cores give to
    independent processes, with no Dask in between."""
    import time

    import numpy as np

    from cosim_np import sliding_cosine

    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    kernel = np.hanning(m).astype(np.float32)
    sliding_cosine(x, kernel)
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        sliding_cosine(x, kernel)
        best = min(best, time.perf_counter() - began)
    return best


class Measured:
    """Times a Dask job and each worker's peak memory during it."""

    def __init__(self, client, progress=False):
        self.client = client
        self.progress = progress
        methods = set(client.run(_reset_peak).values())
        self.method = methods.pop() if len(methods) == 1 else "mixed"

    def __call__(self, job):
        """``job()`` returns lazy Dask collections (or None if it ran them
        itself); they are computed here.  Returns (seconds, results,
        [peak bytes of each worker])."""
        import dask
        from distributed import progress, wait

        self.client.run(_reset_peak)
        start = time.perf_counter()
        lazy = job()
        result = None
        if lazy is not None:
            if self.progress:
                futures = self.client.compute(lazy)
                progress(futures)
                print()
                wait(futures)
                result = self.client.gather(futures)
            else:
                result = dask.compute(*lazy) if isinstance(lazy, (list, tuple)) else lazy.compute()
        seconds = time.perf_counter() - start
        peaks = self.client.run(_read_peak)
        peaks = [peaks[address] for address in sorted(peaks)]
        return seconds, result, peaks


def _malloc_trim():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")


TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def cluster(workers, memory_limit, trim="dask"):
    """A LocalCluster as docs/dask.rst recommends, and its client.  ``trim``
    "off" starts the workers without the ``MALLOC_TRIM_THRESHOLD_=65536``
    that Dask's nanny gives them by default (glibc's own defaults instead)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({TRIM_KEY: None} if trim == "off" else {}):
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=memory_limit, env={"NUMBA_NUM_THREADS": "1"})
    client = Client(local)
    threads = set(client.run(_numba_threads).values())
    if threads != {1}:
        raise RuntimeError(f"the workers run Numba on {threads} threads, not 1")
    return local, client


def remove(path):
    shutil.rmtree(path, ignore_errors=True)


def warm_zarr(path, root):
    """Read a chunk of the store ``path`` and write a small store, on the
    current cluster: the workers import zarr and its codecs before timing."""
    import dask.array as da

    scratch = os.path.join(root, "warm.zarr")
    piece = da.from_zarr(path)
    piece[: piece.chunks[0][0]].to_zarr(scratch)
    remove(scratch)


# --- the data, written chunk by chunk (never whole in one process) ---

def write_signal(path, n, chunk, classes, noise_floor):
    """The realistic signal: chunk ``i`` is corpus class ``classes[i % len]``
    from seed ``i``, plus a noise floor; written by Dask's threads."""
    import dask
    import dask.array as da

    try:
        from . import corpus
    except ImportError:  # run as a script
        import corpus

    def block(block_info=None):
        (start, stop), = block_info[None]["array-location"]
        index, = block_info[None]["chunk-location"]
        values = corpus.make(classes[index % len(classes)], stop - start, np.float64, seed=index)
        if noise_floor:
            values += noise_floor * np.random.default_rng([index, 7]).standard_normal(values.size)
        return values.astype(np.float32)

    sizes = (chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ())
    signal = da.map_blocks(block, chunks=(sizes,), dtype=np.float32,
                           meta=np.empty(0, np.float32))
    with dask.config.set(scheduler="threads"):
        signal.to_zarr(path)


def write_embeddings(path, rows, d, chunk, seed, centres=1000):
    """``rows`` float32 vectors around ``centres`` cluster centres (the same
    centres for every store), written by Dask's threads."""
    import dask
    import dask.array as da

    middle = np.random.default_rng(12345).standard_normal((centres, d))

    def block(block_info=None):
        (start, stop), _ = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, start])
        which = rng.integers(0, centres, stop - start)
        return (middle[which] + 0.7 * rng.standard_normal((stop - start, d))).astype(np.float32)

    sizes = (chunk,) * (rows // chunk) + ((rows % chunk,) if rows % chunk else ())
    vectors = da.map_blocks(block, chunks=(sizes, (d,)), dtype=np.float32,
                            meta=np.empty((0, 0), np.float32))
    with dask.config.set(scheduler="threads"):
        vectors.to_zarr(path)


def kernel_of(m):
    """The kernel of length ``m``: a Hann-windowed chirp, float32."""
    t = np.linspace(0.0, 1.0, m)
    return (np.hanning(m) * np.sin(2 * np.pi * (3 + 20 * t) * t)).astype(np.float32)


# --- (a) out of core ---

def in_memory_times(path, ms, thread_counts, block):
    """``{(m, threads): seconds}``: sliding_cosine on NumPy blocks of the
    store's signal, the calls' times summed (each block read once, before
    its calls; a warm-up call first)."""
    import numba
    import zarr

    from cosim_np import sliding_cosine

    store = zarr.open_array(path, mode="r")
    n = store.shape[0]
    span = max(ms) - 1
    totals = {(m, t): 0.0 for m in ms for t in thread_counts}
    kernels = {m: kernel_of(m) for m in ms}
    for start in range(0, n - min(ms) + 1, block):
        piece = np.asarray(store[start : min(n, start + block + span)])
        for m in ms:
            stop = min(piece.size, block + m - 1)
            if stop < m:
                continue
            values = piece[:stop]
            for threads in thread_counts:
                numba.set_num_threads(threads)
                if start == 0:  # the very arrays' types, compiled or loaded before timing
                    sliding_cosine(values, kernels[m])
                began = time.perf_counter()
                sliding_cosine(values, kernels[m])
                totals[(m, threads)] += time.perf_counter() - began
        del piece
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return totals


def spot_check(path, scores_path, m, chunk):
    """Max |Dask result - in-memory result| on 2**17 windows across the first
    chunk border (both sides' windows), and the number of windows."""
    import zarr

    from cosim_np import sliding_cosine

    signal = zarr.open_array(path, mode="r")
    scores = zarr.open_array(scores_path, mode="r")
    start = max(0, min(chunk, scores.shape[0]) - 2**16)
    stop = min(scores.shape[0], start + 2**17)
    expected = sliding_cosine(np.asarray(signal[start : stop + m - 1]), kernel_of(m))
    got = np.asarray(scores[start:stop])
    return float(np.nanmax(np.abs(got.astype(np.float64) - expected))), scores.shape[0]


def part_a(args, root, signal_path):
    import dask.array as da

    from cosim_np import sliding_cosine

    print(f"\n(a) Out of core: n = {args.n:,} float32 samples in zarr ({args.chunk:,}-sample chunks, "
          f"{args.chunk * 4 / MiB:.0f} MiB), mode 'valid', method 'auto'")
    began = time.perf_counter()
    memory = in_memory_times(signal_path, args.m, args.workers, args.memory_block)
    print(f"{time.strftime('%H:%M:%S')} in-memory baselines: blocks of {args.memory_block:,} samples, "
          f"{time.perf_counter() - began:.0f} s with the untimed reads")
    rows = []
    for workers in args.workers:
        local, client = cluster(workers, args.memory_limit, args.malloc_trim)
        try:
            client.run(_warm_up, args.m, 0)
            warm_zarr(signal_path, root)
            measure = Measured(client, args.progress)
            print(f"{workers} worker(s): dashboard {client.dashboard_link}; peak memory: "
                  f"{measure.method}; MALLOC_TRIM_THRESHOLD_ {set(client.run(_malloc_trim).values())}")
            copies = []
            for _ in range(args.repeat):
                target = os.path.join(root, "copy.zarr")
                copies.append(measure(lambda target=target: da.from_zarr(signal_path).to_zarr(
                    target, compute=False)))
                remove(target)
            copy_time, _, copy_peaks = min(copies, key=lambda run: run[0])
            print(f"  {time.strftime('%H:%M:%S')} copy: {copy_time:.1f} s, peaks "
                  f"{[f'{p / MiB:.0f}' for p in copy_peaks]} MiB")
            for m in args.m:
                runs = []
                target = os.path.join(root, f"scores_{m}.zarr")
                for _ in range(args.repeat):
                    remove(target)
                    runs.append(measure(lambda m=m, target=target: sliding_cosine(
                        da.from_zarr(signal_path), kernel_of(m)).to_zarr(target, compute=False)))
                seconds, _, peaks = min(runs, key=lambda run: run[0])
                error, windows = spot_check(signal_path, target, m, args.chunk)
                remove(target)
                rows.append((m, workers, seconds, memory[(m, workers)], copy_time, max(peaks),
                             max(copy_peaks), error))
                print(f"  {time.strftime('%H:%M:%S')} m = {m}: {seconds:.1f} s, peaks "
                      f"{[f'{p / MiB:.0f}' for p in peaks]} MiB, {windows:,} windows, "
                      f"spot check max |diff| {error:.1e}")
        finally:
            client.close()
            local.close()
    print(f"\n(a) CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; ratio = Dask / (in memory + copy), "
          f"target <= 1.5; peak = the largest worker's, target <= 1024 MiB")
    print(f"{'m':>6}{'workers':>9}{'Dask s':>9}{'in-mem s':>10}{'copy s':>9}{'ratio':>8}"
          f"{'peak MiB':>10}{'copy peak':>11}{'ns/sample':>11}  met")
    for m, workers, seconds, mem, copy, peak, copy_peak, _ in rows:
        ratio = seconds / (mem + copy)
        met = ("time " + ("yes" if ratio <= 1.5 else "NO") + ", memory "
               + ("yes" if peak <= GiB else "NO"))
        print(f"{m:>6}{workers:>9}{seconds:>9.1f}{mem:>10.1f}{copy:>9.1f}{ratio:>8.2f}"
              f"{peak / MiB:>10.0f}{copy_peak / MiB:>11.0f}{seconds / args.n * 1e9:>11.2f}  {met}")
    return rows


# --- (b) compute-bound, in memory ---

def part_b(args, signal_path):
    import dask.array as da
    import numba
    import zarr
    from distributed import wait

    from cosim_np import sliding_cosine

    m = 1024
    kernel = kernel_of(m)
    print(f"\n(b) In memory: n = {args.n_memory:,} float32 samples ({args.memory_chunk:,}-sample chunks), "
          f"m = {m}, persisted on the workers first; best of {args.repeat_memory}")
    values = np.asarray(zarr.open_array(signal_path, mode="r")[: args.n_memory])
    plain = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        sliding_cosine(values[: 2**21], kernel)
        times = []
        for _ in range(args.repeat_memory):
            began = time.perf_counter()
            sliding_cosine(values, kernel)
            times.append(time.perf_counter() - began)
        plain[threads] = min(times)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    del values
    dask_times, solo = {}, {}
    for workers in (1, 2):
        local, client = cluster(workers, args.memory_limit, args.malloc_trim)
        try:
            client.run(_warm_up, [m], 0)
            solo[workers] = max(client.run(_solo, args.solo_n, m, args.repeat_memory).values())
            # persisted, each worker holding an equal run of consecutive blocks (persist
            # alone places them as they come, up to 20 and 28 of 48 on two workers)
            x = da.from_zarr(signal_path)[: args.n_memory].rechunk(args.memory_chunk)
            addresses = sorted(client.scheduler_info()["workers"])
            bounds = np.linspace(0, x.numblocks[0], len(addresses) + 1).round().astype(int)
            x = da.concatenate([client.persist(x.blocks[lo:hi], workers=[address])
                                for address, lo, hi in zip(addresses, bounds[:-1], bounds[1:])])
            wait(x)
            held = {w: len(keys) for w, keys in client.has_what().items()}
            measure = Measured(client)
            times = []
            for _ in range(args.repeat_memory):
                def job(x=x):
                    result = sliding_cosine(x, kernel).persist()
                    wait(result)
                    del result
                seconds, _, peaks = measure(job)
                times.append(seconds)
            dask_times[workers] = min(times)
            print(f"  {workers} worker(s), MALLOC_TRIM_THRESHOLD_ {set(client.run(_malloc_trim).values())}: "
                  f"{min(times):.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}), "
                  f"blocks held per worker {sorted(held.values())}, peaks "
                  f"{[f'{p / MiB:.0f}' for p in peaks]} MiB")
        finally:
            client.close()
            local.close()
    ratio = dask_times[1] / dask_times[2]
    print(f"\n(b) CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"{'':<34}{'1':>9}{'2':>9}{'speed-up':>10}")
    print(f"{'in memory, Numba threads (s)':<34}{plain[1]:>9.2f}{plain[2]:>9.2f}{plain[1] / plain[2]:>10.2f}")
    print(f"{'Dask, LocalCluster workers (s)':<34}{dask_times[1]:>9.2f}{dask_times[2]:>9.2f}{ratio:>10.2f}"
          f"   target >= 1.6: {'met' if ratio >= 1.6 else 'NOT met'}")
    ceiling = 2 * solo[1] / solo[2]
    print(f"{'the same call in each worker (s)':<34}{solo[1]:>9.2f}{solo[2]:>9.2f}{ceiling:>10.2f}"
          f"   (n = {args.solo_n:,} per worker, no Dask; 2 workers do twice the work)")
    print(f"Dask on 1 worker over in memory on 1 thread: {dask_times[1] / plain[1]:.2f}; "
          f"on 2 over 2: {dask_times[2] / plain[2]:.2f}; Dask's speed-up over the ceiling of two "
          f"independent processes: {ratio / ceiling:.2f}")
    return plain, dask_times, solo


# --- (c) topk_cosine from zarr ---

def part_c(args, root):
    import dask.array as da
    import numba
    import zarr

    from cosim_np import topk_cosine

    queries_path = os.path.join(root, "queries.zarr")
    corpus_path = os.path.join(root, "corpus.zarr")
    began = time.perf_counter()
    write_embeddings(queries_path, args.queries, args.d, args.query_chunk, seed=1)
    write_embeddings(corpus_path, args.corpus, args.d, args.corpus_chunk, seed=2)
    print(f"\n(c) topk_cosine: {args.queries:,} queries x {args.corpus:,} corpus rows, D = {args.d}, "
          f"float32, k = {args.k}, from zarr (row chunks {args.query_chunk:,} and {args.corpus_chunk:,}; "
          f"stores written in {time.perf_counter() - began:.0f} s); {args.workers_topk} worker(s)")
    local, client = cluster(args.workers_topk, args.memory_limit, args.malloc_trim)
    try:
        client.run(_warm_up, [], args.d)
        warm_zarr(queries_path, root)
        measure = Measured(client, args.progress)
        print(f"{time.strftime('%H:%M:%S')} start")
        seconds, (scores, indices), peaks = measure(lambda: topk_cosine(
            da.from_zarr(queries_path), da.from_zarr(corpus_path), args.k))
        print(f"{time.strftime('%H:%M:%S')} done")
    finally:
        client.close()
        local.close()
    # in memory, no Dask, on every Numba thread: the first query chunk against
    # the whole corpus (read beforehand), timed; and the results compared
    corpus_rows = np.asarray(zarr.open_array(corpus_path, mode="r")[:])
    first = np.asarray(zarr.open_array(queries_path, mode="r")[: args.query_chunk])
    topk_cosine(first[:100], corpus_rows[:10_000], args.k)
    began = time.perf_counter()
    want_scores, want_index = topk_cosine(first, corpus_rows, args.k)
    plain = time.perf_counter() - began
    rows = first.shape[0]
    same = float(np.mean(want_index == indices[:rows]))
    error = float(np.max(np.abs(want_scores.astype(np.float64) - scores[:rows])))
    del corpus_rows
    flops = 2.0 * args.queries * args.corpus * args.d
    full = seconds * FULL_QUERIES / args.queries
    peak = max(peaks)
    print(f"\n(c) CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"  time {seconds:.1f} s ({flops / seconds / 1e9:.1f} GFLOP/s of products), peak memory per worker "
          f"{[f'{p / MiB:.0f}' for p in peaks]} MiB ({measure.method}), target < 2048 MiB: "
          f"{'met' if peak < 2 * GiB else 'NOT met'}")
    print(f"  extrapolated to {FULL_QUERIES:,} queries (linear in the queries): {full:.0f} s = {full / 60:.1f} min")
    plain_rate = 2.0 * rows * args.corpus * args.d / plain
    print(f"  in memory, {numba.get_num_threads()} Numba threads, no Dask: {rows:,} queries in {plain:.1f} s "
          f"({plain_rate / 1e9:.1f} GFLOP/s); Dask's time over the in-memory rate's: "
          f"{seconds / (flops / plain_rate):.2f}")
    print(f"  the first {rows:,} queries against the in-memory call: indices equal {same:.2%}, "
          f"max |score diff| {error:.1e}")
    return seconds, peaks, full


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--n", type=int, default=10**9, help="(a) signal length (default 10**9)")
    parser.add_argument("--chunk", type=int, default=2**24, help="(a) zarr chunk, samples (default 2**24)")
    parser.add_argument("--m", type=int, nargs="+", default=[64, 1024], help="(a) kernel lengths")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="(a) worker counts")
    parser.add_argument("--memory-block", type=int, default=2**27,
                        help="(a) block of the in-memory baseline, samples (default 2**27)")
    parser.add_argument("--repeat", type=int, default=1, help="(a) runs of each job, best taken")
    parser.add_argument("--classes", nargs="+", help="corpus classes of the signal (default: all available)")
    parser.add_argument("--noise-floor", type=float, default=0.01, help="noise added to every class")
    parser.add_argument("--n-memory", type=int, default=2 * 10**8, help="(b) signal length")
    parser.add_argument("--memory-chunk", type=int, default=2**22, help="(b) chunk, samples")
    parser.add_argument("--repeat-memory", type=int, default=3, help="(b) runs, best taken")
    parser.add_argument("--solo-n", type=int, default=2**25,
                        help="(b) samples of the call run in every worker at once (the ceiling)")
    parser.add_argument("--queries", type=int, default=FULL_QUERIES, help="(c) query rows")
    parser.add_argument("--corpus", type=int, default=10**6, help="(c) corpus rows")
    parser.add_argument("--d", type=int, default=256, help="(c) vector length")
    parser.add_argument("--k", type=int, default=10, help="(c) matches per query")
    parser.add_argument("--query-chunk", type=int, default=10**4, help="(c) query rows per chunk")
    parser.add_argument("--corpus-chunk", type=int, default=10**5, help="(c) corpus rows per chunk")
    parser.add_argument("--workers-topk", type=int, default=2, help="(c) workers")
    parser.add_argument("--memory-limit", default="8GiB", help="each worker's memory_limit (generous)")
    parser.add_argument("--malloc-trim", default="dask", choices=["dask", "off"],
                        help="the workers' MALLOC_TRIM_THRESHOLD_: Dask's default (65536) or unset")
    parser.add_argument("--dir", help="where the temporary stores go (default: the system's temp dir)")
    parser.add_argument("--progress", action="store_true", help="Dask's progress bar over each job")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.n, args.chunk, args.memory_block = 3 * 10**6, 2**18, 2**20
        args.n_memory, args.memory_chunk, args.repeat_memory, args.solo_n = 2 * 10**6, 2**18, 1, 2**20
        args.queries, args.corpus, args.query_chunk, args.corpus_chunk = 2000, 20_000, 500, 5000

    import dask
    import distributed
    import numba
    import zarr

    import cosim_np

    try:
        from . import corpus
    except ImportError:
        import corpus
    classes = args.classes or corpus.available()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"cosim_np {cosim_np.__version__} ({os.path.dirname(cosim_np.__file__)}), numpy {np.__version__}, "
          f"numba {numba.__version__}, dask {dask.__version__}, distributed {distributed.__version__}, "
          f"zarr {zarr.__version__}, Python {sys.version.split()[0]}")
    print(f"LocalCluster(n_workers=w, threads_per_worker=1, processes=True, memory_limit={args.memory_limit!r}, "
          f"env={{'NUMBA_NUM_THREADS': '1'}}); the workers' MALLOC_TRIM_THRESHOLD_: "
          + ("Dask's default" if args.malloc_trim == "dask" else "unset (--malloc-trim off)"))
    root = tempfile.mkdtemp(prefix="bench_dask_", dir=args.dir)
    try:
        if "a" in args.parts or "b" in args.parts:
            n = max(args.n if "a" in args.parts else 0, args.n_memory if "b" in args.parts else 0)
            signal_path = os.path.join(root, "signal.zarr")
            began = time.perf_counter()
            write_signal(signal_path, n, args.chunk, classes, args.noise_floor)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(signal_path) for f in fs)
            print(f"\nsignal: {n:,} samples, classes {', '.join(classes)} in turn by chunk, noise floor "
                  f"{args.noise_floor}; written in {time.perf_counter() - began:.0f} s, "
                  f"{size / GiB:.2f} GiB on disk (zstd)")
            if "a" in args.parts:
                args.n = n
                part_a(args, root, signal_path)
            if "b" in args.parts:
                part_b(args, signal_path)
            remove(signal_path)
        if "c" in args.parts:
            part_c(args, root)
    finally:
        remove(root)


if __name__ == "__main__":
    main()
