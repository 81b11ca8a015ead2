"""Precision where the usual recipes go wrong: loud bursts, long offsets,
amplitudes near the float limits, and large integers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import sliding_cosine, windowed_norm
from tests import naive
from tests.test_sliding import tolerance

# every test once per FFT library (tests/conftest.py)

EPS64 = np.finfo(np.float64).eps


def cosine_reference(signal, kernel, mode="valid", dilation=1, picks=None):
    wins = naive.windows(signal, len(kernel), dilation, mode)
    idx = range(len(wins)) if picks is None else picks
    return np.array([naive.cosine(wins[i], kernel) for i in idx])


def norm_reference(signal, m, mode="valid", dilation=1):
    return naive.windowed_norm_1d(signal, m, dilation, mode)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,dilation", [(3, 1), (8, 1), (16, 3), (100, 1)])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_exact_after_a_loud_burst(dtype, m, dilation, method):
    """A 1e8 sample followed by 1e-3 noise: a global cumsum gives zeros,
    negatives or garbage after it; every later window must be right to float64
    rounding here."""
    rng = np.random.default_rng(m)
    signal = (rng.standard_normal(6000) * 1e-3).astype(dtype)
    signal[500] = 1e8
    signal[3000:3010] = -1e8
    kernel = rng.standard_normal(m)
    got_norm = windowed_norm(signal, m, dilation=dilation)
    want_norm = norm_reference(signal, m, dilation=dilation)
    rounding = 0 if dtype == np.float64 else np.finfo(np.float32).eps
    np.testing.assert_allclose(got_norm, want_norm, rtol=4 * (m + 2) * EPS64 + rounding, atol=0)
    got = sliding_cosine(signal, kernel, dilation=dilation, method=method)
    np.testing.assert_allclose(got, cosine_reference(signal, kernel, dilation=dilation),
                               atol=8 * (m + 4) * EPS64 + rounding)
    # the recipe we replace really does fail here
    squares = np.concatenate([[0.0], np.cumsum(signal.astype(np.float64) ** 2)])
    span = (m - 1) * dilation + 1
    if dilation == 1:
        global_cumsum = np.sqrt(np.abs(squares[span:] - squares[:-span]))
        assert np.max(np.abs(global_cumsum - want_norm) / want_norm) > 1e-3


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("spike", [1e100, 1e162, 1e200, 1e300])
@pytest.mark.parametrize("quiet", [1e-6, 1e-20])
@pytest.mark.parametrize("options", [dict(), dict(center=True), dict(mode="causal", dilation=2),
                                     dict(bank=True)])
def test_a_spike_far_above_its_block_leaves_the_quiet_windows_exact(spike, quiet, options):
    """One sample 1e162 times (or more) the rest of its FFT block: its quiet
    windows were flagged against the limit of the quiet samples alone, which
    left float64's range in the block's units (they took the transform's
    dots: cosines of 1.0 for -0.2).  The FFT path must stay within its bound
    of the exact cosines, the spike's windows and the others'."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(1500), quiet * rng.standard_normal(8000)])
    x[1540] = spike
    options = dict(options)
    kernel = rng.standard_normal((3, 300) if options.pop("bank", False) else 300)
    got = sliding_cosine(x, kernel, method="fft", **options)
    want = sliding_cosine(x, kernel, method="direct", **options)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 300))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("sharpness", [0.3, 0.8])
