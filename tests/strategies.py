"""Hypothesis strategies shared by the test modules."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MODES = ("valid", "same", "full", "causal")
FLOAT_DTYPES = (np.float32, np.float64)
ALL_DTYPES = (np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint16, np.bool_)
# The methods of sliding_cosine, "fft" first: Hypothesis tries the simplest
# example (every first choice) before any random one, so a test under the
# fft_engine fixture reaches the FFT path whatever its random draws
# (tests/conftest.py fails a test that never does).
METHODS = st.sampled_from(["fft", "direct", "auto"])


def elements(dtype, magnitude=1e6):
    """Values of ``dtype``: finite, with exact zeros and repeats likely."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    limit = min(magnitude, float(np.finfo(dtype).max) / 4)
    return st.floats(-limit, limit, allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)


def scalable_elements(dtype):
    """Magnitudes in [2**-20, 2**20] or 0 (float32) / [2**-60, 2**60] (float64):
    scaling them by 2**k for |k| <= 100 (float32) / 900 (float64) keeps every
    value and every square a normal number."""
    low, high = (2.0**-20, 2.0**20) if np.dtype(dtype) == np.float32 else (2.0**-60, 2.0**60)
    width = np.dtype(dtype).itemsize * 8
    magnitude = st.floats(low, high, width=width)
    return st.one_of(st.just(0.0), magnitude, magnitude.map(lambda value: -value))


@st.composite
def window_geometry(draw, max_n=48, max_m=7, max_dilation=4, long_m=None):
    """``(n, m, dilation, mode)`` such that the window fits in 'valid' mode.

    ``long_m=[(lo, hi), ...]`` also draws kernel lengths from those ranges:
    the CPU kernels take different paths for short one-channel kernels
    (summed tap by tap, up to ``_core.config.FUSED_TAPS`` taps), longer ones
    (scans in lanes) and long chunks of ``m * dilation`` samples (scans chain
    by chain, from ``_cpu.sliding.CHAIN_CHUNK``); ranges straddling those
    limits cover every path.  A long kernel gets a signal of up to a few
    windows' worth beyond its span, so that its scans cross chunks."""
    mode = draw(st.sampled_from(MODES))
    lengths = st.integers(1, max_m)
    if long_m is not None:
        lengths = st.one_of(lengths, *[st.integers(lo, hi) for lo, hi in long_m])
    m = draw(lengths)
    dilation = draw(st.integers(1, max_dilation))
    span = (m - 1) * dilation
    low = span + 1 if mode == "valid" else 1
    top = max_n if m <= max_m else max(max_n, span + 3 * m * dilation)
    n = draw(st.integers(low, max(low, top)))
    return n, m, dilation, mode


def arrays(dtype, shape, elems=None):
    return hnp.arrays(dtype, shape, elements=elems if elems is not None else elements(dtype))
