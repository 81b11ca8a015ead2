"""``sliding_cosine_grad``: the gradients of ``sum(g * sliding_cosine(...))``.

Checked against central finite differences of the forward in float64 (every
option), against PyTorch's autograd through the seed-000 function and through
a conv-based sharpened-cosine layer, and on the promises: power-of-two
scaling, finite gradients at the conventions (``s = 0``, zero and constant
windows), NaN only where the forward is NaN, exactness after a loud burst.

Finite differences of fourth order, ``(8 (f(x + h) - f(x - h)) - (f(x + 2h) -
f(x - 2h))) / 12h`` with ``h = 1e-5`` times the data's scale, are off by about
``(h / n)**4`` relative to the gradient (``n`` the smallest window norm, which
the problems keep above 0.05: near a window of norm 0 the gradient grows as
``1 / n`` and no difference quotient follows it; likewise sharpened cosines
within the steps of 0) plus ``eps / h`` times the
function's size: below ``1e-10`` here, hence the tolerance ``1e-6 * (1 +
|gradient|)``, far above that and far below any wrong term.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cosim_np import SlidingCosineGrad, sliding_cosine, sliding_cosine_grad, windowed_norm

MODES = ["valid", "same", "full", "causal"]
H = 1e-5


def forward_sum(signal, kernel, g, **options):
    return float(np.sum(g * sliding_cosine(signal, kernel, **options)))


def finite_differences(signal, kernel, g, options):
    """Central differences of ``sum(g * sliding_cosine)`` with respect to
    every sample, every tap, ``sharpness`` and ``noise_floor``."""
    def derivative(f, x0):
        step = H * max(1.0, abs(x0))
        at = {i: f(x0 + i * step) for i in (-2, -1, 1, 2)}
        return (8 * (at[1] - at[-1]) - (at[2] - at[-2])) / (12 * step)

    def along(array, index, make_call):
        def f(value):
            moved = array.copy()
            moved[index] = value
            return make_call(moved)
        return derivative(f, array[index])

    signal_grad = np.zeros_like(signal)
    for index in np.ndindex(signal.shape):
        signal_grad[index] = along(signal, index,
                                   lambda moved: forward_sum(moved, kernel, g, **options))
    kernel_grad = np.zeros_like(kernel)
    for index in np.ndindex(kernel.shape):
        kernel_grad[index] = along(kernel, index,
                                   lambda moved: forward_sum(signal, moved, g, **options))
    scalars = []
    for name in ("sharpness", "noise_floor"):
        def f(value, name=name):
            return forward_sum(signal, kernel, g, **dict(options, **{name: value}))
        if name == "noise_floor" and options[name] == 0.0:  # one-sided (q >= 0), third order
            step = H
            at = [f(i * step) for i in range(4)]
            scalars.append((-11 * at[0] + 18 * at[1] - 9 * at[2] + 2 * at[3]) / (6 * step))
        else:
            scalars.append(derivative(f, options[name]))
    return signal_grad, kernel_grad, scalars[0], scalars[1]


def assert_close_to_differences(got, want):
    for name, a, b in zip(SlidingCosineGrad._fields, got, want):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert np.all(np.isfinite(a)), name
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * (1 + np.max(np.abs(b))),
                                   err_msg=name)


@st.composite
def problems(draw):
    """A small well-conditioned problem: signal, kernel, grad_output, options."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mode = draw(st.sampled_from(MODES))
    m = draw(st.integers(2, 4))
    dilation = draw(st.integers(1, 2))
    shape = draw(st.sampled_from(["one", "bank", "channels"]))
    n = draw(st.integers((m - 1) * dilation + 1, 11))
    if shape == "one":
        signal, kernel = rng.standard_normal(n), rng.standard_normal(m)
    elif shape == "bank":
        signal, kernel = rng.standard_normal((2, n)), rng.standard_normal((2, m))
    else:
        signal, kernel = rng.standard_normal((2, n)), rng.standard_normal((3, 2, m))
    options = dict(mode=mode, dilation=dilation,
                   sharpness=draw(st.sampled_from([1.0, 1.25, 1.6])),
                   noise_floor=draw(st.sampled_from([0.0, 0.4])),
                   center=draw(st.booleans()), stride=draw(st.sampled_from([1, 1, 2, 3])))
    g = rng.standard_normal(sliding_cosine(signal, kernel, **options).shape)
    # a window of tiny norm makes differences useless (see the module docstring);
    # with channels, each channel's norm bounds the window's from below
    norms = windowed_norm(signal, m, dilation=dilation, mode=mode, center=options["center"],
                          stride=options["stride"])
    assume(np.min(norms) > 0.05)
    # nor, when sharpened, a cosine within the differences' steps of 0: the
    # derivatives of |s|**(p*p) beyond the first grow without bound there
    # (s = 0 has its own tests below)
    if options["sharpness"] != 1.0:
        plain = sliding_cosine(signal, kernel, **dict(options, sharpness=1.0))
        assume(np.min(np.abs(plain)) > 1e-3)
    return signal, kernel, g, options


