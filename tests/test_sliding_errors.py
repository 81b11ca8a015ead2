"""Every invalid argument raises ValueError/TypeError naming the parameter."""

import numpy as np
import pytest

from cosim_np import sharpen, sliding_cosine, windowed_norm
from cosim_np._core import config

SIGNAL = np.arange(10.0)


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(kernel=np.ones(11)), ValueError, r"kernel of length 11 .* longer than the signal \(10 samples"),
        (dict(kernel=np.ones(4), dilation=4), ValueError, r"dilation=4 spans 13 samples"),
        (dict(dilation=0), ValueError, r"dilation must be an integer >= 1; got 0"),
        (dict(dilation=-2), ValueError, r"dilation must be an integer >= 1"),
        (dict(dilation=1.5), TypeError, r"dilation must be an integer"),
        (dict(dilation=True), TypeError, r"dilation must be an integer"),
        (dict(stride=0), ValueError, r"stride must be an integer >= 1; got 0"),
        (dict(stride=2.0), TypeError, r"stride must be an integer"),
        (dict(stride=2, out=np.empty(8)), ValueError,
         r"out has shape \(8,\); the result needs shape \(4,\)"),
        (dict(sharpness=np.nan), ValueError, r"sharpness must be a finite real number"),
        (dict(sharpness=np.inf), ValueError, r"sharpness must be a finite real number"),
        (dict(sharpness=10**400), ValueError, r"sharpness must be a finite real number; got inf"),
        (dict(noise_floor=-(10**400)), ValueError, r"noise_floor must be a finite real number"),
        (dict(sharpness="2"), TypeError, r"sharpness must be a real number"),
        (dict(sharpness=1j), TypeError, r"sharpness must be a real number"),
        (dict(noise_floor=-1e-9), ValueError, r"noise_floor must be >= 0"),
        (dict(noise_floor=np.inf), ValueError, r"noise_floor must be a finite"),
        (dict(noise_floor=np.nan), ValueError, r"noise_floor must be a finite"),
        (dict(fill="zero"), TypeError, r"fill must be a real number"),
        (dict(mode="periodic"), ValueError, r"mode must be one of 'valid', 'same', 'full', 'causal'; got 'periodic'"),
        (dict(mode=None), ValueError, r"mode must be one of"),
        (dict(method="fft2"), ValueError, r"method must be one of 'auto', 'direct', 'fft'; got 'fft2'"),
        (dict(axis=1), ValueError, r"axis=1 is out of bounds for an array of 1 dimension"),
        (dict(axis=-2), ValueError, r"axis=-2 is out of bounds"),
        (dict(axis=0.0), TypeError, r"axis must be an integer"),
        (dict(axis=False), TypeError, r"axis must be an integer or a tuple of integers; got False"),
        (dict(axis=()), ValueError, r"axis must name at least one axis; got \(\)"),
        (dict(mode="same", dilation=2**63), ValueError,
         r"dilation=9223372036854775808 spans .* mode='same' would pad the signal \(10 samples "
         r"along axis\) to .*, more than an array can hold"),
        (dict(mode="full", dilation=10**18), ValueError, r"more than an array can hold"),
        (dict(kernel=np.ones((2, 2, 2, 2))), ValueError,
         r"kernel must have shape \(m,\), \(K, m\) or \(C_out, C_in, m\)"),
        (dict(kernel=np.ones((2, 0))), ValueError, r"kernel must not be empty"),
        (dict(kernel=[]), ValueError, r"kernel must not be empty"),
        (dict(kernel=np.ones(3) * 1j), TypeError, r"kernel must be real-valued; got complex"),
        (dict(kernel=np.array(["a", "b"])), TypeError, r"kernel must have a boolean, integer or float"),
        (dict(kernel=5.0), ValueError, r"kernel must have at least 1 dimension; got a 0-d array"),
        (dict(kernel=np.ones((2, 1, 3))), ValueError,
         r"multi-channel kernel of shape \(2, 1, 3\) needs a signal with a channel axis"),
        (dict(out=np.empty(7)), ValueError, r"out has shape \(7,\); the result needs shape \(8,\)"),
        (dict(out=np.empty(8, np.float32)), ValueError, r"out has dtype float32; the result needs dtype float64"),
        (dict(out=[0.0] * 8), TypeError, r"out must be a numpy.ndarray"),
    ],
)
def test_sliding_cosine_rejects(kwargs, error, pattern):
    kwargs = dict(kwargs)
    kernel = kwargs.pop("kernel", np.ones(3))
    with pytest.raises(error, match=pattern):
        sliding_cosine(SIGNAL, kernel, **kwargs)


