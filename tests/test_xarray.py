"""The sliding functions on xarray.DataArray inputs, NumPy- or Dask-backed:
the same values as on the bare arrays, with the dims and coordinates that
still apply (docs/dask.rst, "Labelled arrays")."""

import re

import numpy as np
import pytest

from cosim_np import sharpen, sliding_cosine, windowed_norm

xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")


@pytest.fixture(params=["numpy", "dask"])
def record(request):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((2, 3, 120))
    array = xr.DataArray(values, dims=("station", "channel", "time"),
                         coords={"time": 0.5 * np.arange(120), "station": ["A", "B"],
                                 "channel": ["Z", "N", "E"], "gain": ("station", [1.0, 2.0]),
                                 "tick": ("time", np.arange(120))},
                         attrs={"units": "m/s"})
    if request.param == "dask":
        array = array.chunk({"time": 50, "station": 1})
    return array, values


@pytest.mark.parametrize("mode", ["valid", "same", "causal", "full"])
def test_one_kernel_keeps_dims_and_follows_the_mode(record, mode):
    array, values = record
    got = sliding_cosine(array, [1.0, -2.0, 0.5, 3.0], mode=mode)
    want = sliding_cosine(values, [1.0, -2.0, 0.5, 3.0], mode=mode)
    assert isinstance(got, xr.DataArray) and got.dims == array.dims
    np.testing.assert_array_equal(got.values, want)
    assert list(got.station.values) == ["A", "B"] and list(got.gain.values) == [1.0, 2.0]
    if mode == "valid":  # window starts
        np.testing.assert_array_equal(got.time.values, 0.5 * np.arange(117))
        np.testing.assert_array_equal(got.tick.values, np.arange(117))
    elif mode == "full":  # windows start before the signal: no time coordinate
        assert "time" not in got.coords and "tick" not in got.coords
    else:
        np.testing.assert_array_equal(got.time.values, array.time.values)


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_a_stride_keeps_the_coordinates_of_the_windows_kept(record, mode):
    array, values = record
    got = sliding_cosine(array, [1.0, -2.0, 0.5, 3.0], mode=mode, stride=4)
    np.testing.assert_array_equal(got.values, sliding_cosine(values, [1.0, -2.0, 0.5, 3.0],
                                                             mode=mode, stride=4))
    norms = windowed_norm(array, 4, mode=mode, stride=4)
    np.testing.assert_array_equal(norms.values, windowed_norm(values, 4, mode=mode, stride=4))
    for result in (got, norms):
        if mode == "full":
            assert "time" not in result.coords
        else:  # window i * 4 starts (valid) or belongs to (same) sample i * 4
            np.testing.assert_array_equal(result.time.values,
                                          0.5 * np.arange(0, 4 * result.sizes["time"], 4))


def test_a_bank_adds_a_kernel_dim_and_axis_may_be_a_dim_name(record):
    array, values = record
    bank = np.random.default_rng(1).standard_normal((4, 5))
    got = sliding_cosine(array, bank, axis="time", mode="same")
    assert got.dims == ("station", "channel", "kernel", "time")
    np.testing.assert_array_equal(got.values, sliding_cosine(values, bank, mode="same"))
    along_stations = windowed_norm(array, 2, axis="station")
    assert along_stations.dims == array.dims and along_stations.shape == (1, 3, 120)
    assert list(along_stations.station.values) == ["A"]


def test_multichannel_kernels_replace_the_channel_dim(record):
    array, values = record
    kernel = np.random.default_rng(2).standard_normal((5, 3, 7))
    got = sliding_cosine(array, kernel, mode="causal", dilation=2)
    assert got.dims == ("station", "kernel", "time") and got.shape == (2, 5, 120)
    assert "channel" not in got.coords
    np.testing.assert_array_equal(got.values, sliding_cosine(values, kernel, mode="causal",
                                                             dilation=2))


