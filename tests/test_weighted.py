"""scaled_cosine and scaled_cosine_loss (seed 002) against the naive
references, the seed's get_dot_sim_loss, and finite differences."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cosim_np import scaled_cosine, scaled_cosine_loss
from tests import naive

EPS64 = np.finfo(np.float64).eps
SCALINGS = ["minmax", "zscore", None]
WEIGHT_ON = ["a", "b", "both"]


def batches(rows, cols, dtype=np.float64):
    elements = st.one_of(st.integers(-30, 30).map(float), st.floats(-1e3, 1e3, width=32))
    return hnp.arrays(dtype, (rows, cols), elements=elements)


def tol(d):
    return 64 * (d + 4) * EPS64


def weights_tol(x, y, scaling, d):
    """``tol(d)`` times the conditioning of the norms' scaling: a norm's
    rounding (inherent: a norm is rarely a float) divided by their spread
    (``minmax``) or standard deviation (``zscore``), as the weights take it."""
    worst = 1.0
    for rows in (x, y):
        norms = np.linalg.norm(rows.astype(np.float64), axis=1)
        if scaling == "minmax":
            spread = np.ptp(norms)
        elif scaling == "zscore" and len(norms) > 1:
            spread = np.std(norms, ddof=1)
        else:
            continue
        if spread > 0:
            worst = max(worst, 1.0 + np.max(norms) / spread)
    return tol(d) * worst


@given(b=st.integers(1, 6), d=st.integers(1, 5), scaling=st.sampled_from(SCALINGS),
       weight_on=st.sampled_from(WEIGHT_ON), data=st.data())
def test_scaled_cosine_matches_naive(b, d, scaling, weight_on, data):
    x = data.draw(batches(b, d))
    y = data.draw(batches(b, d))
    got = scaled_cosine(x, y, scaling=scaling, weight_on=weight_on)
    want = naive.scaled_cosine(x, y, scaling, weight_on)
    np.testing.assert_allclose(got, want, rtol=0, atol=weights_tol(x, y, scaling, d))
    assert np.all(np.abs(got) <= 1.0)


@given(b=st.integers(2, 6), d=st.integers(1, 5), data=st.data())
def test_loss_is_seed002_get_dot_sim_loss(b, d, data):
    x = data.draw(batches(b, d))
    y = data.draw(batches(b, d))
    norms = np.linalg.norm(x, axis=1)
    # the seed divides by zero where the norms are equal, and by their
    # rounding where they are equal but for it (where z = 0 here)
    assume(np.ptp(norms) > 4 * norms.max() * (d + 8) * 2.0**-52)
    assume(np.all(norms > 0) and np.all(np.linalg.norm(y, axis=1) > 0))
    got = scaled_cosine_loss(x, y)  # scaling="minmax", weight_on="a"
    want = naive.seed002_get_dot_sim_loss(x, y)
    assert abs(got - want) <= tol(d)


def test_loss_float32_and_equal_norms_and_single_row():
    x = np.array([[3.0, 4.0], [0.0, 5.0], [5.0, 0.0]], np.float32)  # all norms 5
    y = np.array([[3.0, 4.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
    loss = scaled_cosine_loss(x, y)
    assert loss.dtype == np.float32
    cos = np.array([1.0, 0.0, np.sqrt(0.5)])
    assert float(loss) == pytest.approx(1 - 0.5 * cos.mean(), abs=1e-6)
    for scaling in SCALINGS:
        value, gx, gy = scaled_cosine(x[:1], y[:1], scaling=scaling, return_grad=True)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    with np.errstate(invalid="ignore"):
        assert np.isnan(naive.seed002_get_dot_sim_loss(x, y))  # where the seed gives NaN


@pytest.mark.parametrize("rows", [3, 7, 10])
@pytest.mark.parametrize("weight_on", ["a", "b", "both"])
def test_equal_norms_give_z_zero_under_zscore(rows, weight_on):
    """Rows of equal norms weigh 0.5 each and pass no gradient through the
    weights under "zscore" too, though the mean of n equal norms may be a
    unit off them (the std of that rounding is ~1e-17, not 0)."""
    a = np.ones((rows, 3))
    b = a.copy()
    b[::2, 0] = -1.0  # (norms equal too, cosines not)
    got = scaled_cosine(a, a, scaling="zscore", weight_on=weight_on)
    assert np.all(got == (0.25 if weight_on == "both" else 0.5))
    for other in (a, b):
        # "minmax" finds its min equal to its max: z = 0 too
        want = scaled_cosine_loss(a, other, scaling="minmax", weight_on=weight_on,
                                  return_grad=True)
        got = scaled_cosine_loss(a, other, scaling="zscore", weight_on=weight_on,
                                 return_grad=True)
        for got_part, want_part in zip(got, want):
            np.testing.assert_array_equal(got_part, want_part)


@pytest.mark.parametrize("scaling", ["minmax", "zscore"])
def test_norms_equal_but_for_their_rounding_give_z_zero(scaling):
    """Norms that differ by their rounding only are equal: rows of the same
    components in another order (whose squares add up in another order),
    rows normalised in float64.  Weights 0.5, no gradient through them."""
    rng = np.random.default_rng(7)
    permuted = np.array([[-0.5, -1.0, 0.3], [-1.0, 0.3, -0.5], [0.3, -0.5, -1.0]])
    x = rng.normal(size=(8, 16))
    normalised = x / np.linalg.norm(x, axis=1, keepdims=True)
    for a in (permuted, normalised, np.vstack([normalised * 3.0, -3.0 * normalised[::-1]])):
        b = rng.normal(size=a.shape)
        plain, *plain_grads = scaled_cosine(a, b, scaling=None, return_grad=True)
        got, *grads = scaled_cosine(a, b, scaling=scaling, return_grad=True)
        np.testing.assert_array_equal(got, 0.5 * plain)
        for grad, plain_grad in zip(grads, plain_grads):
            np.testing.assert_array_equal(grad, 0.5 * plain_grad)
        assert scaled_cosine_loss(a, b, scaling=scaling) == 1.0 - 0.5 * np.mean(plain)
    # norms apart by more than rounding are apart: z of 0 and 1 under minmax
    close = np.array([[1.0, 0.0], [1.0 + 2.0**-40, 0.0]])
    got = scaled_cosine(close, np.ones((2, 2)), scaling=scaling)
    assert got[0] != got[1]


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_overflow_and_underflow_safe(scale):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    for scaling in SCALINGS:
        np.testing.assert_allclose(scaled_cosine(x * scale, y * scale, scaling=scaling, weight_on="both"),
                                   scaled_cosine(x, y, scaling=scaling, weight_on="both"), rtol=0, atol=1e-14)
    big = np.full((2, 3), 3e38, np.float32)
    big[1] *= 0.5
    assert np.allclose(scaled_cosine(big, big), [1 / (1 + np.exp(-1.0)), 0.5])


@pytest.mark.parametrize("layout", ["fortran", "reversed columns"])
def test_bits_do_not_depend_on_the_memory_layout(layout):
    """A Fortran-order batch made the rows' sums of squares in another order
    (1.7e-16 apart; found by an exploratory test)."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 64)), rng.normal(size=(300, 64))
    g = rng.normal(size=300)
    if layout == "fortran":
        relaid = [np.asfortranarray(v) for v in (x, y)]
    else:
        relaid = [np.ascontiguousarray(v[:, ::-1])[:, ::-1] for v in (x, y)]
    for scaling in SCALINGS:
        options = dict(scaling=scaling, weight_on="both", return_grad=True, grad_output=g)
        for want, got in zip(scaled_cosine(x, y, **options), scaled_cosine(*relaid, **options)):
            np.testing.assert_array_equal(got, want)
    assert scaled_cosine_loss(*relaid) == scaled_cosine_loss(x, y)


