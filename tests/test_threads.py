"""Thread count never changes a bit; concurrent calls from user threads work."""

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

from cosim_np import sliding_cosine, windowed_norm
from cosim_np._core import config
from cosim_np._cpu import threads as _threads

# every test once per FFT library (tests/conftest.py)


@pytest.fixture
def small_segments(monkeypatch):
    """Split even short signals across threads."""
    monkeypatch.setattr(config, "MIN_WINDOWS_PER_THREAD", 500)
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method,m,dilation", [("direct", 3, 1), ("direct", 9, 2), ("fft", 70, 1), ("fft", 20, 3)])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_thread_count_is_bit_exact(small_segments, method, m, dilation, mode):
    rng = np.random.default_rng(m)
    signal = rng.standard_normal((2, 30_000)).astype(np.float32)
    signal[0, 12_345] = np.nan
    signal[1, 20_000] = 1e30
    kernels = rng.standard_normal((3, m))
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(
            (
                sliding_cosine(signal, kernels, method=method, dilation=dilation, mode=mode, sharpness=1.5),
                windowed_norm(signal, m, dilation=dilation, mode=mode),
            )
        )
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method,kernel_shape", [("direct", (12,)), ("fft", (2, 150))])
def test_concurrent_calls_from_user_threads(method, kernel_shape):
    # Eight calls of one shape on four threads: each thread reuses its kept
    # scratch arrays (cosim_np._cpu.scratch), never another thread's.
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal(50_000) for _ in range(8)]
    kernel = rng.standard_normal(kernel_shape)
    want = [sliding_cosine(s, kernel, method=method) for s in signals]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: sliding_cosine(s, kernel, method=method), signals))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_parts_run_on_kept_worker_threads_and_the_caller():
    import threading

    def record(seen):
        lock = threading.Lock()

        def work(start, stop):
            with lock:
                seen.append((start, threading.get_ident()))

        return work

    calls = [[] for _ in range(6)]
    for seen in calls:
        _threads.run_parts([(0, 1), (1, 2), (2, 3)], record(seen))
    me = threading.get_ident()
    assert all(dict(seen)[0] == me for seen in calls)  # the first part runs in the caller
    workers = {ident for seen in calls for start, ident in seen if start}
    kept = {thread.ident for thread in _threads._local.pool._threads}
    assert me not in workers and workers <= kept  # this thread's kept workers every time


def test_calls_of_any_part_count_keep_one_set_of_workers():
    """Parts of 2 to 8 from one thread run on one set of 7 workers, not a
    set per count (which kept 84 idle threads at 16 threads)."""
    import threading

    found = []

    def calls():
        for count in (3, 8, 2, 5, 8, 4):
            _threads.run_parts([(p, p + 1) for p in range(count)], lambda start, stop: None)
        found.append(len(_threads._local.pool._threads))

    caller = threading.Thread(target=calls)
    caller.start()
    caller.join()
    assert 1 <= found[0] <= 7


def _run_script(tmp_path, text):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "NUMBA_NUM_THREADS": "2"})


def test_a_forked_child_starts_its_own_workers(tmp_path):
    """A child made by fork after the parent ran parts on worker threads
    (a multiprocessing pool, a PyTorch DataLoader) has none of them: its
    parts went to threads that were not there, and it waited for ever."""
    done = _run_script(tmp_path, """
import multiprocessing, threading, numpy as np
from cosim_np import sliding_cosine
x = np.random.default_rng(0).standard_normal(300_000)
want = sliding_cosine(x, np.ones(9))
# (the parent ran parts on worker threads)
assert any(thread.name.startswith("cosim_np") for thread in threading.enumerate())

def child(_):
    return np.array_equal(sliding_cosine(x, np.ones(9)), want)

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(1) as pool:
        print("child", pool.map_async(child, [0]).get(timeout=120))
""")
    assert done.returncode == 0, done.stderr
    assert "child [True]" in done.stdout


def test_a_child_forked_during_another_thread_s_blas_call_is_free_of_it(tmp_path):
    """Fork while another thread runs ``topk_cosine`` (BLAS lowered to one
    thread while it runs): the child inherited the lowered count for good
    (a third of the children), and now and then the lock of that call, held
    by a thread the child has not, and hung (an exploratory test).  Now each
    child has the BLAS thread count of before and finishes its own call."""
    done = _run_script(tmp_path, """
import os
# (two BLAS threads whatever the test process's environment holds: an
# in-process Dask cluster sets OPENBLAS_NUM_THREADS=1 there)
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "2"
import signal, threading, numpy as np
from threadpoolctl import threadpool_info
from cosim_np import topk_cosine
from cosim_np._core import config
from cosim_np._cpu import blas
config.MIN_STREAM_WORK, config.MIN_ROWS_PER_STREAM = 1000, 16  # (streams of BLAS calls)
assert blas.can_limit()
a = np.random.default_rng(0).standard_normal((200, 16))
want = topk_cosine(a, a, 2)[1]
before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
assert max(before) > 1
stop = False
def loop():
    while not stop:
        topk_cosine(a, a, 2)
thread = threading.Thread(target=loop)
thread.start()
failed = []
for _ in range(150):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        ok = np.array_equal(topk_cosine(a, a, 2)[1], want)
        counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
        os._exit(0 if ok and counts == before else 1)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        failed.append(status)
stop = True
thread.join()
print("failed children", len(failed), failed[:5])
""")
    assert done.returncode == 0, done.stderr
    assert "failed children 0 " in done.stdout, done.stdout


