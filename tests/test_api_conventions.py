"""The conventions every public function follows
(docs/api.rst, "Conventions"): ``backend=`` on every array function,
``out=`` on every function that always returns one array, ``axis`` keyword-
only, one dtype policy, and ``method`` only for an algorithm (a definition
is a ``measure``)."""

import inspect
import re

import numpy as np
import pytest

import cosim_np
from cosim_np import (
    GreedyMatch,
    cosine_similarity,
    pairwise_cosine,
    scaled_cosine,
    scaled_cosine_loss,
    set_similarity,
    topk_cosine,
)

ARRAY_FUNCTIONS = [cosine_similarity, pairwise_cosine, topk_cosine, set_similarity, scaled_cosine,
                   scaled_cosine_loss, cosim_np.sliding_cosine, cosim_np.windowed_norm,
                   cosim_np.sharpen, cosim_np.sliding_cosine_grad]
# Functions whose result is always one array; the others return several
# arrays or a result object (topk_cosine, set_similarity, scaled_cosine with
# its optional gradients, scaled_cosine_loss).
ONE_ARRAY = [cosine_similarity, pairwise_cosine, cosim_np.sliding_cosine,
             cosim_np.windowed_norm, cosim_np.sharpen]


class DeviceStandIn:
    """Looks like a CUDA device array to the dispatcher (it is never read)."""

    __cuda_array_interface__ = {"shape": (2, 2), "typestr": "<f8", "data": (0, False),
                                "version": 3}


@pytest.mark.parametrize("func", ARRAY_FUNCTIONS, ids=lambda f: f.__name__)
def test_every_array_function_takes_backend(func):
    parameter = inspect.signature(func).parameters["backend"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default == "auto"
    assert "backend : {'auto', 'cpu', 'cuda'}" in func.__doc__
    assert "{backend}" not in func.__doc__


@pytest.mark.parametrize("call", [
    lambda x: set_similarity(x, np.ones((2, 2)), backend="cpu"),
    lambda x: scaled_cosine(np.ones((2, 2)), x, backend="cpu"),
    lambda x: scaled_cosine_loss(x, np.ones((2, 2)), backend="cpu"),
    # side inputs too: weights, masks, grad_output
    lambda x: set_similarity(np.ones((2, 2)), np.ones((2, 2)), weights_a=x, backend="cpu"),
    lambda x: set_similarity(np.ones((2, 2)), np.ones((2, 2)), mask_b=x, backend="cpu"),
    lambda x: scaled_cosine(np.ones((2, 2)), np.ones((2, 2)), return_grad=True, grad_output=x,
                            backend="cpu"),
])
def test_backend_cpu_refuses_a_device_array(call):
    with pytest.raises(TypeError, match="is a CUDA device array .* copy it to the host"):
        call(DeviceStandIn())


@pytest.mark.parametrize("func", [set_similarity, scaled_cosine, scaled_cosine_loss],
                         ids=lambda f: f.__name__)
def test_an_unknown_backend_is_named(func):
    with pytest.raises(ValueError, match="backend must be one of"):
        func(np.ones((2, 2)), np.ones((2, 2)), backend="gpu")


@pytest.mark.parametrize("func", ONE_ARRAY, ids=lambda f: f.__name__)
def test_every_function_returning_one_array_takes_out(func):
    parameter = inspect.signature(func).parameters["out"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


def test_axis_is_keyword_only():
    for func in (cosine_similarity, cosim_np.sliding_cosine, cosim_np.windowed_norm):
        assert inspect.signature(func).parameters["axis"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError):
        cosine_similarity(np.ones((2, 3)), np.ones((2, 3)), 0)
    assert cosine_similarity(np.ones((2, 3)), np.ones((2, 3)), axis=0).shape == (3,)


def test_cosine_similarity_out():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 1, 5)), rng.normal(size=(1, 3, 5))
    want = cosine_similarity(a, b)
    out = np.full((4, 3), 7.0)
    assert cosine_similarity(a, b, out=out) is out
    np.testing.assert_array_equal(out, want)
    half = np.empty((4, 3), np.float32)  # the result takes out's dtype
    cosine_similarity(a, b, out=half)
    np.testing.assert_array_equal(half, want.astype(np.float32))
    scalar = np.empty((), np.float64)  # two vectors: a 0-d out
    assert cosine_similarity([1.0, 0.0], [1.0, 1.0], out=scalar) is scalar
    assert scalar == pytest.approx(2**-0.5)
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\); the result needs shape \(4, 3\)"):
        cosine_similarity(a, b, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="out must have dtype float16, float32 or float64"):
        cosine_similarity(a, b, out=np.empty((4, 3), np.int64))
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        cosine_similarity(a, b, out=[[0.0] * 3] * 4)
    readonly = np.empty((4, 3))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        cosine_similarity(a, b, out=readonly)


