"""``stride=``: every ``stride``-th window of the mode, for ``sliding_cosine``,
``windowed_norm`` and ``sliding_cosine_grad`` (its finite differences are in
``tests/test_grad.py``; the Dask, xarray, CUDA and PyTorch sides beside
their other tests).  Strided results are those of ``stride=1`` sliced, bit
for bit, whichever way the dots are made."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import sliding_cosine, sliding_cosine_grad, windowed_norm
from cosim_np._core import sliding as plans
from tests.memory import traced_peak
from tests.strategies import METHODS, arrays, window_geometry


@st.composite
def strided_problems(draw):
    n, m, dilation, mode = draw(window_geometry(max_n=40, max_m=6))
    shape = draw(st.sampled_from(["one", "bank", "channels"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if shape == "one":
        signal, kernel = draw(arrays(dtype, (2, n))), draw(arrays(np.float64, m))
    elif shape == "bank":
        signal, kernel = draw(arrays(dtype, (2, n))), draw(arrays(np.float64, (3, m)))
    else:
        signal, kernel = draw(arrays(dtype, (2, n))), draw(arrays(np.float64, (3, 2, m)))
    center = draw(st.booleans())
    flat = np.reshape(kernel, (-1, m) if shape != "channels" else (3, -1))
    if center and np.any(np.all(flat == flat[:, :1], axis=1)):
        center = False  # (a constant kernel is an error with center)
    options = dict(mode=mode, dilation=dilation, center=center,
                   sharpness=draw(st.sampled_from([1.0, 1.5])),
                   noise_floor=draw(st.sampled_from([0.0, 0.5])), fill=0.25,
                   method=draw(METHODS))
    return signal, kernel, options, draw(st.integers(1, 5))


@pytest.mark.usefixtures("fft_engine")
@given(problem=strided_problems())
def test_every_stride_th_window_of_the_mode(problem):
    signal, kernel, options, stride = problem
    every = sliding_cosine(signal, kernel, **options)
    got = sliding_cosine(signal, kernel, stride=stride, **options)
    want = every[..., ::stride]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@given(geometry=window_geometry(max_n=40, max_m=6), stride=st.integers(1, 6),
       center=st.booleans(), data=st.data())
def test_windowed_norm_keeps_every_stride_th_norm_bit_for_bit(geometry, stride, center, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, (3, n)))
    every = windowed_norm(signal, m, dilation=dilation, mode=mode, center=center)
    got = windowed_norm(signal, m, dilation=dilation, mode=mode, center=center, stride=stride)
    np.testing.assert_array_equal(got, every[..., ::stride])


def test_any_axis_out_and_long_signals():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9000, 3)).astype(np.float32)
    x[4000:4050] *= 1e6  # a loud burst: later windows stay exact
    bank = rng.standard_normal((4, 9))
    for method in ("direct", "fft"):
        every = sliding_cosine(x, bank, axis=0, mode="same", method=method)
        out = np.empty((4, 3000, 3), np.float32)
        got = sliding_cosine(x, bank, axis=0, mode="same", method=method, stride=3, out=out)
        assert got is out
        np.testing.assert_array_equal(out, every[:, ::3])
    norms = windowed_norm(x, 9, axis=0, stride=4)
    np.testing.assert_array_equal(norms, windowed_norm(x, 9, axis=0)[::4])


@pytest.mark.parametrize("center", [False, True])
def test_the_gradient_of_a_stride_is_that_of_the_windows_kept(center):
    """With ``g`` zero on the windows left out, ``stride=1`` has the same
    loss: the same gradients."""
    rng = np.random.default_rng(8)
    x, kernel = rng.standard_normal((2, 300)), rng.standard_normal((5, 2, 7))
    options = dict(mode="full", dilation=2, sharpness=1.3, noise_floor=0.1, center=center)
    g = rng.standard_normal(sliding_cosine(x, kernel, stride=4, **options).shape)
    every = np.zeros(sliding_cosine(x, kernel, **options).shape)
    every[..., ::4] = g
    got = sliding_cosine_grad(x, kernel, g, stride=4, **options)
    want = sliding_cosine_grad(x, kernel, every, **options)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="grad_output must have the shape"):
        sliding_cosine_grad(x, kernel, every, stride=4, **options)


@pytest.mark.parametrize("stride", [59, 2**63 - 1, 2**63, 10**30])
def test_a_stride_past_the_windows_keeps_the_first_forward_and_backward(stride):
    """The forward takes any stride; so does the gradient (a stride past
    int64 raised NumPy's OverflowError there).  The plans keep it as the
    number of windows: the device's arithmetic is 64-bit (``2**63 - 1`` gave
    -1 outputs there)."""
    rng = np.random.default_rng(5)
    x, kernel = rng.standard_normal(60), rng.standard_normal(3)
    assert plans.plan_norms(x, 3, 1, "valid", -1, stride=stride).stride == 58
    assert plans.plan_sliding(x, kernel, -1, "valid", "auto", 1, 1.0, 0.0, 0.0, None,
                              stride=stride).stride == 58
    assert sliding_cosine(x, kernel, stride=stride).tolist() == [sliding_cosine(x, kernel)[0]]
    g = np.ones(1)
    every = np.zeros(58)
    every[0] = 1.0
    for a, b in zip(sliding_cosine_grad(x, kernel, g, stride=stride),
                    sliding_cosine_grad(x, kernel, every)):
        np.testing.assert_array_equal(a, b)


@given(n=st.integers(8, 60), m=st.integers(1, 6), dilation=st.integers(1, 3),
       stride=st.integers(2, 5), center=st.booleans(), image=st.booleans(), data=st.data())
def test_windows_left_out_pass_on_no_nan(n, m, dilation, stride, center, image, data):
    """A NaN in windows the stride leaves out reaches no gradient: the
    signal's is NaN exactly at the samples of the kept windows whose
    cosine is NaN, the others' wherever one is."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    span = (m - 1) * dilation + 1
    if span > n:
        return
    rows = 5 if image else 1
    x = rng.standard_normal((rows, n))
    for _ in range(data.draw(st.integers(1, 3))):
        x[rng.integers(rows), rng.integers(n)] = np.nan
    kernel = rng.standard_normal((2, m) if image else m)
    if center and np.all(kernel == kernel.flat[0]):
        return
    options = dict(dilation=(1, dilation) if image else dilation,
                   stride=(1, stride) if image else stride, center=center,
                   axis=(0, 1) if image else -1)
    signal = x if image else x[0]
    scores = sliding_cosine(signal, kernel, **options)
    grads = sliding_cosine_grad(signal, kernel, np.ones(scores.shape), **options)
    reached = np.zeros(x.shape, bool)  # the samples of the kept windows with a NaN cosine
    for index in np.argwhere(np.isnan(scores.reshape(-1, scores.shape[-1]))):
        q, i = index if image else (0, index[-1])
        reached[q : q + (2 if image else 1),
                i * stride : i * stride + span : dilation] = True
    np.testing.assert_array_equal(np.isnan(grads.signal).reshape(x.shape), reached)
    finite = not np.isnan(scores).any()
    assert np.all(np.isfinite(grads.kernel)) == finite
    assert np.isfinite(grads.sharpness) == finite and np.isfinite(grads.noise_floor) == finite


