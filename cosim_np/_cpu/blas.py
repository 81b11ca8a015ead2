"""Single-threaded BLAS inside our own threads, through threadpoolctl.

The tiled products (``pairwise_cosine``, ``topk_cosine``, best matches) are
fastest when every thread computes its own small tile with a single-threaded
BLAS call and at once clips it or folds it into the top-k lists while it is
still in that core's cache.  One multi-threaded BLAS call per large tile
leaves the tile in main memory and the BLAS threads spinning while the
selection runs (see ``benchmarks/RESULTS.md``, session 9).

threadpoolctl (maintained by the scikit-learn team) finds the BLAS libraries
loaded in the process, NumPy's OpenBLAS, MKL or BLIS, and sets their thread
counts.  The setting is process-wide, so it is lowered while at least one of
our calls needs it and restored when the last one ends: a counter under a
lock, so that overlapping calls from user threads cannot leave it lowered
(threadpoolctl's own context manager restores what it found on entry, which
for the second of two overlapping calls is the lowered count), and only
where it is still the one thread we set (a limit of the user's that ended
meanwhile has restored its own count).  threadpoolctl
lets one thread at a time set OpenBLAS's shared pool, so the thread that
lowers or restores the count takes that role first (the lock orders them) and
gives it up after.  BLAS calls
made by other threads of the process meanwhile run on one thread: still
correct, only slower.  Where no BLAS can be controlled
:func:`single_threaded` reports ``False`` and callers keep one stream of
multi-threaded BLAS calls.
"""

import contextlib
import os
import threading

# (re-entrant: a call made while this thread holds it, from a signal handler
# or a finaliser the garbage collector runs, waited for ever)
_lock = threading.RLock()
_users = 0
# each BLAS library's thread count before the first call inside; kept until
# it is restored (an interrupt inside _restore left it, and the next call
# took the lowered counts for the user's, for good)
_original = None
_controller = None  # the BLAS libraries' controller, once found


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded now (found once:
    scanning the process's libraries takes milliseconds)."""
    global _controller
    if _controller is None:
        # (imported here: threadpoolctl sets KMP_DUPLICATE_LIB_OK for the whole
        # process when imported, and only the BLAS products need it)
        setting = os.environ.get("KMP_DUPLICATE_LIB_OK")
        from threadpoolctl import ThreadpoolController

        # (and set back: the setting turns off Intel OpenMP's guard against two
        # of its runtimes in one process, for the user's whole process)
        if setting is None:
            os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def _take_control():
    """Let this thread set the limits: threadpoolctl (3.8 and later) ignores
    OpenBLAS limits set by any thread but the first that set one, until that
    thread clears its role."""
    for lib in _blas().lib_controllers:
        clear = getattr(lib, "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)


def can_limit():
    """Can NumPy's BLAS be switched to one thread at run time?"""
    return bool(_blas().lib_controllers)


def blas_threads():
    """The largest thread count of the BLAS libraries, or ``None`` where none
    can be controlled."""
    counts = [lib.num_threads for lib in _blas().lib_controllers]
    return max(counts) if counts else None


@contextlib.contextmanager
def single_threaded():
    """Run the BLAS on one thread inside the block; yields whether it could
    (``False``: BLAS unchanged, callers should not run BLAS calls in their
    own threads)."""
    global _users, _original
    if not can_limit():
        yield False
        return
    with _lock:
        if _users == 0:
            _take_control()
            libraries = _blas().lib_controllers
            if _original is None:
                _original = [lib.num_threads for lib in libraries]
            for lib in libraries:
                lib.set_num_threads(1)
            _take_control()
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users = max(0, _users - 1)  # (a forked child starts at 0: _after_fork)
            if _users == 0 and _original is not None:
                _restore()


def _restore():
    """Set the BLAS thread counts back to ``_original`` (under ``_lock``)."""
    global _original
    _take_control()
    for lib, count in zip(_blas().lib_controllers, _original):
        # (a count changed meanwhile is someone else's: a user's
        # threadpool_limits that began before our first call and ended
        # inside it restored its own, which ours must not undo)
        if lib.num_threads == 1:
            lib.set_num_threads(count)
    _take_control()
    _original = None


def _after_fork_in_child():
    """A forked child runs only the thread that forked: the calls of the
    others never end there.  The BLAS thread counts they lowered are set
    back (else the child's NumPy runs its BLAS on one thread for good), and
    no call is under way.  ``_lock`` was taken before the fork (no thread
    was inside it: a lock held by a thread the child has not would never
    be released there), and is released after it, in both processes."""
    global _users
    if _original is not None:
        _restore()
    _users = 0
    _lock.release()


os.register_at_fork(before=_lock.acquire, after_in_parent=_lock.release,
                    after_in_child=_after_fork_in_child)
