"""sliding_cosine, windowed_norm and sharpen against the naive references,
and the promises of docs/sliding.rst stated as properties."""

import importlib.util

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from cosim_np import find_matches, sharpen, sliding_cosine, sliding_cosine_grad, windowed_norm
from cosim_np._core.config import FEW_CHUNKS, FEW_WINDOWS, FUSED_TAPS
from cosim_np._core.sliding import tile_length
from cosim_np._cpu.sliding import CHAIN_CHUNK
from tests import naive
from tests.memory import traced_peak, traced_peak_in_a_new_thread
from tests.strategies import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    METHODS,
    arrays,
    scalable_elements,
    window_geometry,
)

# every test once per FFT library (tests/conftest.py)

EPS64 = np.finfo(np.float64).eps
# Kernel lengths around the CPU kernels' limits between short kernels summed tap by
# tap and the blocked scans (see tests.strategies.window_geometry).
LONG_M = [(FUSED_TAPS - 4, FUSED_TAPS + 8), (CHAIN_CHUNK - 4, CHAIN_CHUNK + 8)]


def tolerance(out_dtype, taps, exponent=1.0):
    """Absolute tolerance for a cosine computed in float64 from ``taps`` products
    and rounded to ``out_dtype``; sharpening by ``exponent >= 1`` multiplies the
    float64 error by at most ``exponent``."""
    float64_part = 8 * (taps + 4) * EPS64 * max(1.0, exponent)
    rounding = 0.0 if out_dtype == np.float64 else float(np.finfo(out_dtype).eps)
    return float64_part + rounding


def expected_dtype(dtype):
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


# ---------------------------------------------------------------------------
# agreement with the references


@pytest.mark.usefixtures("fft_engine")
@given(
    geometry=window_geometry(long_m=LONG_M),
    dtype=st.sampled_from(ALL_DTYPES),
    sharpness=st.one_of(st.just(1.0), st.floats(1.0, 3.0)),
    noise_floor=st.one_of(st.just(0.0), st.floats(0.0, 10.0)),
    fill=st.sampled_from([0.0, -2.0, np.nan]),
    method=METHODS,
    data=st.data(),
)
def test_one_kernel_matches_naive(geometry, dtype, sharpness, noise_floor, fill, method, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    kernel = data.draw(arrays(np.float64, m))
    got = sliding_cosine(
        signal, kernel, sharpness=sharpness, mode=mode, dilation=dilation,
        noise_floor=noise_floor, fill=fill, method=method,
    )
    want = naive.sliding_cosine_1d(signal, kernel, sharpness, mode, dilation, noise_floor, fill)
    assert got.dtype == expected_dtype(dtype)
    assert got.shape == want.shape
    tol = tolerance(got.dtype, m, sharpness**2)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol)


@pytest.mark.usefixtures("fft_engine")
@given(
    geometry=window_geometry(max_n=30, max_m=5),
    dtype=st.sampled_from(FLOAT_DTYPES),
    c_out=st.integers(1, 3),
    c_in=st.integers(1, 3),
    batch=st.integers(1, 2),
    method=METHODS,
    data=st.data(),
)
def test_multichannel_kernels_match_naive(geometry, dtype, c_out, c_in, batch, method, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, (batch, c_in, n)))
    kernels = data.draw(arrays(np.float64, (c_out, c_in, m)))
    got = sliding_cosine(signal, kernels, mode=mode, dilation=dilation, method=method)
    want = np.stack(
        [naive.sliding_cosine_multichannel(signal[b], kernels, 1.0, mode, dilation) for b in range(batch)]
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(got.dtype, m * c_in))


@given(
    geometry=window_geometry(max_n=30, max_m=5),
    banks=st.integers(1, 4),
    lead=st.lists(st.integers(1, 3), max_size=2),
    data=st.data(),
)
def test_kernel_bank_matches_one_kernel_at_a_time(geometry, banks, lead, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, tuple(lead) + (n,)))
    bank = data.draw(arrays(np.float64, (banks, m)))
    got = sliding_cosine(signal, bank, mode=mode, dilation=dilation)
    assert got.shape == tuple(lead) + (banks, got.shape[-1])
    for k in range(banks):
        one = sliding_cosine(signal, bank[k], mode=mode, dilation=dilation)
        np.testing.assert_array_equal(got[..., k, :], one)


@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    axis_seed=st.integers(0, 10),
    m=st.integers(1, 3),
    mode=st.sampled_from(["same", "full", "causal"]),
    data=st.data(),
)
def test_axis_is_the_same_as_moving_it_last(shape, axis_seed, m, mode, data):
    axis = axis_seed % len(shape) - len(shape) * (axis_seed % 2)
    signal = data.draw(arrays(np.float64, tuple(shape)))
    kernel = data.draw(arrays(np.float64, m))
    got = sliding_cosine(signal, kernel, mode=mode, axis=axis)
    moved = sliding_cosine(np.moveaxis(signal, axis, -1), kernel, mode=mode)
    np.testing.assert_array_equal(got, np.moveaxis(moved, -1, axis))
    bank = np.stack([kernel, -kernel])
    got_bank = sliding_cosine(signal, bank, mode=mode, axis=axis)
    ax = axis % len(shape)
    np.testing.assert_array_equal(np.take(got_bank, 0, axis=ax), got)
    np.testing.assert_array_equal(np.take(got_bank, 1, axis=ax), -got)


