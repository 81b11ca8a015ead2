"""The CPU drivers of the embedding functions.

Each takes inputs already checked and the plan made by
:mod:`cosim_np._core.embedding`, and runs the work:

* :func:`cosine_similarity` -- NumPy reductions over the broadcast shape
  (never materialised), a block of rows at a time, float64 vectors divided
  by their largest magnitude first;
* :func:`pairwise_cosine`, :func:`topk_cosine` and the best matches of
  :func:`set_similarity` -- the one tile loop of :mod:`.tiles` (BLAS products
  of normalised rows), each finishing its tiles its own way: writing them
  out, folding them into top-k lists (:func:`.embedding.merge_topk`), or
  keeping each row's and column's best.
"""

import math
import threading

import numpy as np

from .._core import config
from .._core import embedding as core
from . import embedding as kernels
from . import scratch, tiles

# ---------------------------------------------------------------------------
# cosine_similarity


def cosine_similarity(x, y, plan, out=None):
    """``cosine_similarity`` of the host arrays ``x`` and ``y`` by ``plan``
    (:class:`cosim_np._core.embedding.CosinePlan`), into ``out`` if given."""
    shape, kept, out_shape = plan.shape, plan.kept, plan.out_shape
    ndim = len(shape)
    if any(shape[ax] == 0 for ax in plan.axes):  # empty vectors are zero vectors
        zero_value = plan.fill if plan.eps == 0.0 else 0.0
        return _deliver(np.full(out_shape, zero_value), plan.out_dtype, out)
    # The reduced axes last, and (in _scaled) copied C-contiguous: every sum
    # and dot then runs along contiguous rows of the same length whatever the
    # inputs' layout or the kept axes' lengths, so its rounding depends on
    # the vectors alone (a Dask block of one vector gives the whole array's bits).
    x = _reduced_last(x, ndim, plan.axes)
    y = _reduced_last(y, ndim, plan.axes)
    shape = tuple(shape[ax] for ax in kept) + tuple(shape[ax] for ax in plan.axes)
    # The vectors a few rows of the first kept axis at a time, so that their
    # float64 copies are still in the caches when the dots read them.
    rows = max(1, config.COSINE_BLOCK_BYTES // max(8 * math.prod(shape[1:]), 1))
    nk, axes = len(kept), tuple(range(len(kept), ndim))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if not kept or rows >= shape[0]:
            cos = _cosines(_scaled(x, axes, shape, None), _scaled(y, axes, shape, None), out_shape, plan)
        else:
            cos = np.empty(out_shape, dtype=np.float64)
            # a side broadcast along the first axis is converted once
            x_once = _scaled(x, axes, shape, None) if x.shape[0] == 1 else None
            y_once = _scaled(y, axes, shape, None) if y.shape[0] == 1 else None
            for i0 in range(0, shape[0], rows):
                part = slice(i0, min(i0 + rows, shape[0]))
                block_shape = (part.stop - i0,) + shape[1:]
                xs = x_once or _scaled(x[part], axes, block_shape, "cosine x")
                ys = y_once or _scaled(y[part], axes, block_shape, "cosine y")
                cos[part] = _cosines(xs, ys, block_shape[:nk], plan)
    return _deliver(cos, plan.out_dtype, out)


def _cosines(xs, ys, out_shape, plan):
    """The cosines, float64, of the vectors ``xs`` and ``ys`` (each as
    :func:`_scaled` gives them; reduced axes last) on the kept axes'
    broadcast shape ``out_shape`` (floating-point warnings left to the caller)."""
    (xh, sx, nx2), (yh, sy, ny2) = xs, ys
    nk = len(out_shape)
    axes = tuple(range(nk, xh.ndim))
    # a reduced axis broadcast on one side only: sum the other side first
    for ax in axes:
        if xh.shape[ax] == 1 and yh.shape[ax] > 1:
            yh = yh.sum(axis=ax, keepdims=True)
        elif yh.shape[ax] == 1 and xh.shape[ax] > 1:
            xh = xh.sum(axis=ax, keepdims=True)
    dot = _reduced_dot(xh, yh, nk)
    cos = dot / (np.sqrt(nx2) * np.sqrt(ny2))
    if plan.eps > 0.0:
        n1 = sx * np.sqrt(nx2)
        n2 = sy * np.sqrt(ny2)
        cos = cos * (np.minimum(n1 / plan.eps, 1.0) * np.minimum(n2 / plan.eps, 1.0))
    if not (isinstance(cos, np.ndarray) and cos.shape == out_shape):
        cos = np.array(np.broadcast_to(cos, out_shape), dtype=np.float64)
    zero = np.broadcast_to((sx == 0.0) | (sy == 0.0), out_shape)
    bad = np.broadcast_to(~(sx < np.inf) | ~(sy < np.inf), out_shape)
    np.clip(cos, -1.0, 1.0, out=cos)
    cos[zero] = plan.fill if plan.eps == 0.0 else 0.0
    cos[bad] = np.nan
    return cos


def _deliver(result, dtype, out):
    if out is not None:
        out[...] = result
        return out
    result = result.astype(dtype, copy=False)
    return result[()] if result.ndim == 0 else result


def _reduced_last(x, ndim, axes):
    """``x`` with ``ndim`` axes (length-1 ones put in front), ``axes`` moved
    to the end (a view)."""
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    return np.moveaxis(x, axes, range(ndim - len(axes), ndim))


def _scaled(x, axes, shape, use):
    """``x`` in float64 (C-contiguous; in this thread's scratch array ``use``
    unless it is None), divided by its largest magnitude per vector where it
    is float64; the scale it was divided by, and the squared norm of the
    scaled vector on the broadcast shape, per vector (the kept axes' shape)."""
    if use is None:  # one block: a scratch array costs more than it saves
        xf = x.astype(np.float64, order="C")
    else:  # block after block: no fresh pages for each
        xf = scratch.empty(use, x.shape)
        np.copyto(xf, x, casting="unsafe")
    nk = xf.ndim - len(axes)
    if x.dtype != np.float64:
        # Narrower samples square within float64's normal range (|x| < 2**128,
        # a nonzero |x| >= 2**-149 for float32, integers at least 1), so they
        # need no scale: 1, or 0 for a zero vector, or inf where a sample is
        # not finite (the sums of squares tell).
        nx2 = _reduced_dot(xf, xf, nk)
        scale = np.where(nx2 < np.inf, np.where(nx2 == 0.0, 0.0, 1.0), np.inf)
    else:
        # |x| ordered as its bits: integer maxima run several times faster
        # than float ones, and a NaN (its sign cleared by abs) comes out on top
        scale = np.max(np.abs(xf).view(np.int64), axis=axes).view(np.float64)
        xf /= np.where(scale == 0.0, 1.0, scale).reshape(scale.shape + (1,) * len(axes))
        nx2 = _reduced_dot(xf, xf, nk)
    factor = 1
    for ax in axes:
        if x.shape[ax] == 1:
            factor *= shape[ax]
    if factor != 1:
        nx2 *= factor
    return xf, scale, nx2


def _reduced_dot(xh, yh, nk):
    """Sum over all but the first ``nk`` axes (the reduced ones, contiguous)
    of ``xh * yh``, whose reduced axes now have equal lengths or length 1 on
    both sides, broadcasting the kept axes without materialising: BLAS dots
    of at most ``DOT_BLOCK`` components (never split among BLAS threads),
    their sums pairwise, so that the rounding depends on the vectors alone."""
    length = int(np.prod(xh.shape[nk:]))
    xr = xh.reshape(xh.shape[:nk] + (length,))
    yr = yh.reshape(yh.shape[:nk] + (length,))
    block = config.DOT_BLOCK
    if length <= block:
        return np.vecdot(xr, yr)
    whole = length // block

    def blocks(v):
        return v[..., : whole * block].reshape(v.shape[:-1] + (whole, block))

    total = np.sum(np.vecdot(blocks(xr), blocks(yr)), axis=-1)
    if whole * block < length:
        total = total + np.vecdot(xr[..., whole * block :], yr[..., whole * block :])
    return total


# ---------------------------------------------------------------------------
# pairwise_cosine


def pairwise_cosine(x, y, same, plan, out):
    """The ``(n, m)`` matrix of row cosines of the kernel inputs ``x`` and
    ``y`` (``same``: ``y`` is ``x``, b was None) by ``plan``
    (:class:`cosim_np._core.embedding.PairwisePlan`), into ``out`` if given."""
    if out is None:
        out = np.empty((x.shape[0], y.shape[0]), dtype=plan.result_dtype)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n == 0 or m == 0:
        return out
    compute = core.compute_dtype(plan.result_dtype)
    target = np.asarray(out)  # a plain view (of a memmap too)
    # Straight into the result where it has the compute dtype and contiguous
    # rows (a single row goes through a buffer: its product is computed
    # twice over, see tiles.Tiling.column_tiles).
    direct = target.dtype == compute and target.strides[1] == compute.itemsize and n > 1

    rows = tiles.Rows(x)
    cols = rows if same else tiles.Rows(y)
    fixed = rows.nbytes + (0 if same else cols.nbytes)
    if direct:
        # No score buffer: one stream takes as many rows at a time as the
        # budget allows (every extra BLAS call leaves the BLAS threads idle
        # while the clipping runs), a memmap in blocks written in order.
        want_rows = n if not isinstance(out, np.memmap) else max(
            1, config.MEMMAP_BLOCK_BYTES // (m * compute.itemsize))
        want_cols = m
    else:
        want_rows, want_cols = config.ONE_STREAM_ROWS, config.ONE_STREAM_COLS
    # Per-thread streams pay off where a tile needs more than one pass while
    # it is hot (the mirrored half of a.a^T, the cast of a buffered tile);
    # straight into the result, one multi-threaded BLAS call is faster, as
    # OpenBLAS's threads share their packed panels.
    streams = tiles.stream_count(n, m, d) if same or not direct else 1
    tiling = tiles.Tiling(n, m, d, compute.itemsize, plan.budget, fixed, buffer=not direct,
                          want_rows=want_rows, want_cols=want_cols, square=same, streams=streams)
    tiles.score_tiles(rows, cols, tiling, compute, fill=plan.fill, diagonal=same, upper=same,
                      target=target, direct=direct)
    return out


# ---------------------------------------------------------------------------
# topk_cosine


def topk_cosine(x, y, same, exclude_self, plan):
    """``(scores, indices)`` of the ``plan.k`` best corpus rows ``y`` of every
    query row ``x`` (``same``: ``y`` is ``x``, corpus was None)."""
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    compute = core.compute_dtype(plan.result_dtype)
    best_s = np.full((n, plan.k), np.nan, dtype=compute)
    best_i = np.full((n, plan.k), m, dtype=np.int64)
    if n == 0:
        return best_s.astype(plan.result_dtype), best_i

    rows = tiles.Rows(x)
    cols = rows if same else tiles.Rows(y)
    fixed = rows.nbytes + (0 if same else cols.nbytes)
    tiling = tiles.Tiling(n, m, d, compute.itemsize, plan.budget, fixed, buffer=True,
                          streams=tiles.stream_count(n, m, d), tall=True)
    self_col = 0 if exclude_self else -1

    def merge(i0, i1, j0, j1, tile, split):
        split(i1 - i0, lambda r0, r1: kernels.merge_topk(
            tile[r0:r1], i0 + r0, j0, rows.flag[i0 + r0 : i0 + r1], cols.flag[j0:j1], self_col,
            best_s, best_i))

    # (merge_topk clips the scores it keeps: a pass over the tile saved)
    tiles.score_tiles(rows, cols, tiling, compute, fill=plan.fill, clipped=False,
                      diagonal=same and not exclude_self, visit=merge)
    return best_s.astype(plan.result_dtype, copy=False), best_i


# ---------------------------------------------------------------------------
# set_similarity


def set_similarity(x, y, wa, wb, plan):
    """``set_similarity`` of the kernel inputs ``x`` and ``y`` (masked rows
    removed) with weights ``wa``, ``wb`` (float64, summing to 1)."""
    if x.shape[1] == 0:  # empty vectors are zero vectors
        x, y = np.zeros((x.shape[0], 1)), np.zeros((y.shape[0], 1))
    measure, dtype = plan.measure, plan.result_dtype
    rows, cols = tiles.Rows(x), tiles.Rows(y)
    if core.set_is_nan(measure, rows.bad, cols.bad, wa, wb):
        return core.set_nan(measure, dtype)
    if measure == "mean":
        mean = np.dot(core.unit_mean(x, rows.scale, rows.hnorm, wa),
                      core.unit_mean(y, cols.scale, cols.hnorm, wb))
        return np.array(np.clip(mean, -1.0, 1.0), dtype=dtype)[()]
    if measure == "centroid":
        cos = core.vector_cosine(core.centroid(x, rows.scale, wa), core.centroid(y, cols.scale, wb))
        return np.array(cos, dtype=dtype)[()]
    best_a, best_b = best_matches(rows, cols, plan.budget, core.compute_dtype(dtype))
    return core.set_scores(measure, best_a, best_b, wa, wb, dtype)


def best_matches(rows, cols, budget, compute):
    """Best cosine of each row of ``rows`` among ``cols`` and vice versa, tile
    by tile (products in ``compute``; a zero row's cosines are 0)."""
    n, d = rows.x.shape
    m = cols.x.shape[0]
    best_a = np.full(n, -np.inf, dtype=compute)
    best_b = np.full(m, -np.inf, dtype=compute)
    tiling = tiles.Tiling(n, m, d, compute.itemsize, budget, rows.nbytes + cols.nbytes,
                          buffer=True, streams=tiles.stream_count(n, m, d))
    lock = threading.Lock()  # streams share the columns' best

    def fold(i0, i1, j0, j1, tile, split):
        np.maximum(best_a[i0:i1], tile.max(axis=1), out=best_a[i0:i1])
        col_best = tile.max(axis=0)
        with lock:
            np.maximum(best_b[j0:j1], col_best, out=best_b[j0:j1])

    tiles.score_tiles(rows, cols, tiling, compute, fill=0.0, visit=fold)
    return best_a, best_b