def test_norms_and_sharpen(record):
    array, values = record
    norms = windowed_norm(array, 6, dilation=3)
    np.testing.assert_array_equal(norms.values, windowed_norm(values, 6, dilation=3))
    np.testing.assert_array_equal(norms.time.values, 0.5 * np.arange(120 - 15))
    sharp = sharpen(array / 4, 1.5)
    assert sharp.dims == array.dims
    np.testing.assert_array_equal(sharp.values, sharpen(values / 4, 1.5))


def test_dask_backed_arrays_stay_lazy(record):
    array, _ = record
    if not isinstance(array.data, da.Array):
        return
    assert isinstance(sliding_cosine(array, [1.0, 2.0]).data, da.Array)
    assert isinstance(windowed_norm(array, 3).data, da.Array)


def test_errors(record):
    array, _ = record
    with pytest.raises(ValueError, match=r"axis='depth' is not a dim of the DataArray"):
        sliding_cosine(array, [1.0, 2.0], axis="depth")
    for axis, dims in ((("time", "time"), "('time', 'time')"), (("time", -1), "('time', 'time')")):
        with pytest.raises(ValueError, match=re.escape(f"axis must not repeat a dim; got {axis!r} "
                                                       f"(dims {dims})")):
            sliding_cosine(array, np.ones((2, 2)), axis=axis)
    with pytest.raises(TypeError, match="out is not supported for an xarray.DataArray"):
        windowed_norm(array, 3, out=np.empty((2, 3, 118)))
    for axis in (None, 1.5):  # (a dim name is taken too, and the message says so)
        with pytest.raises(TypeError, match=r"axis must be a dim name of the DataArray \(one of "):
            sliding_cosine(array, [1.0, 2.0], axis=axis)
    with pytest.raises(ValueError, match="already has a dim or coordinate named 'kernel'"):
        sliding_cosine(array.rename(channel="kernel"), np.ones((2, 3)))
    labels = array.assign_coords(kernel=("station", ["ricker", "box"]))
    with pytest.raises(ValueError, match="already has a dim or coordinate named 'kernel'"):
        sliding_cosine(labels, np.ones((2, 3)) + np.eye(3)[:2], axis="time")


@pytest.mark.parametrize("wrap", ["DataArray", "Dask", "chunked DataArray"])
def test_a_0d_signal_is_refused_naming_the_signal(wrap):
    """As the NumPy path refuses it (the message named ``axis=-1``, out of
    bounds; an exploratory test)."""
    from cosim_np import find_matches

    signal = {"DataArray": lambda: xr.DataArray(1.0), "Dask": lambda: da.from_array(np.array(1.0)),
              "chunked DataArray": lambda: xr.DataArray(1.0).chunk()}[wrap]()
    for call in (lambda: sliding_cosine(signal, [1.0, 2.0]), lambda: windowed_norm(signal, 1),
                 lambda: find_matches(signal, [1.0, 2.0])):
        with pytest.raises(ValueError, match="signal must have at least 1 dimension; got a 0-d"):
            call()