@pytest.mark.usefixtures("fft_engine")
@given(rows=st.integers(6, 160), cols=st.integers(4, 40), m=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), center=st.booleans(),
       volume=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_images_keep_every_stride_th_window_bit_for_bit(rows, cols, m, stride, center, volume, seed):
    """Several sliding axes: each window's sums are blocked from multiples of
    the blocks along the first axis, whatever band of rows holds it, and
    taps along the last axis are added in one order with or without a
    stride: strided results are the others sliced, norms and cosines, by
    either method (float64, where every rounding shows)."""
    rng = np.random.default_rng(seed)
    m = (min(m[0], rows), min(m[1], cols))
    shape, axes = ((rows, cols), (0, 1))
    if volume:
        shape, axes, m, stride = (3, rows // 4 + 3, cols), (0, 1, 2), (2,) + m, (1,) + stride
        m = (2, min(m[1], shape[1]), m[2])
    center = center and np.prod(m) > 1  # (a one-tap kernel is constant: an error with center)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    keep = tuple(slice(None, None, s) for s in stride)
    every = windowed_norm(x, m, axis=axes, center=center)
    np.testing.assert_array_equal(windowed_norm(x, m, axis=axes, center=center, stride=stride),
                                  every[keep])
    kernel = rng.standard_normal(m)
    for method in ("direct", "fft"):
        every = sliding_cosine(x, kernel, axis=axes, center=center, method=method)
        got = sliding_cosine(x, kernel, axis=axes, center=center, method=method, stride=stride)
        np.testing.assert_array_equal(got, every[keep])


@pytest.mark.usefixtures("fft_engine")
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("kernel_shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4)])
def test_fft_bands_of_a_tall_image_keep_every_stride_th_window_bit_for_bit(
        monkeypatch, kernel_shape, center):
    """An image taller than one FFT band: a stride along its first axis took
    blocks of other lengths and starts, and changed the last bits of windows
    past the first band (found by an exploratory test).  The blocks are now
    the unstrided call's, a band the strided windows of one block (bands of
    several lengths where the stride does not divide a block's windows)."""
    from cosim_np._core import config

    monkeypatch.setattr(config, "SPATIAL_FFT_ROWS", 16)  # (blocks of 14 windows for m = 3)
    rng = np.random.default_rng(12)
    kernel = rng.standard_normal(kernel_shape)
    x = rng.standard_normal((2, 120, 30) if len(kernel_shape) == 4 else (120, 30))
    x[..., 70, 9] = 1e8  # a loud pixel: windows the loops recompute
    options = dict(axis=(-2, -1), center=center, method="fft", sharpness=1.5)
    every = sliding_cosine(x, kernel, **options)
    for stride in [(2, 1), (3, 1), (4, 2), (5, 3), (13, 1), (14, 2), (17, 1), (20, 3), (50, 1),
                   (200, 1)]:  # (past 14: blocks that hold no strided window)
        keep = (Ellipsis, slice(None, None, stride[0]), slice(None, None, stride[1]))
        got = sliding_cosine(x, kernel, stride=stride, **options)
        np.testing.assert_array_equal(got, every[keep])


@pytest.mark.parametrize("method, m", [("direct", 16), ("direct", 300), ("fft", 300)])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_a_stride_holds_a_block_of_windows_not_every_window(monkeypatch, method, m, mode):
    """Every window was computed into an array of all of them, then every
    stride-th kept: with ``stride=100`` over 10**7 samples the call held
    38.6 MiB for a result of 0.4 (an exploratory test).  Now a block of the
    FFT path's segments at a time (blocks of 4096 windows here, over a loud
    stretch the FFT plans around), with the bits of the call without a
    stride, which the peak of a long call shows bounded by a block."""
    from cosim_np._core import config

    monkeypatch.setattr(config, "SEGMENT_WINDOWS", 1 << 12)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 60_000))
    x[:, 20_000:21_000] *= 1e6
    kernel = x[0, 100 : 100 + m].copy()
    for stride in (3, 7, 100):
        np.testing.assert_array_equal(
            sliding_cosine(x, kernel, stride=stride, method=method, mode=mode),
            sliding_cosine(x, kernel, method=method, mode=mode)[..., ::stride])
        np.testing.assert_array_equal(windowed_norm(x, m, stride=stride, mode=mode),
                                      windowed_norm(x, m, mode=mode)[..., ::stride])
    monkeypatch.setattr(config, "SEGMENT_WINDOWS", 1 << 18)
    long = rng.standard_normal(2_000_000).astype(np.float32)
    for call in (lambda: sliding_cosine(long, kernel.astype(np.float32), stride=100,
                                        method=method, mode=mode),
                 lambda: windowed_norm(long, m, stride=100, mode=mode)):
        call()
        result, peak = traced_peak(call)
        every = 4 * long.size  # (float32 scores of every window)
        assert peak < every / 3 + result.nbytes, (peak, every)


def test_a_strided_gradient_holds_no_more_than_one_without_a_stride():
    """``grad_output`` was spread over every window in a float64 array
    before the tiles read it: at 2e6 samples and four kernels a strided
    gradient held 144 MiB whatever the stride, against 81 MiB without one (an
    exploratory test).  Now each tile takes the kept windows' ``g`` alone."""
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal(200_000), rng.standard_normal((4, 16))
    nwin = x.size - 15
    sliding_cosine_grad(x[:1000], kernel, np.ones((4, 493)), stride=2)  # (compiled)
    every = np.ones((4, nwin))
    _, unstrided = traced_peak(lambda: sliding_cosine_grad(x, kernel, every))
    every_g = 4 * nwin * 8  # (float64 g of every window)
    for stride in (2, 1000):
        g = np.ones((4, -(-nwin // stride)))
        _, peak = traced_peak(lambda: sliding_cosine_grad(x, kernel, g, stride=stride))
        assert peak < unstrided + every_g / 4, (stride, peak, unstrided)