@given(geometry=window_geometry(long_m=LONG_M), dtype=st.sampled_from(ALL_DTYPES), data=st.data())
def test_windowed_norm_matches_naive(geometry, dtype, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    got = windowed_norm(signal, m, dilation=dilation, mode=mode)
    want = naive.windowed_norm_1d(signal, m, dilation, mode)
    assert got.dtype == expected_dtype(dtype)
    rtol = 4 * (m + 2) * EPS64 + (0 if got.dtype == np.float64 else np.finfo(got.dtype).eps)
    # a norm below the output dtype's normal range is rounded to its subnormal spacing
    atol = 0 if got.dtype == np.float64 else float(np.finfo(got.dtype).smallest_subnormal)
    # a norm beyond the output dtype's range (float16 tops out at 65504) is inf
    with np.errstate(over="ignore"):
        overflow = np.isinf(want.astype(got.dtype)) & np.isfinite(want)
    assert np.all(np.isposinf(got[overflow]))
    np.testing.assert_allclose(got[~overflow].astype(np.float64), want[~overflow], rtol=rtol,
                               atol=atol)


@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_a_float16_norm_past_its_range_is_inf_without_a_warning(axis):
    import warnings

    signal = np.array([[60000.0, 60000.0, 1.0, 0.0, 2.0]], np.float16)
    window = 2 if axis == -1 else (1, 2)
    out = np.empty((1, 4), np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = windowed_norm(signal, window, axis=axis)
        assert windowed_norm(signal, window, axis=axis, out=out) is out
    np.testing.assert_array_equal(got, np.array([[np.inf, 60000.0, 1.0, 2.0]], np.float16))
    np.testing.assert_array_equal(out, got)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("m,dilation", [(1, 1), (2, 3), (3, 1), (4, 2), (5, 1), (9, 3), (64, 2), (120, 2),
                                       (700, 1)])
@pytest.mark.parametrize("mode", ["valid", "full"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_many_tiles_match_naive(m, dilation, mode, method):
    """Signals long enough to span several tiles and chunk boundaries (and each
    number of taps up to four, whose kernels are compiled apart)."""
    rng = np.random.default_rng(m * 100 + dilation)
    signal = rng.standard_normal(15_000) * np.exp(rng.uniform(-5, 5, 15_000))
    kernel = rng.standard_normal(m)
    got = sliding_cosine(signal, kernel, dilation=dilation, mode=mode, method=method)
    norms = windowed_norm(signal, m, dilation=dilation, mode=mode)
    picks = rng.choice(got.size, 400, replace=False)
    wins = naive.windows(signal, m, dilation, mode)
    want = np.array([naive.cosine(wins[i], kernel) for i in picks])
    want_norm = np.array([naive.exact_norm(wins[i]) for i in picks])
    np.testing.assert_allclose(got[picks], want, rtol=0, atol=tolerance(np.float64, m))
    np.testing.assert_allclose(norms[picks], want_norm, rtol=4 * (m + 2) * EPS64)


@given(
    m=st.one_of(*[st.integers(lo, hi) for lo, hi in LONG_M], st.integers(5, 40)),
    dilation=st.integers(1, 3),
    chunks=st.one_of(st.just(0.0), st.floats(0.0, FEW_CHUNKS + 1)),
    extra=st.integers(1, FEW_WINDOWS + 2),
    channels=st.integers(1, 2),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_rows_of_a_few_windows_keep_the_bits_of_a_long_row(m, dilation, chunks, extra, channels,
                                                         dtype, seed):
    """Rows of at most FEW_WINDOWS windows sum each window on its own (and
    take its dots one window at a time), and rows of at most FEW_CHUNKS
    chunks scan chain by chain, in the order of the lanes over whole tiles:
    the same bits as the first windows of a row of whole tiles."""
    rng = np.random.default_rng(seed)
    span, chunk = (m - 1) * dilation, m * dilation
    nwin = int(chunks * chunk) + extra
    n = span + tile_length(m, dilation) + 2 * chunk  # (its first tile whole)
    signal = (rng.standard_normal((channels, n)) * np.exp(rng.uniform(-8, 8, n))).astype(dtype)
    kernel = rng.standard_normal((1, channels, m))
    for short, long in [
        (windowed_norm(signal[:, : span + nwin], m, dilation=dilation),
         windowed_norm(signal, m, dilation=dilation)),
        (sliding_cosine(signal[:, : span + nwin], kernel, dilation=dilation, method="direct"),
         sliding_cosine(signal, kernel, dilation=dilation, method="direct")),
    ]:
        np.testing.assert_array_equal(short, long[..., :nwin])


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_no_window_reads_outside_the_signal(dtype, method):
    """The signal is a view with NaN on either side of it in memory: a loop
    reading a sample outside its windows would turn cosines NaN (a padding
    tap of the fused loops, read at a wrong offset, once read past the
    signal)."""
    rng = np.random.default_rng(3)
    for m in [*range(1, 18), 23, 24, 25, 40, 41]:
        for dilation in (1, 2):
            memory = np.full(300, np.nan, dtype)
            signal = memory[50:-50]
            signal[:] = rng.standard_normal(signal.size)
            kernel = rng.standard_normal(m).astype(dtype)
            for sharpness in (1.0, 1.5):
                got = sliding_cosine(signal, kernel, dilation=dilation, sharpness=sharpness,
                                     method=method)
                want = naive.sliding_cosine_1d(signal.astype(np.float64),
                                               kernel.astype(np.float64), sharpness=sharpness,
                                               dilation=dilation)
                np.testing.assert_allclose(got, want, rtol=0,
                                           atol=tolerance(dtype, m, sharpness**2),
                                           err_msg=f"m={m}, dilation={dilation}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sharpness", [1.0, 1.5])
def test_a_dot_that_underflows_to_minus_zero_keeps_its_sign(dtype, sharpness):
    """A window's dot, summed in tap order, is -0 where its last product is
    negative and too small for float64 and every one before is 0: its
    cosine is then -0 (sharpened: -0 too), at every kernel length (padding
    taps added after the last tap once turned it +0; found by Hypothesis in
    ``test_float32_results_are_sharpened_before_their_one_rounding``)."""
    for m in [*range(2, 20), 31, 33, 64, 100]:  # (one tap alone is normalised to 1)
        kernel = np.ones(m)
        kernel[-1] = 2.2e-309  # (subnormal: times the sample, it underflows)
        signal = np.zeros(m, dtype)
        signal[-1] = -1e-30
        got = sliding_cosine(signal, kernel, sharpness=sharpness, method="direct")
        assert got[0] == 0 and np.signbit(got[0]), m
        flipped = sliding_cosine(-signal, kernel, sharpness=sharpness, method="direct")
        assert flipped[0] == 0 and not np.signbit(flipped[0]), m


@st.composite
def zero_stretches(draw, n, dtype):
    """A signal of ``n`` samples: stretches of exact zeros (``-0.0`` among
    them) of every length around the fused kernels' chunks
    (``ZERO_CHUNK`` in ``_cpu/sliding.py``), between noise, lone spikes, a NaN and, in
    float64, magnitudes that square out of range."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.zeros(n)
    p = 0
    while p < n:
        p += int(np.exp(rng.uniform(0, np.log(3000))))  # zeros
        kind = rng.integers(4)
        if kind == 0:  # noise
            length = int(np.exp(rng.uniform(0, np.log(2000))))
            x[p : p + length] = rng.standard_normal(x[p : p + length].size)
            p += length
        elif p < n:  # a spike: plain, -0.0, NaN or (float64) near the range's ends
            x[p] = {1: 10.0 ** rng.uniform(-2, 2), 2: -0.0,
                    3: draw(st.sampled_from([np.nan, 1e-300, 1e300] if dtype == np.float64
                                            else [np.nan, 3.0]))}[kind]
            p += 1
    return x.astype(dtype)


@given(
    data=st.data(),
    m=st.integers(1, FUSED_TAPS),
    dilation=st.integers(1, 3),
    nker=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    kernel_kind=st.sampled_from(["normal", "normal", "zero", "nan"]),
    fill=st.sampled_from([0.0, np.nan, 0.5]),
    noise_floor=st.sampled_from([0.0, 0.25]),
    sharpness=st.sampled_from([1.0, 1.5]),
)
def test_windows_of_zeros_skipped_exactly(data, m, dilation, nker, dtype, kernel_kind, fill,
                                          noise_floor, sharpness):
    """One-channel kernels of up to ``FUSED_TAPS`` taps skip the dots of
    windows of exact zeros: zero windows give ``fill`` (NaN for a kernel with
    a NaN tap), and every other window the naive cosine, with the bits it has
    when computed alone, or in pieces of other lengths."""
    x = data.draw(zero_stretches(12_000, dtype))
    rng = np.random.default_rng(m)
    kernel = rng.standard_normal((nker, m) if nker > 1 else m).astype(dtype)
    if kernel_kind == "zero":
        kernel[...] = 0
    elif kernel_kind == "nan":
        kernel[..., m // 2] = np.nan
    options = dict(dilation=dilation, fill=fill, noise_floor=noise_floor, sharpness=sharpness,
                   method="direct")
    got = sliding_cosine(x, kernel, **options)
    span = (m - 1) * dilation
    piece = 1000
    pieces = np.concatenate([sliding_cosine(x[a : a + piece + span], kernel, **options)
                             for a in range(0, x.size - span, piece)], axis=-1)
    assert np.array_equal(got.view(np.uint8), pieces.view(np.uint8))

    wins = np.array(naive.windows(x, m, dilation, "valid"), dtype=np.float64)
    zero = ~wins.any(axis=1)
    want_zero = np.nan if kernel_kind == "nan" else fill
    assert np.array_equal(got[..., zero], np.full(got[..., zero].shape, want_zero, dtype),
                          equal_nan=True)
    picks = rng.choice(np.flatnonzero(~zero), min(100, int((~zero).sum())), replace=False)
    for i in picks:  # the same bits as the window computed alone
        alone = sliding_cosine(x[i : i + span + 1], kernel, **options)[..., 0]
        assert np.array_equal(np.ascontiguousarray(got[..., i]).view(np.uint8),
                              np.ascontiguousarray(alone).view(np.uint8))
    for k, row in zip(np.atleast_2d(kernel), np.atleast_2d(got)):
        want = np.array([naive.cosine(wins[i], k, noise_floor, fill) for i in picks])
        if kernel_kind == "normal":  # (no window among the picks is zero)
            want = naive.sharpen(want, sharpness)
        np.testing.assert_allclose(row[picks].astype(np.float64), want, rtol=0,
                                   atol=tolerance(dtype, m, sharpness**2))


def test_same_mode_is_centred_like_scipy_correlate():
    from scipy import signal as sps

    rng = np.random.default_rng(7)
    x = rng.standard_normal(40)
    for m in range(1, 8):
        for dilation in (1, 2, 3):
            k = rng.standard_normal(m)
            dilated = np.zeros((m - 1) * dilation + 1)
            dilated[::dilation] = k
            dots = sps.correlate(x, dilated, mode="same")
            cos = sliding_cosine(x, k, mode="same", dilation=dilation)
            norms = windowed_norm(x, m, dilation=dilation, mode="same")
            np.testing.assert_allclose(cos * norms * np.linalg.norm(k), dots, atol=1e-12)


# ---------------------------------------------------------------------------
# seed 000


@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    n=st.integers(1, 30),
    m=st.integers(2, 6),
    sharpness=st.floats(0.5, 9.0),
    data=st.data(),
)
def test_causal_equals_the_seed000_function(batch, channels, n, m, sharpness, data):
    """Equal to the seed's function as intended (sign of the dot; see
    ``naive.seed000_cosine_similarity`` for the typo in the code as written)."""
    # Values bounded away from zero norms: the seed clamps norms at 1e-8.
    signal = data.draw(arrays(np.float64, (batch, channels, n), st.floats(-100, 100).filter(lambda v: abs(v) > 1e-3)))
    kernel = data.draw(arrays(np.float64, m, st.floats(-10, 10).filter(lambda v: abs(v) > 1e-3)))
    got = sliding_cosine(signal, kernel, sharpness=sharpness, mode="causal")
    want = naive.seed000_cosine_similarity(signal, kernel, sharpness, padding=m - 1)
    assert got.shape == want.shape == signal.shape
    # Compare before sharpening (sharpening with p**2 < 1 is ill-conditioned at 0).
    plain = sliding_cosine(signal, kernel, mode="causal")
    np.testing.assert_allclose(plain, naive.seed000_cosine_similarity(signal, kernel, 1.0, m - 1), atol=1e-13)
    np.testing.assert_array_equal(got, sharpen(plain, sharpness))
    well_conditioned = np.abs(plain) > 1e-6
    np.testing.assert_allclose(got[well_conditioned], want[well_conditioned], rtol=1e-9, atol=1e-12)


def test_the_seed000_code_as_written_takes_its_sign_from_the_sums():
    """The seed's ``einsum('bdij,k->bdi')`` sums window and kernel separately:
    its output equals ours except that the sign is ``sign(sum(w) * sum(k))``."""
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((2, 3, 50))
    kernel = np.array([1.0, -2.0, 3.0])
    ours = sliding_cosine(signal, kernel, sharpness=3.0, mode="causal")
    as_written = naive.seed000_cosine_similarity(signal, kernel, 3.0, 2, as_written=True)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(signal, ((0, 0), (0, 0), (2, 0))), 3, axis=2)
    typo_sign = np.sign(windows.sum(-1) * kernel.sum())
    np.testing.assert_allclose(as_written, typo_sign * np.abs(ours), atol=1e-13)
    assert np.any(np.sign(as_written) != np.sign(ours))  # it does go wrong


if importlib.util.find_spec("torch") is not None:  # an extra cross-check, never required

    def test_causal_equals_the_seed000_function_in_torch():
        import torch
        import torch.nn.functional as F

        def seed000(signal, kernel, sharpness, padding, sign_subscripts):
            kernel_size = kernel.size(-1)
            x = F.pad(signal, (padding, padding))
            x = x.unfold(2, kernel_size, 1)
            sim = F.cosine_similarity(x, kernel, dim=-1)
            sgn = torch.sign(torch.einsum(sign_subscripts, x, kernel))
            sim = sgn * torch.pow(torch.abs(sim), (sharpness**2))
            return sim[:, :, :-padding].contiguous()

        rng = np.random.default_rng(0)
        signal = rng.standard_normal((2, 3, 50))
        kernel = np.array([1.0, 2.0, 3.0])
        got = sliding_cosine(signal, kernel, sharpness=3.0, mode="causal")
        args = (torch.from_numpy(signal), torch.from_numpy(kernel), 3.0, 2)
        intended = seed000(*args, "bdij,j->bdi").numpy()
        np.testing.assert_allclose(got, intended, atol=1e-12)
        as_written = seed000(*args, "bdij,k->bdi").numpy()
        np.testing.assert_allclose(
            as_written, naive.seed000_cosine_similarity(signal, kernel, 3.0, 2, as_written=True), atol=1e-12)


# ---------------------------------------------------------------------------
# properties


@pytest.mark.usefixtures("fft_engine")
@given(
    geometry=window_geometry(long_m=LONG_M),
    dtype=st.sampled_from(FLOAT_DTYPES),
    shift=st.integers(-100, 100),
    kernel_shift=st.integers(-100, 100),
    sharpness=st.floats(0.0, 4.0),
    method=METHODS,
    data=st.data(),
)
def test_power_of_two_scaling_is_bit_exact(geometry, dtype, shift, kernel_shift, sharpness, method, data):
    n, m, dilation, mode = geometry
    if dtype == np.float64:
        shift, kernel_shift = shift * 9, kernel_shift * 9
    signal = data.draw(arrays(dtype, n, scalable_elements(dtype)))
    kernel = data.draw(arrays(np.float64, m, scalable_elements(np.float64)))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, fill=0.5, method=method)
    base = sliding_cosine(signal, kernel, **options)
    scaled_signal = np.ldexp(signal, shift).astype(dtype)
    scaled_kernel = np.ldexp(kernel, kernel_shift)
    np.testing.assert_array_equal(sliding_cosine(scaled_signal, kernel, **options), base)
    np.testing.assert_array_equal(sliding_cosine(signal, scaled_kernel, **options), base)
    norms = windowed_norm(signal, m, dilation=dilation, mode=mode)
    np.testing.assert_array_equal(
        windowed_norm(scaled_signal, m, dilation=dilation, mode=mode), np.ldexp(norms, shift).astype(dtype)
    )


def _normal_or_zero(values):
    """Finite, and every non-zero magnitude a normal float64 (full precision)."""
    mags = np.abs(values[values != 0])
    return bool(np.all(np.isfinite(values)) and np.all(mags >= np.finfo(np.float64).tiny))


@given(geometry=window_geometry(long_m=LONG_M), factor=st.floats(1e-3, 1e3), data=st.data())
def test_positive_scaling_leaves_the_cosine_unchanged(geometry, factor, data):
    """Any positive factor (not only powers of two, which are bit-exact: see
    above) changes the result by rounding only, as long as the scaled inputs
    keep full precision (no subnormals, no overflow)."""
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, n))
    kernel = data.draw(arrays(np.float64, m))
    for values in (signal, kernel, signal * factor, kernel / factor):
        assume(_normal_or_zero(values))
    base = sliding_cosine(signal, kernel, mode=mode, dilation=dilation)
    scaled = sliding_cosine(signal * factor, kernel / factor, mode=mode, dilation=dilation)
    np.testing.assert_allclose(scaled, base, rtol=0, atol=tolerance(np.float64, m))


@st.composite
def signal_and_kernel(draw):
    """``(signal, kernel, mode, dilation)`` of any float dtype and geometry."""
    n, m, dilation, mode = draw(window_geometry(long_m=LONG_M))
    signal = draw(arrays(draw(st.sampled_from(FLOAT_DTYPES)), n))
    return signal, draw(arrays(np.float64, m)), mode, dilation


@pytest.mark.usefixtures("fft_engine")
@given(problem=signal_and_kernel(), sharpness=st.floats(0, 4), method=METHODS)
# (one FFT example always: the fixture's check fails a run that drew none)
@example(problem=(np.sin(np.arange(400.0)), np.cos(np.arange(64.0)), "valid", 1), sharpness=1.5,
         method="fft")
def test_sign_antisymmetry(problem, sharpness, method):
    signal, kernel, mode, dilation = problem
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, method=method)
    base = sliding_cosine(signal, kernel, **options)
    np.testing.assert_array_equal(sliding_cosine(-signal, kernel, **options), -base)
    np.testing.assert_array_equal(sliding_cosine(signal, -kernel, **options), -base)


@given(problem=signal_and_kernel(), sharpness=st.floats(0.5, 4.0))
def test_float32_results_are_sharpened_before_their_one_rounding(problem, sharpness):
    """A float32 result's power is taken of its float64 cosine (not libm's
    scalar ``pow``, see ``_cpu/powers.py``): within one unit of libm's power
    of the cosine the same samples give as float64, rounded."""
    signal, kernel, mode, dilation = problem
    with np.errstate(over="ignore"):
        x32 = np.asarray(signal, dtype=np.float32)
    options = dict(mode=mode, dilation=dilation, method="direct")
    got = sliding_cosine(x32, kernel, sharpness=sharpness, **options)
    with np.errstate(over="ignore"):
        want = sharpen(sliding_cosine(x32.astype(np.float64), kernel, **options),
                       sharpness).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    units = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
    assert np.max(units[~np.isnan(want)], initial=0) <= 1


@st.composite
def nearly_parallel(draw):
    """Windows that are (almost) multiples of the kernel: where rounding could
    push a cosine past 1."""
    m = draw(st.integers(1, 8))
    kernel = draw(arrays(np.float64, m, st.floats(-1e3, 1e3)))
    factors = draw(arrays(np.float64, draw(st.integers(1, 5)), st.floats(-1e6, 1e6)))
    noise = draw(st.floats(0, 1e-12))
    pieces = [f * kernel + noise * np.arange(m) for f in factors]
    return np.concatenate(pieces), kernel


@pytest.mark.usefixtures("fft_engine")
@given(case=nearly_parallel(), dtype=st.sampled_from(FLOAT_DTYPES), mode=st.sampled_from(["valid", "full"]),
       method=METHODS)
def test_never_above_one(case, dtype, mode, method):
    signal, kernel = case
    out = sliding_cosine(signal.astype(dtype), kernel, mode=mode, method=method)
    assert np.all(np.abs(out) <= 1)


@pytest.mark.usefixtures("fft_engine")
@given(
    geometry=window_geometry(max_n=60, long_m=LONG_M),
    dtype=st.sampled_from(FLOAT_DTYPES),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    method=METHODS,
    data=st.data(),
)
def test_nan_and_inf_stay_local(geometry, dtype, bad, method, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    kernel = data.draw(arrays(np.float64, m))
    where = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True))
    poisoned = signal.copy()
    poisoned[where] = bad
    clean = sliding_cosine(signal, kernel, mode=mode, dilation=dilation, method=method)
    got = sliding_cosine(poisoned, kernel, mode=mode, dilation=dilation, method=method)
    indicator = np.zeros(n)
    indicator[where] = 1.0
    touched = np.array([w.any() for w in naive.windows(indicator, m, dilation, mode)])
    assert np.all(np.isnan(got[touched]))
    if method == "direct":
        np.testing.assert_array_equal(got[~touched], clean[~touched])
    else:
        # The FFT transforms whole blocks: the bad sample is replaced by 0 there,
        # which moves the other windows of its block by rounding only.
        np.testing.assert_allclose(got[~touched], clean[~touched], rtol=0, atol=tolerance(got.dtype, m))
    norms = windowed_norm(poisoned, m, dilation=dilation, mode=mode)
    # as documented: NaN gives NaN; +-inf (all bad samples here are alike) gives +inf
    assert np.all(np.isnan(norms[touched]) if np.isnan(bad) else np.isposinf(norms[touched]))
    np.testing.assert_array_equal(norms[~touched], windowed_norm(signal, m, dilation=dilation, mode=mode)[~touched])


def test_zero_constant_and_degenerate_windows():
    signal = np.array([0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0])
    out = sliding_cosine(signal, [1.0, 1.0, 1.0], fill=-5.0)
    np.testing.assert_allclose(out, [-5.0, 1 / np.sqrt(3), np.sqrt(2 / 3), 1.0, np.sqrt(2 / 3), 1 / np.sqrt(3)])
    assert np.all(sliding_cosine(signal, [0.0, 0.0], fill=7.0) == 7.0)
    assert np.all(np.isnan(sliding_cosine(signal, [1.0, np.nan])))
    assert np.all(np.isnan(sliding_cosine(signal, [np.inf, 1.0])))
    np.testing.assert_array_equal(sliding_cosine(signal, [1.0, 1.0], fill=np.nan)[:2], [np.nan, np.nan])
    # a noise floor damps quiet windows but zero windows still get fill
    damped = sliding_cosine(signal, [1.0, 1.0], noise_floor=1.0, fill=3.0)
    assert damped[0] == 3.0 and damped[3] == pytest.approx(np.sqrt(8) / (np.sqrt(8) + 1))


def test_kernel_of_length_one_gives_the_sign():
    signal = np.array([-3.0, 0.0, 1e-300, 5.0, -0.0])
    np.testing.assert_array_equal(sliding_cosine(signal, [2.0]), [-1.0, 0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(sliding_cosine(signal, [-0.5]), [1.0, 0.0, -1.0, -1.0, 0.0])


def test_kernel_as_long_as_the_signal():
    rng = np.random.default_rng(3)
    signal, kernel = rng.standard_normal(33), rng.standard_normal(33)
    out = sliding_cosine(signal, kernel)
    assert out.shape == (1,)
    assert out[0] == pytest.approx(signal @ kernel / np.linalg.norm(signal) / np.linalg.norm(kernel), abs=1e-14)
    assert windowed_norm(signal, 33)[0] == pytest.approx(np.linalg.norm(signal), rel=1e-15)


def test_dtypes():
    signal = np.arange(10)
    for dtype, out_dtype in [
        (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
        (np.int8, np.float64), (np.int64, np.float64), (np.uint32, np.float64), (np.bool_, np.float64),
    ]:
        assert sliding_cosine(signal.astype(dtype), [1, 2]).dtype == out_dtype
        assert windowed_norm(signal.astype(dtype), 2).dtype == out_dtype
        assert sharpen(signal.astype(dtype), 2).dtype == out_dtype
    # the kernel's dtype does not decide the output dtype
    assert sliding_cosine(signal.astype(np.float32), np.array([1, 2], dtype=np.float64)).dtype == np.float32
    # lists are fine
    assert sliding_cosine([1, 2, 3, 4], [1, 1]).dtype == np.float64


@given(
    geometry=window_geometry(max_n=20, max_m=4),
    dtype=st.sampled_from(ALL_DTYPES),
    data=st.data(),
)
def test_inputs_are_never_modified(geometry, dtype, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, n))
    kernel = data.draw(arrays(np.float64, m))
    signal_copy, kernel_copy = signal.copy(), kernel.copy()
    sliding_cosine(signal, kernel, mode=mode, dilation=dilation)
    windowed_norm(signal, m, dilation=dilation, mode=mode)
    sharpen(signal, 2.0)
    np.testing.assert_array_equal(signal, signal_copy)
    np.testing.assert_array_equal(kernel, kernel_copy)


def test_out_argument():
    rng = np.random.default_rng(5)
    signal = rng.standard_normal((3, 20)).astype(np.float32)
    want = sliding_cosine(signal, [1.0, -1.0, 2.0], mode="same")
    out = np.empty((3, 20), dtype=np.float32)
    assert sliding_cosine(signal, [1.0, -1.0, 2.0], mode="same", out=out) is out
    np.testing.assert_array_equal(out, want)
    # out may be the signal itself: the result is computed before writing
    in_place = signal.copy()
    sliding_cosine(in_place, [1.0, -1.0, 2.0], mode="same", out=in_place)
    np.testing.assert_array_equal(in_place, want)
    # a non-contiguous out along another axis
    column_major = np.empty((20, 3), dtype=np.float32).T
    sliding_cosine(signal, [1.0, -1.0, 2.0], mode="same", out=column_major)
    np.testing.assert_array_equal(column_major, want)
    half = np.empty((3, 20), dtype=np.float16)
    sliding_cosine(signal.astype(np.float16), [1.0, -1.0, 2.0], mode="same", out=half)
    np.testing.assert_array_equal(half, sliding_cosine(signal.astype(np.float16), [1.0, -1.0, 2.0], mode="same"))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize(
    "signal_shape,kernel_shape,axis",
    [((2, 300), (5,), -1), ((300, 2), (5,), 0), ((2, 300), (3, 5), -1), ((4, 300, 2), (3, 5), 1),
     ((2, 3, 300), (4, 3, 5), -1), ((2, 3, 300, 2), (4, 3, 5), 2)],
)
def test_out_of_every_layout_equals_a_fresh_result(signal_shape, kernel_shape, axis, method):
    """``out`` is written in place whatever the axes (kernel bank,
    multi-channel kernel, sliding axis not last), or through a copy where
    its memory layout does not allow that: the values are the same."""
    rng = np.random.default_rng(11)
    signal = rng.standard_normal(signal_shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape)
    want = sliding_cosine(signal, kernel, axis=axis, method=method)
    for out in (np.empty_like(want), np.empty(want.shape[::-1], np.float32).T):
        assert sliding_cosine(signal, kernel, axis=axis, method=method, out=out) is out
        np.testing.assert_array_equal(out, want)


# ---------------------------------------------------------------------------
# sharpen


def test_windowed_norm_writes_its_norms_into_out():
    """``windowed_norm(out=...)`` made its norms in a temporary and copied
    them, as ``sliding_cosine`` does not: a memory map of norms larger than
    memory would not have fit (an exploratory test)."""
    x = np.random.default_rng(0).standard_normal((3, 200_000)).astype(np.float32)
    want = windowed_norm(x, 64)
    out = np.empty_like(want)
    windowed_norm(x[:, :1000], 64, out=out[:, :937])  # (compiled first)
    got, peak = traced_peak(lambda: windowed_norm(x, 64, out=out))
    assert got is out and peak < want.nbytes / 20
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("mode", ["same", "causal", "valid"])
@pytest.mark.parametrize("call", ["sliding_cosine", "fft", "bank", "center", "windowed_norm",
                                  "centered norm", "find_matches", "grad"])
def test_a_short_signal_with_a_huge_dilation_takes_memory_of_its_windows(call, mode):
    """50 windows of 5 taps 10**5 apart: the loops' scratch was sized for a
    whole tile, eight chunks of ``m * dilation`` windows (107 to 275 MB,
    then, sized by the windows, a few times the padded signal), and the
    padded modes padded the signal whole, 3.1 GB for 10 outputs at a
    dilation of 10**6 (exploratory tests).  The windows read ``m`` runs of
    ``nwin`` samples, laid side by side (``_core.sliding.compact_taps``):
    memory of the windows, not of the dilation, and the same bits as that
    compact problem computed as it is."""
    rng = np.random.default_rng(6)
    m, d, nwin = 5, 10**5, 50
    x = rng.standard_normal(nwin + (4 * d if mode == "valid" else 0))
    kernel = rng.standard_normal(m)
    options = dict(dilation=d, mode=mode)
    run = {
        "sliding_cosine": lambda x, **o: sliding_cosine(x, kernel, method="direct", **o),
        "fft": lambda x, **o: sliding_cosine(x, kernel, method="fft", **o),
        "bank": lambda x, **o: sliding_cosine(x, np.stack([kernel, -kernel]), **o),
        "center": lambda x, **o: sliding_cosine(x, kernel, center=True, **o),
        "windowed_norm": lambda x, **o: windowed_norm(x, m, **o),
        "centered norm": lambda x, **o: windowed_norm(x, m, center=True, **o),
        "find_matches": lambda x, **o: find_matches(x, kernel, k=3, exclusion=9, **o),
        "grad": lambda x, **o: sliding_cosine_grad(x, kernel, np.ones(nwin), **o),
    }[call]
    want = run(x, **options)  # (compiled first)
    got, peak = traced_peak_in_a_new_thread(lambda: run(x, **options))
    # (the FFT's and the gradients' scratch are a few MiB whatever the windows;
    # the gradient with respect to the signal has its shape)
    assert peak < 4 * 2**20 + (3 * x.nbytes if call == "grad" else 0)
    # the compact problem: tap j's run of samples j*d - pad_left + [0, nwin)
    left = {"same": 4 * d - 2 * d, "causal": 4 * d, "valid": 0}[mode]
    runs = np.zeros((m, nwin))
    for j in range(m):
        for t in range(nwin):
            if 0 <= j * d + t - left < x.size:
                runs[j, t] = x[j * d + t - left]
    compact = run(runs.ravel(), dilation=nwin, mode="valid")
    if call == "grad":
        np.testing.assert_array_equal(got.kernel, compact.kernel)
        assert got.sharpness == compact.sharpness and got.noise_floor == compact.noise_floor
        for j in range(m):
            start = j * d - left
            inside = slice(max(0, -start), min(nwin, x.size - start))
            np.testing.assert_array_equal(got.signal[start + inside.start : start + inside.stop],
                                          compact.signal.reshape(m, nwin)[j, inside])
    elif call == "find_matches":
        assert got == want == compact
    else:
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, compact)


@given(
    values=arrays(np.float64, st.integers(1, 30), st.floats(-1, 1)),
    sharpness=st.floats(-5, 5),
)
def test_sharpen_is_monotone_sign_preserving_and_bounded(values, sharpness):
    out = sharpen(values, sharpness)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)
    # the sign never flips; a zero appears only where |s|**(p*p) underflows
    assert np.all(out * values >= 0)
    np.testing.assert_array_equal(out == 0, naive.sharpen(values, sharpness) == 0)
    assert np.all(np.abs(out) <= 1)
    np.testing.assert_array_equal(sharpen(-values, sharpness), -out)
    np.testing.assert_allclose(out, naive.sharpen(values, sharpness), rtol=1e-14, atol=0)


@given(values=arrays(np.float32, st.integers(1, 30), st.floats(-1, 1, width=32)), sharpness=st.floats(-5, 5))
def test_sharpen_float32_is_monotone(values, sharpness):
    out = sharpen(values, sharpness)
    assert out.dtype == np.float32
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


float32_samples = st.one_of(st.floats(-1, 1, width=32),
                            st.floats(width=32, allow_nan=True, allow_infinity=True),
                            st.sampled_from([np.float32(71 / 128), np.float32(-0.5), 1e-45]))


@given(values=arrays(np.float32, st.integers(1, 60), float32_samples),
       sharpness=st.one_of(st.floats(-6, 6), st.sampled_from([0.0, 2.0, 3.0, np.sqrt(3.0)])))
def test_sharpen_float32_is_the_float64_power_rounded_but_at_ties(values, sharpness):
    """float32 samples take the kernels' vectorised power (``_cpu/powers.py``,
    within ``1e-14 (1 + P (1 + |ln s|))`` relative of libm's): the float64
    power rounded once, one unit away at most, and only where the power lies
    within that bound of a float32 rounding boundary (exact ties such as
    ``(71/128)**4``)."""
    got = sharpen(values, sharpness)
    with np.errstate(all="ignore"):
        power = naive.sharpen(values, sharpness)
        want = power.astype(np.float32)
        exponent = sharpness * sharpness
        logs = np.abs(np.log(np.abs(values.astype(np.float64))))
        bound = 1e-14 * (1 + exponent * (1 + np.where(np.isfinite(logs), logs, 0.0)))
        ambiguous = ((power * (1 - bound)).astype(np.float32)
                     != (power * (1 + bound)).astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    known = ~np.isnan(want)
    nonzero = known & (want != 0)  # (the sign of a NaN is no promise)
    np.testing.assert_array_equal(np.signbit(got[nonzero]), np.signbit(want[nonzero]))
    magnitudes = [np.abs(array[known]).view(np.int32).astype(np.int64) for array in (got, want)]
    units = np.abs(magnitudes[0] - magnitudes[1])
    assert np.all(units <= 1)
    assert np.all(ambiguous[known][units != 0])
    np.testing.assert_array_equal(sharpen(-values, sharpness), -got)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16])
def test_sharpen_split_among_threads_is_elementwise(dtype):
    """A call long enough to be split among threads (``numba.set_num_threads``
    is 2 in CI) gives each element the bits it gets alone, also written into
    an ``out`` that is a strided view or that the result is copied into."""
    rng = np.random.default_rng(7)
    values = (rng.uniform(-1.5, 1.5, (3, 100_001)) * (100 if dtype == np.int16 else 1))
    values = values.astype(dtype)
    got = sharpen(values, 1.3)
    alone = np.concatenate([sharpen(values.ravel()[i:i + 997], 1.3)
                            for i in range(0, values.size, 997)]).reshape(values.shape)
    np.testing.assert_array_equal(got, alone)
    for out in (np.empty(values.shape, got.dtype), np.empty((3, 200_002), got.dtype)[:, ::2]):
        assert sharpen(values, 1.3, out=out) is out
        np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [1, -1, 1000, -1000, 0])
def test_sharpen_into_an_out_overlapping_its_values(dtype, shift):
    """As NumPy's ufuncs: an ``out`` that overlaps the values ahead of them
    or behind (on either side of the threads' split) gets every element's
    own power; ``out`` the values themselves is in place."""
    rng = np.random.default_rng(3)
    buffer = rng.uniform(-1, 1, 300_000 + abs(shift)).astype(dtype)
    buffer[::97] = np.nan
    values = buffer[max(0, -shift):][:300_000]
    out = buffer[max(0, shift):][:300_000]
    want = sharpen(values.copy(), 2.0)
    assert sharpen(values, 2.0, out=out) is out
    np.testing.assert_array_equal(out, want)


def test_sharpen_special_values():
    s = np.array([-1.0, -0.25, 0.0, -0.0, 0.25, 1.0, np.nan])
    np.testing.assert_array_equal(sharpen(s, 1.0), s)
    np.testing.assert_array_equal(sharpen(s, 0.0), [-1.0, -1.0, 0.0, -0.0, 1.0, 1.0, np.nan])
    np.testing.assert_array_equal(sharpen(s, -2.0), sharpen(s, 2.0))
    assert sharpen(0.5, 3.0) == 0.5**9 and np.ndim(sharpen(0.5, 3.0)) == 0
    assert sharpen(np.float32(0.5), 2.0).dtype == np.float32


def test_sharpen_past_the_float16_range_is_inf_without_a_warning():
    import warnings

    values = np.array([300.0, -2.0, 0.5], np.float16)
    out = np.empty(3, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sharpen(values, 2.0)  # 300**4 is past 65504
        assert sharpen(values, 2.0, out=out) is out
    np.testing.assert_array_equal(got, np.array([np.inf, -16.0, 0.0625], np.float16))
    np.testing.assert_array_equal(out, got)


@given(geometry=window_geometry(long_m=LONG_M), sharpness=st.floats(-4, 4), data=st.data())
def test_float32_results_are_sharpened_before_their_rounding(geometry, sharpness, data):
    """float32 results are the float64 cosines sharpened and then rounded
    (sharpening a rounded cosine would multiply its error by the exponent):
    within one unit of ``sharpen`` of the float64 cosines of the same
    samples, rounded."""
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float32, n))
    kernel = data.draw(arrays(np.float64, m))
    options = dict(mode=mode, dilation=dilation, method="direct", fill=0.0)
    got = sliding_cosine(signal, kernel, sharpness=sharpness, **options)
    assert got.dtype == np.float32
    cosines = sliding_cosine(signal.astype(np.float64), kernel, **options)
    want = sharpen(cosines, sharpness).astype(np.float32)
    units = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.all(units[finite] <= 1)


@given(geometry=window_geometry(long_m=LONG_M), sharpness=st.floats(-4, 4), data=st.data())
def test_fused_sharpening_equals_sharpen_of_the_cosine(geometry, sharpness, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, n))
    kernel = data.draw(arrays(np.float64, m))
    plain = sliding_cosine(signal, kernel, mode=mode, dilation=dilation, fill=0.0)
    fused = sliding_cosine(signal, kernel, sharpness=sharpness, mode=mode, dilation=dilation, fill=0.0)
    np.testing.assert_array_equal(fused, sharpen(plain, sharpness))


def test_jit_falls_back_when_no_cache_directory_is_writable(monkeypatch):
    import warnings

    from cosim_np._cpu import _jit
    from cosim_np._cpu._jit import jit

    def no_locator(py_func):
        raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")

    monkeypatch.setattr(_jit, "_KernelCache", no_locator)
    monkeypatch.setitem(_jit._said, "no cache", False)
    with pytest.warns(RuntimeWarning, match="no writable Numba cache directory") as said:
        compiled = jit(lambda: 42)
    assert compiled() == 42
    # once a process: a read-only install printed one warning for each of ~200 kernels
    with warnings.catch_warnings(record=True) as more:
        warnings.simplefilter("always")
        assert jit(lambda: 43)() == 43
    assert len(said) == 1 and not more

    def broken(py_func):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(_jit, "_KernelCache", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        jit(lambda: 0)


def test_helpers_of_compiled_kernels_refuse_a_call_from_python():
    # compiled without a CPython wrapper (jit(from_python=False)): a call
    # from Python would jump to code that does not exist
    from cosim_np._cpu import sliding
    from cosim_np._cpu._jit import CompiledOnly

    assert isinstance(sliding._rescaled_dot, CompiledOnly)
    assert not isinstance(sliding.fft_kernel, CompiledOnly)
    with pytest.raises(TypeError, match=r"sliding\._rescaled_dot is a helper of compiled kernels"):
        sliding._rescaled_dot(np.ones((1, 3)), 0, 0, np.ones(3), 3, 1)
    # and the kernels that call it run it: windows whose squares overflow
    x = np.random.default_rng(1).standard_normal(50)
    x[25] = 1e200
    kernel = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(sliding_cosine(x, kernel, method="direct"),
                               naive.sliding_cosine_1d(x, kernel), rtol=0,
                               atol=tolerance(np.float64, 3))


@pytest.mark.parametrize("dilation", [2, 2**31, 2**62])
def test_a_one_tap_window_is_one_sample_whatever_the_dilation(dilation):
    """A kernel or window of one tap spans one sample, so its dilation
    changes nothing, however large (its scratch was sized by it: 144 GiB
    at 2**31)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 50))
    x[0, 7] = 0.0
    kernel = np.array([[-1.5], [2.0]])
    for mode in ("valid", "same", "full", "causal"):
        np.testing.assert_array_equal(
            sliding_cosine(x, kernel, dilation=dilation, mode=mode, stride=3),
            sliding_cosine(x, kernel, mode=mode, stride=3))
        np.testing.assert_array_equal(windowed_norm(x, 1, dilation=dilation, mode=mode),
                                      windowed_norm(x, 1, mode=mode))
    got = sliding_cosine_grad(x, [2.0], np.ones((2, 50)), dilation=dilation, sharpness=1.5)
    want = sliding_cosine_grad(x, [2.0], np.ones((2, 50)), sharpness=1.5)
    for name in ("signal", "kernel", "sharpness", "noise_floor"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert find_matches(x, [2.0], dilation=dilation) == find_matches(x, [2.0])