def test_float32_fft_meets_direct_accuracy_under_a_flattening_power(sharpness):
    """An exponent ``p**2 < 1`` magnifies an error near ``s = 0`` without limit:
    the FFT's float32 budget (a sixteenth of float32's rounding of the
    window's norm) left windows of cosines near 1e-9 thousands of ulps off
    (3e-5) where the direct dots are correctly rounded; they take the float64
    budget now, the direct method's accuracy (found by an exploratory test)."""
    rng = np.random.default_rng(19)
    n, m = 2500, 300
    t = np.arange(n)
    x = (np.sin(2 * np.pi * t * 13 / 256) * np.exp(t / n * 30)).astype(np.float32)
    k = rng.standard_normal(m) * 1e-8
    k[137] = 1.0  # one dominant tap: cosines down to 1e-9 beside loud samples
    want = naive.sliding_cosine_1d(x.astype(np.float64), k, sharpness=sharpness)
    for method in ("direct", "fft"):
        got = sliding_cosine(x, k, sharpness=sharpness, method=method).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=float(np.finfo(np.float32).eps))
    # images take the same budget
    image = np.outer(np.exp(np.arange(60) / 6), np.ones(40)) * rng.choice([-1, 1], (60, 40))
    image = image.astype(np.float32)
    template = rng.standard_normal((16, 16)) * 1e-8
    template[7, 7] = 1.0
    direct = sliding_cosine(image, template, axis=(0, 1), sharpness=sharpness, method="direct")
    fft = sliding_cosine(image, template, axis=(0, 1), sharpness=sharpness, method="fft")
    np.testing.assert_allclose(fft, direct, rtol=0, atol=float(np.finfo(np.float32).eps))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_long_offset_in_float32(method):
    """100 + noise over 10**6 float32 samples: the offset dominates every
    window; cosines must still be right to float32 rounding."""
    rng = np.random.default_rng(11)
    signal = (100 + rng.standard_normal(10**6)).astype(np.float32)
    kernel = rng.standard_normal(16)
    got = sliding_cosine(signal, kernel, method=method)
    norms = windowed_norm(signal, 16)
    picks = np.concatenate([np.arange(20), rng.choice(got.size, 2000, replace=False),
                            np.arange(got.size - 20, got.size)])
    eps32 = np.finfo(np.float32).eps
    np.testing.assert_allclose(got[picks], cosine_reference(signal, kernel, picks=picks), rtol=0, atol=eps32)
    wins = naive.windows(signal, 16, 1, "valid")
    want_norms = np.array([naive.exact_norm(wins[i]) for i in picks])
    np.testing.assert_allclose(norms[picks], want_norms, rtol=eps32, atol=0)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize(
    "dtype,amplitude",
    [
        (np.float64, 1e-300),
        (np.float64, 1e300),
        (np.float64, 1.7e308 / 64),  # squares overflow float64
        (np.float64, np.finfo(np.float64).tiny),  # smallest normal
        (np.float32, 1e-37),
        (np.float32, 3e38 / 16),
        (np.float32, np.finfo(np.float32).tiny),
    ],
)
@pytest.mark.parametrize("mode", ["valid", "full"])
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("m", [7, 60])  # short kernels summed tap by tap; blocked scans
def test_amplitudes_near_the_float_limits(dtype, amplitude, mode, method, m):
    rng = np.random.default_rng(1)
    unit = rng.standard_normal(300)
    signal = (unit * amplitude).astype(dtype)
    assert np.all(np.isfinite(signal))
    kernel = rng.standard_normal(m)
    got = sliding_cosine(signal, kernel, mode=mode, method=method)
    rounding = 0 if dtype == np.float64 else np.finfo(np.float32).eps
    atol = 8 * (m + 1) * EPS64 + rounding
    np.testing.assert_allclose(got, cosine_reference(signal, kernel, mode), atol=atol)
    norms = windowed_norm(signal, m, mode=mode)
    want = norm_reference(signal, m, mode)
    assert np.all(np.isfinite(norms[want < np.finfo(dtype).max]))
    np.testing.assert_allclose(norms, want, rtol=4 * (m + 2) * EPS64 + rounding, atol=0)
    # the result does not depend on the amplitude at all
    unit_cos = sliding_cosine(
        unit.astype(dtype) if dtype == np.float64 else signal / np.float32(amplitude), kernel, mode=mode, method=method
    )
    np.testing.assert_allclose(got, unit_cos, atol=atol + 3 * rounding)