def test_calls_at_interpreter_shutdown_run_their_parts_in_turn(tmp_path):
    """From an ``atexit`` function no thread can start: the parts run in the
    calling thread, with the bits of parts side by side."""
    done = _run_script(tmp_path, """
import atexit, numpy as np
from cosim_np import sliding_cosine, topk_cosine
x = np.random.default_rng(0).standard_normal(300_000)
want = sliding_cosine(x, np.ones(9))
rows = x[:200_000].reshape(-1, 8)
best = topk_cosine(rows[:500], rows, 3)

@atexit.register
def at_exit():
    same = np.array_equal(sliding_cosine(x, np.ones(9)), want)
    found = topk_cosine(rows[:500], rows, 3)
    print("at exit", same, all(np.array_equal(a, b) for a, b in zip(found, best)))
""")
    assert done.returncode == 0, done.stderr
    assert "at exit True True" in done.stdout


def test_part_exceptions_reach_the_caller_after_every_part_ended():
    import time

    ended = []

    def work(start, stop):
        if start == 1:
            raise ValueError("part 1")
        time.sleep(0.05)
        ended.append(start)

    with pytest.raises(ValueError, match="part 1"):
        _threads.run_parts([(0, 1), (1, 2), (2, 3)], work)
    assert sorted(ended) == [0, 2]

    def first_fails(start, stop):
        if start == 0:
            raise KeyError("part 0")
        time.sleep(0.05)
        ended.append(start)

    ended.clear()
    with pytest.raises(KeyError, match="part 0"):
        _threads.run_parts([(0, 1), (1, 2)], first_fails)
    assert ended == [1]


def test_nested_parts_do_not_wait_on_each_other():
    out = np.zeros(16)

    def inner(start, stop):
        out[start:stop] += 1

    def outer(start, stop):
        _threads.run_parts([(start, start + 2), (start + 2, stop)], inner)

    _threads.run_parts([(0, 4), (4, 8), (8, 12), (12, 16)], outer)
    np.testing.assert_array_equal(out, np.ones(16))


def test_a_call_nested_in_the_same_thread_runs_its_parts_in_turn(monkeypatch):
    """A call made while the same thread is in another (a signal handler, or
    a finaliser the garbage collector runs) runs its parts in turn, on no
    executor: landing while the outer call was in ``submit``, it waited for
    ever on the executor's lock (an exploratory test, with a timer signal)."""
    rng = np.random.default_rng(40)
    x, k = rng.standard_normal(150_000), rng.standard_normal(16)
    want = sliding_cosine(x, k, method="direct")
    asked, got = [], []
    real = _threads._workers
    monkeypatch.setattr(_threads, "_workers", lambda count: asked.append(count) or real(count))
    monkeypatch.setattr(config, "MIN_WINDOWS_PER_THREAD", 500)

    def outer(start, stop):
        if start == 0:  # (the calling thread's part)
            before = len(asked)
            got.append(sliding_cosine(x, k, method="direct"))
            got.append(len(asked) - before)

    _threads.run_parts([(0, 1), (1, 2)], outer)
    np.testing.assert_array_equal(got[0], want)
    assert got[1] == 0  # (no executor asked for)
    parts = []
    _threads.run_parts([(0, 1), (1, 2)], lambda start, stop: parts.append(start))
    assert sorted(parts) == [0, 1]  # (and after it, workers again)


def test_an_interrupt_gives_the_thread_new_workers():
    """An interrupt (KeyboardInterrupt) may land inside the executor's own
    locks and leave them held: a later call of the thread waited on them for
    ever (an exploratory test, with Ctrl-C during a loop of calls).  After
    one the thread gets new workers; other exceptions keep them."""
    parts = []
    _threads.run_parts([(0, 1), (1, 2)], lambda start, stop: parts.append(start))
    kept = _threads._local.pool

    def fails(start, stop, kind):
        if start == 0:
            raise kind("part 0")

    with pytest.raises(ValueError):
        _threads.run_parts([(0, 1), (1, 2)], lambda a, b: fails(a, b, ValueError))
    assert _threads._local.pool is kept
    with pytest.raises(KeyboardInterrupt):
        _threads.run_parts([(0, 1), (1, 2)], lambda a, b: fails(a, b, KeyboardInterrupt))
    assert _threads._local.pool is None
    parts.clear()
    _threads.run_parts([(0, 1), (1, 2)], lambda start, stop: parts.append(start))
    assert sorted(parts) == [0, 1] and _threads._local.pool not in (None, kept)


@pytest.mark.parametrize("signal_shape, kernel_shape, threads_wanted", [
    ((8, 8, 20_000), (32, 8, 9), 2),  # a layer's batch: 8 rows x 32 kernels x 8 channels
    ((20_000,), (9,), 1),  # one short row, one kernel: not worth a second thread
])
def test_rows_kernels_and_channels_count_towards_splitting(monkeypatch, signal_shape,
                                                           kernel_shape, threads_wanted):
    """A window of a batch of rows with many kernels and channels costs that
    many plain windows: a short signal of such a batch is split over the
    threads (the result bit for bit that of one thread)."""
    parts = []
    real = _threads.run_parts

    def spy(bounds, work):
        parts.append(len(bounds))
        return real(bounds, work)

    rng = np.random.default_rng(4)
    signal = rng.standard_normal(signal_shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        want = sliding_cosine(signal, kernel, method="direct")
        numba.set_num_threads(2)
        monkeypatch.setattr(_threads, "run_parts", spy)
        got = sliding_cosine(signal, kernel, method="direct")
    finally:
        numba.set_num_threads(before)
    assert max(parts, default=1) == threads_wanted
    np.testing.assert_array_equal(got, want)