@pytest.mark.parametrize("measure", ["mean", "centroid", "greedy", "chamfer"])
@pytest.mark.parametrize("da,db,want", [
    (np.float32, np.float32, np.float32),
    (np.float16, np.float16, np.float16),
    (np.float64, np.float64, np.float64),
    (np.int32, np.int8, np.float64),
    (np.bool_, np.bool_, np.float64),
    (np.float32, np.float64, np.float64),
    (np.float16, np.float32, np.float32),
])
def test_set_similarity_follows_the_dtype_policy(measure, da, db, want):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(5, 4)) > 0 if da is np.bool_ else rng.integers(-3, 4, (5, 4))).astype(da)
    b = (rng.normal(size=(3, 4)) > 0 if db is np.bool_ else rng.integers(-3, 4, (3, 4))).astype(db)
    a[0, 0] = b[0, 0] = 1  # no zero rows needed, none forbidden
    got = set_similarity(a, b, measure=measure)
    values = got if isinstance(got, GreedyMatch) else (got,)
    assert isinstance(got, GreedyMatch) == (measure == "greedy")
    for value in values:
        assert isinstance(value, np.generic) and value.dtype == want
    wide = set_similarity(a.astype(np.float64), b.astype(np.float64), measure=measure)
    wide = wide if isinstance(wide, GreedyMatch) else (wide,)
    eps = float(np.finfo(want).eps)
    np.testing.assert_allclose(np.array(values, np.float64), np.array(wide), rtol=0, atol=8 * eps)
    nan_rows = np.full((2, 4), np.nan, da if np.dtype(da).kind == "f" else np.float64)
    nan = set_similarity(nan_rows, b, measure=measure)
    for value in (nan if isinstance(nan, GreedyMatch) else (nan,)):
        assert np.isnan(value)


def test_set_similarity_takes_its_measure_by_keyword():
    a, b = np.eye(2), np.ones((3, 2))
    assert "method" not in inspect.signature(set_similarity).parameters
    assert inspect.signature(set_similarity).parameters["measure"].kind is \
        inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError):
        set_similarity(a, b, "greedy")
    with pytest.raises(ValueError, match="measure must be one of 'mean', 'centroid', 'greedy'"):
        set_similarity(a, b, measure="median")
    assert set_similarity(a, b, measure="greedy").recall == pytest.approx(2**-0.5)


def test_set_similarity_ignores_nan_rows_of_weight_zero():
    a = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [3.0, 0.0]])
    for measure in ("mean", "centroid"):
        got = set_similarity(a, b, measure=measure, weights_a=[1.0, 0.0, 1.0])
        want = set_similarity(a[[0, 2]], b, measure=measure)
        assert got == pytest.approx(want, abs=1e-15)


def _swapped(array):
    """``array`` with the other byte order (the same numbers)."""
    array = np.asarray(array)
    return array.astype(array.dtype.newbyteorder("S"))


