"""``center=True``: Pearson's correlation of every window with the kernel.

The promise, and the bound the tests hold every result to: with
``kappa = ||w|| / ||w - mean(w)||`` for the window and ``kappa_k`` likewise
for the kernel, the error in ``s`` is at most ``4 (m C + 4) eps (kappa +
kappa_k)`` (``eps`` of float64; plus the rounding to a float32 output): the
dots are the raw windows' with the centered kernel, whose products are
rounded at the offset's scale.  A centered norm (``windowed_norm``) is off
by at most ``4 (m C + 4) eps ||w - mean(w)||``, as a two-pass computation
over the window (its mean is off by ``eps |mean|``, which changes the sum
of squared deviations in the second order only); the running-sum recipe
``sum(w**2) - m * mean(w)**2`` of the anchors loses every digit instead,
which the tests show beside ours.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from benchmarks import corpus
from cosim_np import find_matches, sliding_cosine, windowed_norm
from tests import naive
from tests.strategies import arrays, elements, window_geometry

# every test that reaches the FFT path runs once per FFT library (tests/conftest.py)

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def bound(kappa, kappa_k, taps, dtype):
    """The promised error of a centered cosine (see the module docstring)."""
    rounding = EPS32 if np.dtype(dtype) == np.float32 else 0.0
    return 4 * (taps + 4) * EPS64 * (kappa + kappa_k) + rounding


def kappa(v):
    """``||v|| / ||v - mean(v)||`` of a float64 vector (exact enough for a bound)."""
    v = np.asarray(v, dtype=np.longdouble).ravel()
    spread = np.sqrt(np.sum((v - np.mean(v)) ** 2))
    return float(np.sqrt(np.sum(v * v)) / spread) if spread > 0 else np.inf


def pearson_valid(x, k, dilation=1):
    """Every valid window's Pearson correlation and ``kappa``, two-pass in long
    double (``sliding_window_view``): a reference far more accurate than
    float64 for the long signals of the corpus, where the exact one is slow."""
    x = np.asarray(x, dtype=np.longdouble)
    k = np.asarray(k, dtype=np.longdouble)
    m = k.size
    w = np.lib.stride_tricks.sliding_window_view(x, (m - 1) * dilation + 1)[:, ::dilation]
    dev = w - w.mean(axis=1, keepdims=True)
    kc = k - k.mean()
    spread = np.sqrt(np.sum(dev * dev, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (dev @ kc) / (spread * np.sqrt(np.sum(kc * kc)))
        kappas = np.sqrt(np.sum(w * w, axis=1)) / spread
    return np.clip(s.astype(np.float64), -1, 1), kappas.astype(np.float64), spread


def assert_within_bound(got, want, kappas, kappa_k, taps, dtype):
    err = np.abs(np.asarray(got, dtype=np.float64) - want)
    limit = bound(kappas, kappa_k, taps, dtype)
    if err.size == 0:
        return
    worst = int(np.argmax(err - limit))
    assert np.all(err <= limit), (
        f"window {worst}: error {err[worst]:.3g} over the bound {limit[worst]:.3g} "
        f"(kappa {kappas[worst]:.3g}, got {got[worst]!r}, want {want[worst]!r})")


# --- against the exact reference, every path


offsets = st.sampled_from([0.0, 1.0, -3.5, 1e4, 1e6, -1e8])


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e4, -1e6])
def test_an_offset_leaves_the_fft_blocks_transformed(monkeypatch, dtype, offset):
    """The FFT path transforms each block less its mean (the centered
    kernel's taps sum to zero), so a baseline does not scale the transforms'
    error up to where every window of the block would be flagged for direct
    dots: the plan keeps transforming, and every result stays within the
    bound."""
    from tests.test_corpus import PlanRecorder

    rng = np.random.default_rng(7)
    drift = np.cumsum(rng.standard_normal(60_000)) * 1e-2
    x = (offset + drift + rng.standard_normal(60_000)).astype(dtype)
    k = rng.standard_normal(256)
    recorder = PlanRecorder(monkeypatch)
    got = sliding_cosine(x, k, center=True, method="fft")
    slots = np.concatenate([s.ravel() for s in recorder.slots])
    assert np.all(slots >= 0), f"{np.mean(slots < 0):.0%} of the blocks took direct dots"
    want, kappas, _ = pearson_valid(x.astype(np.float64), k)
    ok = np.isfinite(kappas)  # (float32 keeps few digits of -1e6 + noise)
    assert_within_bound(got[ok], want[ok], kappas[ok], kappa(k), 256, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_is_transformed_less_its_mean_only_where_that_is_an_offset(dtype):
    """``_block_reference``: the mean of the finite samples where it holds at
    least half of their energy, else 0 (a zero-mean block, or mostly exact
    zeros, is transformed as it is); exactly ``2**j`` times as much for the
    samples times ``2**j``, negated for the negated samples, whether the
    block holds a NaN or not."""
    from cosim_np._cpu.blocks import _block_reference, _block_sums

    rng = np.random.default_rng(3)
    noise = rng.standard_normal((1, 2, 1001))
    sparse = np.zeros((1, 2, 1001))
    sparse[0, :, ::97] = 5.0
    for x, offset in [(noise, False), (sparse, False), (noise + 3.0, True), (-noise - 3.0, True)]:
        x = x.astype(dtype)
        finite = x[np.isfinite(x)].astype(np.float64)
        got = _block_reference(x, 0, 0, 1001)
        # (its pass without finiteness tests sums the same bits as the one with)
        assert _block_sums(x, 0, 5, 999, False) == _block_sums(x, 0, 5, 999, True)
        assert got == (0.0 if not offset else pytest.approx(finite.mean(), rel=1e-12))
        with_nan = x.copy()
        with_nan[0, 1, 500] = np.nan
        for y in (x, with_nan):
            base = _block_reference(y, 0, 3, 900)
            for j in (-300, -7, 5, 200) if dtype == np.float64 else (-20, 3, 20):
                assert _block_reference(np.ldexp(y, j), 0, 3, 900) == np.ldexp(base, j)
            assert _block_reference(-y, 0, 3, 900) == -base
    with_nan = (noise + 3.0).astype(dtype)
    with_nan[0, 0, 10] = np.nan
    kept = np.delete(with_nan.astype(np.float64).ravel(), 10)
    assert _block_reference(with_nan, 0, 0, 1001) == pytest.approx(kept.mean(), rel=1e-12)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), offset=offsets)
def test_sliding_pearson_matches_the_exact_reference(method, dtype, data, offset):
    n, m, d, mode = data.draw(window_geometry(max_n=60, max_m=9, long_m=[(60, 140)]))
    assume(m > 1)
    noise = data.draw(arrays(dtype, n, elements(dtype, 1e3)))
    x = (noise.astype(np.float64) + offset).astype(dtype)
    k = data.draw(arrays(np.float64, m, elements(np.float64, 1e3)))
    assume(not np.all(k == k[0]))
    got = sliding_cosine(x, k, mode=mode, dilation=d, method=method, center=True)
    want = naive.sliding_pearson(x, k, mode=mode, dilation=d)
    kappas = np.array([kappa(w) for w in naive.windows(x, m, d, mode)])
    constant = ~np.isfinite(kappas)
    assert np.all(got[constant] == 0.0)  # fill
    assert_within_bound(got[~constant], want[~constant], kappas[~constant], kappa(k), m, dtype)


@given(data=st.data(), offset=offsets)
def test_centered_norms_match_the_exact_reference(data, offset):
    n, m, d, mode = data.draw(window_geometry(max_n=60, max_m=9, long_m=[(60, 140)]))
    x = data.draw(arrays(np.float64, n, elements(np.float64, 1e3))) + offset
    got = windowed_norm(x, m, dilation=d, mode=mode, center=True)
    want = naive.windowed_centered_norm_1d(x, m, d, mode)
    assert np.all(np.abs(got - want) <= 4 * (m + 4) * EPS64 * want)
    assert np.all(got[want == 0.0] == 0.0)  # constant windows: exactly 0


@pytest.mark.parametrize("offset", [1e4, -1e6, 1e9, 3e12])
@pytest.mark.parametrize("shape, window, dilation", [
    ((5000,), 3, 1), ((5000,), 16, 2), ((5000,), 45, 1), ((3, 2000), 200, 1),
    ((60, 70), (5, 4), (1, 2)), ((12, 14, 16), (3, 2, 5), (1, 1, 1))])
def test_centered_norms_are_two_pass_accurate_under_an_offset(shape, window, dilation, offset):
    """A centered norm is as accurate as a two-pass computation over its
    window, whatever the offset: each run's mean is held as its distance from
    its first sample, so no gap between two runs' means carries the offset's
    rounding.  It did (``eps * kappa``): ``5e-11`` of the norm under ``1e6 +
    N(0, 1)`` with 64 taps, ``5e-8`` under ``1e9`` (an exploratory test)."""
    rng = np.random.default_rng(abs(int(offset)) % 1000 + len(shape))
    x = offset + rng.standard_normal(shape) * np.linspace(0.5, 2.0, shape[-1])
    m = np.atleast_1d(window)
    span = tuple((w - 1) * d + 1 for w, d in zip(m, np.broadcast_to(dilation, m.shape)))
    x[(...,) + tuple(slice(0, s + 2) for s in span)] = offset  # constant windows: exactly 0
    axes = tuple(range(-m.size, 0)) if isinstance(window, tuple) else -1
    got = windowed_norm(x, window, dilation=dilation, axis=axes, center=True)
    views = np.lib.stride_tricks.sliding_window_view(x.astype(np.longdouble), span,
                                                     axis=tuple(range(-m.size, 0)))
    views = views[(...,) + tuple(slice(None, None, d)
                                 for d in np.broadcast_to(dilation, m.shape))]
    views = views.reshape(views.shape[: views.ndim - m.size] + (-1,))
    # (in long double, less each window's first sample: exact differences, so
    # that its mean is not rounded at the offset's scale either)
    views = views - views[..., :1]
    deviations = views - views.mean(axis=-1, keepdims=True)
    want = np.sqrt(np.sum(deviations * deviations, axis=-1)).astype(np.float64)
    taps = int(np.prod(m))
    assert np.all(np.abs(got - want) <= 4 * (taps + 4) * EPS64 * want)
    assert np.any(want == 0.0) and np.all(got[want == 0.0] == 0.0)


@pytest.mark.parametrize("c_in", [2, 3])
@given(data=st.data(), offset=offsets)
def test_multichannel_pearson_matches_the_exact_reference(c_in, data, offset):
    """The mean runs over every channel and tap of the window."""
    n, m, d, mode = data.draw(window_geometry(max_n=40, max_m=6))
    x = data.draw(arrays(np.float64, (c_in, n), elements(np.float64, 1e3))) + offset
    kernels = data.draw(arrays(np.float64, (2, c_in, m), elements(np.float64, 1e3)))
    assume(all(not np.all(kk == kk.flat[0]) for kk in kernels))
    got = sliding_cosine(x, kernels, mode=mode, dilation=d, center=True, method="direct")
    want = naive.sliding_pearson(x, kernels, mode=mode, dilation=d)
    wins = [np.stack([naive.windows(x[c], m, d, mode)[i] for c in range(c_in)])
            for i in range(got.shape[1])]
    kappas = np.array([kappa(w) for w in wins])
    ok = np.isfinite(kappas)
    assert np.all(got[:, ~ok] == 0.0)
    for o in range(2):
        assert_within_bound(got[o, ok], want[o, ok], kappas[ok], kappa(kernels[o]), m * c_in,
                            np.float64)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_a_bank_sharpened_with_a_noise_floor(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(900) + 50.0
    bank = rng.standard_normal((3, 40))
    got = sliding_cosine(x, bank, center=True, sharpness=1.5, noise_floor=0.25, mode="same",
                         method=method)
    for j in range(3):
        want = naive.sliding_pearson(x, bank[j], sharpness=1.5, noise_floor=0.25, mode="same")
        np.testing.assert_allclose(got[j], want, rtol=0, atol=1e-12)


# --- offsets, bursts and the corpus


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("offset", [1e4, 1e6, 1e8])
@pytest.mark.parametrize("m", [16, 64, 256])
def test_large_offsets_cost_only_the_stored_digits(method, offset, m):
    """``offset + N(0, 1)`` in float64: within the bound of every window, where
    the running-sum recipe of the anchors is off by far more."""
    rng = np.random.default_rng(m)
    x = offset + rng.standard_normal(20_000)
    k = rng.standard_normal(m)
    got = sliding_cosine(x, k, center=True, method=method)
    want, kappas, spread = pearson_valid(x, k)
    assert_within_bound(got, want, kappas, kappa(k), m, np.float64)
    norms = windowed_norm(x, m, center=True)
    assert np.all(np.abs(norms - spread) <= 4 * (m + 4) * EPS64 * spread)
    # the recipe we replace: sum(w**2) - m * mean**2 from running sums
    sums = np.convolve(x, np.ones(m), "valid")
    squares = np.convolve(x * x, np.ones(m), "valid")
    with np.errstate(invalid="ignore"):
        recipe = np.sqrt(np.maximum(squares - sums * sums / m, 0.0))
    if offset >= 1e6:
        assert np.max(np.abs(recipe - spread) / spread) > 1e-4


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_after_a_loud_burst_on_an_offset(method, dtype):
    rng = np.random.default_rng(7)
    x = (1e3 + 1e-3 * rng.standard_normal(8000)).astype(dtype)
    x[1000:1010] = 1e8
    x[5000] = -1e9
    k = rng.standard_normal(50)
    got = sliding_cosine(x, k, center=True, method=method)
    want, kappas, _ = pearson_valid(x.astype(np.float64), k)
    assert_within_bound(got, want, kappas, kappa(k), 50, dtype)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("name", corpus.CLASSES)
@pytest.mark.parametrize("m", [16, 200])
def test_every_corpus_class(method, name, m):
    x = corpus.make(name, 30_000, np.float64, seed=m)
    k = np.random.default_rng(m).standard_normal(m)
    got = sliding_cosine(x, k, center=True, method=method)
    want, kappas, spread = pearson_valid(x, k)
    constant = spread == 0
    assert np.all(got[constant] == 0.0)
    assert_within_bound(got[~constant], want[~constant], kappas[~constant], kappa(k), m,
                        np.float64)
    got32 = sliding_cosine(x.astype(np.float32), k, center=True, method=method)
    want32, kappas32, spread32 = pearson_valid(x.astype(np.float32), k)
    ok = spread32 > 0
    assert_within_bound(got32[ok], want32[ok], kappas32[ok], kappa(k), m, np.float32)


# --- constant windows and kernels


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("fill", [0.0, 7.0, np.nan])
def test_constant_windows_get_fill_exactly(method, fill):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000)
    x[1000:1400] = 123.456  # constant stretch, on an offset
    x[2000:2200] = 0.0
    got = sliding_cosine(x, rng.standard_normal(100), center=True, fill=fill, method=method)
    inside = np.r_[1000:1301, 2000:2101]
    np.testing.assert_array_equal(got[inside], np.full(inside.size, fill))
    assert np.all(np.isfinite(np.delete(got, inside)))
    norms = windowed_norm(x, 100, center=True)
    assert np.all(norms[inside] == 0.0) and np.all(np.delete(norms, inside) > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_near_constant_windows_stay_finite_and_bounded(dtype):
    """A window whose spread is a few units of rounding of its offset: its
    score is not meaningful, but it is finite and in [-1, 1]."""
    rng = np.random.default_rng(2)
    base = np.float64(np.array(1e4, dtype))
    ulp = float(np.spacing(np.array(1e4, dtype)))
    x = (base + ulp * rng.integers(-2, 3, 5000)).astype(dtype)
    s = sliding_cosine(x, rng.standard_normal(64), center=True)
    assert np.all(np.isfinite(s)) and np.all(np.abs(s) <= 1.0)


@pytest.mark.parametrize("kernel,name", [
    ([2.0, 2.0, 2.0], r"kernel is constant"),
    ([0.0, 0.0], r"kernel is constant"),
    ([5.0], r"kernel is constant"),
    ([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]], r"kernel\[1\] is constant"),
])
def test_a_constant_kernel_is_an_error_naming_it(kernel, name):
    with pytest.raises(ValueError, match=name):
        sliding_cosine(np.arange(10.0), kernel, center=True)
    with pytest.raises(ValueError, match=name):
        find_matches(np.arange(10.0), kernel, center=True)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_a_kernel_of_one_infinite_value_is_non_finite_not_constant(value):
    """``[inf, inf, inf]`` with ``center=True`` was refused as "constant
    (every tap inf) ... its taps less their mean are all zero", where inf
    less inf is NaN (an exploratory test): it scores NaN, as ``[inf, -inf,
    1]`` and the uncentered call do, along one axis and over two."""
    x = np.random.default_rng(0).standard_normal((6, 20))
    assert np.isnan(sliding_cosine(x, [value] * 3, center=True)).all()
    assert np.isnan(sliding_cosine(x, np.full((2, 2), value), axis=(0, 1), center=True)).all()
    assert len(find_matches(x, [value] * 3, center=True, threshold=0.5)) == 0


def test_a_constant_output_channel_is_named_by_its_index():
    """Multi-channel kernels along one axis and over two: the output channel
    by its index, the tap's value as a plain number."""
    channels = np.ones((2, 2, 3))
    channels[0, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"kernel\[1\] is constant \(every tap 1\.0\)"):
        sliding_cosine(np.arange(20.0).reshape(2, 10), channels, center=True)
    with pytest.raises(ValueError, match=r"kernel\[1\] is constant \(every tap 1\.0\)"):
        sliding_cosine(np.arange(50.0).reshape(2, 5, 5), channels[..., None], center=True,
                       axis=(-2, -1))


def test_center_must_be_a_bool():
    with pytest.raises(TypeError, match="center must be True or False"):
        sliding_cosine(np.arange(10.0), [1.0, 2.0], center="yes")
    with pytest.raises(TypeError, match="center must be True or False"):
        windowed_norm(np.arange(10.0), 3, center=1)


# --- the invariances


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@given(data=st.data(), shift=st.integers(-60, 60), kshift=st.integers(-60, 60))
def test_power_of_two_scaling_and_sign_are_exact(method, data, shift, kshift):
    rng = np.random.default_rng(abs(shift) + 1)
    n, m, d, mode = data.draw(window_geometry(max_n=80, max_m=9, long_m=[(60, 140)]))
    assume(m > 1)
    x = 1e3 + rng.standard_normal(n)
    x[rng.random(n) < 0.05] = 5e5  # loud samples, offset windows
    k = rng.standard_normal(m)
    options = dict(mode=mode, dilation=d, method=method, center=True)
    s = sliding_cosine(x, k, **options)
    np.testing.assert_array_equal(sliding_cosine(np.ldexp(x, shift), np.ldexp(k, kshift),
                                                 **options), s)
    np.testing.assert_array_equal(sliding_cosine(-x, k, **options), -s)
    np.testing.assert_array_equal(sliding_cosine(x, -k, **options), -s)
    norms = windowed_norm(x, m, dilation=d, mode=mode, center=True)
    np.testing.assert_array_equal(windowed_norm(np.ldexp(x, shift), m, dilation=d, mode=mode,
                                                center=True), np.ldexp(norms, shift))
    np.testing.assert_array_equal(windowed_norm(-x, m, dilation=d, mode=mode, center=True), norms)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_offset_invariance_to_the_accuracy_of_the_data(dtype):
    """Adding ``c`` changes a result by no more than the bound for the
    shifted windows (the digits the offset pushes out of the stored data)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(20_000)
    k = rng.standard_normal(64)
    s = sliding_cosine(x.astype(dtype), k, center=True)
    for c in (10.0, 1e3, -1e5):
        shifted = (x + c).astype(dtype)
        want, kappas, _ = pearson_valid(shifted.astype(np.float64), k)
        got = sliding_cosine(shifted, k, center=True)
        assert_within_bound(got, want, kappas, kappa(k), 64, dtype)
        if dtype == np.float64:  # the stored data kept ~11 digits or more: so does s
            assert np.max(np.abs(got - s)) <= bound(np.max(kappas), kappa(k), 64, dtype)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_nan_stays_in_its_windows(method):
    rng = np.random.default_rng(9)
    x = 500.0 + rng.standard_normal(4000)
    k = rng.standard_normal(70)
    clean = sliding_cosine(x, k, center=True, method=method)
    x[2000] = np.nan
    got = sliding_cosine(x, k, center=True, method=method)
    holds = np.zeros(got.size, bool)
    holds[2000 - 69 : 2001] = True
    assert np.all(np.isnan(got[holds])) and not np.any(np.isnan(got[~holds]))
    if method == "direct":
        np.testing.assert_array_equal(got[~holds], clean[~holds])
    else:
        np.testing.assert_allclose(got[~holds], clean[~holds], rtol=0, atol=1e-12)
    x[3000] = np.inf
    norms = windowed_norm(x, 70, center=True)
    assert np.isnan(norms[3000]) and np.isfinite(norms[2500])  # inf - mean(w) is undefined


# --- the anchors


def test_equals_opencv_tm_ccoeff_normed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(4)
    x = (3.0 + rng.standard_normal(50_000)).astype(np.float32)
    for m in (16, 64, 256):
        k = rng.standard_normal(m).astype(np.float32)
        theirs = cv2.matchTemplate(x[None, :], k[None, :], cv2.TM_CCOEFF_NORMED)[0]
        ours = sliding_cosine(x, k, center=True)
        # OpenCV sums in float32 with running sums: its own error is the larger
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-4)


def test_equals_stumpy_mass():
    stumpy = pytest.importorskip("stumpy")
    rng = np.random.default_rng(6)
    x = rng.standard_normal(20_000)
    for m in (16, 64, 256):
        q = rng.standard_normal(m)
        theirs = stumpy.mass(q, x)
        ours = np.sqrt(np.maximum(2 * m * (1 - sliding_cosine(x, q, center=True)), 0.0))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)


def test_equals_scikit_image_match_template():
    feature = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(8)
    x = 10.0 + rng.standard_normal(5000)
    k = rng.standard_normal(40)
    theirs = feature.match_template(x[None, :], k[None, :], pad_input=False)[0]
    np.testing.assert_allclose(sliding_cosine(x, k, center=True), theirs, rtol=0, atol=1e-10)


# --- find_matches


def test_find_matches_centered_is_the_greedy_selection_of_the_centered_scores():
    rng = np.random.default_rng(10)
    motif = np.sin(np.linspace(0, 3 * np.pi, 60))
    x = 0.3 * rng.standard_normal(6000) + np.linspace(0, 40, 6000)  # a drifting baseline
    for at, gain, shift in ((500, 1.0, 5.0), (2500, -2.0, -3.0), (4100, 0.5, 100.0)):
        x[at : at + 60] += gain * motif + shift
    found = find_matches(x, motif, k=3, center=True)
    scores = sliding_cosine(x, motif, center=True)
    (_, index, _, score), _ = naive.find_matches(x, motif, k=3, scores=scores)
    np.testing.assert_array_equal(found.index, index)
    np.testing.assert_array_equal(found.score, score)
    assert sorted(found.index.tolist()) == [500, 2500, 4100]
    # uncentered, the shifted copies are lost under the baseline
    assert sorted(find_matches(x, motif, k=3).index.tolist()) != [500, 2500, 4100]


@given(data=st.data())
def test_a_window_does_not_depend_on_where_the_signal_starts(data):
    """Each window's centered statistics come from its own samples only, in
    an order fixed by its taps: cutting the signal anywhere (not only at a
    tile) changes no bit of the windows left."""
    _, m, d, _ = data.draw(window_geometry(max_m=9, long_m=[(30, 70)]))
    assume(m > 1)  # (one tap is a constant kernel)
    span = (m - 1) * d
    n = data.draw(st.integers(span + 2, 10000))  # past a tile of windows
    rng = np.random.default_rng(n + m)
    x = 1e3 + rng.standard_normal(n)
    x[rng.integers(0, n)] = 1e9  # a loud sample
    cut = data.draw(st.integers(1, n - span - 1))
    kernel = rng.standard_normal(m)
    whole = windowed_norm(x, m, dilation=d, center=True)
    np.testing.assert_array_equal(windowed_norm(x[cut:], m, dilation=d, center=True), whole[cut:])
    whole = sliding_cosine(x, kernel, dilation=d, center=True, method="direct")
    np.testing.assert_array_equal(
        sliding_cosine(x[cut:], kernel, dilation=d, center=True, method="direct"), whole[cut:])


@pytest.mark.parametrize("nchan", [1, 3])
@pytest.mark.parametrize("m, d", [(1, 1), (2, 3), (5, 1), (8, 2), (12, 1), (37, 1), (64, 1)])
def test_rescaled_windows_take_the_same_operations(nchan, m, d):
    """A window whose M2 leaves the float64 range is recomputed from samples
    scaled by ``2**-E`` (``rescaled_m2``); for the scaling promise to hold
    bit for bit, that must repeat the tile kernel's operations exactly: on
    in-range data, scaling back gives the tile's bits."""
    from cosim_np._cpu import centered

    rng = np.random.default_rng(m * 10 + d)
    n = 700
    x = (5.0 + rng.standard_normal((1, nchan, n))) * rng.choice([1e-3, 1.0, 1e3], size=(1, 1, n))
    nwin = n - (m - 1) * d
    tile, bufs = centered.make_buffers(m, d, nchan, nwin)
    m2 = np.empty((1, -(-nwin // tile) * tile))
    unsafe = np.zeros((1, m2.shape[1] // tile), dtype=bool)
    centered.segment_m2(x, 0, nwin, m, d, tile, bufs, m2, unsafe)
    assert not unsafe.any()
    for i in range(nwin):
        e, s = centered.rescaled_m2(x, 0, i, m, d)
        assert np.ldexp(s, 2 * e) == m2[0, i], i


# --- Dask and xarray


@given(data=st.data())
def test_dask_equals_the_in_memory_result_bit_for_bit(data):
    da = pytest.importorskip("dask.array")
    n, m, d, mode = data.draw(window_geometry(max_n=400, max_m=9, long_m=[(30, 70)]))
    assume(m > 1)
    rng = np.random.default_rng(n)
    x = 1e3 + rng.standard_normal((2, n))
    x[:, rng.integers(0, n)] = 1e7  # a loud sample
    chunks = (1, data.draw(st.integers(1, n)))
    kernel = rng.standard_normal((2, m))
    lazy = sliding_cosine(da.from_array(x, chunks=chunks), kernel, mode=mode, dilation=d,
                          center=True, method="direct")
    np.testing.assert_array_equal(lazy.compute(), sliding_cosine(
        x, kernel, mode=mode, dilation=d, center=True, method="direct"))
    norms = windowed_norm(da.from_array(x, chunks=chunks), m, dilation=d, mode=mode, center=True)
    np.testing.assert_array_equal(norms.compute(), windowed_norm(x, m, dilation=d, mode=mode,
                                                                 center=True))
    found = find_matches(da.from_array(x, chunks=chunks), kernel, k=3, mode=mode, dilation=d,
                         center=True, method="direct")
    want = find_matches(x, kernel, k=3, mode=mode, dilation=d, center=True, method="direct")
    np.testing.assert_array_equal(found.index, want.index)
    np.testing.assert_array_equal(found.score, want.score)


def test_xarray_keeps_dims_centered():
    xr = pytest.importorskip("xarray")
    values = 50.0 + np.random.default_rng(0).standard_normal((2, 300))
    array = xr.DataArray(values, dims=("station", "time"), coords={"time": np.arange(300.0)})
    got = sliding_cosine(array, [1.0, -2.0, 0.5, 3.0], center=True, mode="same")
    assert got.dims == array.dims
    np.testing.assert_array_equal(got.values, sliding_cosine(values, [1.0, -2.0, 0.5, 3.0],
                                                             center=True, mode="same"))
    norms = windowed_norm(array, 5, center=True)
    np.testing.assert_array_equal(norms.values, windowed_norm(values, 5, center=True))
    np.testing.assert_array_equal(norms.time.values, np.arange(296.0))


def test_subnormal_and_huge_kernels_are_centered():
    x = np.array([0.0, 1.0, 0.0, 3.0, 2.0, 2.0])
    want = sliding_cosine(x, [1.0, 0.0], center=True)
    for scale in (5e-324 / 1.0, 2.0**-1070, 2.0**1000):
        np.testing.assert_array_equal(sliding_cosine(x, [scale, 0.0], center=True), want)
    np.testing.assert_allclose(want, [-1.0, 1.0, -1.0, 1.0, 0.0], rtol=0, atol=4e-16)


def test_an_infinite_float32_sample_gives_nan_centered_norms():
    x = np.array([0.1, 0.1, np.inf, 0.1, 0.1], dtype=np.float32)
    got = windowed_norm(x, 2, center=True)
    np.testing.assert_array_equal(np.isnan(got), [False, True, True, False])
    assert got[0] == 0.0 and got[3] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window, axis", [(1, -1), ((1, 1), (0, 1)), ((1, 1, 1), (0, 1, 2)),
                                          ((1, 2), (1, 2))])
def test_windows_of_one_sample_are_nan_at_nan_and_inf(dtype, window, axis):
    """A window of one sample has a centered norm of 0, or NaN where the
    sample is NaN or ±inf (an M2 of zeros did not look at the sample)."""
    x = np.ones((3, 4, 5), dtype)
    x[0, 1, 2], x[2, 3, 4] = np.nan, np.inf
    signal = x.reshape(-1) if axis == -1 else x
    got = windowed_norm(signal, window, axis=axis, center=True)
    bad = ~np.isfinite(signal)
    if window == (1, 2):  # (pairs along the last axis)
        bad = bad[..., :-1] | bad[..., 1:]
    np.testing.assert_array_equal(np.isnan(got), bad)
    assert np.all(got[~bad] == 0.0)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e200, 1e290])
@pytest.mark.parametrize("m", [8, 150])
def test_amplitudes_near_the_float64_limits(method, scale, m):
    """Windows whose M2 leaves the float64 range are recomputed scaled by a
    power of two: still within the bound, still exact under such scaling."""
    rng = np.random.default_rng(m)
    base = 1e3 + rng.standard_normal(3000)
    base[1000:1100] *= 1e-6  # quiet windows beside loud ones
    x = base * scale
    k = rng.standard_normal(m)
    got = sliding_cosine(x, k, center=True, method=method)
    want, kappas, _ = pearson_valid(x, k)
    assert_within_bound(got, want, kappas, kappa(k), m, np.float64)
    np.testing.assert_array_equal(sliding_cosine(base * 2.0**-40, k, center=True, method=method),
                                  sliding_cosine(base, k, center=True, method=method))
    norms = windowed_norm(x, m, center=True)
    _, _, spread = pearson_valid(x, np.arange(m, dtype=float))
    assert np.all(np.abs(norms - spread) <= 4 * (m + 4) * EPS64 * kappas * spread)
