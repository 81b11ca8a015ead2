"""Labelled arrays: the sliding functions and ``find_matches`` on an
``xarray.DataArray``.

The public function hands itself in (``compute``), runs on the DataArray's
data (NumPy or Dask) with the sliding dim turned into an axis number, and
the result is wrapped back with the dims and coordinates that still apply:

* the sliding dim keeps its name; its coordinates follow the mode: for
  ``valid`` the windows' starts (the first ``nwin`` values), for ``same``
  and ``causal`` unchanged (output ``i`` belongs to sample ``i``), for
  ``full`` none (the windows start before the signal); with a ``stride``,
  every stride-th of those;
* a kernel bank adds a ``kernel`` dim just before the sliding dim, and a
  multi-channel kernel's output channels replace the input channel dim
  with a ``kernel`` dim;
* every other dim and coordinate is carried over unchanged.

The only module that imports xarray, and only when a DataArray comes in.
"""

import numpy as np
import xarray as xr

from ._core import spatial
from ._core import validate as v


def axis_of(array, axis):
    """The axis number of ``axis``: a dim name or an int (a tuple of them:
    a tuple of numbers)."""
    if isinstance(axis, tuple):
        numbers = tuple(axis_of(array, item) for item in axis)
        if len(set(numbers)) < len(numbers):  # (said with the names given, not the numbers)
            raise ValueError(f"axis must not repeat a dim; got {axis!r} (dims "
                             f"{tuple(array.dims[n] for n in numbers)}).")
        return numbers
    if isinstance(axis, str):
        if axis not in array.dims:
            raise ValueError(f"axis={axis!r} is not a dim of the DataArray; its dims are "
                             f"{array.dims}.")
        return array.dims.index(axis)
    try:
        return v.check_axis(axis, array.ndim)
    except TypeError:
        raise TypeError(f"axis must be a dim name of the DataArray (one of {array.dims}), an "
                        f"integer position, or a tuple of them; got {axis!r}.") from None


def _signal_axis(array, axis):
    """``axis_of`` a signal, which has a dimension (a 0-d one is refused as
    the NumPy path refuses it, naming the signal, not the axis)."""
    v.check_ndim(array.ndim, "signal", 1)
    return axis_of(array, axis)


def _sliding(array, ax, mode, stride):
    """``(dim, mode, stride)`` of each sliding axis ``ax`` (an int or a
    tuple; ``mode`` and ``stride`` already checked by the call)."""
    axes = ax if isinstance(ax, tuple) else (ax,)
    settings = [spatial.per_axis(value, name, len(axes), lambda item, _: item)
                for value, name in ((mode, "mode"), (stride, "stride"))]
    return list(zip((array.dims[a] for a in axes), *settings))


def _coords(array, sliding, result_dims, result_shape, dropped=()):
    """The coordinates of ``array`` that still apply to a result of
    ``result_dims`` and ``result_shape`` whose ``sliding`` dims ``(dim,
    mode, stride)`` hold windows; ``dropped``: dims that are gone."""
    coords = {}
    for name, coord in array.coords.items():
        if any(d in dropped for d in coord.dims):
            continue
        for dim, mode, stride in sliding:
            if dim not in coord.dims:
                continue
            if mode == "full":
                coord = None
                break
            nout = result_shape[result_dims.index(dim)]
            coord = coord.isel({dim: slice(0, nout * stride, stride)})
        if coord is not None:
            coords[name] = coord
    return coords


def windowed_norm(array, compute, *, window, dilation, mode, axis, center, stride):
    """``windowed_norm`` of a DataArray (``compute``: the public function)."""
    ax = _signal_axis(array, axis)
    result = compute(array.data, window, dilation=dilation, mode=mode, axis=ax, center=center,
                     stride=stride)
    return _labelled(result, array.dims, _coords(
        array, _sliding(array, ax, mode, stride), array.dims, result.shape))


def _kernel_layout(array, ax, kernel):
    """``(kind, first)``: ``"bank"``, ``"channels"`` or None for ``kernel``
    over the sliding axes ``ax``, and the first of them in the array's
    order (a bank's kernel dim goes before it; the channel dim is the one
    just before it)."""
    axes = ax if isinstance(ax, tuple) else (ax,)
    extra = v.as_real_array(kernel, "kernel").ndim - len(axes)
    first = min(axes)
    if extra == 2 and first > 0:
        return "channels", first
    return ("bank" if extra == 1 else None), first


def sliding_cosine(array, kernel, compute, *, axis, mode, stride, **options):
    """``sliding_cosine`` of a DataArray (``compute``: the public function)."""
    ax = _signal_axis(array, axis)
    kind, first = _kernel_layout(array, ax, kernel)
    if ("kernel" in array.dims or "kernel" in array.coords) and kind is not None:
        raise ValueError("the DataArray already has a dim or coordinate named 'kernel', which a "
                         "kernel bank or multi-channel kernel adds to the result; rename it "
                         "first.")
    result = compute(array.data, kernel, axis=ax, mode=mode, stride=stride, **options)
    dims = list(array.dims)
    dropped = ()
    if kind == "channels":  # output channels in place of the input channels
        dropped = (dims[first - 1],)
        dims[first - 1] = "kernel"
    elif kind == "bank":  # a bank: its kernel dim before the first sliding one
        dims.insert(first, "kernel")
    return _labelled(result, dims, _coords(
        array, _sliding(array, ax, mode, stride), dims, result.shape, dropped))


def sharpen(array, compute, *, sharpness):
    """``sharpen`` of a DataArray: the same dims and coordinates."""
    return _labelled(compute(array.data, sharpness), array.dims, array.coords)


def _labelled(result, dims, coords):
    """The result as a DataArray, unnamed whatever holds it (xarray names a
    DataArray of a Dask array after its graph key)."""
    labelled = xr.DataArray(result, dims=dims, coords=coords)
    labelled.name = None
    return labelled


def find_matches(array, kernel, compute, *, axis, mode):
    """``find_matches`` of a DataArray (``compute``: the public function):
    its ``Matches`` with the coordinate values of each match (``coords``)."""
    ax = _signal_axis(array, axis)
    found = compute(array.data, kernel, axis=ax, mode=mode)
    sliding = _sliding(array, ax, mode, 1)
    dims = [dim for dim, _, _ in sliding]
    kind, first = _kernel_layout(array, ax, kernel)
    channel = array.dims[first - 1] if kind == "channels" else None
    lead = [d for d in array.dims if d not in dims and d != channel]
    index = found.index if found.index.ndim == 2 else found.index[:, None]
    coords = {}
    for name, coord in array.coords.items():
        if coord.ndim != 1:
            continue
        (owner,) = coord.dims
        if owner in dims and sliding[dims.index(owner)][1] != "full":
            coords[name] = np.asarray(coord.values)[index[:, dims.index(owner)]]
        elif owner in lead:
            coords[name] = np.asarray(coord.values)[found.batch[:, lead.index(owner)]]
    found.coords = coords
    return found