BYTE_ORDER_CALLS = {
    "sliding_cosine": lambda x, k: cosim_np.sliding_cosine(x, k, mode="same"),
    "sliding_cosine fft": lambda x, k: cosim_np.sliding_cosine(x, k, method="fft"),
    "windowed_norm": lambda x, k: cosim_np.windowed_norm(x, 7, center=True),
    "sharpen": lambda x, k: cosim_np.sharpen(x, 1.5),
    "find_matches": lambda x, k: cosim_np.find_matches(x, k, k=3).index,
    "sliding_cosine_grad": lambda x, k: cosim_np.sliding_cosine_grad(
        x, k, np.ones(x.size - k.size + 1))[1],
    "images": lambda x, k: cosim_np.sliding_cosine(x.reshape(20, 25), k[:6].reshape(2, 3),
                                                   axis=(0, 1)),
    "cosine_similarity": lambda x, k: cosine_similarity(x.reshape(20, 25), x[::-1].reshape(20, 25)),
    "pairwise_cosine": lambda x, k: pairwise_cosine(x.reshape(50, 10), x[:70].reshape(7, 10)),
    "topk_cosine": lambda x, k: topk_cosine(x.reshape(50, 10), None, 3)[0],
    "set_similarity": lambda x, k: set_similarity(x.reshape(50, 10), x[:70].reshape(7, 10)),
    "scaled_cosine": lambda x, k: scaled_cosine(x.reshape(50, 10), x[::-1].reshape(50, 10)),
    "scaled_cosine_loss": lambda x, k: scaled_cosine_loss(x.reshape(50, 10), x[::-1].reshape(50, 10)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("name", BYTE_ORDER_CALLS)
def test_either_byte_order_in_gives_the_same_numbers_out(name, dtype):
    """Big-endian arrays (as read from SEG-Y, SAC or FITS files) are taken as
    what they hold: the result equals the native one bit for bit, in the
    machine's byte order."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(500) * 100).astype(dtype)
    k = (rng.standard_normal(9) * 100).astype(dtype)
    want = np.asarray(BYTE_ORDER_CALLS[name](x, k))
    got = np.asarray(BYTE_ORDER_CALLS[name](_swapped(x), _swapped(k)))
    assert got.dtype == want.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call", [
    lambda out: cosim_np.sliding_cosine(np.arange(50.0), [1.0, 2.0, 3.0], out=out[:48]),
    lambda out: cosim_np.windowed_norm(np.arange(50.0), 3, out=out[:48]),
    lambda out: cosim_np.sharpen(np.linspace(-1, 1, 50), 2.0, out=out),
    lambda out: cosine_similarity(np.ones((50, 3)), np.ones(3), out=out),
    lambda out: pairwise_cosine(np.ones((5, 3)), out=out[:25].reshape(5, 5)),
])
def test_an_out_of_the_other_byte_order_is_refused_saying_so(call):
    """Results are written in the machine's byte order; an ``out`` of the
    other one is refused with that reason (not "needs dtype float64")."""
    other = np.dtype(np.float64).newbyteorder("S")
    with pytest.raises(ValueError, match="of the other byte order"):
        call(np.zeros(50, other))


def _masked(shape, masked_at):
    values = np.ma.masked_array(np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape))
    values[masked_at] = np.ma.masked
    return values


@pytest.mark.parametrize("call,name", [
    (lambda x: cosim_np.sliding_cosine(x, np.ones(3)), "signal"),
    (lambda x: cosim_np.windowed_norm(x, 3), "signal"),
    (lambda x: cosim_np.sharpen(x, 1.5), "s"),
    (lambda x: cosine_similarity(x, np.ones((2, 3))), "a"),
    (lambda x: pairwise_cosine(np.ones((2, 3)), x), "b"),
    (lambda x: topk_cosine(x, np.ones((2, 3)), 1), "queries"),
    (lambda x: scaled_cosine(np.ones((2, 3)), x), "b"),
])
def test_a_masked_array_that_masks_anything_is_refused_by_name(call, name):
    """``np.asarray`` drops a mask: the values under it (often a fill value)
    would be read as data and give numbers with no warning."""
    with pytest.raises(ValueError, match=rf"^{name} is a masked array with 1 masked value\(s\)"
                                         rf".*{name}\.astype\(float\)\.filled\(np\.nan\)"):
        call(_masked((2, 3), (0, 1)))


@pytest.mark.parametrize("call, name, way_out", [
    (lambda x: set_similarity(np.ones((2, 2)), np.ones((2, 2)), weights_a=x[0, :2]), "weights_a",
     "filled(0)"),
    (lambda x: set_similarity(np.ones((2, 2)), np.ones((2, 2)), mask_b=x[0, :2] > 0), "mask_b",
     "filled(False)"),
    (lambda x: scaled_cosine(np.ones((2, 3)), np.ones((2, 3)), return_grad=True,
                             grad_output=x[0, :2]), "grad_output", "filled(0)"),
    # (a NaN output gradient would make the kernel's and the scalars' gradients NaN)
    (lambda x: cosim_np.sliding_cosine_grad(np.arange(10.0).reshape(2, 5), np.ones(3), x),
     "grad_output", "filled(0)"),
    # (every window reads every tap: a NaN tap made every score NaN, an exploratory test)
    (lambda x: cosim_np.sliding_cosine(np.arange(16.0).reshape(2, 8), x), "kernel", "filled(0)"),
    (lambda x: cosim_np.find_matches(np.arange(16.0).reshape(2, 8), x, threshold=0.5), "kernel",
     "filled(0)"),
])
def test_a_masked_side_input_is_refused_with_a_way_out_that_is_taken(call, name, way_out):
    """Weights, masks and output gradients are no samples: NaN is no way out
    for them (a NaN weight or a float mask is refused), the advice given is
    one that the call takes."""
    masked = _masked((2, 3), (0, 1))
    with pytest.raises(ValueError, match=rf"^{name} is a masked array .*{name}\.{re.escape(way_out)}"):
        call(masked)
    filled = eval(f"masked.{way_out}")  # the advice, followed
    call(filled)


@pytest.mark.parametrize("call", [
    lambda out: cosim_np.sliding_cosine(np.ones((2, 5)), np.ones(3), out=out),
    lambda out: cosim_np.sharpen(np.ones((2, 3)), 1.5, out=out),
    lambda out: cosim_np.windowed_norm(np.ones((2, 5)), 3, out=out),
    lambda out: cosine_similarity(np.ones((2, 2, 3)), np.ones((2, 2, 3)), out=out),
])
@pytest.mark.parametrize("kind", ["matrix", "masked"])
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_an_out_of_an_ndarray_subclass_is_refused(call, kind):
    """An ``np.matrix`` stays 2-d when raveled: ``sharpen`` wrote past its
    end (wrong values, then a crash); other calls crashed in Numba.  Only
    plain arrays and memmaps are taken, as ``out.view(np.ndarray)`` is."""
    shape = np.shape(call(None))
    plain = np.zeros(shape)
    out = np.asmatrix(plain) if kind == "matrix" else np.ma.masked_array(plain)
    with pytest.raises(TypeError, match=r"^out must be a plain numpy.ndarray or numpy.memmap; "
                                        r"got numpy\.(matrix|ma\.MaskedArray).*out\.view"):
        call(out)
    assert call(out.view(np.ndarray)) is not None and np.array_equal(plain, call(None))


def test_an_out_memmap_is_written(tmp_path):
    out = np.memmap(tmp_path / "scores", dtype=np.float64, mode="w+", shape=(2, 3))
    signal = np.arange(10.0).reshape(2, 5)
    assert cosim_np.sliding_cosine(signal, np.ones(3), out=out) is out
    np.testing.assert_array_equal(out, cosim_np.sliding_cosine(signal, np.ones(3)))


def test_a_0d_array_is_a_scalar_option():
    """NumPy takes a 0-d array where it takes a number, and so do the
    options that are numbers."""
    x, k = np.arange(1.0, 9.0), np.array([1.0, -1.0, 2.0])
    np.testing.assert_array_equal(
        cosim_np.sliding_cosine(x, k, sharpness=np.array(1.5), noise_floor=np.array(0.25)),
        cosim_np.sliding_cosine(x, k, sharpness=1.5, noise_floor=0.25))
    np.testing.assert_array_equal(cosim_np.sharpen(np.array([0.5, -0.25]), np.array(2)),
                                  cosim_np.sharpen(np.array([0.5, -0.25]), 2))
    assert (cosim_np.find_matches(x, k, threshold=np.array(0.5))
            == cosim_np.find_matches(x, k, threshold=0.5))
    with pytest.raises(TypeError, match="^sharpness must be a real number"):
        cosim_np.sliding_cosine(x, k, sharpness=np.array([1.5]))


def test_a_masked_array_that_masks_nothing_is_read_as_its_data():
    signal = np.ma.masked_array(np.arange(8.0) ** 2, mask=False)
    got = cosim_np.sliding_cosine(signal, np.array([1.0, -1.0, 2.0]))
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, cosim_np.sliding_cosine(signal.data, np.array([1.0, -1.0, 2.0])))


def test_max_memory_takes_a_float_of_whole_bytes_as_its_string_is_taken():
    """``max_memory='1e6'`` was taken and ``max_memory=1e6`` refused as no
    integer (an exploratory test): a float of a whole number of bytes is
    taken now, as its string is, and a fraction of a byte refused."""
    from cosim_np._core.validate import check_memory

    assert check_memory(1e6, "max_memory", 1) == check_memory("1e6", "max_memory", 1) == 10**6
    assert check_memory(np.float32(4096.0), "max_memory", 1) == 4096
    assert check_memory("1.5KiB", "max_memory", 1) == 1536
    rows = np.random.default_rng(0).standard_normal((50, 8))
    np.testing.assert_array_equal(pairwise_cosine(rows, max_memory=2e4),
                                  pairwise_cosine(rows, max_memory=20_000))
    # (a string of a fraction of a byte was floored, where its float was refused)
    for value, error in ((2.5, ValueError), (float("inf"), ValueError), (0.0, ValueError),
                         (True, TypeError), ("lots", ValueError), ("1000.5", ValueError),
                         ("2.5 B", ValueError)):
        with pytest.raises(error, match="^max_memory must be"):
            check_memory(value, "max_memory", 1)


def test_float16_results_round_tiny_values_to_zero_under_a_user_s_seterr():
    """Under ``np.seterr(all="raise")`` (or ``"warn"``), float16 results
    whose tiny values round to 0 raised ``FloatingPointError`` (underflow in
    a cast; an exploratory test): the rounding is the dtype's, not an error."""
    rng = np.random.default_rng(0)
    x16 = rng.standard_normal(2000).astype(np.float16)
    kernel = rng.standard_normal(7)
    image = rng.standard_normal((40, 40)).astype(np.float16)
    a = np.array([[1.0, 1e-7, 0], [0, 1, 1e-7]])
    b = np.array([[1e-7, 1, 0], [1, 0, 1e-7]])
    calls = [
        lambda: cosim_np.sliding_cosine(x16, kernel, sharpness=2.0),
        lambda: cosim_np.sliding_cosine(x16, kernel, sharpness=3.0, method="fft"),
        lambda: cosim_np.sliding_cosine(image, image[:5, :5], axis=(0, 1), sharpness=2.0),
        lambda: cosim_np.find_matches(x16, kernel, k=3, sharpness=3.0),
        lambda: cosim_np.pairwise_cosine(a, b, dtype=np.float16),
        lambda: cosim_np.pairwise_cosine(np.vstack([a, b]), dtype=np.float16),
        lambda: cosim_np.cosine_similarity(a, b, out=np.empty(2, np.float16)),
    ]
    for call in calls:
        want = call()
        with np.errstate(all="raise"):
            got = call()
        if isinstance(want, cosim_np.Matches):
            assert got == want
        else:
            np.testing.assert_array_equal(got, want)


def test_pandas_nullable_columns_are_refused_with_their_conversion():
    """A DataFrame of nullable columns (Int64, Float64) reads as objects: it
    was told 'got dtype object', naming neither pandas nor a way out (an
    exploratory test)."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([[1, 2, 3], [4, 5, 6]]).astype("Int64")
    with pytest.raises(TypeError, match=r"^a is a pandas DataFrame that NumPy reads as objects .*"
                                        r"a\.to_numpy\(dtype=float, na_value=np\.nan\)"):
        cosim_np.pairwise_cosine(frame)
    np.testing.assert_array_equal(
        cosim_np.pairwise_cosine(frame.to_numpy(dtype=float, na_value=np.nan)),
        cosim_np.pairwise_cosine(np.array([[1.0, 2, 3], [4, 5, 6]])))
