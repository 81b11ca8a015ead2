"""The peak memory of a call as ``tracemalloc`` sees it (NumPy's allocations
are traced; warm a call up first, so that compiling it is not counted)."""

import threading
import tracemalloc


def traced_peak(call):
    """``(result, peak)``: what ``call()`` returns, and the most bytes traced
    at once while it ran."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def traced_peak_in_a_new_thread(call):
    """``traced_peak`` of ``call`` run in a thread of its own, which has no
    scratch arrays kept from earlier calls (``_cpu.scratch``): the peak
    counts the call's whole working memory, whatever ran before."""
    found = {}
    thread = threading.Thread(target=lambda: found.update(answer=traced_peak(call)))
    thread.start()
    thread.join()
    return found["answer"]
