"""sliding_cosine, windowed_norm and sharpen of Dask arrays.

Along the sliding axis the signal is cut as the in-memory call cuts it:

* the windows inside the signal (the 'valid' part) by blocks that start a
  whole number of tiles into the signal (``_core.sliding.tile_length``), each
  reading the first ``span`` samples of the next block as well
  (``dask.array.map_overlap`` with depth ``(0, span)``, no boundary);
* for the padded modes, the windows that overlap the zero padding from two
  small pieces: the first and the last ``span`` samples, padded.

The in-memory call splits its work into the same pieces and its threads at
tiles, so every window's sum of squares and direct dot is formed in the same
order either way: results are bit for bit those of the in-memory call with
``method="direct"`` and for ``windowed_norm`` (the FFT method plans blocks
per segment, so its results agree to its accuracy, not bit for bit).  With a
``stride``, every block computes all its windows and a lazy slice keeps
every stride-th of the call's.
"""

import functools

import dask.array as da
import numpy as np

from .._core import sliding as plans
from .._core import spatial
from .._core import validate as v


def no_out(out, what):
    """``out`` must be None for Dask inputs (``what``): their results are lazy."""
    if out is not None:
        raise TypeError(f"out is not supported for {what}: the result is a lazy dask.array; "
                        "write it with dask.array.store or .to_zarr instead.")


def _without_empty_chunks(x):
    """``x`` with no chunk of size 0 along an axis that has samples (Dask's
    ``compute_chunk_sizes`` after boolean indexing leaves them): such a
    block would be an empty signal to the in-memory function, which refuses
    one."""
    empty = {ax: tuple(size for size in chunks if size)
             for ax, chunks in enumerate(x.chunks) if 0 in chunks and x.shape[ax]}
    return x.rechunk(empty) if empty else x