def test_results_are_unnamed_whatever_holds_them(record):
    """xarray names a DataArray of a Dask array after its graph key: the
    results of a chunked DataArray are unnamed, as those of one in memory."""
    array, _ = record
    array = array.rename("record")
    for result in (sliding_cosine(array, [1.0, 2.0]), windowed_norm(array, 3),
                   sliding_cosine(array, np.ones((2, 3)) + np.eye(3)[:2], axis="time"),
                   sharpen(array, 1.5)):
        assert result.name is None


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_find_matches_carries_the_coordinates_of_each_match(record, mode):
    from cosim_np import find_matches

    array, values = record
    kernel = np.hanning(8)
    values = values.copy()
    values[1, 2, 40:48] = -3 * kernel
    array = array.copy(data=values) if not isinstance(array.data, da.Array) else \
        array.copy(data=da.from_array(values, chunks=(1, 3, 50)))
    found = find_matches(array, kernel, k=2, axis="time", mode=mode)
    want = find_matches(values, kernel, k=2, mode=mode)
    np.testing.assert_array_equal(found.index, want.index)
    np.testing.assert_array_equal(found.batch, want.batch)
    np.testing.assert_array_equal(found.coords["station"], np.array(["A", "B"])[found.batch[:, 0]])
    np.testing.assert_array_equal(found.coords["channel"], np.array(["Z", "N", "E"])[found.batch[:, 1]])
    np.testing.assert_array_equal(found.coords["gain"], np.array([1.0, 2.0])[found.batch[:, 0]])
    if mode == "full":  # windows start before the signal: no time of a match
        assert "time" not in found.coords and "tick" not in found.coords
    else:
        np.testing.assert_array_equal(found.coords["time"], 0.5 * found.index)
        np.testing.assert_array_equal(found.coords["tick"], found.index)
    frame = found.to_pandas()
    assert {"time", "station", "channel"} <= set(frame.columns) or mode == "full"
    # the planted copy: station B, channel E, starting at sample 40 (output
    # 40 + the padding on the left of the mode's outputs)
    best = found.index[0], found.coords["station"][0], found.coords["channel"][0]
    assert best == (40 + {"valid": 0, "same": 4, "full": 7}[mode], "B", "E")
    assert found.score[0] == pytest.approx(-1)


def test_to_pandas_keeps_the_positions_beside_coordinates_of_the_same_names():
    """A dim named ``index`` (``pandas.Series.to_xarray`` makes one) or a
    coordinate named ``score``: its values come beside the columns of
    positions and scores, not over them."""
    from cosim_np import find_matches

    values = np.random.default_rng(0).standard_normal(200)
    values[120:130] = 5 * np.hanning(10)
    array = xr.DataArray(values, dims="index",
                         coords={"index": np.arange(200) * 0.5, "score": ("index", -np.arange(200))})
    frame = find_matches(array, np.hanning(10), k=1).to_pandas()
    assert frame["index"].tolist() == [120] and frame["index_coord"].tolist() == [60.0]
    assert frame["score"].tolist() == [pytest.approx(1)] and frame["score_coord"].tolist() == [-120]


def test_matches_with_missing_coordinates_equal_themselves():
    """A NaT (or NaN) coordinate is equal to itself in ``Matches ==``, as NaN
    scores are (NaT made a result unequal to itself)."""
    from cosim_np import find_matches

    x = np.random.default_rng(0).standard_normal(100)
    times = np.arange(100).astype("datetime64[s]")
    times[10] = np.datetime64("NaT")
    for coords in ({"time": times}, {"time": np.where(np.arange(100) == 10, np.nan, 1.0)}):
        found = find_matches(xr.DataArray(x, dims="time", coords=coords), x[10:15], k=1)
        assert found == found and found.index.tolist() == [10]


def test_find_matches_with_multichannel_kernels_drops_the_channel_coordinate(record):
    from cosim_np import find_matches

    array, _ = record
    found = find_matches(array, np.ones((2, 3, 5)), k=1)
    assert set(found.coords) == {"time", "tick", "station", "gain"}


# --- several sliding dims (images)


@pytest.fixture(params=["numpy", "dask"])
def images(request):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((2, 3, 40, 30))
    array = xr.DataArray(values, dims=("frame", "channel", "y", "x"),
                         coords={"y": 10.0 + np.arange(40), "x": -np.arange(30.0),
                                 "frame": ["a", "b"], "channel": ["r", "g", "b"],
                                 "row": ("y", np.arange(40) % 7),
                                 "pixel": (("y", "x"), np.arange(1200.0).reshape(40, 30))})
    if request.param == "dask":
        array = array.chunk({"y": 13, "frame": 1})
    return array, values


