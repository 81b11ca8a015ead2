"""The direct method's dots as matrix products (``_cpu.products``), for
banks and multi-channel kernels: the same promises as the loops (the naive
references, bit-exact power-of-two scaling through the range limits, NaN
local, bits independent of the threads and of Dask's chunks), each test
with the products forced (``config.DIRECT_DOTS``)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosim_np import sliding_cosine
from cosim_np._core import config
from cosim_np._cpu import drivers
from tests import naive
from tests.strategies import arrays, scalable_elements, window_geometry
from tests.test_center import kappa
from tests.test_sliding import LONG_M, tolerance


@pytest.fixture(autouse=True)
def products(monkeypatch):
    monkeypatch.setattr(config, "DIRECT_DOTS", "products")
    # blocks of a few windows, so that small signals span many
    monkeypatch.setattr(config, "PRODUCT_ELEMENTS", 24)


def test_the_cost_model_takes_products_for_the_layer_shapes(monkeypatch):
    monkeypatch.setattr(config, "DIRECT_DOTS", "auto")
    assert drivers.use_products(9, 8, 32)  # the SCS layer of issue 17
    assert drivers.use_products(64, 1, 64)  # a large bank
    assert not drivers.use_products(9, 1, 4)  # a small bank: the loops
    assert not drivers.use_products(9, 1, 1)  # one kernel: the fused loops
    monkeypatch.setattr(config, "DIRECT_DOTS", "neither")
    with pytest.raises(ValueError, match="DIRECT_DOTS"):
        drivers.use_products(9, 8, 32)


@given(
    # long windows too: their sums of squares come from the scans in lanes
    # and chain by chain, called from Python tile by tile
    geometry=window_geometry(max_n=40, max_m=6, long_m=LONG_M),
    dtype=st.sampled_from([np.float32, np.float64]),
    c_out=st.integers(1, 4),
    c_in=st.integers(1, 3),
    batch=st.integers(1, 2),
    sharpness=st.sampled_from([1.0, 0.7, 2.0]),
    noise_floor=st.sampled_from([0.0, 0.25]),
    data=st.data(),
)
def test_multichannel_and_banks_match_naive(geometry, dtype, c_out, c_in, batch, sharpness,
                                            noise_floor, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(dtype, (batch, c_in, n)))
    kernels = data.draw(arrays(np.float64, (c_out, c_in, m)))
    options = dict(sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor,
                   fill=0.5, method="direct")
    got = sliding_cosine(signal, kernels, **options)
    want = np.stack([naive.sliding_cosine_multichannel(signal[b], kernels, sharpness, mode,
                                                       dilation, noise_floor, 0.5)
                     for b in range(batch)])
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=tolerance(got.dtype, m * c_in, sharpness**2))
    bank = sliding_cosine(signal[:, 0], kernels[:, 0], **options)
    want = np.stack([[naive.sliding_cosine_1d(signal[b, 0], k, sharpness, mode, dilation,
                                              noise_floor, 0.5) for k in kernels[:, 0]]
                     for b in range(batch)])
    np.testing.assert_allclose(bank, want, rtol=0, atol=tolerance(bank.dtype, m, sharpness**2))


@given(
    geometry=window_geometry(max_n=40, max_m=6, long_m=LONG_M),
    c_in=st.integers(1, 3),
    center=st.booleans(),
    shift=st.sampled_from([-1000, -600, -9, 0, 9, 600, 1000]),
    data=st.data(),
)
def test_power_of_two_scaling_is_bit_exact_through_the_range_limits(geometry, c_in, center,
                                                                   shift, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, (c_in, n), scalable_elements(np.float64)))
    kernels = data.draw(arrays(np.float64, (3, c_in, m)))
    def constant(k):
        flat = k.reshape(3, -1)
        return bool(np.any(np.all(flat == flat[:, :1], axis=1)))

    if center and constant(kernels):
        kernels[:, 0, 0] += 1.0  # (a constant kernel is an error with center)
    center = center and not constant(kernels)  # (one tap is always constant)
    options = dict(mode=mode, dilation=dilation, fill=0.5, sharpness=1.5, center=center,
                   method="direct")
    with np.errstate(over="ignore"):
        scaled = np.ldexp(signal, shift)
    if not np.array_equal(np.ldexp(scaled, -shift), signal):
        return  # (the scaled signal lost bits: not the same input)
    np.testing.assert_array_equal(sliding_cosine(scaled, kernels, **options),
                                  sliding_cosine(signal, kernels, **options))


def test_windows_of_huge_and_tiny_samples_are_accurate():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 600))
    x[:, 200:260] *= 1e200  # squares overflow: rescaled windows
    x[:, 400:460] *= 1e-200  # squares underflow
    kernels = rng.standard_normal((5, 2, 7))
    for center in (False, True):
        got = sliding_cosine(x, kernels, method="direct", center=center)
        cosine = naive.pearson if center else naive.cosine
        windows = np.lib.stride_tricks.sliding_window_view(x, 7, axis=-1)
        for k in range(5):
            want = [cosine(windows[:, i].ravel(), kernels[k].ravel()) for i in range(windows.shape[1])]
            bound = [4 * 18 * np.finfo(float).eps * (kappa(windows[:, i]) + kappa(kernels[k]))
                     if center else tolerance(np.float64, 14) for i in range(windows.shape[1])]
            assert np.all(np.abs(got[k] - np.array(want)) <= np.array(bound))


@given(geometry=window_geometry(max_n=40, max_m=6), bad=st.sampled_from([np.nan, np.inf]),
       data=st.data())
def test_nan_and_inf_stay_local(geometry, bad, data):
    n, m, dilation, mode = geometry
    signal = data.draw(arrays(np.float64, (2, n)))
    kernels = data.draw(arrays(np.float64, (4, 2, m)))
    where = data.draw(st.integers(0, n - 1))
    poisoned = signal.copy()
    poisoned[1, where] = bad
    options = dict(mode=mode, dilation=dilation, method="direct")
    clean = sliding_cosine(signal, kernels, **options)
    got = sliding_cosine(poisoned, kernels, **options)
    indicator = np.zeros(n)
    indicator[where] = 1.0
    touched = np.array([w.any() for w in naive.windows(indicator, m, dilation, mode)])
    assert np.all(np.isnan(got[:, touched]))
    np.testing.assert_array_equal(got[:, ~touched], clean[:, ~touched])


@pytest.mark.parametrize("center", [False, True])
def test_bits_do_not_depend_on_threads_or_pieces(monkeypatch, center):
    import numba

    monkeypatch.setattr(config, "MIN_WINDOWS_PER_THREAD", 64)
    rng = np.random.default_rng(5)
    tile = drivers.kernels.tile_length(9, 1)
    x = rng.standard_normal((3, 4, 3 * tile + 100)).astype(np.float32)
    kernels = rng.standard_normal((6, 4, 9))
    options = dict(method="direct", center=center, mode="full", sharpness=1.2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sliding_cosine(x, kernels, **options)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = sliding_cosine(x, kernels, **options)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    # a piece that starts a whole number of tiles into the signal: its bits
    valid = sliding_cosine(x, kernels, method="direct", center=center, sharpness=1.2)
    part = sliding_cosine(x[..., 2 * tile :], kernels, method="direct", center=center,
                          sharpness=1.2)
    np.testing.assert_array_equal(part, valid[..., 2 * tile :])