def test_signal_errors():
    with pytest.raises(ValueError, match=r"signal must have at least 1 dimension; got a 0-d array"):
        sliding_cosine(3.0, [1.0])
    with pytest.raises(TypeError, match=r"signal must be real-valued; got complex"):
        sliding_cosine(SIGNAL + 1j, [1.0, 2.0])
    with pytest.raises(TypeError, match=r"signal must have a boolean, integer or float16/float32/float64 dtype"):
        sliding_cosine(np.array(["a", "b"]), [1.0])
    with pytest.raises(TypeError, match=r"signal must have a boolean, integer or "
                                        r"float16/float32/float64 dtype; got dtype object"):
        sliding_cosine(np.array([1.0, None]), [1.0])
    with pytest.raises(ValueError, match=r"signal must not be empty"):
        sliding_cosine(np.zeros((3, 0)), [1.0], mode="same")
    for shape, axis in (((0,), -1), ((3, 0), -1), ((0, 5), -1), ((0, 5, 5), (1, 2))):
        with pytest.raises(ValueError, match=r"signal must not be empty"):
            windowed_norm(np.zeros(shape), 1, mode="same", axis=axis)
    with pytest.raises(TypeError, match=r"signal must be array-like"):
        sliding_cosine([[1.0, 2.0], [3.0]], [1.0])


def test_a_ragged_bank_is_refused_saying_kernels_take_one_length():
    """(NumPy's text alone said "inhomogeneous shape"; an exploratory test.)"""
    with pytest.raises(TypeError, match=r"kernel must be array-like; .* \(a bank takes kernels of "
                                        r"one length: search with each length apart"):
        sliding_cosine(np.ones(20), [[1.0, 2.0, 3.0], [1.0, 2.0]])


def test_channel_mismatch_names_both_counts():
    with pytest.raises(ValueError,
                       match=r"kernel has C_in=3 input channels but the signal has 2 along its channel axis"):
        sliding_cosine(np.ones((2, 20)), np.ones((4, 3, 5)))
    with pytest.raises(ValueError, match=r"needs a signal with a channel axis just before the sliding axis"):
        sliding_cosine(np.ones((3, 20)), np.ones((4, 3, 5)), axis=0)


def test_read_only_out_is_rejected():
    out = np.empty(8)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"out is read-only"):
        sliding_cosine(SIGNAL, np.ones(3), out=out)


def test_windowed_norm_rejects():
    # (it once advised "a shorter kernel", which windowed_norm does not take)
    with pytest.raises(ValueError,
                       match=r"window of length 11 with dilation=1 spans 11 samples, longer than the "
                             r"signal .* use a shorter window, or mode='same'"):
        windowed_norm(SIGNAL, 11)
    with pytest.raises(ValueError, match=r"use a shorter window or a smaller dilation, or mode="):
        windowed_norm(SIGNAL, 4, dilation=4)
    image = np.ones((5, 5))
    with pytest.raises(ValueError, match=r"along axis 0, .* use a smaller window, or mode="):
        windowed_norm(image, (6, 2), axis=(0, 1))
    with pytest.raises(ValueError, match=r"along axis 0, .* use a smaller window or dilation, or"):
        windowed_norm(image, (2, 2), dilation=(5, 1), axis=(0, 1))
    with pytest.raises(ValueError, match=r"window must be an integer >= 1; got 0"):
        windowed_norm(SIGNAL, 0)
    with pytest.raises(TypeError, match=r"window must be an integer"):
        windowed_norm(SIGNAL, 2.0)
    with pytest.raises(ValueError, match=r"dilation must be an integer >= 1"):
        windowed_norm(SIGNAL, 2, dilation=0)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        windowed_norm(SIGNAL, 2, mode="wrap")
    with pytest.raises(ValueError, match=r"stride must be an integer >= 1; got -1"):
        windowed_norm(SIGNAL, 2, stride=-1)
    with pytest.raises(ValueError, match=r"axis=3 is out of bounds"):
        windowed_norm(SIGNAL, 2, axis=3)
    with pytest.raises(TypeError, match=r"signal must be real-valued"):
        windowed_norm(SIGNAL * 1j, 2)
    with pytest.raises(ValueError, match=r"signal must have at least 1 dimension"):
        windowed_norm(np.float64(1.0), 1)