def test_several_dims_keep_their_names_and_follow_each_mode_and_stride(images):
    array, values = images
    kernel = np.arange(12.0).reshape(3, 4) - 5
    options = dict(mode=("valid", "same"), stride=(2, 1))
    got = sliding_cosine(array, kernel, axis=("y", "x"), **options)
    want = sliding_cosine(values, kernel, axis=(2, 3), **options)
    assert got.dims == array.dims and isinstance(got.data, type(array.data))
    np.testing.assert_array_equal(got.values, want)
    np.testing.assert_array_equal(got.y.values, 10.0 + np.arange(0, 38, 2))  # window starts
    np.testing.assert_array_equal(got.x.values, -np.arange(30.0))  # 'same': unchanged
    np.testing.assert_array_equal(got.row.values, np.arange(0, 38, 2) % 7)
    np.testing.assert_array_equal(got.pixel.values,
                                  np.arange(1200.0).reshape(40, 30)[0:38:2])
    assert list(got.frame.values) == ["a", "b"]
    norms = windowed_norm(array, (3, 4), axis=("x", "y"), mode="full")
    np.testing.assert_array_equal(norms.values, windowed_norm(values, (3, 4), axis=(3, 2),
                                                              mode="full"))
    assert norms.dims == array.dims and "y" not in norms.coords and "pixel" not in norms.coords


def test_several_dims_with_banks_and_multichannel_kernels(images):
    array, values = images
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((4, 3, 3))
    got = sliding_cosine(array, bank, axis=("y", "x"), center=True)
    assert got.dims == ("frame", "channel", "kernel", "y", "x")
    np.testing.assert_array_equal(got.values,
                                  sliding_cosine(values, bank, axis=(2, 3), center=True))
    layer = rng.standard_normal((5, 3, 2, 2))
    got = sliding_cosine(array, layer, axis=("y", "x"))
    assert got.dims == ("frame", "kernel", "y", "x") and "channel" not in got.coords
    np.testing.assert_array_equal(got.values, sliding_cosine(values, layer, axis=(2, 3)))


def test_find_matches_over_several_dims_carries_each_matchs_coordinates(images):
    from cosim_np import find_matches

    array, values = images
    template = values[1, 2, 20:25, 10:14]
    found = find_matches(array, template, k=1, axis=("y", "x"), sign="positive")
    want = find_matches(values, template, k=1, axis=(2, 3), sign="positive")
    np.testing.assert_array_equal(found.index, want.index)
    best = np.argmax(found.score)
    assert tuple(found.index[best]) == (20, 10) and tuple(found.batch[best]) == (1, 2)
    assert found.coords["y"][best] == 30.0 and found.coords["x"][best] == -10.0
    assert found.coords["frame"][best] == "b" and found.coords["channel"][best] == "b"
    np.testing.assert_array_equal(found.coords["row"], (found.index[:, 0]) % 7)


def test_sliding_cosine_grad_refuses_labelled_and_lazy_arrays_with_a_way_out_that_works():
    """The refusal advised ``.compute()`` for a DataArray too, whose
    ``.compute()`` is a DataArray again, refused again (an exploratory
    test); a Dask array was "a Array"."""
    from cosim_np import sliding_cosine_grad

    values = np.random.default_rng(0).standard_normal(30)
    labelled = xr.DataArray(values, dims="time")
    with pytest.raises(TypeError, match=r"signal is an xarray DataArray: pass its values "
                                        r"\(signal\.values\)"):
        sliding_cosine_grad(labelled.compute(), [1.0, 2.0, 3.0], np.ones(28))
    with pytest.raises(TypeError, match=r"grad_output is a Dask array: compute it first "
                                        r"\(grad_output\.compute\(\)\)"):
        sliding_cosine_grad(values, [1.0, 2.0, 3.0], da.ones(28, chunks=7))
    taken = sliding_cosine_grad(labelled.values, [1.0, 2.0, 3.0], da.ones(28, chunks=7).compute())
    assert np.isfinite(taken.kernel).all()
