"""``axis`` a tuple: sliding cosine and windowed norms over two or more axes
(images, volumes), against the naive references, with the promises of the
1-D functions stated again as properties, and against the anchors
(OpenCV's ``matchTemplate``, scikit-image's ``match_template``) where they
are right and where they fail."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cosim_np import Matches, find_matches, sliding_cosine, sliding_cosine_grad, windowed_norm
from cosim_np._core import config
from cosim_np._cpu import spatial_driver
from tests import naive
from tests.memory import traced_peak
from tests.strategies import arrays, elements, scalable_elements
from tests.test_grad import assert_close_to_differences, finite_differences

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def tolerance(out_dtype, taps, exponent=1.0, kappa=1.0):
    """Absolute tolerance of a cosine from ``taps`` float64 products rounded to
    ``out_dtype``; centered, ``kappa`` is the window's ``||w|| / ||w - mean w||``
    (see tests/test_center.py)."""
    float64_part = 8 * (taps + 4) * EPS64 * max(1.0, exponent) * kappa
    return float64_part + (0.0 if out_dtype == np.float64 else float(np.finfo(out_dtype).eps))


@st.composite
def geometries(draw, r=None, max_n=9, max_m=4):
    """``(shape, m, dilation, modes, stride)`` of r sliding axes (2 or 3) with
    every window fitting its axis in 'valid' mode."""
    r = r or draw(st.sampled_from([2, 2, 3]))
    max_n = max_n if r == 2 else 6
    shape, m, dilation, modes, stride = [], [], [], [], []
    for _ in range(r):
        mode = draw(st.sampled_from(["valid", "same", "full"]))
        mm = draw(st.integers(1, max_m if r == 2 else 3))
        d = draw(st.integers(1, 3))
        low = (mm - 1) * d + 1 if mode == "valid" else 1
        shape.append(draw(st.integers(low, max(low, max_n))))
        m.append(mm)
        dilation.append(d)
        modes.append(mode)
        stride.append(draw(st.integers(1, 3)))
    return tuple(shape), tuple(m), tuple(dilation), tuple(modes), tuple(stride)


def long_geometry(draw):
    """One image axis pair with windows long enough for the blocked scans
    (more than ``config.SPATIAL_DIRECT_TAPS`` taps, chunks crossed) and,
    along the last axis, for the runs of taps (more than
    ``config.SPATIAL_ROW_DIRECT_TAPS``) or the passes of four taps."""
    m = (draw(st.integers(5, 12)), draw(st.integers(5, 12) | st.integers(17, 22)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    shape = tuple((mm - 1) * dd + 1 + draw(st.integers(0, 3 * mm * dd)) for mm, dd in zip(m, d))
    modes = tuple(draw(st.sampled_from(["valid", "same", "full"])) for _ in range(2))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(2))
    return shape, m, d, modes, stride


def _scalar_or_tuple(values, draw):
    """One value for every axis where they are equal and Hypothesis says so."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["single", "bank", "channels"])
@given(data=st.data())
def test_matches_the_naive_reference(method, dtype, kind, data):
    _compare_with_naive(method, dtype, kind, data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["bank", "channels"])
@given(data=st.data())
def test_dots_as_matrix_products_match_the_naive_reference(dtype, kind, data):
    """The direct dots as matrix products (``_product_cosines``), which the
    cost model takes for banks of multi-channel kernels (a 2-D layer), forced
    on small problems, a few output rows per product."""
    bands = [0]
    product_cosines = spatial_driver._product_cosines

    def counted(*args):
        bands[0] += 1
        return product_cosines(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "DIRECT_DOTS", "products")
        patch.setattr(config, "PRODUCT_ELEMENTS", 24)
        patch.setattr(spatial_driver, "_product_cosines", counted)
        _compare_with_naive("direct", dtype, kind, data)
    assert bands[0] > 0


def _compare_with_naive(method, dtype, kind, data):
    long = data.draw(st.booleans(), label="long windows")
    shape, m, dilation, modes, stride = (long_geometry(data.draw) if long
                                         else data.draw(geometries()))
    r = len(shape)
    nchan = data.draw(st.integers(1, 3)) if kind == "channels" else 1
    nker = data.draw(st.integers(1, 3)) if kind != "single" else 1
    center = data.draw(st.booleans(), label="center")
    sharpness = data.draw(st.sampled_from([1.0, 1.5, 0.7]))
    noise_floor = data.draw(st.sampled_from([0.0, 0.25]))
    x = data.draw(arrays(dtype, (nchan,) + shape, elements(dtype, 1e3)))
    kernels = data.draw(arrays(np.float64, (nker, nchan) + m, elements(np.float64, 1e3)))
    if center:
        flat = kernels.reshape(nker, -1)
        assume(np.all(flat.max(axis=1) > flat.min(axis=1)))
    kernel = {"single": kernels[0, 0], "bank": kernels[:, 0], "channels": kernels}[kind]
    signal = x if kind == "channels" else x[0]
    got = sliding_cosine(signal, kernel, axis=tuple(range(-r, 0)), sharpness=sharpness,
                         mode=_scalar_or_tuple(modes, data.draw),
                         dilation=_scalar_or_tuple(dilation, data.draw),
                         stride=_scalar_or_tuple(stride, data.draw), noise_floor=noise_floor,
                         center=center, method=method)
    want = naive.spatial_cosine(x, kernels, sharpness, dilation, modes, stride, noise_floor,
                                center=center)
    if kind == "single":
        want = want[0]
    assert got.dtype == dtype and got.shape == want.shape
    kappa = 1.0
    if center:
        kappa = max([1.0] + [_kappa(w) for _, w in naive.spatial_windows(x, m, dilation, modes,
                                                                           stride)])
        kappa = min(kappa, 1e6)  # (larger: compared in float64 below as well)
    taps = nchan * int(np.prod(m))
    limit = tolerance(dtype, taps, sharpness**2, kappa)
    if sharpness != 1.0 and sharpness**2 < 1:  # |s|**0.49 magnifies errors near 0
        limit = max(limit, 1e-6 if dtype == np.float64 else 1e-3)
    np.testing.assert_allclose(got, want, rtol=0, atol=limit)


def _kappa(window):
    w = np.asarray(window, dtype=np.longdouble).ravel()
    spread = np.sqrt(np.sum((w - w.mean()) ** 2))
    return float(np.sqrt(np.sum(w * w)) / spread) if spread > 0 else 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_windowed_norm_matches_the_naive_reference(dtype, data):
    shape, m, dilation, modes, stride = (long_geometry(data.draw) if data.draw(st.booleans())
                                         else data.draw(geometries()))
    center = data.draw(st.booleans())
    x = data.draw(arrays(dtype, shape, elements(dtype, 1e3)))
    got = windowed_norm(x, m, axis=tuple(range(-len(shape), 0)), dilation=dilation, mode=modes,
                        stride=stride, center=center)
    want = naive.spatial_norms(x[None], m, dilation, modes, stride, center)
    assert got.dtype == dtype and got.shape == want.shape
    scale = np.max(np.abs(x)) if x.size else 1.0
    limit = 4 * (np.prod(m) + 4) * EPS64 * scale
    if dtype == np.float32:  # the rounding to float32 (subnormal results: its spacing)
        limit = limit + EPS32 * np.abs(want) + float(np.finfo(np.float32).smallest_subnormal)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all((err <= limit) | (np.isnan(got) & np.isnan(want))), (err, limit)


# --- layouts: where the axes, the bank and the channels go


def test_axes_anywhere_in_the_signal_and_in_any_order():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3, 9, 2))
    k = rng.standard_normal((2, 4))
    got = sliding_cosine(x, k, axis=(2, 0))  # kernel rows slide along axis 2
    assert got.shape == (4, 3, 8, 2)
    for b in range(3):
        for c in range(2):
            want = naive.spatial_cosine(x[:, b, :, c].T[None], k[None, None])[0]
            np.testing.assert_allclose(got[:, b, :, c], want.T, rtol=0, atol=1e-14)


def test_a_bank_inserts_its_axis_before_the_first_sliding_axis():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 10, 11))
    bank = rng.standard_normal((5, 3, 2))
    got = sliding_cosine(x, bank, axis=(-2, -1))
    assert got.shape == (4, 5, 8, 10)
    for b in range(4):
        want = naive.spatial_cosine(x[b][None], bank[:, None])
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-14)


def test_multichannel_kernels_replace_the_channel_axis():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 9))  # (batch, C_in, H, W)
    kernels = rng.standard_normal((4, 3, 3, 3))  # (C_out, C_in, kh, kw)
    got = sliding_cosine(x, kernels, axis=(2, 3), stride=2, mode="same")
    assert got.shape == (2, 4, 4, 5)
    for b in range(2):
        want = naive.spatial_cosine(x[b], kernels, modes=("same",) * 2, stride=(2, 2))
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-14)