def test_sharpen_rejects():
    with pytest.raises(ValueError, match=r"sharpness must be a finite real number; got nan"):
        sharpen(np.ones(3), np.nan)
    with pytest.raises(TypeError, match=r"sharpness must be a real number"):
        sharpen(np.ones(3), None)
    with pytest.raises(TypeError, match=r"s must be real-valued; got complex"):
        sharpen(np.ones(3) * 1j, 2.0)


def test_fft_engine_is_checked(monkeypatch):
    from cosim_np._cpu import fft as _fft

    monkeypatch.setattr(config, "FFT_ENGINE", "fftw")
    with pytest.raises(ValueError, match=r"FFT_ENGINE must be 'auto', 'ducc0' or 'numpy'; got 'fftw'"):
        sliding_cosine(np.arange(300.0), np.ones(200), method="fft")
    monkeypatch.setattr(config, "FFT_ENGINE", "ducc0")
    monkeypatch.setattr(_fft, "_ducc0_fft", False)  # as if it were not installed
    with pytest.raises(ImportError, match=r"ducc0 is not installed"):
        sliding_cosine(np.arange(300.0), np.ones(200), method="fft")
    monkeypatch.setattr(config, "FFT_ENGINE", "auto")
    assert _fft.engine() == "numpy"
    # and "auto" then transforms with NumPy's, every block
    used = []
    forward = _fft._forward

    def recorded(blocks, spectrum, use_ducc0):
        used.append(use_ducc0)
        forward(blocks, spectrum, use_ducc0)

    monkeypatch.setattr(_fft, "_forward", recorded)
    x = np.sin(np.arange(3000.0))
    got = sliding_cosine(x, np.ones(200), method="fft")
    assert used and not any(used)
    np.testing.assert_allclose(got, sliding_cosine(x, np.ones(200), method="direct"), rtol=0,
                               atol=1e-12)


def test_an_empty_axis_tuple_is_refused_by_every_sliding_function():
    from cosim_np import find_matches, sliding_cosine_grad

    image = np.ones((6, 7))
    calls = [lambda: sliding_cosine(image, np.ones((2, 2)), axis=()),
             lambda: windowed_norm(image, 2, axis=[]),
             lambda: find_matches(image, np.ones((2, 2)), axis=()),
             lambda: sliding_cosine_grad(image, np.ones((2, 2)), np.ones((5, 6)), axis=())]
    for call in calls:
        with pytest.raises(ValueError, match=r"axis must name at least one axis"):
            call()
    with pytest.raises(ValueError, match=r"window of length 4611686018427387904 .* use a shorter "
                                         r"window\.$"):
        windowed_norm(SIGNAL, 2**62, mode="same")


def test_zero_dimensional_integer_arrays_are_their_integers():
    """``sharpness=np.array(2.0)`` was taken, ``dilation=np.array(2)`` and
    ``stride=np.array(2)`` refused as not integers (an exploratory test)."""
    want = sliding_cosine(SIGNAL, np.ones(3), dilation=2, stride=3)
    np.testing.assert_array_equal(
        sliding_cosine(SIGNAL, np.ones(3), dilation=np.array(2), stride=np.array(3)), want)
    np.testing.assert_array_equal(windowed_norm(SIGNAL, np.array(3), dilation=np.array(2)),
                                  windowed_norm(SIGNAL, 3, dilation=2))
    with pytest.raises(TypeError, match=r"dilation must be an integer >= 1; got array\(2\.\)"):
        sliding_cosine(SIGNAL, np.ones(3), dilation=np.array(2.0))


