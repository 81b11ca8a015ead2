"""The CPU drivers of the embedding functions.

Each takes inputs already checked and the plan made by
:mod:`cosim_np._core.embedding`, and runs the work:

* :func:`cosine_similarity` -- each pair of vectors reduced alone by
  :func:`.embedding.cosines_of_rows` (float64 sums in a fixed order), the
  broadcast shape never materialised, the pairs split among threads;
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
from . import threads, tiles

# ---------------------------------------------------------------------------
# cosine_similarity


def cosine_similarity(x, y, plan, out=None):
    """``cosine_similarity`` of the host arrays ``x`` and ``y`` by ``plan``
    (:class:`cosim_np._core.embedding.CosinePlan`), into ``out`` if given."""
    shape, out_shape = plan.shape, plan.out_shape
    if any(shape[ax] == 0 for ax in plan.axes):  # empty vectors are zero vectors
        zero_value = plan.fill if plan.eps == 0.0 else 0.0
        return _deliver(np.full(out_shape, zero_value), plan.out_dtype, out)
    reduced = tuple(shape[ax] for ax in plan.axes)
    xrows, xkept = _vector_rows(x, len(shape), plan.axes, reduced)
    yrows, ykept = _vector_rows(y, len(shape), plan.axes, reduced)
    total = math.prod(out_shape)
    # the result in its dtype (out itself where it is C-contiguous and no
    # input shares its memory), the kernels' float64 cosines a part at a
    # time: no array of N x M row indices, nor of float64 cosines
    into_out = (out is not None and out.flags.c_contiguous
                and not np.may_share_memory(out, x) and not np.may_share_memory(out, y))
    result = out.reshape(-1) if into_out else np.empty(total, plan.out_dtype)
    eps, fill = plan.eps, plan.fill
    if xkept == ykept == out_shape:  # (each vector meets one other)
        shape = xsteps = ysteps = np.empty(0, dtype=np.int64)
    else:
        shape = np.array(out_shape, dtype=np.int64)
        xsteps, ysteps = (_row_steps(own, out_shape) for own in (xkept, ykept))
    columns = not shape.size and _side_by_side(xrows) and _side_by_side(yrows)

    def work(start, stop):
        cos = np.empty(min(config.COSINES_AT_ONCE, stop - start))
        for c0 in range(start, stop, config.COSINES_AT_ONCE):
            c1 = min(stop, c0 + config.COSINES_AT_ONCE)
            if columns:
                kernels.cosines_of_columns(xrows.T, yrows.T, c0, c1, eps, fill, cos)
            else:
                kernels.cosines_of_rows(xrows, yrows, shape, xsteps, ysteps, c0, c1, eps, fill,
                                        cos)
            with np.errstate(under="ignore"):  # (a float16 result: tiny cosines round to 0)
                result[c0:c1] = cos[: c1 - c0]

    # each thread gets enough components that starting it pays
    threads.run_split(total, work, max(1, config.MIN_COMPONENTS_PER_THREAD // xrows.shape[1]))
    if into_out:
        return out
    return _deliver(result.reshape(out_shape), plan.out_dtype, out)


def _row_steps(own, out_shape):
    """How far a side's row index moves per step along each axis of the
    output (``own``, its kept shape, broadcast to ``out_shape``: 0 along
    its length-1 axes)."""
    steps = np.zeros(len(out_shape), dtype=np.int64)
    step = 1
    for axis in range(len(own) - 1, -1, -1):
        if own[axis] != 1:
            steps[axis] = step
        step *= own[axis]
    return steps


def _vector_rows(x, ndim, axes, reduced):
    """``x`` (with ``ndim`` axes once length-1 ones are put in front) as a 2-D
    array of its vectors, one a row, float32 or float64, and the shape of its
    kept axes.  The reduced ``axes`` are moved last and broadcast to
    ``reduced`` (a side of length 1 read again, never copied), then merged
    with the kept ones into rows: a view wherever the strides allow it,
    whatever the layout, so that a vector's bits depend on its values alone.
    float16 samples and integers of up to 16 bits are converted to float32,
    wider integers to float64, all exactly as NumPy converts them."""
    if x.dtype not in (np.float32, np.float64):
        narrow = x.dtype == np.float16 or (x.dtype.kind != "f" and x.dtype.itemsize <= 2)
        x = x.astype(np.float32 if narrow else np.float64)
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    last = tuple(range(ndim - len(axes), ndim))
    if tuple(axes) != last:
        x = np.moveaxis(x, axes, last)
    own = x.shape[: ndim - len(axes)]
    if x.shape[ndim - len(axes):] != reduced:
        x = np.broadcast_to(x, own + reduced)
    rows = x.reshape(math.prod(own), math.prod(reduced))
    if rows.flags.writeable:  # (read-only always: one compiled kernel for both)
        rows = rows.view()
        rows.flags.writeable = False
    return rows, own


def _side_by_side(rows):
    """Whether the vectors ``rows`` (one a row) lie side by side: component
    ``j`` of each next to that of the next (``axis=0`` of a C array), so
    that reading them a row at a time would read memory a sample at a time."""
    return rows.shape[0] > 1 and rows.shape[1] > 1 and rows.strides[0] == rows.itemsize


def _deliver(result, dtype, out):
    if out is not None:
        out[...] = result
        return out
    result = result.astype(dtype, copy=False)
    return result[()] if result.ndim == 0 else result


# ---------------------------------------------------------------------------
# pairwise_cosine


def pairwise_cosine(x, y, same, plan, out):
    """The ``(n, m)`` matrix of row cosines of the kernel inputs ``x`` and
    ``y`` (``same``: ``y`` is ``x``, b was None) by ``plan``
    (:class:`cosim_np._core.embedding.PairwisePlan`), into ``out`` if given."""
    if out is None:
        out = np.empty((x.shape[0], y.shape[0]), dtype=plan.result_dtype)
    else:  # an input that ``out`` overlaps is read from a copy (later tiles read it)
        x = x.copy() if np.may_share_memory(out, x) else x
        y = x if same else (y.copy() if np.may_share_memory(out, y) else y)
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
    # float16 results are ranked as they are returned: scores equal once
    # rounded tie, the lower index first (as pairwise_cosine's argmax)
    rounded = plan.result_dtype == np.float16
    tiling = tiles.Tiling(n, m, d, compute.itemsize, plan.budget, fixed, buffer=True,
                          streams=tiles.stream_count(n, m, d), tall=True,
                          rounded=2 if rounded else 0)
    self_col = 0 if exclude_self else -1

    def merge(i0, i1, j0, j1, tile, split):
        if rounded:
            np.copyto(tile, tile.astype(np.float16))
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
    best_a, best_b = best_matches(rows, cols, plan.budget, core.compute_dtype(dtype),
                                  held=wa.nbytes + wb.nbytes)
    return core.set_scores(measure, best_a, best_b, wa, wb, dtype)


def best_matches(rows, cols, budget, compute, held=0):
    """Best cosine of each row of ``rows`` among ``cols`` and vice versa, tile
    by tile (products in ``compute``; a zero row's cosines are 0), within
    ``budget`` with the rows, the two bests and ``held`` bytes the caller
    holds meanwhile (the weights)."""
    n, d = rows.x.shape
    m = cols.x.shape[0]
    best_a = np.full(n, -np.inf, dtype=compute)
    best_b = np.full(m, -np.inf, dtype=compute)
    fixed = rows.nbytes + cols.nbytes + best_a.nbytes + best_b.nbytes + held
    tiling = tiles.Tiling(n, m, d, compute.itemsize, budget, fixed, buffer=True,
                          streams=tiles.stream_count(n, m, d))
    lock = threading.Lock()  # streams share the columns' best

    def fold(i0, i1, j0, j1, tile, split):
        np.maximum(best_a[i0:i1], tile.max(axis=1), out=best_a[i0:i1])
        col_best = tile.max(axis=0)
        with lock:
            np.maximum(best_b[j0:j1], col_best, out=best_b[j0:j1])

    tiles.score_tiles(rows, cols, tiling, compute, fill=0.0, visit=fold)
    return best_a, best_b
