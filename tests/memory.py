"""The peak memory of a call as ``tracemalloc`` sees it (NumPy's allocations
are traced; warm a call up first, so that compiling it is not counted)."""

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
