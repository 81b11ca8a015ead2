"""Thread-level parallelism over windows, honouring ``numba.set_num_threads``.

The kernels release the GIL (``nogil=True``), so plain threads run them side
by side.  This composes with Dask and with user threads, which Numba's
``parallel=True`` (workqueue layer) does not.  Segments start on tile
boundaries, so every window is summed in the same order as by one thread:
the result is bit-identical whatever the thread count.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba

from .._core import config


def thread_count():
    return numba.get_num_threads()


def run_segments(nwin, tile, work, weight=1):
    """Call ``work(start, stop)`` over ``[0, nwin)`` split into tile-aligned
    segments, one per thread; ``weight``: what each window costs against a
    window of one row, one channel and one kernel (the rows, channels and
    kernels ``work`` takes it through), which decides how many threads pay."""
    threads = min(thread_count(), max(1, nwin * weight // config.MIN_WINDOWS_PER_THREAD))
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
    parts = total // max(1, minimum)
    threads = min(thread_count(), parts) if parts > 1 else 1  # (small calls ask Numba nothing)
    if threads <= 1:
        work(0, total)
        return
    run_parts([(total * t // threads, total * (t + 1) // threads) for t in range(threads)], work)


# Worker threads are kept between calls, one set per calling thread: starting
# them anew costs a good share of a short call.  A set per calling thread
# keeps concurrent user threads (and nested calls from a worker) from
# queueing behind each other's parts; the threads end with the thread that
# owns them.  One set, as large as the most parts a call of this thread has
# had: fewer parts take the idle threads of a larger set.
class _Pools(threading.local):
    def __init__(self):
        self.pool = None
        self.size = 0
        self.busy = False  # (in run_parts: a call nested in this thread runs its parts in turn)


_local = _Pools()


def _forget_pools():
    """In a child made by ``fork``: the parent's worker threads are not there
    (work queued to them would wait for ever); the child starts its own."""
    _local.pool, _local.size = None, 0


os.register_at_fork(after_in_child=_forget_pools)


def _workers(count):
    """This thread's own executor of at least ``count`` worker threads."""
    if count > _local.size:
        if _local.pool is not None:
            _local.pool.shutdown(wait=False)  # (its threads end once idle)
        _local.pool = ThreadPoolExecutor(count, thread_name_prefix="cosim_np")
        _local.size = count
    return _local.pool


def run_parts(bounds, work):
    """``work(start, stop)`` for each ``(start, stop)`` of ``bounds``: the
    first part in the calling thread, the others on worker threads at the
    same time.  Returns once every part has ended; an exception of the first
    part, else of the earliest failing one, is raised here.  Where no thread
    can start (at interpreter shutdown, from an ``atexit`` function) the
    parts run in turn in the calling thread: the same parts, the same bits;
    so do those of a call made while this thread is in another's (from a
    signal handler or a finaliser the garbage collector runs), which would
    wait for ever on the executor the outer call is submitting to."""
    if len(bounds) == 1 or _local.busy:
        for start, stop in bounds:
            work(start, stop)
        return
    _local.busy = True
    try:
        _run_on_workers(bounds, work)
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # (an interrupt, KeyboardInterrupt most often, may land inside
            # the executor's own locks and leave them held: the next call
            # of this thread would wait on them for ever, so it gets new
            # workers; these are left to end, never waited for)
            _forget_pools()
        raise
    finally:
        _local.busy = False


def _run_on_workers(bounds, work):
    """:func:`run_parts` of two parts or more, on this thread's workers."""
    pool = _workers(len(bounds) - 1)
    futures = []
    try:
        for start, stop in bounds[1:]:
            futures.append(pool.submit(work, start, stop))
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        pass
    try:
        work(*bounds[0])
        for start, stop in bounds[1 + len(futures):]:
            work(start, stop)
    finally:
        wait(futures)  # no part may still run once this returns or raises
    for future in futures:
        future.result()