def _block_chunks(n, span, tile, chunks):
    """Chunk sizes along the sliding axis: whole tiles, at least ``span``
    samples (a block reads that many of the next one), about the size of
    the caller's first chunk, the last one holding more than ``span``."""
    size = max(chunks[0], span + 1, tile)
    size = -(-size // tile) * tile
    sizes = [size] * (n // size)
    rest = n - sum(sizes)
    if rest:
        sizes.append(rest)
    while len(sizes) > 1 and sizes[-1] <= span:  # the last block must hold a window
        sizes[-2:] = [sizes[-2] + sizes[-1]]
    return tuple(sizes)


def _valid_windows(x, ax, span, tile, block, out_chunks, new_axis, dtype):
    """The 'valid' windows of ``x`` along ``ax``, by blocks of whole tiles
    (``block``: the in-memory function in mode 'valid' on one block)."""
    n = x.shape[ax]
    sizes = _block_chunks(n, span, tile, x.chunks[ax])
    x = x.rechunk({ax: sizes})
    along = sizes[:-1] + (sizes[-1] - span,)
    chunks = out_chunks(along)
    meta = np.empty((0,) * len(chunks), dtype=dtype)
    if len(sizes) == 1:
        return x.map_blocks(block, chunks=chunks, new_axis=new_axis, meta=meta)
    return da.map_overlap(block, x, depth={ax: (0, span)}, boundary="none", trim=False,
                          allow_rechunk=False, chunks=chunks, new_axis=new_axis, meta=meta)


def _padded_piece(x, ax, start, stop, left, right, block):
    """The windows of samples ``start:stop`` along ``ax`` padded by
    ``left`` and ``right`` zeros, as one block (the in-memory call's head
    and tail pieces)."""
    piece = x[(slice(None),) * ax + (slice(start, stop),)]
    piece = piece.rechunk({ax: -1})
    width = [(0, 0)] * x.ndim
    width[ax] = (left, right)

    def pad_then(values):
        return block(np.pad(values, width))

    return piece, pad_then


def _windows(x, plan, span, tile, block, out_chunks, new_axis, out_axis, dtype):
    """Every window of the planned call (any mode), concatenated along the
    output's sliding axis ``out_axis``."""
    ax, n = plan.ax, x.shape[plan.ax]
    left, right = plan.pad_left, plan.pad_right
    meta = np.empty((0,) * (x.ndim + len(new_axis)), dtype=dtype)
    if (left == 0 and right == 0) or n > span:
        parts = []
        if left:
            piece, fn = _padded_piece(x, ax, 0, span, left, 0, block)
            parts.append(piece.map_blocks(fn, chunks=out_chunks((left,)), new_axis=new_axis,
                                          meta=meta))
        parts.append(_valid_windows(x, ax, span, tile, block, out_chunks, new_axis, dtype))
        if right:
            piece, fn = _padded_piece(x, ax, n - span, n, 0, right, block)
            parts.append(piece.map_blocks(fn, chunks=out_chunks((right,)), new_axis=new_axis,
                                          meta=meta))
        return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=out_axis)
    # a signal no longer than the span: one padded piece, as in memory
    piece, fn = _padded_piece(x, ax, 0, n, left, right, block)
    return piece.map_blocks(fn, chunks=out_chunks((plan.nwin,)), new_axis=new_axis, meta=meta)


def _every(result, axis, stride):
    """Every ``stride``-th window of ``result`` along ``axis`` (lazily: each
    block computes its windows, and the slice keeps those of the call's
    stride)."""
    if stride == 1:
        return result
    return result[(slice(None),) * axis + (slice(None, None, stride),)]


def _spatial_windows(x, geo, block, dtype, nker=None, channel_axis=None, bank_axis=None):
    """Every window of a call over several axes (``geo``, a
    ``_core.spatial.Geometry``), as the in-memory call cuts it: the signal
    padded with each axis's zeros (lazily), cut along the first sliding
    axis into blocks of whole bands of windows (``_run_bands``: each band's
    sums then start where the in-memory call's do), each reading the first
    rows of the next block, every other sliding axis whole.  ``block``: the
    in-memory function in mode 'valid' over one block.  The result's ``nker``
    kernels replace ``channel_axis`` (multi-channel kernels) or are a new
    axis at ``bank_axis`` (a bank), one chunk either way."""
    first, s0 = geo.axes[0], geo.stride[0]
    hint = x.chunks[first]  # (the caller's chunks: padding adds small ones)
    chunks = list(x.chunks)
    for ax, count in zip(geo.axes, geo.nout):
        chunks[ax] = (count,)
    if channel_axis is not None:
        chunks[channel_axis] = (nker,)
    width = [(0, 0)] * x.ndim
    for ax, pads in zip(geo.axes, geo.pads):
        width[ax] = pads
    if any(left or right for left, right in width):
        x = da.pad(x, width, mode="constant")
    x = x.rechunk({ax: -1 for ax in geo.axes[1:]})
    span = (geo.m[0] - 1) * geo.d[0]
    band = spatial.band_windows(geo) * s0  # rows of a band's windows
    sizes = _block_chunks(x.shape[first], span, band, hint)
    x = x.rechunk({first: sizes})
    counts = tuple(size // s0 for size in sizes[:-1])
    chunks[first] = counts + (geo.nout[0] - sum(counts),)
    new_axis = []
    if bank_axis is not None:
        chunks.insert(bank_axis, (nker,))
        new_axis = [bank_axis]
    chunks = tuple(chunks)
    meta = np.empty((0,) * len(chunks), dtype=dtype)
    if len(sizes) == 1:
        return x.map_blocks(block, chunks=chunks, new_axis=new_axis, meta=meta)
    return da.map_overlap(block, x, depth={first: (0, span)}, boundary="none", trim=False,
                          allow_rechunk=False, chunks=chunks, new_axis=new_axis, meta=meta)


def _spatial_sliding_cosine(signal, kernel, block_function, options, normalise):
    """``sliding_cosine`` over several axes of a Dask array (``options``:
    the call's, ``axis`` a tuple)."""
    plan = spatial.plan_sliding(signal, kernel, options["axis"], options["mode"],
                                options["method"], options["dilation"], options["sharpness"],
                                options["noise_floor"], options["fill"], None, normalise,
                                options["center"], options["stride"])
    geo = plan.geometry
    x = signal
    if plan.channel_axis is not None:  # a window reads every channel
        x = x.rechunk({plan.channel_axis: -1})
    block = functools.partial(block_function, kernel=kernel, **dict(
        options, axis=geo.axes, mode="valid"))
    return _spatial_windows(x, geo, block, plan.out_dtype, plan.khat.shape[0],
                            plan.channel_axis, min(geo.axes) if plan.is_bank else None)


def sliding_cosine(signal, kernel, block_function, *, sharpness=1.0, mode="valid", dilation=1,
                   noise_floor=0.0, fill=0.0, axis=-1, method="auto", center=False, stride=1,
                   out=None, normalise=None):
    """``sliding_cosine`` of the Dask array ``signal``: a lazy Dask array.
    ``block_function(block, kernel, **options)`` is the in-memory function;
    ``normalise``: the compiled unit kernels of the client's plan
    (``_core.sliding.unit_kernels``)."""
    no_out(out, "a Dask array signal")
    signal = _without_empty_chunks(v.check_known_shape(signal, "signal", min_ndim=1))
    if isinstance(axis, tuple):
        return _spatial_sliding_cosine(signal, kernel, block_function, dict(
            sharpness=sharpness, mode=mode, dilation=dilation, noise_floor=noise_floor,
            fill=fill, axis=axis, method=method, center=center, stride=stride), normalise)
    plan = plans.plan_sliding(signal, kernel, axis, mode, method, dilation, sharpness,
                              noise_floor, fill, None, normalise, center, stride)
    nker, nchan, m = plan.khat.shape
    x = signal
    if plan.channel_axis is not None:  # a window reads every channel
        x = x.rechunk({plan.channel_axis: -1})
    block = functools.partial(block_function, kernel=kernel, sharpness=sharpness, mode="valid",
                              dilation=dilation, noise_floor=noise_floor, fill=fill, axis=plan.ax,
                              method=method, center=center)
    ax = plan.ax

    def out_chunks(along):
        chunks = list(x.chunks)
        chunks[ax] = along
        if plan.channel_axis is not None:
            chunks[plan.channel_axis] = (nker,)
        elif plan.bank_shape:
            chunks.insert(ax, (nker,))
        return tuple(chunks)

    new_axis = [ax] if plan.bank_shape and plan.channel_axis is None else []
    out_axis = ax + 1 if new_axis else ax
    every = _windows(x, plan, plan.span, plans.tile_length(m, plan.d), block, out_chunks,
                     new_axis, out_axis, plan.out_dtype)
    return _every(every, out_axis, plan.stride)


def windowed_norm(signal, window, block_function, *, dilation=1, mode="valid", axis=-1,
                  center=False, stride=1, out=None):
    """``windowed_norm`` of the Dask array ``signal``: a lazy Dask array."""
    no_out(out, "a Dask array signal")
    signal = _without_empty_chunks(v.check_known_shape(signal, "signal", min_ndim=1))
    if isinstance(axis, tuple):
        plan = spatial.plan_norms(signal, window, dilation, mode, axis, center, stride)
        geo = plan.geometry
        block = functools.partial(block_function, window=geo.m, dilation=geo.d, mode="valid",
                                  axis=geo.axes, center=plan.center, stride=geo.stride)
        return _spatial_windows(signal, geo, block, plan.out_dtype)
    plan = plans.plan_norms(signal, window, dilation, mode, axis, center, stride)
    block = functools.partial(block_function, window=plan.m, dilation=plan.d, mode="valid",
                              axis=plan.ax, center=plan.center)

    def out_chunks(along):
        chunks = list(signal.chunks)
        chunks[plan.ax] = along
        return tuple(chunks)

    every = _windows(signal, plan, plan.span, plans.tile_length(plan.m, plan.d), block,
                     out_chunks, [], plan.ax, plan.out_dtype)
    return _every(every, plan.ax, plan.stride)


def sharpen(s, sharpness, block_function, *, out=None):
    """``sharpen`` of the Dask array ``s``, block by block (lazy)."""
    no_out(out, "a Dask array")
    sharpness = v.check_real(sharpness, "sharpness")
    dtype = v.output_dtype(s.dtype, "s")
    return s.map_blocks(functools.partial(block_function, sharpness=sharpness), dtype=dtype,
                        meta=np.empty((0,) * s.ndim, dtype=dtype))
