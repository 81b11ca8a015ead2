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

from ._core import validate as v


def axis_of(array, axis):
    """The axis number of ``axis``: a dim name or an int."""
    if isinstance(axis, str):
        if axis not in array.dims:
            raise ValueError(f"axis={axis!r} is not a dim of the DataArray; its dims are "
                             f"{array.dims}.")
        return array.dims.index(axis)
    return v.check_axis(axis, array.ndim)


def _coords(array, dim, nout, mode, stride, dropped=()):
    """The coordinates of ``array`` that still apply to a result whose
    ``dim`` has ``nout`` windows in ``mode``, every ``stride``-th;
    ``dropped``: dims that are gone."""
    coords = {}
    for name, coord in array.coords.items():
        if any(d in dropped for d in coord.dims):
            continue
        if dim in coord.dims:
            if mode == "full":
                continue
            coord = coord.isel({dim: slice(0, nout * stride, stride)})
        coords[name] = coord
    return coords


def windowed_norm(array, compute, *, window, dilation, mode, axis, center, stride):
    """``windowed_norm`` of a DataArray (``compute``: the public function)."""
    ax = axis_of(array, axis)
    result = compute(array.data, window, dilation=dilation, mode=mode, axis=ax, center=center,
                     stride=stride)
    dim = array.dims[ax]
    return xr.DataArray(result, dims=array.dims,
                        coords=_coords(array, dim, result.shape[ax], mode, stride))


def sliding_cosine(array, kernel, compute, *, axis, mode, stride, **options):
    """``sliding_cosine`` of a DataArray (``compute``: the public function)."""
    ax = axis_of(array, axis)
    ndim_kernel = v.as_real_array(kernel, "kernel").ndim
    if "kernel" in array.dims and ndim_kernel > 1:
        raise ValueError("the DataArray already has a dim named 'kernel', which a kernel bank "
                         "or multi-channel kernel adds to the result; rename it first.")
    result = compute(array.data, kernel, axis=ax, mode=mode, stride=stride, **options)
    dim = array.dims[ax]
    dims = list(array.dims)
    dropped = ()
    if ndim_kernel == 3 and ax > 0:  # output channels in place of the input channels
        dropped = (dims[ax - 1],)
        dims[ax - 1] = "kernel"
    elif ndim_kernel == 2:  # a bank: its kernel dim before the sliding one
        dims.insert(ax, "kernel")
    nout = result.shape[dims.index(dim)]
    return xr.DataArray(result, dims=dims,
                        coords=_coords(array, dim, nout, mode, stride, dropped))


def sharpen(array, compute, *, sharpness):
    """``sharpen`` of a DataArray: the same dims and coordinates."""
    return xr.DataArray(compute(array.data, sharpness), dims=array.dims, coords=array.coords)


def find_matches(array, kernel, compute, *, axis, mode):
    """``find_matches`` of a DataArray (``compute``: the public function):
    its ``Matches`` with the coordinate values of each match (``coords``)."""
    ax = axis_of(array, axis)
    found = compute(array.data, kernel, axis=ax, mode=mode)
    dim = array.dims[ax]
    channel = array.dims[ax - 1] if v.as_real_array(kernel, "kernel").ndim == 3 else None
    lead = [d for d in array.dims if d not in (dim, channel)]
    coords = {}
    for name, coord in array.coords.items():
        if coord.ndim != 1:
            continue
        (owner,) = coord.dims
        if owner == dim and mode != "full":
            coords[name] = np.asarray(coord.values)[found.index]
        elif owner in lead:
            coords[name] = np.asarray(coord.values)[found.batch[:, lead.index(owner)]]
    found.coords = coords
    return found