def numeric_grad(f, x, h):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = h * max(1.0, abs(x[idx]))
        xp, xm = x.copy(), x.copy()
        xp[idx] += step
        xm[idx] -= step
        g[idx] = (f(xp) - f(xm)) / (2 * step)
    return g


@given(b=st.integers(1, 5), d=st.integers(1, 4), scaling=st.sampled_from(SCALINGS),
       weight_on=st.sampled_from(WEIGHT_ON), data=st.data())
def test_gradients_match_finite_differences(b, d, scaling, weight_on, data):
    elements = st.floats(-3.0, 3.0).filter(lambda value: abs(value) > 0.05)
    x = data.draw(hnp.arrays(np.float64, (b, d), elements=elements))
    y = data.draw(hnp.arrays(np.float64, (b, d), elements=elements))
    g = np.array(data.draw(st.lists(st.floats(-2, 2), min_size=b, max_size=b)))
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    # away from the kinks: distinct norms (min/max ties), not near a zero vector
    for n in (nx, ny):
        gaps = np.abs(n[:, None] - n[None, :])[~np.eye(b, dtype=bool)]
        assume(gaps.size == 0 or gaps.min() > 0.05)
    _, gx, gy = scaled_cosine(x, y, scaling=scaling, weight_on=weight_on, return_grad=True, grad_output=g)
    fx = lambda x_: float(g @ scaled_cosine(x_, y, scaling=scaling, weight_on=weight_on))  # noqa: E731
    fy = lambda y_: float(g @ scaled_cosine(x, y_, scaling=scaling, weight_on=weight_on))  # noqa: E731
    h = 1e-6
    np.testing.assert_allclose(gx, numeric_grad(fx, x, h), rtol=0, atol=2e-5 * (1 + np.abs(g).sum()) / nx.min())
    np.testing.assert_allclose(gy, numeric_grad(fy, y, h), rtol=0, atol=2e-5 * (1 + np.abs(g).sum()) / ny.min())