def test_one_value_per_axis_of_one_axis_given_as_an_int_is_that_value():
    """``dilation=(2,)`` was taken with ``axis=(-1,)`` and refused with
    ``axis=-1`` as not an integer (an exploratory test)."""
    np.testing.assert_array_equal(sliding_cosine(SIGNAL, np.ones(3), dilation=(2,), stride=[3]),
                                  sliding_cosine(SIGNAL, np.ones(3), dilation=2, stride=3))
    np.testing.assert_array_equal(windowed_norm(SIGNAL, (3,), dilation=(2,)),
                                  windowed_norm(SIGNAL, 3, dilation=2))


def test_axes_and_per_axis_values_as_numpy_arrays_are_their_tuples():
    """``axis=np.array([0, 1])`` was told "axis must be an integer", and a
    per-axis ``dilation`` or ``exclusion`` as an array "must be an integer
    >= 1", where their tuples are taken (an exploratory test); a tuple
    ``window`` without a tuple axis was told "window must be an integer"."""
    from cosim_np import find_matches

    image = np.random.default_rng(0).standard_normal((12, 14))
    template = image[2:5, 3:7]
    np.testing.assert_array_equal(
        sliding_cosine(image, template, axis=np.array([0, 1]), dilation=np.array([2, 1])),
        sliding_cosine(image, template, axis=(0, 1), dilation=(2, 1)))
    np.testing.assert_array_equal(windowed_norm(image, np.array([3, 4]), axis=np.array([0, 1])),
                                  windowed_norm(image, (3, 4), axis=(0, 1)))
    assert find_matches(image, template, axis=np.array([0, 1]), exclusion=np.array([2, 1]),
                        k=3) == find_matches(image, template, axis=(0, 1), exclusion=(2, 1), k=3)
    with pytest.raises(TypeError, match=r"^axis must be an integer or a tuple of integers; "
                                        r"got None"):
        sliding_cosine(image, template, axis=None)
    with pytest.raises(ValueError, match=r"^window=\(3, 3\) gives one length per axis: pass "
                                         r"axis as a tuple"):
        windowed_norm(image, (3, 3))


def test_messages_show_an_array_by_its_shape_not_its_elements():
    """A per-channel ``sharpness`` array (as a layer holds) was refused
    with every one of its elements printed, one per line; an array in a
    message is its shape and dtype, any other value one line at most."""
    from cosim_np import find_matches, pairwise_cosine

    with pytest.raises(TypeError, match=r"^sharpness must be a real number; got an array of "
                                        r"shape \(32, 1, 1\) and dtype float32\.$"):
        sliding_cosine(SIGNAL, np.ones(3), sharpness=np.ones((32, 1, 1), np.float32))
    with pytest.raises(TypeError, match=r"^center must be True or False; got an array of shape "
                                        r"\(5,\) and dtype bool of type ndarray\.$"):
        windowed_norm(SIGNAL, 3, center=np.ones(5, bool))
    with pytest.raises(TypeError, match=r"^threshold must be .* got an array of shape \(7,\)"):
        find_matches(SIGNAL, np.ones(3), threshold=np.ones(7))
    with pytest.raises(TypeError, match=r"^max_memory must be .* got an array of shape \(2,\)"):
        pairwise_cosine(np.ones((3, 2)), max_memory=np.ones(2))
    with pytest.raises(TypeError, match=r"^fill must be a real number; got 'x{75} \.\.\.\.$"):
        sliding_cosine(SIGNAL, np.ones(3), fill="x" * 1000)
    with pytest.raises(TypeError, match=r"^sharpness must be a real number; got 1j\.$"):
        sliding_cosine(SIGNAL, np.ones(3), sharpness=1j)  # (one element: its repr)