@given(problem=problems())
def test_matches_finite_differences(problem):
    signal, kernel, g, options = problem
    got = sliding_cosine_grad(signal, kernel, g, **options)
    assert isinstance(got, SlidingCosineGrad)
    assert got.signal.shape == signal.shape and got.kernel.shape == kernel.shape
    assert isinstance(got.sharpness, float) and isinstance(got.noise_floor, float)
    assert_close_to_differences(got, finite_differences(signal, kernel, g, options))


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_long_kernels_and_both_methods(method):
    rng = np.random.default_rng(3)
    signal = 5.0 + rng.standard_normal(300)
    kernel = rng.standard_normal(40)
    g = rng.standard_normal(300)
    options = dict(mode="same", sharpness=1.3, noise_floor=0.2, center=True)
    got = sliding_cosine_grad(signal, kernel, g, method=method, **options)
    want = finite_differences(signal, kernel, g, dict(options, method="direct"))
    assert_close_to_differences(got, want)


@pytest.mark.parametrize("axis, channel_axis", [(-1, None), (0, None), (-1, 1), (1, 0)])
def test_axes_and_batches_are_the_rows(axis, channel_axis):
    """A batch of signals along any axis gives each row's gradient; the
    kernel's and the scalars' gradients add over the rows."""
    rng = np.random.default_rng(4)
    if channel_axis is None:
        kernel = rng.standard_normal(3)
        rows = rng.standard_normal((3, 9))
        signal = np.moveaxis(rows, -1, axis)
    else:
        kernel = rng.standard_normal((2, 2, 3))
        rows = rng.standard_normal((3, 2, 9))  # (batch, C_in, n)
        signal = np.moveaxis(rows, (1, 2), (channel_axis, axis))
    g = rng.standard_normal(sliding_cosine(signal, kernel, axis=axis).shape)
    got = sliding_cosine_grad(signal, kernel, g, axis=axis, sharpness=1.2)
    g_rows = np.moveaxis(g, axis, -1) if channel_axis is None else np.moveaxis(
        g, (channel_axis, axis), (1, 2))
    parts = [sliding_cosine_grad(rows[b], kernel, g_rows[b], sharpness=1.2)
             for b in range(3)]
    want_signal = np.stack([part.signal for part in parts])
    want_signal = (np.moveaxis(want_signal, -1, axis) if channel_axis is None else
                   np.moveaxis(want_signal, (1, 2), (channel_axis, axis)))
    np.testing.assert_allclose(got.signal, want_signal, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got.kernel, sum(part.kernel for part in parts), rtol=1e-12,
                               atol=1e-14)
    assert got.sharpness == pytest.approx(sum(part.sharpness for part in parts), rel=1e-12)


# --- against PyTorch


def seed000(torch, signal, kernel, p, padding):
    """The seed-000 function (pad, unfold, F.cosine_similarity, sign of the dot)."""
    x = torch.nn.functional.pad(signal, (padding, padding))
    windows = x.unfold(2, kernel.numel(), 1)
    sim = torch.nn.functional.cosine_similarity(windows, kernel.expand_as(windows), dim=-1,
                                                eps=1e-8)
    dot = torch.einsum("bdij,j->bdi", windows, kernel)
    return (torch.sign(dot) * sim.abs() ** (p**2))[:, :, :-padding]