def test_a_one_axis_tuple_is_the_one_axis_call():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 40))
    k = rng.standard_normal(5)
    np.testing.assert_array_equal(sliding_cosine(x, k, axis=(1,)), sliding_cosine(x, k, axis=1))
    np.testing.assert_array_equal(windowed_norm(x, 5, axis=(-1,)), windowed_norm(x, 5))
    # the options given per axis, one each
    per_axis = dict(dilation=(2,), stride=[3], mode=("same",))
    one = dict(dilation=2, stride=3, mode="same")
    np.testing.assert_array_equal(sliding_cosine(x, k, axis=(1,), **per_axis),
                                  sliding_cosine(x, k, axis=1, **one))
    np.testing.assert_array_equal(windowed_norm(x, (5,), axis=[1], center=True, **per_axis),
                                  windowed_norm(x, 5, axis=1, center=True, **one))
    g = np.ones(sliding_cosine(x, k, axis=1, **one).shape)
    for got, want in zip(sliding_cosine_grad(x, k, g, axis=(1,), **per_axis),
                         sliding_cosine_grad(x, k, g, axis=1, **one)):
        np.testing.assert_array_equal(got, want)
    found = find_matches(x, k, axis=(1,), exclusion=(4,), dilation=(2,), mode=("same",))
    want = find_matches(x, k, axis=1, exclusion=4, dilation=2, mode="same")
    np.testing.assert_array_equal(found.index, want.index)
    with pytest.raises(ValueError, match=r"dilation must be one value or one per sliding axis \(1\)"):
        sliding_cosine(x, k, axis=(1,), dilation=(1, 2))


def test_dtype_policy():
    x = np.arange(48).reshape(6, 8)
    k = np.ones((2, 3))
    assert sliding_cosine(x, k, axis=(0, 1)).dtype == np.float64
    assert sliding_cosine(x.astype(np.float16), k, axis=(0, 1)).dtype == np.float16
    assert windowed_norm(x.astype(np.float16), 2, axis=(0, 1)).dtype == np.float16
    assert sliding_cosine(x.astype(bool), k, axis=(0, 1)).dtype == np.float64


def test_out_is_filled_and_returned():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 10, 12)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4))
    out = np.empty((2, 3, 8, 9), np.float32)
    assert sliding_cosine(x, k, axis=(1, 2), out=out) is out
    np.testing.assert_array_equal(out, sliding_cosine(x, k, axis=(1, 2)))
    norms = np.empty((2, 9, 9), np.float32)
    assert windowed_norm(x, (2, 4), axis=(1, 2), out=norms) is norms


# --- the promises


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("center", [False, True])
@given(data=st.data(), shift=st.integers(-60, 60), kshift=st.integers(-60, 60))
def test_power_of_two_scaling_and_sign_are_exact(method, dtype, center, data, shift, kshift):
    shape, m, dilation, modes, stride = (long_geometry(data.draw) if data.draw(st.booleans())
                                         else data.draw(geometries(r=2)))
    x = data.draw(arrays(dtype, shape, scalable_elements(dtype)))
    k = data.draw(arrays(np.float64, m, scalable_elements(np.float64)))
    assume(not center or k.max() > k.min())
    options = dict(axis=(0, 1), mode=modes, dilation=dilation, stride=stride, center=center,
                   sharpness=1.3, method=method)
    base = sliding_cosine(x, k, **options)
    scaled = sliding_cosine(np.ldexp(x, shift).astype(dtype), np.ldexp(k, kshift), **options)
    np.testing.assert_array_equal(scaled, base)
    np.testing.assert_array_equal(sliding_cosine(-x, k, **options), -base)
    np.testing.assert_array_equal(sliding_cosine(x, -k, **options), -base)
    assert np.all(np.abs(base) <= 1)
    norms = windowed_norm(x, m, axis=(0, 1), mode=modes, dilation=dilation, center=center)
    np.testing.assert_array_equal(
        windowed_norm(np.ldexp(x, shift).astype(dtype), m, axis=(0, 1), mode=modes,
                      dilation=dilation, center=center),
        np.ldexp(norms, shift).astype(dtype))


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("center", [False, True])
def test_a_bright_pixel_leaves_every_window_without_it_exact(method, center):
    rng = np.random.default_rng(6)
    x = 1e-3 * rng.standard_normal((40, 50))
    x[17, 23] = 1e8
    k = rng.standard_normal((5, 6))
    got = sliding_cosine(x, k, axis=(0, 1), center=center, method=method)
    norms = windowed_norm(x, (5, 6), axis=(0, 1), center=center)
    want = naive.spatial_cosine(x[None], k[None, None], center=center)[0]
    want_norms = naive.spatial_norms(x[None], (5, 6), (1, 1), ("valid",) * 2, (1, 1), center)
    holds = np.zeros(got.shape, bool)
    holds[13:18, 18:24] = True  # windows (i, j) with i <= 17 < i + 5, j <= 23 < j + 6
    np.testing.assert_allclose(got[~holds], want[~holds], rtol=0, atol=tolerance(np.float64, 30))
    np.testing.assert_allclose(norms[~holds], want_norms[~holds], rtol=120 * EPS64, atol=0)
    np.testing.assert_allclose(got[holds], want[holds], rtol=0, atol=1e-6)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("bright", [1e140, 1e250])
def test_a_pixel_far_brighter_than_the_rest_leaves_the_other_windows_their_bits(method, center,
                                                                                  bright):
    """Unit noise with one pixel of ``1e140``: the image was scaled to its
    largest pixel and every sample ``2**450`` below it taken as one whose
    square could underflow, each window holding one recomputed alone, by
    NumPy (minutes for a megapixel, and other bits).  Now only samples
    outside ``[SAFE_MIN, SAFE_MAX]`` once scaled count, in windows with no
    other: the windows without the pixel have the bits of a crop without
    it, and are right (an exploratory test)."""
    rng = np.random.default_rng(61)
    x, k = rng.standard_normal((60, 60)), rng.standard_normal((3, 3))
    x[59, 59] = bright
    got = sliding_cosine(x, k, axis=(0, 1), method=method, center=center)
    crop = sliding_cosine(x[:50, :50], k, axis=(0, 1), method=method, center=center)
    np.testing.assert_array_equal(got[:48, :48], crop)
    want = naive.spatial_cosine(x[None, :50, :50], k[None, None], center=center)[0]
    np.testing.assert_allclose(crop, want, rtol=0, atol=tolerance(np.float64, 9, kappa=3.0))
    norms = windowed_norm(x, 3, axis=(0, 1), center=center)
    np.testing.assert_array_equal(norms[:48, :48],
                                  windowed_norm(x[:50, :50], 3, axis=(0, 1), center=center))


@pytest.mark.parametrize("center", [False, True])
def test_a_gaussian_spot_down_to_subnormal_values_is_right_everywhere(center):
    """A float64 Gaussian spot from ``np.exp``: its tail spans every binade
    down to the subnormals (1e-308 and below).  Each window holding a
    sample ``2**450`` below the largest was recomputed alone; now only the
    windows of samples more than ``SAFE_MAX / SAFE_MIN`` below it are, and
    every window is right to the last digits (an exploratory test)."""
    i, j = np.mgrid[:120, :120]
    x = np.exp(-((i - 10.0) ** 2 + (j - 10.0) ** 2) / 8.0)
    k = x[8:11, 8:11] + 0.5
    got = sliding_cosine(x, k, axis=(0, 1), center=center)
    # each window scaled by its largest sample first (as the reference cannot underflow then)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3))
    largest = np.max(np.abs(windows), axis=(-2, -1), keepdims=True)
    scaled = np.where(largest > 0, windows / np.where(largest > 0, largest, 1.0), 0.0)
    if center:
        scaled = scaled - scaled.mean(axis=(-2, -1), keepdims=True)
    kc = k - k.mean() if center else k
    dots = np.einsum("ijab,ab->ij", scaled, kc)
    norms = np.sqrt(np.einsum("ijab,ijab->ij", scaled, scaled)) * np.linalg.norm(kc)
    want = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(np.float64, 9, kappa=100.0))
    assert np.array_equal(got == 0.0, want == 0.0)


@pytest.mark.parametrize("call", ["sliding_cosine", "fft", "center", "windowed_norm", "grad",
                                  "find_matches"])