def test_kernel_amplitude_does_not_matter():
    rng = np.random.default_rng(2)
    signal = rng.standard_normal(100)
    kernel = rng.standard_normal(5)
    base = sliding_cosine(signal, kernel)
    for scale in (1e-300, 1e300, 2.0**-1000, 2.0**1000):
        np.testing.assert_allclose(sliding_cosine(signal, kernel * scale), base, atol=64 * EPS64)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_kernel_taps_near_the_float64_limit(method):
    # Such a kernel's norm overflows float64 (it raised OverflowError once);
    # its unit kernel is that of any power-of-two copy.
    rng = np.random.default_rng(5)
    signal = rng.standard_normal(400)
    bank = rng.standard_normal((3, 130))
    exponents = np.frexp(np.abs(bank).max(axis=1, keepdims=True))[1]
    huge = np.ldexp(bank, 1024 - exponents)
    assert np.all(np.isfinite(huge)) and not np.isfinite(np.linalg.norm(huge[0]))
    base = sliding_cosine(signal, np.ldexp(bank, -exponents), method=method)
    np.testing.assert_array_equal(sliding_cosine(signal, huge, method=method), base)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_huge_and_tiny_windows_side_by_side(method):
    """Each window's result depends on its own samples only, even when the
    signal's dynamic range exceeds 10**600."""
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal(50) * a for a in (1e300, 1e-300, 1.0, 1e-310, 1e200)]
    signal = np.concatenate(parts)
    kernel = rng.standard_normal(4)
    got = sliding_cosine(signal, kernel, method=method)
    want = cosine_reference(signal, kernel)
    wins = naive.windows(signal, 4, 1, "valid")
    # subnormal samples carry fewer bits; compare where all samples are normal
    normal = np.array([np.all((w == 0) | (np.abs(w) >= np.finfo(np.float64).tiny)) for w in wins])
    np.testing.assert_allclose(got[normal], want[normal], atol=64 * EPS64)
    assert np.all(np.abs(got) <= 1) and np.all(np.isfinite(got))
    # subnormal windows are still real windows, not zero windows
    assert np.all(got[~normal] != 0)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_large_integers(dtype, method):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype)
    signal = rng.integers(info.min, info.max, size=200, dtype=dtype, endpoint=True)
    signal[:5] = info.max
    signal[5:10] = info.min
    kernel = np.array([3, -1, 2, 7], dtype=np.int64)
    got = sliding_cosine(signal, kernel, mode="same", method=method)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, cosine_reference(signal.astype(np.float64), kernel, "same"), atol=64 * EPS64)
    np.testing.assert_allclose(
        windowed_norm(signal, 4, mode="same"), norm_reference(signal.astype(np.float64), 4, "same"), rtol=32 * EPS64
    )


