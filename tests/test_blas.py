"""_blas: NumPy's BLAS goes single-threaded inside the block and comes back,
also when calls from several user threads overlap; where it cannot be
controlled nothing changes.  (NumPy's wheels bundle OpenBLAS, which
threadpoolctl controls: these tests run everywhere CI does.)"""

import threading

import numpy as np
import pytest

from cosim_np import topk_cosine
from cosim_np._cpu import blas as _blas


def test_numpys_blas_is_controlled():
    assert _blas.can_limit() and _blas.blas_threads() >= 1


def test_single_threaded_inside_and_restored_after():
    before = _blas.blas_threads()
    with _blas.single_threaded() as limited:
        assert limited and _blas.blas_threads() == 1
        with _blas.single_threaded() as again:  # nested: still one, still restored once
            assert again and _blas.blas_threads() == 1
        assert _blas.blas_threads() == 1
    assert _blas.blas_threads() == before


def test_overlapping_users_restore_the_count_once_the_last_leaves():
    before = _blas.blas_threads()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with _blas.single_threaded():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second():
        first_in.wait()
        with _blas.single_threaded():
            second_in.set()
            first_out.wait()
            seen["after first left"] = _blas.blas_threads()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["after first left"] == 1
    assert _blas.blas_threads() == before


def test_restored_when_the_work_raises():
    before = _blas.blas_threads()
    with pytest.raises(RuntimeError), _blas.single_threaded():
        raise RuntimeError("boom")
    assert _blas.blas_threads() == before


def test_without_control_nothing_changes(monkeypatch):
    monkeypatch.setattr(_blas, "_controller", _blas._blas().select(user_api="no such api"))
    assert not _blas.can_limit() and _blas.blas_threads() is None
    with _blas.single_threaded() as limited:
        assert limited is False
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    scores, idx = topk_cosine(x, None, 3, exclude_self=True)  # one-stream layout
    assert (idx != np.arange(300)[:, None]).all() and (np.diff(scores, axis=1) <= 0).all()


def test_limits_set_elsewhere_in_the_program_do_not_block_ours():
    # threadpoolctl lets only the first thread that set an OpenBLAS limit set
    # more; a limit the program set on its main thread must not make ours a
    # silent no-op on another
    from threadpoolctl import ThreadpoolController

    before = _blas.blas_threads()
    theirs = ThreadpoolController().limit(limits=before, user_api="blas")
    try:
        seen = {}

        def call():
            with _blas.single_threaded():
                seen["inside"] = _blas.blas_threads()

        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
        assert seen["inside"] == 1
        assert _blas.blas_threads() == before
    finally:
        theirs.restore_original_limits()


def test_a_users_limit_that_ends_inside_our_call_keeps_its_restored_count():
    """A user's ``threadpool_limits(1)`` entered before our call and left
    while it runs restores the user's count; our exit must not put back the
    1 it found on entry (it did, and BLAS stayed on one thread for good)."""
    from threadpoolctl import threadpool_limits

    before = _blas.blas_threads()
    _blas._take_control()  # (let the user's thread set its limit: see the test above)
    user_in, user_may_leave, user_out, ours_in = (threading.Event() for _ in range(4))

    def user():
        with threadpool_limits(limits=1):
            user_in.set()
            user_may_leave.wait()
        user_out.set()

    def ours():
        user_in.wait()
        with _blas.single_threaded():
            ours_in.set()
            user_out.wait()

    threads = [threading.Thread(target=user), threading.Thread(target=ours)]
    for t in threads:
        t.start()
    ours_in.wait()
    user_may_leave.set()
    for t in threads:
        t.join()
    assert _blas.blas_threads() == before


def test_the_process_environment_is_left_as_it_was():
    """threadpoolctl sets ``KMP_DUPLICATE_LIB_OK=True`` when imported (Intel
    OpenMP's guard against two of its runtimes, off for the whole process
    and its children); the first BLAS product imported it and left it set
    (an exploratory test)."""
    import os
    import subprocess
    import sys

    script = ("import os, numpy as np, cosim_np\n"
              "cosim_np.pairwise_cosine(np.random.default_rng(0).random((700, 48)))\n"
              "print(os.environ.get('KMP_DUPLICATE_LIB_OK'))\n")
    env = {name: value for name, value in os.environ.items() if name != "KMP_DUPLICATE_LIB_OK"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_a_restore_cut_short_still_restores_the_users_count():
    """An interrupt inside ``_restore`` left ``_original`` set and the count
    lowered; the next call took the lowered count for the user's and kept
    NumPy's BLAS on one thread for good (an exploratory test, with Ctrl-C
    during a loop of ``topk_cosine``)."""
    libraries = _blas._blas().lib_controllers
    users = [lib.num_threads for lib in libraries]
    try:
        for lib in libraries:
            lib.set_num_threads(2)
        with _blas._lock:  # (as _restore leaves things when cut short before its first set)
            _blas._original = [2] * len(libraries)
            for lib in libraries:
                lib.set_num_threads(1)
        with _blas.single_threaded():
            assert _blas.blas_threads() == 1
        assert [lib.num_threads for lib in libraries] == [2] * len(libraries)
        assert _blas._original is None
    finally:
        for lib, count in zip(libraries, users):
            lib.set_num_threads(count)


def test_a_call_nested_while_this_thread_holds_the_lock_goes_on():
    """A call made while the same thread is inside ``single_threaded``'s
    bookkeeping (from a signal handler, or a finaliser the garbage collector
    runs) waited for ever on the lock (an exploratory test)."""
    before = _blas.blas_threads()
    done = threading.Event()

    def nested():
        with _blas._lock, _blas.single_threaded():
            pass
        done.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(30)
    assert done.is_set()
    assert _blas.blas_threads() == before