def test_a_small_image_with_a_huge_dilation_takes_memory_of_its_windows(call):
    """A 10 x 10 image, a 9 x 9 kernel 3000 apart, mode='same': the image was
    padded whole along both axes, 9.9 GB for 100 outputs (and a MemoryError
    of 74.5 GiB at 10**5).  Each axis's windows read runs of samples laid
    side by side (``_core.spatial.compacted``): memory of the windows, and
    the values of that compact image computed as it is."""
    rng = np.random.default_rng(62)
    x, kernel = rng.standard_normal((10, 10)), rng.standard_normal((9, 9))
    d, axis = 3000, (0, 1)
    run = {
        "sliding_cosine": lambda x, **o: sliding_cosine(x, kernel, axis=axis, method="direct", **o),
        "fft": lambda x, **o: sliding_cosine(x, kernel, axis=axis, method="fft", **o),
        "center": lambda x, **o: sliding_cosine(x, kernel, axis=axis, center=True, **o),
        "windowed_norm": lambda x, **o: windowed_norm(x, 9, axis=axis, **o),
        "grad": lambda x, **o: sliding_cosine_grad(x, kernel, np.ones((10, 10)), axis=axis,
                                                   **o).kernel,
        "find_matches": lambda x, **o: find_matches(x, kernel, axis=axis, k=3, exclusion=2,
                                                    **o),
    }[call]
    want = run(x, dilation=d, mode="same")  # (compiled first)
    got, peak = traced_peak(lambda: run(x, dilation=d, mode="same"))
    assert peak < 4 * 2**20
    # the compact image: tap j's run along each axis, j*d - 4*d + [0, 10)
    runs = np.zeros((9, 10, 9, 10))
    runs[4, :, 4, :] = x  # (every other tap reads padding)
    compact = run(runs.reshape(90, 90), dilation=10, mode="valid")
    if call == "find_matches":
        assert got == want and np.array_equal(got.index, compact.index)
        np.testing.assert_allclose(got.score, compact.score, rtol=0, atol=1e-14)
    else:
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, compact, rtol=0, atol=1e-14)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_nan_and_inf_stay_in_their_windows(method):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 30))
    x[5, 6] = np.nan
    x[20, 25] = np.inf
    k = rng.standard_normal((3, 4))
    clean = x.copy()
    clean[5, 6] = clean[20, 25] = 0.0
    holds = np.zeros((28, 27), bool)
    holds[3:6, 3:7] = True
    holds[18:21, 22:26] = True
    for center in (False, True):
        got = sliding_cosine(x, k, axis=(0, 1), center=center, method=method)
        assert np.isnan(got[holds]).all()
        want = sliding_cosine(clean, k, axis=(0, 1), center=center, method="direct")
        np.testing.assert_allclose(got[~holds], want[~holds], rtol=0, atol=tolerance(np.float64, 12))
    norms = windowed_norm(x, (3, 4), axis=(0, 1))
    assert np.isnan(norms[3:6, 3:7]).all() and np.isposinf(norms[18:21, 22:26]).all()
    assert np.isnan(windowed_norm(x, (3, 4), axis=(0, 1), center=True)[18:21, 22:26]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_rows_a_window_reads_are_each_kept_apart(dtype):
    """The direct loops keep the rows they read, row ``r`` in slot ``r %
    S``: here the four rows a window of the volume reads lie 0, 1, 8 and 9
    rows apart, which share slots for S = 2 * 4 + 1, the first count tried
    (the sums of squares once counted a row twice)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    k = rng.standard_normal((2, 2, 1))
    got = sliding_cosine(x, k, axis=(0, 1, 2), dilation=(2, 1, 1), method="direct")
    want = naive.spatial_cosine(x[None].astype(np.float64), k[None, None], 1.0, (2, 1, 1))[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(dtype, 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["single", "bank", "channels"])
def test_an_output_row_has_the_same_bits_whatever_was_read_before(dtype, kind):
    """The direct loops keep the rows they read for the output rows after
    (converted and squared once) and take a window's dots eight taps a pass
    across its rows: a row's cosines are the same bits whatever was read
    before it (here row ``q`` of ``x[1:]`` is row ``q + 1`` of ``x``)."""
    rng = np.random.default_rng(11)
    nchan = 2 if kind == "channels" else 1
    x = rng.standard_normal((nchan, 23, 40)).astype(dtype)
    x[0, 9, 17] = np.nan
    kernels = rng.standard_normal((2 if kind != "single" else 1, nchan, 5, 11))
    kernel = {"single": kernels[0, 0], "bank": kernels[:, 0], "channels": kernels}[kind]
    signal = x if kind == "channels" else x[0]
    for center in (False, True):
        whole = sliding_cosine(signal, kernel, axis=(-2, -1), method="direct", center=center)
        shifted = sliding_cosine(signal[..., 1:, :], kernel, axis=(-2, -1), method="direct",
                                 center=center)
        np.testing.assert_array_equal(whole[..., 1:, :], shifted)
    for center in (False, True):
        whole = sliding_cosine(signal, kernel, axis=(-2, -1), method="direct", center=center)
        want = naive.spatial_cosine(x.astype(np.float64), kernels, center=center)
        if kind == "single":
            want = want[0]
        np.testing.assert_allclose(whole, want, rtol=0, atol=tolerance(dtype, nchan * 55))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shape, stride", [((3, 3), 1), ((4, 9), 1), ((5, 2), (1, 2)),
                                           ((2, 8), 1), ((9, 1), 1)])
def test_the_same_bits_in_any_layout_of_the_result(dtype, center, shape, stride):
    """One kernel whose cosines go into a C-ordered result takes its
    windows' sums, denominators and cosines in one pass; in any other
    layout (here an ``out`` in Fortran order, and a batch axis after the
    sliding ones) they take a pass each: the same bits either way, and
    those of a bank of that kernel twice (whose rows share their
    denominators).  Loud, silent and NaN pixels included."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((37, 29)).astype(dtype)
    x[3, 4], x[20:30, :] = 1e6, 0.0
    x[11, 17] = np.nan
    kernel = rng.standard_normal(shape)
    options = dict(axis=(0, 1), stride=stride, center=center, method="direct")
    want = sliding_cosine(x, kernel, **options)
    fortran = np.empty(want.shape, want.dtype, order="F")
    sliding_cosine(x, kernel, out=fortran, **options)
    np.testing.assert_array_equal(fortran, want)
    batch_last = sliding_cosine(np.stack([x, -x], axis=-1), kernel, **options)
    np.testing.assert_array_equal(batch_last[..., 0], want)
    np.testing.assert_array_equal(batch_last[..., 1], -want)
    bank = sliding_cosine(x, np.stack([kernel, kernel]), **options)
    np.testing.assert_array_equal(bank[0], want)
    np.testing.assert_array_equal(bank[1], want)
    assert np.isnan(want).any() and (want == 0).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["single", "channels"])
@pytest.mark.parametrize("width", [9, 3])
def test_centered_loops_take_each_window_less_its_own_mean(dtype, kind, width):
    """The direct loops take centered M2s from each row's mean and M2,
    merged about the window's mean.  Flat windows of any value are exactly
    flat (fill; 0.1 in float64 sums inexactly), an offset of 1e4 and a
    pixel of 1e8 cost no accuracy to the other windows, and NaN or inf make
    NaN of their windows only."""
    rng = np.random.default_rng(12)
    nchan = 2 if kind == "channels" else 1
    x = (1e4 + rng.standard_normal((nchan, 30, 40))).astype(dtype)
    x[:, 3:12, 4:22] = 0.1
    x[0, 20, 30] = 1e8
    x[-1, 25, 5] = np.inf
    x[0, 14, 36] = np.nan
    kernels = rng.standard_normal((1, nchan, 4, width))
    signal, kernel = (x, kernels) if kind == "channels" else (x[0], kernels[0, 0])
    got = sliding_cosine(signal, kernel, axis=(-2, -1), center=True, method="direct", fill=-2.0)
    want = naive.spatial_cosine(x.astype(np.float64), kernels, center=True, fill=-2.0)
    want = want[0] if kind == "single" else want
    np.testing.assert_array_equal(got == -2.0, want == -2.0)
    assert np.count_nonzero(want == -2.0) == 6 * (19 - width)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    kappa = 1e4 if dtype == np.float64 else 1.0  # (the offset's, against float64 rounding)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(dtype, nchan * 4 * width,
                                                                 kappa=kappa))


