"""Thread-level parallelism over windows, honouring ``numba.set_num_threads``.

The kernels release the GIL (``nogil=True``), so plain threads run them side
by side.  This composes with Dask and with user threads, which Numba's
``parallel=True`` (workqueue layer) does not.  Segments start on tile
boundaries, so every window is summed in the same order as by one thread:
the result is bit-identical whatever the thread count.
"""

from concurrent.futures import ThreadPoolExecutor

import numba

# Below this many windows per thread, starting threads costs more than it saves.
MIN_WINDOWS_PER_THREAD = 1 << 16


def thread_count():
    return numba.get_num_threads()


def run_segments(nwin, tile, work):
    """Call ``work(start, stop)`` over ``[0, nwin)`` split into tile-aligned
    segments, one per thread."""
    threads = min(thread_count(), max(1, nwin // MIN_WINDOWS_PER_THREAD))
    if threads <= 1:
        work(0, nwin)
        return
    per_thread = -(-nwin // threads)
    per_thread = -(-per_thread // tile) * tile
    run_parts([(start, min(nwin, start + per_thread)) for start in range(0, nwin, per_thread)], work)


def run_split(total, work, minimum=1):
    """Call ``work(start, stop)`` on near-equal parts of ``[0, total)``, one
    per thread, each of at least ``minimum`` items (for row-wise passes over
    a tile, such as the top-k merge, while BLAS threads are idle)."""
    threads = min(thread_count(), max(1, total // max(1, minimum)))
    if threads <= 1:
        work(0, total)
        return
    run_parts([(total * t // threads, total * (t + 1) // threads) for t in range(threads)], work)


def run_parts(bounds, work):
    """``work(start, stop)`` for each ``(start, stop)`` of ``bounds``, one
    thread each; the first exception is raised here."""
    with ThreadPoolExecutor(len(bounds)) as pool:
        for future in [pool.submit(work, start, stop) for start, stop in bounds]:
            future.result()