@pytest.mark.usefixtures("fft_engine")
@given(
    exponent=st.integers(-1000, 1000),
    m=st.integers(1, 9),
    dilation=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    method=st.sampled_from(["fft", "direct"]),  # "fft" first: see strategies.METHODS
)
def test_windows_crossing_into_the_rescaled_path_stay_bit_exact(exponent, m, dilation, seed, method):
    """Windows whose squares leave the float64 range take a rescaled path; a
    power-of-two scaling that moves a window across must not change a bit."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(60) * np.exp2(rng.integers(-10, 10, 60))
    kernel = rng.standard_normal(m)
    base = sliding_cosine(signal, kernel, dilation=dilation, mode="full", method=method)
    scaled = np.ldexp(signal, exponent)
    np.testing.assert_array_equal(sliding_cosine(scaled, kernel, dilation=dilation, mode="full", method=method), base)
    np.testing.assert_array_equal(
        windowed_norm(scaled, m, dilation=dilation, mode="full"),
        np.ldexp(windowed_norm(signal, m, dilation=dilation, mode="full"), exponent),
    )


@pytest.mark.usefixtures("fft_engine")
@given(
    n=st.integers(800, 5000),
    m=st.integers(100, 320),
    spikes=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 8)), min_size=1, max_size=3),
    shift=st.one_of(st.integers(300, 800), st.integers(-800, -300)),
    center=st.booleans(),
    noise_floor=st.sampled_from([0.0, 0.5]),
    mode=st.sampled_from(["valid", "same"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fft_plans_of_loud_samples_out_of_the_safe_range_keep_every_bit(
        n, m, spikes, shift, center, noise_floor, mode, seed):
    """Spikes in unit noise (the FFT path plans such segments in shorter
    blocks, or leaves the spikes out of the transforms), scaled until some
    samples' squares could leave the float64 range: a segment holding such
    samples is scaled back into range first, so its plans, and every bit,
    are those of the signal as it was; rows too."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n)
    for where, decades in spikes:
        signal[int(where * (n - 1))] = 10.0**decades
    kernel = rng.standard_normal(m)
    options = dict(method="fft", center=center, mode=mode)
    base = sliding_cosine(signal, kernel, noise_floor=noise_floor, **options)
    scaled = sliding_cosine(np.ldexp(signal, shift), kernel,
                            noise_floor=np.ldexp(noise_floor, shift), **options)
    np.testing.assert_array_equal(scaled, base)
    rows = np.stack([signal, np.roll(signal, n // 3)])
    np.testing.assert_array_equal(
        sliding_cosine(np.ldexp(rows, shift), kernel, **options), sliding_cosine(rows, kernel, **options))


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_rows_out_of_range_far_apart_keep_tiny_cosines_under_a_huge_noise_floor(method):
    """Rows 1050 binades apart (no power of two brings both into the safe
    range) under a noise floor far above the quieter row's windows: their
    cosines are subnormal, and stay those of exact arithmetic."""
    from fractions import Fraction

    rng = np.random.default_rng(3)
    base = rng.standard_normal(300) * np.exp2(rng.integers(-20, 20, 300))
    rows = np.stack([np.ldexp(base, 700), np.ldexp(base[::-1], -350)])
    kernel = rng.standard_normal(7 if method == "direct" else 150)
    floor = np.ldexp(0.3, 700)
    got = sliding_cosine(rows, kernel, noise_floor=floor, method=method)[1, :20]
    k = [Fraction(v) for v in kernel]
    norm_k = Fraction(float(sum(v * v for v in k)) ** 0.5)
    for i, value in enumerate(got):
        w = [Fraction(v) for v in rows[1, i : i + kernel.size]]
        norm_w = Fraction(float(sum(v * v for v in w)) ** 0.5)
        want = float(sum(p * q for p, q in zip(w, k)) / ((norm_w + Fraction(floor)) * norm_k))
        assert 0 < abs(want) < 1e-300
        assert abs(value - want) <= 1e-6 * abs(want) + 1e-322


def test_direct_windows_out_of_range_take_the_loops_once_scaled(monkeypatch):
    """A float64 signal beyond [SAFE_MIN, SAFE_MAX] whose magnitudes a power
    of two brings into it is scaled, and its windows take the loops (none is
    recomputed one at a time), with the bits of the signal in range; rows
    too far apart for that are recomputed as before."""
    from cosim_np._cpu import sliding as kernels

    fixed = []
    fix = kernels.fix_out_of_range
    monkeypatch.setattr(kernels, "fix_out_of_range", lambda *args: (fixed.append(1), fix(*args)))
    rng = np.random.default_rng(4)
    signal = rng.standard_normal(3000) * np.exp2(rng.integers(-30, 30, 3000))
    kernel = rng.standard_normal(24)
    base = sliding_cosine(signal, kernel, method="direct", noise_floor=0.5)
    for shift in (600, -700, 900):
        got = sliding_cosine(np.ldexp(signal, shift), kernel, method="direct",
                             noise_floor=np.ldexp(0.5, shift))
        np.testing.assert_array_equal(got, base)
    assert not fixed
    far = np.stack([np.ldexp(signal, 700), np.ldexp(signal, -350)])
    got = sliding_cosine(far, kernel, method="direct")
    assert fixed
    plain = sliding_cosine(signal, kernel, method="direct")
    np.testing.assert_array_equal(got, np.stack([plain, plain]))


def test_norms_out_of_range_take_the_scans_once_scaled(monkeypatch):
    """windowed_norm as the direct dots: a part that a power of two brings
    into [SAFE_MIN, SAFE_MAX] takes the blocked scans scaled, its norms
    scaled back with the bits of the signal in range; rows too far apart
    for that have their windows rescaled one at a time, as before."""
    from cosim_np._cpu import sliding as kernels

    fixed = []
    fixes = kernels.norms_out_of_range
    monkeypatch.setattr(kernels, "norms_out_of_range", tuple(
        (lambda fix: lambda *args: (fixed.append(1), fix(*args)))(fix) for fix in fixes))
    rng = np.random.default_rng(6)
    signal = rng.standard_normal(3000) * np.exp2(rng.integers(-30, 30, 3000))
    for m in (3, 24, 100):
        base = windowed_norm(signal, m)
        for shift in (600, -700, 900):
            np.testing.assert_array_equal(windowed_norm(np.ldexp(signal, shift), m),
                                          np.ldexp(base, shift))
        assert not fixed
        far = np.stack([np.ldexp(signal, 700), np.ldexp(signal, -350)])
        got = windowed_norm(far, m)
        assert fixed
        fixed.clear()
        np.testing.assert_array_equal(got, np.stack([np.ldexp(base, 700), np.ldexp(base, -350)]))


@pytest.mark.parametrize("path", ["centered dots", "centered norms", "products",
                                  "centered products"])
def test_centered_and_product_windows_out_of_range_are_scaled_once(monkeypatch, path):
    """``center=True`` (direct dots and norms) and the dots as matrix
    products do as the loops: a part that a power of two brings into range
    is scaled, none of its windows recomputed one at a time, with the bits
    of the signal in range; rows too far apart for that are recomputed one
    at a time, with the same bits."""
    from cosim_np._core import config
    from cosim_np._cpu import centered, products

    center = "centered" in path
    module, name = {"centered dots": (centered, "fix_out_of_range"),
                    "centered norms": (centered, "norms_out_of_range")}.get(
                        path, (products, "rescale_columns"))
    if module is products:
        monkeypatch.setattr(config, "DIRECT_DOTS", "products")
    fixed = []
    fix = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: (fixed.append(1), fix(*args)))
    rng = np.random.default_rng(7)
    signal = rng.standard_normal(3000) * np.exp2(rng.integers(-30, 30, 3000))
    signal[1000:1100] = 3.0  # (a flat stretch: centered M2 exactly 0)
    for kernel in (rng.standard_normal(24), rng.standard_normal((3, 40))):
        if path == "centered norms":
            def call(x, floor=None, m=kernel.shape[-1]):
                return windowed_norm(x, m, center=True)
        else:
            def call(x, floor=0.0, kernel=kernel):
                return sliding_cosine(x, kernel, method="direct", center=center,
                                      noise_floor=floor)
        base = call(signal, 0.5)
        for shift in (600, -700, 900):
            got = call(np.ldexp(signal, shift), np.ldexp(0.5, shift))
            want = np.ldexp(base, shift) if path == "centered norms" else base
            np.testing.assert_array_equal(got, want)
        assert not fixed
        far = np.stack([np.ldexp(signal, 700), np.ldexp(signal, -350)])
        got = call(far)
        assert fixed
        fixed.clear()
        plain = call(signal)
        if path == "centered norms":
            np.testing.assert_array_equal(got, np.stack([np.ldexp(plain, 700),
                                                         np.ldexp(plain, -350)]))
        else:
            np.testing.assert_array_equal(got, np.stack([plain, plain]))