@pytest.mark.parametrize("center", [False, True])
def test_fft_blocks_no_longer_than_a_short_first_axis(monkeypatch, center):
    """A short wide image took bands of 256 rows for its 33 (eight times the
    transforms, 20 times the direct dots' time at 32 x 32): the bands are
    now no longer than the padded first axis, with the same accuracy."""
    from cosim_np._cpu import spatial_driver

    shapes = []
    planned = spatial_driver._FFTPlan.__init__

    def recording(self, plan, padded_shape):
        planned(self, plan, padded_shape)
        shapes.append(self.shape)

    monkeypatch.setattr(spatial_driver._FFTPlan, "__init__", recording)
    rng = np.random.default_rng(31)
    image, template = rng.standard_normal((20, 300)), rng.standard_normal((17, 17))
    got = sliding_cosine(image, template, axis=(0, 1), method="fft", center=center)
    assert shapes and shapes[0][0] <= 20
    want = sliding_cosine(image, template, axis=(0, 1), method="direct", center=center)
    np.testing.assert_allclose(got, want, rtol=0, atol=64 * 17 * 17 * np.finfo(np.float64).eps)


def test_flat_and_zero_windows_get_fill():
    x = np.zeros((10, 12))
    x[6:, 6:] = 7.0
    k = np.arange(6.0).reshape(2, 3)
    got = sliding_cosine(x, k, axis=(0, 1), fill=-2.0)
    assert np.all(got[:5, :5] == -2.0)
    centered = sliding_cosine(x, k, axis=(0, 1), center=True, fill=-3.0)
    assert np.all(centered[:5, :5] == -3.0) and np.all(centered[6:, 6:] == -3.0)
    assert np.all(np.abs(centered) <= 1) or np.any(centered == -3.0)


def test_windows_far_below_the_largest_sample_are_recomputed_exactly():
    rng = np.random.default_rng(8)
    x = 1e-300 * rng.standard_normal((12, 14))
    x[:, 10:] = 1e200 * rng.standard_normal((12, 4))
    k = rng.standard_normal((3, 3))
    for center in (False, True):
        got = sliding_cosine(x, k, axis=(0, 1), center=center)
        want = naive.spatial_cosine(x[None], k[None, None], center=center)[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
        norms = windowed_norm(x, (3, 3), axis=(0, 1), center=center)
        want_norms = naive.spatial_norms(x[None], (3, 3), (1, 1), ("valid",) * 2, (1, 1), center)
        np.testing.assert_allclose(norms, want_norms, rtol=1e-13, atol=0)


# --- errors name the parameter


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="causal"), "causal"),
    (dict(mode=("valid",)), "mode"),
    (dict(dilation=(1, 2, 3)), "dilation"),
    (dict(stride=(0, 1)), "stride"),
    (dict(axis=(0, 0)), "axis"),
    (dict(axis=(0, 5)), "axis"),
    (dict(dilation=(10, 1)), "longer than the signal"),
    (dict(dilation=(2**62, 1), mode="same"), r"dilation=\(4611686018427387904, 1\) spans .* "
     r"mode='same' would pad the signal \(8 samples there\) .* more than an array can hold"),
    # each axis's padding fits alone, not the two together (NumPy's "array is too big")
    (dict(dilation=2**40, mode="same"), r"mode=\('same', 'same'\) would pad the signal's "
     r"sliding axes to \(1099511627784, 2199023255561\), more than an array can hold"),
])
def test_errors_name_the_parameter(kwargs, message):
    x = np.ones((8, 9))
    k = np.arange(6.0).reshape(2, 3)
    options = dict(axis=(0, 1))
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sliding_cosine(x, k, **options)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dilation", [10**9, 2**63])
def test_a_dilation_along_an_axis_of_one_tap_changes_nothing(method, dilation):
    """One tap spans nothing whatever its dilation, as along one axis: the
    per-axis scans sized their scratch by ``m * d`` (a MemoryError of 447
    GiB for a 20 x 30 image, an exploratory test), and past 2**63 NumPy
    said its OverflowError naming no parameter."""
    rng = np.random.default_rng(0)
    image = rng.random((20, 300))
    template = rng.random((1, 260 if method == "fft" else 3))
    for center in (False, True):
        options = dict(axis=(0, 1), method=method, center=center)
        want = sliding_cosine(image, template, **options)
        np.testing.assert_array_equal(
            sliding_cosine(image, template, dilation=(dilation, 1), **options), want)
        np.testing.assert_array_equal(
            windowed_norm(image, template.shape, axis=(0, 1), center=center,
                          dilation=(dilation, 1), mode=("same", "valid")),
            windowed_norm(image, template.shape, axis=(0, 1), center=center,
                          mode=("same", "valid")))
    assert find_matches(image, template, axis=(0, 1), dilation=(dilation, 1), k=2,
                        method=method) == find_matches(image, template, axis=(0, 1), k=2,
                                                       method=method)


def test_a_noise_floor_far_above_a_faint_image_warns_of_nothing():
    """A faint image is scaled into range, its noise floor with it: one far
    above the image went past float64's range there (inf, as it should)
    with an overflow warning, an error where NumPy raises."""
    image = np.full((4, 4), 1e-300)
    image[1, 2] = 3e-300
    kernel = [[1.0, 2.0], [3.0, 4.0]]
    with np.errstate(all="raise"):
        got = sliding_cosine(image, kernel, axis=(0, 1), noise_floor=1e10)
    np.testing.assert_array_equal(got, np.zeros((3, 3)))


@pytest.mark.parametrize("stride", [2**63, 2**70, 10**30])
def test_a_stride_past_the_windows_keeps_the_first_alone(stride):
    """As along one axis: a stride of any size (past int64, where it raised
    OverflowError) keeps window 0 of its axis, as the windows' count does."""
    x = np.random.default_rng(2).standard_normal((9, 12))
    k = np.arange(6.0).reshape(2, 3)
    for function in (lambda s: sliding_cosine(x, k, axis=(0, 1), stride=(s, 2)),
                     lambda s: windowed_norm(x, (2, 3), axis=(0, 1), stride=(s, 2)),
                     lambda s: sliding_cosine_grad(x, k, np.ones((1, 5)), axis=(0, 1),
                                                   stride=(s, 2)).signal):
        np.testing.assert_array_equal(function(stride), function(8))


def test_kernel_shape_errors():
    x = np.ones((2, 8, 9))
    with pytest.raises(ValueError, match="kernel must have shape"):
        sliding_cosine(x, np.ones(3), axis=(1, 2))
    with pytest.raises(ValueError, match="C_in=3"):
        sliding_cosine(x, np.ones((4, 3, 2, 2)), axis=(1, 2))
    with pytest.raises(ValueError, match="channel axis"):
        sliding_cosine(x[0], np.ones((4, 3, 2, 2)), axis=(0, 1))
    with pytest.raises(ValueError, match="window"):
        windowed_norm(x, (2, 2, 2), axis=(1, 2))


# --- find_matches over two axes