def test_agrees_with_torch_autograd_through_the_seed_function():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    signal, kernel, g = rng.standard_normal(64), rng.standard_normal(5), rng.standard_normal(64)
    x = torch.tensor(signal[None, None], requires_grad=True)
    k = torch.tensor(kernel, requires_grad=True)
    p = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    out = seed000(torch, x, k, p, padding=4)
    (out * torch.tensor(g[None, None])).sum().backward()
    got = sliding_cosine_grad(signal, kernel, g, mode="causal", sharpness=1.7)
    np.testing.assert_allclose(got.signal, x.grad.numpy()[0, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.kernel, k.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert got.sharpness == pytest.approx(p.grad.item(), rel=1e-10)


@pytest.mark.parametrize("dilation", [1, 3])
@pytest.mark.parametrize("center", [False, True])
def test_agrees_with_a_conv_based_layer(dilation, center):
    """A multi-channel sharpened-cosine layer written with ``conv1d`` (the
    dots, and the window norms as a convolution of squares with ones) with a
    learnable kernel, ``p`` and ``q``, differentiated by autograd."""
    torch = pytest.importorskip("torch")
    conv1d = torch.nn.functional.conv1d
    rng = np.random.default_rng(6 + dilation)
    signal = rng.standard_normal((2, 3, 50)) + (4.0 if center else 0.0)
    kernel = rng.standard_normal((4, 3, 5))
    g = rng.standard_normal((2, 4, 50 - 4 * dilation))
    x = torch.tensor(signal, requires_grad=True)
    k = torch.tensor(kernel, requires_grad=True)
    p = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    ones = torch.ones((1, 3, 5), dtype=torch.float64)
    taps = 15.0
    if center:
        kc = k - k.mean(dim=(1, 2), keepdim=True)
        sums = conv1d(x, ones, dilation=dilation)
        squares = conv1d(x * x, ones, dilation=dilation)
        norms = torch.sqrt(squares - sums * sums / taps)  # benign data: no offset to lose
    else:
        kc = k
        norms = torch.sqrt(conv1d(x * x, ones, dilation=dilation))
    khat = kc / kc.flatten(1).norm(dim=1)[:, None, None]
    s = conv1d(x, khat, dilation=dilation) / (norms + q)
    out = torch.sign(s) * s.abs() ** (p**2)
    (out * torch.tensor(g)).sum().backward()
    got = sliding_cosine_grad(signal, kernel, g, dilation=dilation, sharpness=1.3,
                              noise_floor=0.25, center=center)
    np.testing.assert_allclose(got.signal, x.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.kernel, k.grad.numpy(), rtol=1e-8, atol=1e-10)
    assert got.sharpness == pytest.approx(p.grad.item(), rel=1e-8)
    assert got.noise_floor == pytest.approx(q.grad.item(), rel=1e-8)


# --- the promises


@given(shift=st.one_of(st.integers(-60, 60), st.integers(-900, -400), st.integers(400, 900)),
       seed=st.integers(0, 2**16), center=st.booleans(), spike=st.booleans(),
       noise_floor=st.sampled_from([0.0, 0.3]), image=st.booleans())
def test_power_of_two_scaling_is_exact(shift, seed, center, spike, noise_floor, image):
    """``2**j x`` (with the noise floor, in the signal's units, ``2**j q``)
    has the same cosines: the gradients of the signal and of the noise floor
    are exactly ``2**-j`` times, the others the same bits; also where some
    samples' squares would leave the float64 range (a scaling past
    ``2**480``, or a loud sample)."""
    rng = np.random.default_rng(seed)
    shape, taps, axis = ((12, 10), (3, 3), (0, 1)) if image else ((40,), (6,), -1)
    signal, kernel = rng.standard_normal(shape), rng.standard_normal(taps)
    if spike:
        signal[(5,) * signal.ndim] = 2.0**100
    g = rng.standard_normal(shape)
    options = dict(mode="same", sharpness=1.4, center=center, axis=axis)
    base = sliding_cosine_grad(signal, kernel, g, noise_floor=noise_floor, **options)
    scaled = sliding_cosine_grad(np.ldexp(signal, shift), kernel, g,
                                 noise_floor=np.ldexp(noise_floor, shift), **options)
    np.testing.assert_array_equal(scaled.signal, np.ldexp(base.signal, -shift))
    np.testing.assert_array_equal(scaled.kernel, base.kernel)
    assert scaled.sharpness == base.sharpness
    assert scaled.noise_floor == np.ldexp(base.noise_floor, -shift)


@pytest.mark.parametrize("shift", [-1000, -300, 300, 1020, 1023])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("image", [False, True])
def test_kernel_power_of_two_scaling_scales_its_gradient_exactly(shift, center, image):
    """``2**j k`` has the unit kernel of ``k``: the kernel's gradient is
    exactly ``2**-j`` times, the others the same bits; also where the
    kernel's norm is past the float64 range (its gradient was 0, divided
    by an infinite norm; found by an exploratory test)."""
    rng = np.random.default_rng(abs(shift))
    shape, taps, axis = ((12, 10), (3, 3), (0, 1)) if image else ((40,), (6,), -1)
    signal, kernel = rng.standard_normal(shape), rng.standard_normal(taps)
    g = rng.standard_normal(shape)
    options = dict(mode="same", sharpness=1.4, center=center, axis=axis, noise_floor=0.1)
    base = sliding_cosine_grad(signal, kernel, g, **options)
    with warnings.catch_warnings():  # (and no warning of an overflow inside)
        warnings.simplefilter("error")
        scaled = sliding_cosine_grad(signal, np.ldexp(kernel, shift), g, **options)
    np.testing.assert_array_equal(scaled.kernel, np.ldexp(base.kernel, -shift))
    assert np.all(scaled.kernel != 0)
    np.testing.assert_array_equal(scaled.signal, base.signal)
    assert (scaled.sharpness, scaled.noise_floor) == (base.sharpness, base.noise_floor)


@pytest.mark.parametrize("shift", [-1021, -1070])
def test_a_batch_of_images_finishes_the_kernel_gradient_once(shift):
    """Several images: each image's kernel gradient was finished (divided by
    the kernel's norm) and the finished parts added, so that parts past the
    range gave inf for a finite sum, or NaN and a warning where they had
    opposite signs (an exploratory test).  The batch's sums are now finished
    once: ``2**-shift`` times the unscaled kernel's gradient, ±inf past the
    range, as for one image."""
    rng = np.random.default_rng(7)
    # (small whole taps: exact as subnormals too)
    x, kernel = rng.standard_normal((3, 6, 7)), np.array([[3.0, -7.0], [-5.0, 2.0]])
    g = rng.standard_normal((3, 5, 6))
    base = sliding_cosine_grad(x, kernel, g, axis=(-2, -1), sharpness=1.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sliding_cosine_grad(x, np.ldexp(kernel, shift), g, axis=(-2, -1), sharpness=1.2)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got.kernel, np.ldexp(base.kernel, -shift))
    np.testing.assert_array_equal(got.signal, base.signal)
    assert (got.sharpness, got.noise_floor) == (base.sharpness, base.noise_floor)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_tiny_and_huge_scales_give_finite_gradients(scale, method):
    # (1e200: the cosines are recomputed exactly, by the method asked for)
    rng = np.random.default_rng(8)
    signal, kernel, g = rng.standard_normal(30) * scale, rng.standard_normal(4), np.ones(27)
    got = sliding_cosine_grad(signal, kernel, g, sharpness=1.1, method=method)
    unit = sliding_cosine_grad(signal / scale, kernel, g, sharpness=1.1, method=method)
    np.testing.assert_allclose(got.signal * scale, unit.signal, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.kernel, unit.kernel, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_infinite_sample_gives_nan_gradients_without_a_warning(image, center, dtype):
    """±inf samples (and float32 samples whose squares overflow) make their
    windows' gradients NaN as NaN samples do: silently, as the forward pass,
    even where warnings are errors and NumPy raises on invalid values
    (and overflow, and division by zero)."""
    x = np.arange(1.0, 401.0).astype(dtype)
    x[50] = np.inf
    x[300] = -np.inf if dtype == np.float64 else 3e38
    kernel = np.array([1.0, -2.0, 3.0, 0.5, 2.0, -1.0, 4.0, 1.5, -3.0])
    shape, kernel = ((20, 20), kernel.reshape(3, 3)) if image else ((400,), kernel)
    axis = (0, 1) if image else -1
    g = np.ones(sliding_cosine(x.reshape(shape), kernel, axis=axis).shape)
    quiet = sliding_cosine_grad(x.reshape(shape), kernel, g, axis=axis, center=center)
    with warnings.catch_warnings(), np.errstate(invalid="raise", over="raise", divide="raise"):
        warnings.simplefilter("error")
        got = sliding_cosine_grad(x.reshape(shape), kernel, g, axis=axis, center=center)
    np.testing.assert_array_equal(got.signal, quiet.signal)
    assert np.isnan(got.signal).any() and np.isfinite(got.signal).any()
    assert np.isnan(got.kernel).all()


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("center", [False, True])
def test_gradients_past_the_float64_range_are_infinite_not_nan(image, center):
    """Samples near the subnormals (2**-1018, 2**-1030): gradients of about
    1 / |x| that float64 cannot hold come back ±inf, the others exact
    (scaled back from the signal scaled by a power of two), never NaN nor an
    error."""
    rng = np.random.default_rng(9)
    unit = 1.0 + 0.3 * rng.random((30, 100) if image else 3000)
    kernel = rng.standard_normal((2, 2) if image else 4)
    options = dict(center=center, axis=(0, 1) if image else -1)
    g = np.ones(sliding_cosine(unit, kernel, **options).shape)
    for shift in (-1018, -1030):
        tiny = np.ldexp(unit, shift)
        # (subnormal samples lose digits: the signal in range is theirs scaled back)
        want = sliding_cosine_grad(np.ldexp(tiny, -shift), kernel, g, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = sliding_cosine_grad(tiny, kernel, g, **options)
        assert not np.isnan(got.signal).any()
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(got.signal, np.ldexp(want.signal, -shift))
            assert got.noise_floor == np.ldexp(want.noise_floor, -shift)
        np.testing.assert_array_equal(got.kernel, want.kernel)


def test_exact_after_a_loud_burst():
    """The windows away from a burst of 1e12 keep their gradients: the same
    as for the signal without the burst."""
    rng = np.random.default_rng(9)
    signal = rng.standard_normal(400)
    loud = signal.copy()
    loud[100:110] = 1e12
    kernel = rng.standard_normal(8)
    g = rng.standard_normal(393)
    g[90:110] = 0.0  # the windows that hold the burst ...
    quiet = sliding_cosine_grad(signal, kernel, g).signal
    got = sliding_cosine_grad(loud, kernel, g).signal
    # ... and the samples of the windows that do not
    np.testing.assert_allclose(got[117:], quiet[117:], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[:90], quiet[:90], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sharpness", [0.5, 1.0, 2.0])
def test_a_zero_cosine_has_a_finite_gradient(sharpness):
    """At ``s = 0``, ``|s| ** (P - 1)`` is infinite for ``P < 1``: the
    convention is 0 (1 for ``P = 1``), so the gradient stays finite."""
    signal = np.array([1.0, 0.0, -1.0, 0.0, 2.0])  # window 0 is orthogonal to the kernel
    kernel = np.array([1.0, 5.0, 1.0])
    assert sliding_cosine(signal, kernel)[0] == 0.0
    got = sliding_cosine_grad(signal, kernel, np.ones(3), sharpness=sharpness)
    for value in got:
        assert np.all(np.isfinite(value))
    if sharpness == 1.0:  # d out / d s = 1: the plain cosine's gradient
        rest = sliding_cosine_grad(signal, kernel, np.array([1.0, 0.0, 0.0]))
        np.testing.assert_allclose(rest.signal[:3], kernel / np.linalg.norm(kernel)
                                   / np.sqrt(2.0), rtol=1e-14)


@pytest.mark.parametrize("center", [False, True])
def test_zero_and_constant_windows_contribute_nothing(center):
    signal = np.array([0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    kernel = np.array([1.0, -2.0, 0.5])
    g = np.ones(6)
    got = sliding_cosine_grad(signal, kernel, g, fill=3.0, center=center)
    for value in got:
        assert np.all(np.isfinite(value))
    alone = np.zeros(6)
    constant = [0, 1] if not center else [0, 1, 4, 5]
    live = [i for i in range(6) if i not in constant]
    alone[live] = 1.0
    want = sliding_cosine_grad(signal, kernel, alone, fill=3.0, center=center)
    np.testing.assert_array_equal(got.signal, want.signal)
    np.testing.assert_array_equal(got.kernel, want.kernel)


def test_nan_only_where_the_forward_is_nan():
    rng = np.random.default_rng(10)
    signal = rng.standard_normal(50)
    signal[20] = np.nan
    kernel = rng.standard_normal(4)
    g = rng.standard_normal(47)
    out = sliding_cosine(signal, kernel)
    got = sliding_cosine_grad(signal, kernel, g)
    assert np.flatnonzero(np.isnan(out)).tolist() == [17, 18, 19, 20]
    # the samples of the NaN windows, and nothing else of the signal
    assert np.flatnonzero(np.isnan(got.signal)).tolist() == list(range(17, 24))
    assert np.all(np.isnan(got.kernel)) and np.isnan(got.sharpness)
    g[17:21] = 0.0  # no weight on the NaN windows: still NaN, as 0 * NaN is
    assert np.isnan(sliding_cosine_grad(signal, kernel, g).sharpness)


@pytest.mark.parametrize("scale", [1.0, 2.0**-1000, 2.0**1000])
@given(problem=problems())
def test_the_forward_result_stands_for_the_cosines(scale, problem):
    """Given ``sliding_cosine``'s own result (sharpness 1, stride 1: the
    cosines themselves), the gradients take it instead of computing the
    cosines again: the same gradients to rounding, through the float64 range
    (where its squares leave the range, the forward's result is the exact
    one); a sharpened or strided result is not taken (the same bits as
    without), but where there is one window, which any stride keeps."""
    from cosim_np.sliding import _gradients

    signal, kernel, g, options = problem
    signal = signal * scale
    options = dict(dict(mode="valid", dilation=1, fill=0.0, axis=-1, method="auto"), **options)
    forward = sliding_cosine(signal, kernel, **dict(options, sharpness=1.0, stride=1))
    usable = options["sharpness"] == 1.0 and (options["stride"] == 1 or forward.shape[-1] == 1)
    if not usable:  # the result the caller would hold
        forward = sliding_cosine(signal, kernel, **options)
    got = _gradients(signal, kernel, g, forward=forward, **options)
    want = _gradients(signal, kernel, g, **options)
    if not usable:
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        return
    # The gradients with respect to the signal and the noise floor are in
    # units of 1 / ||w||: rounding in them is relative to sum |g| / ||w||,
    # not to the result, which is all rounding where the true gradient is 0
    # (two-tap centered windows: s = +-1, khat - s w / ||w|| = 0).
    norms = windowed_norm(signal, kernel.shape[-1], mode=options["mode"],
                          dilation=options["dilation"], center=options["center"])
    per_norm = np.sum(np.abs(g)) / np.min(norms[norms > 0], initial=np.inf)
    for name, a, b in zip(SlidingCosineGrad._fields, got, want):
        scale = np.max(np.abs(b)) + (per_norm if name in ("signal", "noise_floor") else 0.0)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * (1 + scale), err_msg=name)


def test_float32_gives_float32_gradients():
    rng = np.random.default_rng(11)
    signal, kernel = rng.standard_normal(30).astype(np.float32), rng.standard_normal(4)
    got = sliding_cosine_grad(signal, kernel, np.ones(27, np.float32))
    assert got.signal.dtype == got.kernel.dtype == np.float32
    want = sliding_cosine_grad(signal.astype(np.float64), kernel, np.ones(27))
    np.testing.assert_allclose(got.signal, want.signal, rtol=2e-7, atol=1e-7)


# --- errors


def test_grad_output_must_have_the_result_shape():
    with pytest.raises(ValueError, match="grad_output"):
        sliding_cosine_grad(np.ones(10), [1.0, 2.0], np.ones(10))


@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_a_sharpness_whose_square_overflows_is_refused_by_name(axis):
    """``sharpness**2`` inf: the slopes would be ``0 * inf`` (NaN from finite
    inputs); a sharpness just below keeps finite gradients."""
    signal = np.array([[1.0, 2.0, 3.0, 0.0, -1.0, 2.0], [0.5, 1.0, -2.0, 1.0, 3.0, 1.0]])
    kernel = [[1.0, 2.0, 3.0]] if axis != -1 else [1.0, 2.0, 3.0]
    g = np.ones(sliding_cosine(signal, kernel, axis=axis).shape)
    for huge in (1e160, -1e155):
        with pytest.raises(ValueError, match="sharpness must have a finite square"):
            sliding_cosine_grad(signal, kernel, g, sharpness=huge, axis=axis)
    # (an integer's value as a number, not its 201 digits: an exploratory test)
    with pytest.raises(ValueError, match=r"; got 1e\+200\.$"):
        sliding_cosine_grad(signal, kernel, g, sharpness=10**200, axis=axis)
    got = sliding_cosine_grad(signal, kernel, g, sharpness=1e150, axis=axis)
    assert all(np.all(np.isfinite(part)) for part in got)


def test_lazy_inputs_say_what_to_do():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match="compute"):
        sliding_cosine_grad(da.ones(10, chunks=5), [1.0, 2.0], np.ones(9))


@given(st.data())
def test_a_constant_kernel_with_center_is_an_error(data):
    value = data.draw(st.floats(-10, 10))
    assume(value == value)
    with pytest.raises(ValueError, match="kernel"):
        sliding_cosine_grad(np.arange(10.0), [value] * 3, np.ones(8), center=True)


@pytest.mark.parametrize("elements", [6 * 4, 6 * 20, 6 * 1000])
@pytest.mark.parametrize("center", [False, True])
def test_tiles_of_parts_of_rows_and_of_several_rows(monkeypatch, elements, center):
    """A tile holds part of a row (4 windows), or several whole rows (20
    windows: two rows of 7, the last group one row), or all of them."""
    from cosim_np._core import config

    monkeypatch.setattr(config, "GRAD_TILE_ELEMENTS", elements)
    rng = np.random.default_rng(5)
    signal, kernel = rng.standard_normal((7, 2, 9)), rng.standard_normal((3, 2, 3))
    options = dict(mode="valid", dilation=1, sharpness=1.25, noise_floor=0.1, center=center,
                   stride=1)
    g = rng.standard_normal((7, 3, 7))
    got = sliding_cosine_grad(signal, kernel, g, **options)
    assert_close_to_differences(got, finite_differences(signal, kernel, g, options))


@pytest.mark.parametrize("shape", [(5, 3, 3000), (37, 3, 40)])
@pytest.mark.parametrize("center", [False, True])
def test_the_same_bits_whatever_the_thread_count(shape, center):
    """Rows (long ones, or short ones several to a tile) run side by side,
    each group's sums added in group order: one thread and two give the
    same bits."""
    import numba

    rng = np.random.default_rng(12)
    signal, kernel = rng.standard_normal(shape), rng.standard_normal((4, 3, 7))
    g = rng.standard_normal((shape[0], 4, shape[2]))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sliding_cosine_grad(signal, kernel, g, mode="same", sharpness=1.3, center=center)
        numba.set_num_threads(2)
        two = sliding_cosine_grad(signal, kernel, g, mode="same", sharpness=1.3, center=center)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sharpness", [0.01, 0.0])
def test_a_subnormal_cosine_has_the_slope_in_range(sharpness):
    """``s = 1e-310`` with ``P = 1e-4``: ``|s|**(P-1)`` overflows, ``P
    |s|**(P-1)`` (9.3e305) does not; at ``P = 0`` (``out = sign(s)``) every
    gradient is 0.  Both were NaN (an exploratory test)."""
    x, k = np.array([1e-310, 1.0]), np.array([1.0, 0.0])
    got = sliding_cosine_grad(x, k, np.ones(1), sharpness=sharpness)
    P = sharpness**2
    slope = math.exp(math.log(P) + (P - 1.0) * math.log(1e-310)) if P else 0.0
    np.testing.assert_allclose(got.signal, [slope, -slope * 1e-310], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.kernel, [0.0, slope], rtol=1e-12, atol=0)
    assert np.isfinite(got.sharpness)
    np.testing.assert_allclose(got.noise_floor, -slope * 1e-310, rtol=1e-12, atol=0)


@pytest.mark.parametrize("axis", [-1, (0, 1)])
@pytest.mark.parametrize("shift", [-1000, 500, 1000, 1021])
def test_grad_output_times_a_power_of_two_scales_every_gradient_by_it(axis, shift):
    """Gradients are linear in ``grad_output``: times ``2**shift`` they are
    the same bits times ``2**shift`` (inf past float64's range, as the true
    value).  Near the top of the range the kernel's sums over windows
    overflowed where its gradient does not, and their difference was NaN
    (an exploratory test)."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((12, 40))
    kernel = rng.standard_normal((3, 3) if axis == (0, 1) else (2, 5))
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis).shape)
    got = _scaled_grad_output(x, kernel, g, shift, axis=axis, sharpness=1.2, noise_floor=0.1)
    assert not any(np.isnan(part).any() for part in got)


def _scaled_grad_output(x, kernel, g, shift, **options):
    """The gradients at ``grad_output`` ``g * 2**shift``, checked to be those
    at ``g`` times ``2**shift``, bit for bit."""
    want = sliding_cosine_grad(x, kernel, g, **options)
    with np.errstate(over="ignore"):
        got = sliding_cosine_grad(x, kernel, np.ldexp(g, shift), **options)
        for name in ("signal", "kernel", "sharpness", "noise_floor"):
            expected = np.ldexp(getattr(want, name), shift)
            np.testing.assert_array_equal(getattr(got, name), expected, err_msg=name)
    return got


@pytest.mark.parametrize("axis", [-1, (0, 1)])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shift", [33, 1000])
@pytest.mark.parametrize("tiny", [1e-300, 1e-310])
def test_windows_of_tiny_norm_beside_unit_ones_keep_the_kernel_gradient_finite(axis, center,
                                                                              shift, tiny):
    """Windows of norm near 1e-300 (or subnormal) beside windows of norm 1
    (no power of two brings such a signal into range), ``grad_output`` times
    ``2**shift``:
    each window's coefficient ``g P |s|**(P-1) / n`` overflowed, and the
    kernel's gradient, about ``g``, came out inf or NaN, the signal's NaN
    (an exploratory test).  Now every gradient is the bits of the unscaled
    call's times ``2**shift``, inf past the range (the signal's, of the tiny
    windows' samples), never NaN."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 24))
    x[:, :12] *= tiny  # (subnormal samples too)
    kernel = rng.standard_normal((2, 3) if axis == (0, 1) else 4)
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis).shape)
    got = _scaled_grad_output(x, kernel, g, shift, axis=axis, sharpness=1.1, center=center)
    assert np.isfinite(got.kernel).all() and np.isfinite(got.sharpness)
    assert not np.isnan(got.signal).any() and np.isinf(got.signal).any()


@pytest.mark.parametrize("case", [((40,), (16,), -1), ((12, 12), (5, 5), (0, 1)),
                                  ((3, 30), (2, 3, 8), -1)])
def test_a_centered_window_beginning_near_the_largest_float_has_finite_gradients(case):
    """A window's mean is its first sample plus the mean of the differences
    from it: beside a first sample of 1.7e308 the sum of the differences
    overflowed, and the centered gradients came out inf (an exploratory
    test).  They are now those of the signal scaled by ``2**-20``, the
    kernel's to rounding, the signal's times ``2**-20``."""
    shape, kernel_shape, axis = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    x.flat[0] = 1.7e308
    kernel = rng.standard_normal(kernel_shape)
    g = rng.standard_normal(sliding_cosine(x, kernel, axis=axis, center=True).shape)
    got = sliding_cosine_grad(x, kernel, g, axis=axis, center=True)
    want = sliding_cosine_grad(np.ldexp(x, -20), kernel, g, axis=axis, center=True)
    assert all(np.isfinite(part).all() for part in got)
    np.testing.assert_allclose(got.kernel, want.kernel, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.ldexp(got.signal, 20), want.signal, rtol=0,
                               atol=1e-14 * np.abs(want.signal).max())
    assert got.sharpness == pytest.approx(want.sharpness, abs=1e-13)


@pytest.mark.parametrize("axis", [-1, (0, 1)])
def test_a_gradient_past_the_float32_range_is_inf_with_no_warning(axis):
    """Windows of subnormal float32 norm: the signal's gradient (about ``1 /
    ||w||``) is past float32's range, inf as documented, silently over
    several axes as along one (NumPy's cast warned there)."""
    x = (np.random.default_rng(0).standard_normal((6, 6)) * 1e-40).astype(np.float32)
    kernel = np.ones((3, 3) if axis == (0, 1) else 3, np.float32)
    g = np.ones(sliding_cosine(x, kernel, axis=axis).shape, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sliding_cosine_grad(x, kernel, g, axis=axis)
    assert got.signal.dtype == np.float32 and np.isinf(got.signal).any()


def test_a_masked_grad_output_is_told_to_pass_zeros_not_nan():
    """NaN in ``grad_output`` spreads to the kernel's and the scalars'
    gradients, so the refusal of a masked one advises ``filled(0)`` alone
    (it advised ``filled(np.nan)`` first, as for samples)."""
    g = np.ma.masked_array(np.ones(28), mask=np.arange(28) == 1)
    with pytest.raises(ValueError, match=r"grad_output\.filled\(0\)") as raised:
        sliding_cosine_grad(np.random.default_rng(0).standard_normal(30), [1.0, 2.0, 3.0], g)
    assert "nan" not in str(raised.value).lower()


@pytest.mark.parametrize("axis", [-1, (0, 1)])
@pytest.mark.parametrize("signal_scale, kernel_scale", [(1e-300, 1e305), (1e-300, 1e307),
                                                        (1e-310, 1e305)])
def test_a_huge_kernel_s_gradient_beside_a_tiny_signal_is_exact(axis, signal_scale, kernel_scale):
    """The kernel's gradient scales as ``1 / ||k||`` exactly.  Beside a tiny
    signal (whose windows' norms scale ``grad_output`` down by a power of
    two), a huge kernel's gradient, some ``1e-306``, passed through the
    subnormals before it was scaled back: ``5e-8`` off at ``1e305``, 0 for a
    signal of ``1e-310`` (an exploratory test).  Now the power of two and
    the kernel's norm are applied in one step."""
    rng = np.random.default_rng(8)
    image = axis == (0, 1)
    x = rng.standard_normal((6, 30) if image else 30)
    k = rng.standard_normal((2, 5) if image else 5) / 3
    g = np.ones(sliding_cosine(x, k, axis=axis).shape)
    want = sliding_cosine_grad(x * signal_scale, k, g, axis=axis).kernel / kernel_scale
    got = sliding_cosine_grad(x * signal_scale, k * kernel_scale, g, axis=axis).kernel
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


def test_an_uncentered_gradient_holds_no_window_means():
    """Without ``center`` the gradient held a float64 zero mean per window,
    and a copy of the norms with their zeros replaced: 12.9 times a float32
    signal (an exploratory tester's reading), now 9: its float64 copy,
    norms, cosines and gradient, and the gradient returned."""
    from tests.memory import traced_peak

    rng = np.random.default_rng(35)
    x, kernel = rng.standard_normal(10**6).astype(np.float32), rng.standard_normal(16)
    g = np.ones(x.size - 15, np.float32)
    sliding_cosine_grad(x[:1000], kernel, g[:985])  # (compiled)
    _, peak = traced_peak(lambda: sliding_cosine_grad(x, kernel, g))
    assert peak < 10 * x.nbytes, peak / x.nbytes