@given(b=st.integers(2, 5), d=st.integers(1, 4), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_loss_gradient_and_shuffled_baseline(b, d, data, seed):
    elements = st.floats(-3.0, 3.0).filter(lambda value: abs(value) > 0.05)
    x = data.draw(hnp.arrays(np.float64, (b, d), elements=elements))
    y = data.draw(hnp.arrays(np.float64, (b, d), elements=elements))
    for n in (np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)):
        gaps = np.abs(n[:, None] - n[None, :])[~np.eye(b, dtype=bool)]
        assume(gaps.min() > 0.05)
    loss, gx, gy = scaled_cosine_loss(x, y, shuffle=True, rng=seed, return_grad=True)
    perm = np.random.default_rng(seed).permutation(b)
    assert loss == pytest.approx(scaled_cosine_loss(x, y[perm]), abs=1e-15)
    assert loss == scaled_cosine_loss(x, y, shuffle=True, rng=np.random.default_rng(seed))
    fy = lambda y_: float(scaled_cosine_loss(x, y_, shuffle=True, rng=seed))  # noqa: E731
    fx = lambda x_: float(scaled_cosine_loss(x_, y, shuffle=True, rng=seed))  # noqa: E731
    np.testing.assert_allclose(gx, numeric_grad(fx, x, 1e-6), rtol=0, atol=1e-5 / np.linalg.norm(x, axis=1).min())
    np.testing.assert_allclose(gy, numeric_grad(fy, y, 1e-6), rtol=0, atol=1e-5 / np.linalg.norm(y, axis=1).min())


@pytest.mark.parametrize(
    "func,kwargs,exc,match",
    [
        (scaled_cosine, dict(b=np.ones((3, 2))), ValueError, "a and b must have the same shape"),
        (scaled_cosine, dict(scaling="l2"), ValueError, "scaling must be 'minmax', 'zscore' or None"),
        (scaled_cosine, dict(weight_on="c"), ValueError, "weight_on must be one of"),
        (scaled_cosine, dict(grad_output=np.ones(2)), ValueError, "grad_output is only used"),
        (scaled_cosine, dict(return_grad=True, grad_output=np.ones(3)), ValueError,
         r"grad_output must have shape \(2,\)"),
        (scaled_cosine, dict(a=np.ones(2)), ValueError, "a must be a 2-d array"),
        (scaled_cosine, dict(a=np.ones((2, 2)) * 1j), TypeError, "a must be real-valued"),
        (scaled_cosine, dict(a=np.ones((0, 2)), b=np.ones((0, 2))), ValueError, "at least one row"),
        (scaled_cosine_loss, dict(rng="seed", shuffle=True), TypeError, "rng must be None"),
        # (True was taken as the seed 1: an exploratory test)
        (scaled_cosine_loss, dict(rng=True, shuffle=True), TypeError, "rng must be None"),
        (scaled_cosine_loss, dict(shuffle=1), TypeError, "shuffle must be True or False"),
    ],
)
def test_errors(func, kwargs, exc, match):
    args = dict(a=np.ones((2, 2)), b=np.ones((2, 2)))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        func(args.pop("a"), args.pop("b"), **args)


@pytest.mark.parametrize("weight_on", ["a", "b"])
def test_a_nan_on_the_unweighted_side_reaches_the_min_and_max_rows_gradients_only(weight_on):
    """``minmax``: a NaN on the side without the weight makes its own row's
    value NaN; its gradient reaches the weighted side's row and the rows
    at the min and the max of the norms (whose gradients sum every row's),
    as PyTorch's autograd gives, and no other row (a mask times a NaN sum
    made every row NaN)."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    clean = scaled_cosine(a, b, weight_on=weight_on, return_grad=True)
    (b if weight_on == "a" else a)[2, 0] = np.nan
    values, grad_a, grad_b = scaled_cosine(a, b, weight_on=weight_on, return_grad=True)
    grad = grad_a if weight_on == "a" else grad_b
    norms = np.linalg.norm(a if weight_on == "a" else b, axis=1)
    reached = np.isin(np.arange(8), [2, norms.argmin(), norms.argmax()])
    np.testing.assert_array_equal(np.isnan(values), np.arange(8) == 2)
    np.testing.assert_array_equal(np.isnan(grad).any(axis=1), reached)
    assert not np.isnan(grad[~reached]).any()
    np.testing.assert_array_equal(grad[~reached], (clean[1] if weight_on == "a" else clean[2])[~reached])