@pytest.mark.parametrize("sign", ["both", "positive", "negative"])
@given(data=st.data())
def test_find_matches_is_the_greedy_selection_of_the_scores(sign, data):
    """Against ``naive.greedy_box_matches`` over two and three axes, NaN
    pixels included; with ``k``, the best candidates sorted first are as few
    as one per match (``config.MATCH_CANDIDATES_PER_K``), so that the
    selection must go back for more."""
    from cosim_np._core import config

    r = data.draw(st.sampled_from([2, 2, 3]))
    shape = tuple(data.draw(st.integers(4, 14 if r == 2 else 6)) for _ in range(r))
    nker = data.draw(st.integers(1, 3))
    # (float16: the scores are rounded to float16 before they are selected)
    dtype = data.draw(st.sampled_from([np.float64, np.float32, np.float16]))
    x = data.draw(arrays(dtype, shape, elements(dtype, 10)))
    if data.draw(st.booleans()):
        x[tuple(data.draw(st.integers(0, n - 1)) for n in shape)] = np.nan
    m = tuple(data.draw(st.integers(1, 3)) for _ in range(r))
    kernels = data.draw(arrays(np.float64, (nker,) + m, elements(np.float64, 10)))
    exclusion = data.draw(st.one_of(st.none(), st.integers(0, 3),
                                    st.tuples(*[st.integers(0, 3)] * r)))
    k = data.draw(st.one_of(st.none(), st.integers(0, 5)))
    threshold = data.draw(st.one_of(st.none(), st.floats(-1, 1)))
    kernel = kernels if nker > 1 else kernels[0]
    batch = data.draw(st.sampled_from([None, 2]))
    if batch:  # a second image: the first one's pixels in another order
        x = np.stack([x, np.flip(x)])
    axes = tuple(range(x.ndim - r, x.ndim))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "MATCH_CANDIDATES_PER_K", data.draw(st.sampled_from([1, 64])))
        # bands of one to three rows, and slabs of one band: the scores a
        # few rows at a time, each slab's first rows those of the one before
        patch.setattr(config, "SPATIAL_BAND_ROWS", data.draw(st.sampled_from([1, 3, 64])))
        patch.setattr(config, "SPATIAL_BAND_WINDOWS", 1)
        found = find_matches(x, kernel, axis=axes, k=k, exclusion=exclusion, sign=sign,
                             threshold=threshold, max_memory=data.draw(st.sampled_from([1, None])))
        scores = sliding_cosine(x, kernel, axis=axes)
    scores = scores.reshape((batch or 1, nker) + scores.shape[scores.ndim - r:])
    zone = exclusion if exclusion is not None else tuple((mm - 1 + 1) // 2 for mm in m)
    zone = zone if isinstance(zone, tuple) else (zone,) * r
    want = [(b,) + match for b in range(batch or 1)
            for match in naive.greedy_box_matches(scores[b], k, threshold, zone, sign)]
    # best key first over the batch; ties by batch index, position, kernel
    key = {"both": abs, "positive": float, "negative": lambda s: -s}[sign]
    want.sort(key=lambda match: -key(match[3]))
    got = [(int(b[0]) if batch else 0, tuple(int(i) for i in index), int(kern), score)
           for index, score, kern, b in zip(found.index, found.score, found.kernel,
                                            found.batch if batch else [0] * len(found))]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    np.testing.assert_array_equal([g[3] for g in got], [w[3] for w in want])
    assert found.index.shape == (len(want), r) and found.exclusion == zone


@pytest.mark.parametrize("dtype, room", [(np.float16, 1 << 22), (np.float32, 1 << 22),
                                         (np.float64, 1 << 22), (np.float64, 1),
                                         (np.float32, 3)])
@given(data=st.data())
def test_candidates_are_the_local_maxima_of_the_keys(dtype, room, data):
    """The candidates' pass (``_cpu.spatial_matches``) against the definition
    in ``naive.greedy_box_matches``: ties, NaN and missing neighbours as
    ``-inf``, one to three axes; with room for few candidates, the rows a
    few at a time."""
    from cosim_np._core import config
    from cosim_np._cpu.spatial_matches import _local_maxima

    r = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 3)),) + tuple(data.draw(st.integers(1, 6))
                                                   for _ in range(r))
    values = st.sampled_from([np.nan, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0])
    scores = data.draw(arrays(dtype, shape, values))
    sign = data.draw(st.sampled_from([0, 1, -1]))
    threshold = data.draw(st.sampled_from([-np.inf, -0.5, 0.0, 0.5]))
    key = np.abs(scores.astype(np.float64)) if sign == 0 else sign * scores.astype(np.float64)
    key = np.where(np.isnan(key), -np.inf, key)
    want = []
    for index in np.ndindex(*shape):
        value = key[index]
        peak = value > -np.inf and value >= threshold
        for axis in range(1, key.ndim):
            for step, above in ((-1, True), (1, False)):
                near = list(index)
                near[axis] += step
                if 0 <= near[axis] < shape[axis]:
                    other = key[tuple(near)]
                    peak = peak and (value > other if above else value >= other)
        if peak:
            want.append((index[0], np.ravel_multi_index(index[1:], shape[1:]), value))
    def gathered(*window):  # the blocks' candidates, copied out (the arrays are reused)
        parts = []
        _local_maxima(scores, sign, threshold, lambda *part: parts.append(
            tuple(array.copy() for array in part)), *window)
        return tuple(np.concatenate(arrays) for arrays in zip(*parts)) if parts else (
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    saved, config.MATCH_CANDIDATE_ROOM = config.MATCH_CANDIDATE_ROOM, room
    try:
        kernel, flat, found, score = gathered()
        # the rows from the second to the last but one (of the first of
        # several sliding axes), their neighbours read
        plane = int(np.prod(shape[2:])) if r > 1 else 0
        part = gathered(plane, (shape[1] - 1) * plane)
    finally:
        config.MATCH_CANDIDATE_ROOM = saved
    assert list(zip(kernel.tolist(), flat.tolist(), found.tolist())) == want
    np.testing.assert_array_equal(score, scores.reshape(shape[0], -1)[kernel, flat])
    inner = [w for w in want if plane <= w[1] < (shape[1] - 1) * plane]  # (none for r = 1)
    assert list(zip(part[0].tolist(), part[1].tolist(), part[2].tolist())) == inner


@given(keys=arrays(np.float64, st.integers(0, 40), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
       nker=st.sampled_from([1, 2]))
def test_candidates_are_ordered_best_first_ties_by_position(keys, nker):
    from cosim_np._cpu.spatial_matches import _best_first

    kernel = np.arange(keys.size) * nker // max(1, keys.size)  # listed by kernel
    flat = np.arange(keys.size) % max(1, -(-keys.size // nker))  # then by position
    order = _best_first(kernel, flat, keys, one_kernel=nker == 1)
    np.testing.assert_array_equal(order, np.lexsort((kernel, flat, -keys)))


@pytest.mark.parametrize("case", [
    dict(kernel=(3, 3), k=5, exclusion=1),  # direct dots; the pool cut back many times
    dict(kernel=(2, 3, 3), k=4, exclusion=(1, 2), sign="positive"),  # a bank
    dict(kernel=(17, 17), k=3, method="fft", mode="same", center=True),  # FFT bands
    dict(kernel=(3, 3), threshold=0.6),  # no k: every candidate kept
    dict(kernel=(3, 4), k=5, dilation=(2, 1), mode="full"),
    dict(kernel=(3, 3), k=5, dtype=np.float64, tiny=True),  # windows recomputed one by one
])
def test_find_matches_over_an_image_a_slab_of_scores_at_a_time(case, monkeypatch):
    """With little ``max_memory`` the scores come a slab of whole bands at a
    time (bands of two rows here, a hundred slabs; four FFT bands), the candidates of each
    batch index cut back to the pool as they come, and the matches are
    those of the whole scores (``naive.greedy_box_matches``), exactly."""
    from cosim_np._core import config

    rng = np.random.default_rng(27)
    case = dict(case)
    x = rng.standard_normal((2, 210, 60)).astype(case.pop("dtype", np.float32))
    x[1, 100:103, 20:23] = np.nan
    if case.pop("tiny", False):  # squares that would underflow, in three slabs
        x[0, 30:34, 10:14] *= 1e-300
        x[1, 150:152, 40:50] *= 1e-300
    kernel = rng.standard_normal(case.pop("kernel"))
    options = {key: case.pop(key) for key in ("method", "mode", "center", "dilation")
               if key in case}
    monkeypatch.setattr(config, "SPATIAL_BAND_ROWS", 2)
    monkeypatch.setattr(config, "SPATIAL_BAND_WINDOWS", 1)
    monkeypatch.setattr(config, "SPATIAL_FFT_ROWS", 32)  # (FFT bands of 56 rows)
    found = find_matches(x, kernel, axis=(1, 2), max_memory=1, **case, **options)
    scores = sliding_cosine(x, kernel, axis=(1, 2), **options)
    scores = scores.reshape((2, -1) + scores.shape[-2:])
    dilation = options.get("dilation", (1, 1))
    zone = case.get("exclusion", tuple(((m - 1) * d + 1) // 2
                                       for m, d in zip(kernel.shape[-2:], dilation)))
    zone = zone if isinstance(zone, tuple) else (zone,) * 2
    key = {"both": abs, "positive": float, "negative": lambda s: -s}[case.get("sign", "both")]
    want = sorted([(b,) + match for b in range(2) for match in naive.greedy_box_matches(
        scores[b], case.get("k"), case.get("threshold"), zone, case.get("sign", "both"))],
        key=lambda match: -key(match[3]))
    assert len(want) == 2 * case["k"] if "k" in case else len(want) > 100
    assert [(int(b[0]), tuple(map(int, i)), int(kk)) for b, i, kk in
            zip(found.batch, found.index, found.kernel)] == [w[:3] for w in want]
    assert found.score.dtype == x.dtype
    np.testing.assert_array_equal(found.score, np.array([w[3] for w in want], x.dtype))


@pytest.mark.parametrize("nker", [1, 2])
def test_find_matches_over_an_image_with_a_callable_threshold(nker):
    """A callable threshold is called once per batch index with that
    index's keys (``(K, H', W')``, or ``(H', W')`` for one kernel; NaN where
    the score is NaN), and its value selects as a number would."""
    rng = np.random.default_rng(29)
    x = rng.standard_normal((2, 40, 30))
    x[1, 10, 10] = np.nan
    kernel = rng.standard_normal((nker, 3, 3)) if nker > 1 else rng.standard_normal((3, 3))
    seen = []

    def threshold(keys):
        seen.append(keys.copy())
        return np.nanmedian(keys) + 2 * np.nanstd(keys)

    found = find_matches(x, kernel, axis=(1, 2), threshold=threshold, k=6)
    scores = sliding_cosine(x, kernel, axis=(1, 2)).reshape((2, nker, 38, 28))
    assert len(seen) == 2
    want = []
    for b in range(2):
        keys = np.abs(scores[b] if nker > 1 else scores[b, 0])
        np.testing.assert_array_equal(seen[b], keys)
        assert np.isnan(seen[b]).any() == (b == 1)
        limit = np.nanmedian(keys) + 2 * np.nanstd(keys)
        want += [(b,) + match for match in naive.greedy_box_matches(scores[b], 6, limit, (1, 1))]
    want.sort(key=lambda match: -abs(match[3]))
    assert [(int(b[0]), tuple(map(int, i)), int(kk)) for b, i, kk in
            zip(found.batch, found.index, found.kernel)] == [w[:3] for w in want]
    assert found.threshold is None  # (a callable's values are per batch index)


@pytest.mark.parametrize("huge", [2**63 - 1, 2**63, 2**70])
def test_an_exclusion_past_the_windows_excludes_the_whole_axis(huge):
    """An exclusion of any size (the largest int64 and beyond it, where
    ``exclusion + 1`` overflowed and no zone was kept) is that of the
    windows along its axis, as along one axis."""
    x = np.random.default_rng(0).standard_normal((20, 30))
    kernel = np.eye(3)
    for exclusion in (huge, (1, huge), (huge, 2)):
        found = find_matches(x, kernel, axis=(0, 1), exclusion=exclusion)
        zone = tuple(min(e, n) for e, n in zip(
            exclusion if isinstance(exclusion, tuple) else (exclusion,) * 2, (18, 28)))
        want = find_matches(x, kernel, axis=(0, 1), exclusion=zone)
        np.testing.assert_array_equal(found.index, want.index)
        assert found.exclusion == (exclusion if isinstance(exclusion, tuple) else (huge, huge))
    assert len(find_matches(x, kernel, axis=(0, 1), exclusion=huge)) == 1


@given(parts=st.lists(arrays(np.float64, st.integers(0, 6), st.sampled_from([0.1, 0.5, 0.9])),
                      max_size=6),
       size=st.integers(1, 4))
def test_the_pool_keeps_the_best_candidates_in_the_selections_order(parts, size):
    from cosim_np._cpu.spatial_matches import _Pool

    pool = _Pool(size)
    start = 0
    for part in parts:  # (the arrays are overwritten after each add, as the scan does)
        keys, flat = part.copy(), np.arange(start, start + part.size)
        pool.add(flat % 2, flat, keys, -keys)
        keys[...], flat[...] = -1.0, -1
        start += part.size
    kernel, flat, key, score = pool.arrays()
    every = np.concatenate([np.zeros(0)] + parts)
    assert np.all(np.diff(flat) > 0) and np.all(kernel == flat % 2)
    np.testing.assert_array_equal(score, -key)
    if every.size > size:  # the best ``size`` in the selection's order: key, position, kernel
        positions = np.arange(every.size)
        best = np.lexsort((positions % 2, positions, -every))[:size]
        np.testing.assert_array_equal(flat, np.sort(best))
    else:
        assert key.size == every.size


def test_find_matches_over_an_image_holds_about_max_memory():
    """Traced allocations of a call on a 1500 x 1500 image with
    ``max_memory="1MiB"``: a fraction of the 9 MB of its scores, where
    ``sliding_cosine`` alone holds them all."""
    import tracemalloc

    rng = np.random.default_rng(28)
    x = rng.standard_normal((1500, 1500)).astype(np.float32)
    template = x[700:708, 300:308].copy()
    found = find_matches(x[:200, :200], template, axis=(0, 1), k=3)  # (compiled first)
    tracemalloc.start()
    try:
        found = find_matches(x, template, axis=(0, 1), k=3, max_memory="1MiB")
        held = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        sliding_cosine(x, template, axis=(0, 1))
        whole = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.index[0].tolist() == [700, 300]
    assert whole > 1493**2 * 4 and held < 4 * 2**20, (held, whole)


def test_find_matches_over_an_image_of_equal_scores_holds_its_pool():
    """A lattice of equal dots: every dot's window scores the same bits.
    The candidates kept for ``k`` are the best ``pool`` in the selection's
    order, ties by position; keeping every tie of the last held all 62,500
    dots (9 MiB under ``max_memory="1MiB"``), and the time grew with their
    square (an exploratory test)."""

    kernel = np.full((3, 3), 0.1, np.float32)
    kernel[1, 1] = 1.1
    image = np.zeros((1000, 1000), np.float32)
    image[::4, ::4] = 1.0
    find_matches(image[:50, :50], kernel, axis=(0, 1), k=2)  # (compiled first)
    found, peak = traced_peak(lambda: find_matches(image, kernel, axis=(0, 1), k=3,
                                                   max_memory="1MiB"))
    # ties by position: the first dots in row-major order (the edge's dot
    # at 1 is a window's centre at 0 in mode 'valid': none; they start at 3)
    assert found.index.tolist() == [[3, 3], [3, 7], [3, 11]]
    assert peak < 2.5 * 2**20, peak
    every = find_matches(image[:200, :200], kernel, axis=(0, 1))
    first = find_matches(image[:200, :200], kernel, axis=(0, 1), k=40)
    assert np.array_equal(first.index, every.index[:40])
    assert np.array_equal(first.score, every.score[:40])


@pytest.mark.parametrize("case", ["direct", "fft", "center", "channels", "tiny"])
def test_find_matches_over_many_small_images_takes_blocks_of_them(case):
    """A batch whose band of scores outgrows ``max_memory`` is searched a
    block of batch indices at a time, with the matches of the whole call.
    A slab spanned every batch index: 80 MiB for 20,000 images of 32 x 32
    under ``max_memory="16MiB"`` (an exploratory test)."""
    rng = np.random.default_rng(31)
    dtype = np.float64 if case == "tiny" else np.float32
    shape = (300, 2, 12, 12) if case == "channels" else (300, 12, 12)
    images = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal(shape[1:-2] + (3, 3)).astype(dtype)
    if case == "tiny":  # (windows of samples far below the largest: recomputed one by one)
        images[7] *= 1e-300
        images[8, 0, 0] = 1e300
    axis = (-2, -1)
    options = dict(axis=axis, k=2, method="fft" if case == "fft" else "direct",
                   center=case == "center")
    whole = find_matches(images, kernel, **options)
    for budget in ("8KiB", "96KiB"):  # (blocks of one image, and of several)
        assert find_matches(images, kernel, max_memory=budget, **options) == whole
    assert set(whole.batch[:, 0].tolist()) == set(range(300))


def test_find_matches_over_many_small_images_holds_about_max_memory():
    images = np.random.default_rng(32).standard_normal((20_000, 32, 32), dtype=np.float32)
    kernel = (np.ones((5, 5)) + np.eye(5)).astype(np.float32)
    find_matches(images[:2], kernel, axis=(1, 2), threshold=0.9)  # (compiled first)
    found, peak = traced_peak(lambda: find_matches(images, kernel, axis=(1, 2), threshold=0.9,
                                                   max_memory="16MiB"))
    assert len(found) == 0 and peak < 16 * 2**20, peak


def test_a_batch_of_images_takes_its_window_sums_a_block_of_images_at_a_time():
    """The window statistics of a band were taken over every image of a
    batch at once: centered FFT scores of 400 images of 64 x 64 held 44 MiB
    beyond their result, find_matches with max_memory='4MiB' 30 MiB, and
    800 images of 256 x 256 took 2.3 GiB (an exploratory tester's reading);
    now a block of images at a time, whatever the batch."""
    from tests.memory import traced_peak_in_a_new_thread

    rng = np.random.default_rng(33)
    images = rng.standard_normal((400, 64, 64)).astype(np.float32)
    template = rng.standard_normal((16, 16)).astype(np.float32)
    calls = (lambda: sliding_cosine(images, template, axis=(1, 2), center=True, method="fft"),
             lambda: windowed_norm(images, (8, 8), axis=(1, 2), center=True),
             lambda: find_matches(images, template, axis=(1, 2), k=2, center=True, method="fft",
                                  max_memory="4MiB"))
    for call in calls:
        call()  # (compiled first)
        result, peak = traced_peak_in_a_new_thread(call)
        beyond = peak - getattr(result, "nbytes", 0)
        assert beyond < 12 * 2**20 + (4 * 2**20 if isinstance(result, Matches) else 0), beyond


@pytest.mark.parametrize("center", [False, True])
def test_images_in_blocks_keep_their_bits(monkeypatch, center):
    """A window's sums are its image's own: blocks of one image give the
    bits of the whole batch at once (FFT, products, norms)."""
    rng = np.random.default_rng(34)
    images = rng.standard_normal((5, 2, 30, 41)).astype(np.float32)
    images[1, 0, 4, 6] = np.nan
    calls = [lambda kernel=kernel, method=method: sliding_cosine(
                 images, kernel, axis=(2, 3), center=center, method=method)
             for kernel, method in ((rng.standard_normal((7, 9)), "fft"),
                                        (rng.standard_normal((3, 2, 4, 4)), "fft"),
                                        (rng.standard_normal((3, 2, 4, 4)), "direct"))]
    calls.append(lambda: windowed_norm(images, (6, 5), axis=(2, 3), center=center, stride=2))
    whole = [call() for call in calls]
    monkeypatch.setattr(config, "SPATIAL_BAND_SAMPLES", 1)
    for call, want in zip(calls, whole):
        np.testing.assert_array_equal(call(), want)


def test_find_matches_finds_a_template_cut_from_a_photograph():
    data = pytest.importorskip("skimage.data")
    picture = data.camera().astype(np.float64)
    template = picture[200:232, 300:340].copy()
    found = find_matches(picture, template, axis=(0, 1), k=1)
    assert found.index.tolist() == [[200, 300]] and found.score[0] == pytest.approx(1.0)
    # rescaled, negated and offset: Pearson's correlation still finds it, at -1
    changed = 10.0 - 3.0 * picture
    found = find_matches(changed, template, axis=(0, 1), k=1, center=True)
    assert found.index.tolist() == [[200, 300]] and found.score[0] == pytest.approx(-1.0)
    # a bank over a batch of images: each template where it lies, in each image
    batch = np.stack([picture, np.roll(picture, (17, -23), axis=(0, 1))])
    bank = np.stack([template, picture[40:72, 100:140]])
    found = find_matches(batch, bank, axis=(1, 2), k=2, threshold=0.999)
    seen = {(int(b[0]), int(kern)): list(map(int, index))
            for index, kern, b in zip(found.index, found.kernel, found.batch)}
    assert seen == {(0, 0): [200, 300], (0, 1): [40, 100], (1, 0): [217, 277],
                    (1, 1): [57, 77]}


# --- the anchors: equal where they are right, exact where they fail


def _photograph(m=0):
    data = pytest.importorskip("skimage.data")
    return data.camera().astype(np.float64) / 255.0


@pytest.mark.parametrize("m", [3, 8, 32])
def test_equals_opencv_on_photographs(m):
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    picture = _photograph().astype(np.float32)
    template = picture[100 : 100 + m, 200 : 200 + m + 1].copy()
    theirs = cv2.matchTemplate(picture, template, cv2.TM_CCORR_NORMED)
    np.testing.assert_allclose(sliding_cosine(picture, template, axis=(0, 1)), theirs, rtol=0,
                               atol=2e-5)  # (OpenCV's own float32 error is the larger)
    # centered, OpenCV's running sums hold on a texture without flat patches ...
    grass = (data.grass() / 255.0).astype(np.float32)
    patch = grass[100 : 100 + m, 200 : 200 + m + 1].copy()
    theirs = cv2.matchTemplate(grass, patch, cv2.TM_CCOEFF_NORMED)
    np.testing.assert_allclose(sliding_cosine(grass, patch, axis=(0, 1), center=True), theirs,
                               rtol=0, atol=2e-4)
    # ... and lose digits where the photograph is flat (the sky): ours to the float32 rounding
    want = naive_valid(picture, template)
    ours = sliding_cosine(picture, template, axis=(0, 1), center=True)
    np.testing.assert_allclose(ours, want, rtol=0, atol=tolerance(np.float32, template.size))
    if m == 3:
        theirs = cv2.matchTemplate(picture, template, cv2.TM_CCOEFF_NORMED)
        assert np.nanmax(np.abs(theirs - want)) > 0.1


def naive_valid(x, k):
    """Every valid window's Pearson correlation with ``k``, two passes per
    window in long double (vectorised: the photographs' windows are many)."""
    x = np.asarray(x, dtype=np.longdouble)
    k = np.asarray(k, dtype=np.longdouble)
    w = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    w = w - w.mean(axis=(-2, -1), keepdims=True)
    k = k - k.mean()
    norms = np.sqrt(np.einsum("ijab,ijab->ij", w, w) * np.sum(k * k))
    dots = np.einsum("ijab,ab->ij", w, k)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0).astype(np.float64)


@pytest.mark.parametrize("mode, pad_input", [("valid", False), ("same", True)])
def test_equals_scikit_image_match_template_on_a_photograph(mode, pad_input):
    feature = pytest.importorskip("skimage.feature")
    picture = _photograph()[::2, ::2] + 3.0
    template = picture[60:71, 90:98].copy()
    theirs = feature.match_template(picture, template, pad_input=pad_input)
    ours = sliding_cosine(picture, template, axis=(0, 1), center=True, mode=mode)
    # (scikit-image's FFT and integral images err by some 1e-8 on this offset image)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
    if mode == "valid":
        kappa = max(_kappa(w) for _, w in naive.spatial_windows(
            picture[None, :40, :40], template.shape, (1, 1), ("valid",) * 2, (1, 1)))
        np.testing.assert_allclose(ours[:30, :33], naive_valid(picture[:40, :40], template),
                                   rtol=0, atol=tolerance(np.float64, template.size, kappa=kappa))


def test_exact_where_the_anchors_fail():
    cv2 = pytest.importorskip("cv2")
    feature = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(9)
    # a bright pixel in quiet noise: the anchors' four-corner differences lose the windows
    # without it (OpenCV's plain scores leave [-1, 1] by orders of magnitude)
    x = 1e-3 * rng.standard_normal((40, 40))
    x[20, 20] = 1e8
    k = rng.standard_normal((6, 6))
    holds = np.zeros((35, 35), bool)
    holds[15:21, 15:21] = True
    want = naive.spatial_cosine(x[None], k[None, None], center=True)[0]
    theirs = feature.match_template(x, k)
    assert np.max(np.abs(theirs - want)[~holds]) > 1e-2
    ours = sliding_cosine(x, k, axis=(0, 1), center=True)
    np.testing.assert_allclose(ours[~holds], want[~holds], rtol=0, atol=tolerance(np.float64, 36))
    plain = cv2.matchTemplate(x.astype(np.float32), k.astype(np.float32), cv2.TM_CCORR_NORMED)
    assert np.max(np.abs(plain)) > 1.5
    assert np.max(np.abs(sliding_cosine(x.astype(np.float32), k, axis=(0, 1)))) <= 1
    # scikit-image's test_no_nans image: no NaN there, but 0.4 off; ours to the data's digits
    x = 0.5 + 1e-9 * np.random.default_rng(1).standard_normal((20, 20))
    t = np.ones((6, 6))
    t[:3] = 0
    want = naive.spatial_cosine(x[None], t[None, None], center=True)[0]
    assert np.max(np.abs(feature.match_template(x, t) - want)) > 0.1
    kappa = max(_kappa(w) for _, w in naive.spatial_windows(x[None], (6, 6), (1, 1),
                                                            ("valid",) * 2, (1, 1)))
    np.testing.assert_allclose(sliding_cosine(x, t, axis=(0, 1), center=True), want, rtol=0,
                               atol=tolerance(np.float64, 36, kappa=kappa))
    # its test_bounding_values case: scores never leave [-1, 1]
    data = pytest.importorskip("skimage.data")
    page = data.page().astype(np.float64) / 255.0
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    ours = sliding_cosine(page, delta, axis=(0, 1), center=True)
    assert ours.max() <= 1.0 and ours.min() >= -1.0


# --- gradients over several axes


@st.composite
def gradient_problems(draw):
    """A small well-conditioned image problem: signal, kernel, grad_output,
    options (see tests/test_grad.py for the tolerance)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["one", "bank", "channels", "volume"]))
    modes = tuple(draw(st.sampled_from(["valid", "same", "full"])) for _ in range(2))
    m = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    shape = tuple((mm - 1) * dd + 1 + draw(st.integers(0, 3)) for mm, dd in zip(m, dilation))
    axis = (-2, -1)
    if kind == "one":
        signal, kernel = rng.standard_normal(shape), rng.standard_normal(m)
    elif kind == "bank":
        signal, kernel = rng.standard_normal((2,) + shape), rng.standard_normal((2,) + m)
    elif kind == "channels":
        signal, kernel = rng.standard_normal((2,) + shape), rng.standard_normal((3, 2) + m)
    else:
        m, dilation, modes = (2,) + m, (1,) + dilation, ("same",) + modes
        signal, kernel = rng.standard_normal((3,) + shape), rng.standard_normal(m)
        axis = (0, 1, 2)
    options = dict(axis=axis, mode=modes, dilation=dilation,
                   sharpness=draw(st.sampled_from([1.0, 1.25, 1.6])),
                   noise_floor=draw(st.sampled_from([0.0, 0.4])), center=draw(st.booleans()),
                   stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2)))
                   if kind != "volume" else 1)
    g = rng.standard_normal(sliding_cosine(signal, kernel, **options).shape)
    norms = windowed_norm(signal, m, axis=axis if kind != "channels" else (-2, -1),
                          dilation=dilation, mode=modes, center=options["center"])
    assume(np.min(norms) > 0.05)
    # nor, when sharpened, a cosine within the differences' steps of 0, where
    # the power's higher derivatives are unbounded (as in tests/test_grad.py)
    if options["sharpness"] != 1.0:
        plain = sliding_cosine(signal, kernel, **dict(options, sharpness=1.0))
        assume(np.min(np.abs(plain)) > 1e-3)
    return signal, kernel, g, options


@given(problem=gradient_problems())
def test_gradients_match_finite_differences(problem):
    signal, kernel, g, options = problem
    got = sliding_cosine_grad(signal, kernel, g, **options)
    assert got.signal.shape == signal.shape and got.kernel.shape == kernel.shape
    assert_close_to_differences(got, finite_differences(signal, kernel, g, options))


@pytest.mark.parametrize("center", [False, True])
def test_gradients_agree_with_a_conv2d_layer(center):
    """The 2-D sharpened-cosine layer written with ``conv2d`` (the dots, and
    the window norms as a convolution of squares with ones), differentiated
    by PyTorch's autograd."""
    torch = pytest.importorskip("torch")
    conv2d = torch.nn.functional.conv2d
    rng = np.random.default_rng(12)
    signal = rng.standard_normal((2, 3, 12, 13)) + (4.0 if center else 0.0)
    kernel = rng.standard_normal((4, 3, 3, 2))
    g = rng.standard_normal((2, 4, 4, 12))
    x = torch.tensor(signal, requires_grad=True)
    k = torch.tensor(kernel, requires_grad=True)
    p = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    ones = torch.ones((1, 3, 3, 2), dtype=torch.float64)
    options = dict(stride=(2, 1), dilation=(2, 1))
    if center:
        kc = k - k.mean(dim=(1, 2, 3), keepdim=True)
        sums = conv2d(x, ones, **options)
        squares = conv2d(x * x, ones, **options)
        norms = torch.sqrt(squares - sums * sums / 18.0)  # benign data: no offset to lose
    else:
        kc = k
        norms = torch.sqrt(conv2d(x * x, ones, **options))
    khat = kc / kc.flatten(1).norm(dim=1)[:, None, None, None]
    s = conv2d(x, khat, **options) / (norms + q)
    out = torch.sign(s) * s.abs() ** (p**2)
    (out * torch.tensor(g)).sum().backward()
    got = sliding_cosine_grad(signal, kernel, g, axis=(2, 3), sharpness=1.3, noise_floor=0.25,
                              center=center, **options)
    np.testing.assert_allclose(got.signal, x.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.kernel, k.grad.numpy(), rtol=1e-8, atol=1e-10)
    assert got.sharpness == pytest.approx(p.grad.item(), rel=1e-8)
    assert got.noise_floor == pytest.approx(q.grad.item(), rel=1e-8)


def test_gradients_are_float32_for_float32_and_check_grad_output():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((10, 12)).astype(np.float32)
    k = rng.standard_normal((3, 3))
    got = sliding_cosine_grad(x, k, np.ones((8, 10)), axis=(0, 1))
    assert got.signal.dtype == np.float32 and got.kernel.dtype == np.float32
    with pytest.raises(ValueError, match="grad_output"):
        sliding_cosine_grad(x, k, np.ones((8, 9)), axis=(0, 1))


@pytest.mark.parametrize("method, kernel_shape", [("direct", (3, 4)), ("direct", (6, 2, 3, 3)),
                                                  ("fft", (5, 5)), ("fft", (2, 2, 3, 3))])
@pytest.mark.parametrize("center", [False, True])
def test_the_same_bits_whatever_the_thread_count(monkeypatch, method, kernel_shape, center):
    """Bands start where the shapes alone put them (short bands here, so that
    there are several, an odd count before the FFT's evening), so one
    thread and two give the same bits; so do the gradients."""
    import numba

    from cosim_np._core import config

    monkeypatch.setattr(config, "SPATIAL_BAND_ROWS", 4)
    monkeypatch.setattr(config, "SPATIAL_BAND_WINDOWS", 1)
    monkeypatch.setattr(config, "SPATIAL_FFT_ROWS", 16)
    rng = np.random.default_rng(7)
    kernel = rng.standard_normal(kernel_shape)
    image = rng.standard_normal((2, 2, 101, 23) if kernel.ndim == 4 else (2, 101, 23))
    image[0, ..., 40, 7] = 1e8  # a loud pixel: windows whose dots the FFT leaves to the loops
    options = dict(axis=(-2, -1), mode="same", center=center, sharpness=1.5, method=method)
    g = rng.standard_normal(sliding_cosine(image, kernel, **options).shape)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append((sliding_cosine(image, kernel, **options),
                            windowed_norm(image, kernel_shape[-2:], axis=(-2, -1), mode="same",
                                          center=center),
                            *sliding_cosine_grad(image, kernel, g, **options)))
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("center", [False, True])
def test_narrow_images_take_tall_bands_of_the_same_bits(monkeypatch, center):
    """A band costs some tens of microseconds in Python whatever its width:
    an image three pixels wide took bands of 64 rows, 25 times its
    transpose's time.  Its bands now hold ``config.SPATIAL_BAND_WINDOWS``
    windows or more, and give the bits of bands of 64 rows."""
    calls = []
    band = spatial_driver._Bands.band
    monkeypatch.setattr(spatial_driver._Bands, "band",
                        lambda self, *args: calls.append(args[:2]) or band(self, *args))
    rng = np.random.default_rng(5)
    image, template = rng.standard_normal((3000, 3)), rng.standard_normal((3, 3))
    image[1000, 1] = 1e8
    options = dict(axis=(0, 1), center=center, sharpness=1.5, method="direct")
    g = rng.standard_normal((2998, 1))
    results, bands = [], []
    for windows in (config.SPATIAL_BAND_WINDOWS, 1):
        monkeypatch.setattr(config, "SPATIAL_BAND_WINDOWS", windows)
        calls.clear()
        results.append((sliding_cosine(image, template, **options),
                        windowed_norm(image, (3, 3), axis=(0, 1), center=center),
                        *sliding_cosine_grad(image, template, g, **options)))
        bands.append(len(calls))
    assert bands[0] <= 2 < 40 < bands[1]  # (the forward's, and the gradient's)
    for tall, short in zip(*results):
        np.testing.assert_array_equal(tall, short)


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("kernel_shape, image_shape", [((5, 5), (2, 101, 29)),
                                                       ((2, 2, 3, 3), (2, 2, 101, 29)),
                                                       ((3, 2, 3), (2, 40, 11, 13))])
@pytest.mark.parametrize("center", [False, True])
def test_kept_scratch_arrays_leave_no_trace(monkeypatch, kernel_shape, image_shape, center):
    """The FFT path's bands reuse each thread's arrays between bands and
    calls (``_cpu.scratch``), so they may hold anything when a band starts:
    the same bits with arrays that hold NaN as with fresh zeros (several
    bands and a shorter last one, blocks padded along every axis)."""
    from cosim_np._core import config
    from cosim_np._cpu import scratch

    monkeypatch.setattr(config, "SPATIAL_FFT_ROWS", 16)
    rng = np.random.default_rng(11)
    kernel = rng.standard_normal(kernel_shape)
    image = rng.standard_normal(image_shape)
    r = len(kernel_shape) - (2 if len(kernel_shape) == 4 else 0)
    options = dict(axis=tuple(range(-r, 0)), mode="same", center=center, method="fft")
    results = []
    for fill in (0.0, np.nan):
        monkeypatch.setattr(scratch, "empty", lambda use, shape, dtype=np.float64, fill=fill:
                            np.full(shape, fill, dtype))
        results.append((sliding_cosine(image, kernel, **options),
                        windowed_norm(image, kernel_shape[-r:], axis=options["axis"],
                                      mode="same", center=center)))
    for one, two in zip(*results):
        assert np.isfinite(one).all()
        np.testing.assert_array_equal(one, two)
