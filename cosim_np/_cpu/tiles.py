"""Tiled products of normalised rows, for the embedding functions.

:class:`Rows` holds per-row statistics, :class:`Tiling` lays out tiles
within a memory budget and :func:`row_blocks` runs a caller's work on every
block of rows, in one of two ways:

* **per-thread streams** (where :mod:`._blas` can make NumPy's BLAS single-
  threaded): every thread takes the next block of rows, computes its small
  tiles with one-threaded BLAS calls and finishes each (clipping, top-k
  merge) while it is still in that core's cache;
* **one stream** otherwise: BLAS threads compute each (larger) tile and the
  row-wise finishing passes are split over the threads afterwards.

Both give the same values: every product is one BLAS call over the whole
vector length, and rows keep their column order within each thread.
"""

import threading

import numpy as np

from . import blas, threads
from . import embedding as kernels

# Tile shape of the per-thread streams: a 2 MiB float32 score tile stays in a
# core's L2/L3 cache between the BLAS call and the pass that reads it (first
# measured on the top-k of 20000 x 20000 rows with AVX2 kernels: 0.87 s with
# 512 x 1024 tiles, the same from 256 x 1024 to 1024 x 1024; the top-k now
# takes taller ones, see TALL_FACTOR).
STREAM_ROWS, STREAM_COLS = 512, 1024
# A selection that reads each tile once (the top-k merge) gains from taller
# tiles, whose every corpus panel BLAS packs once for more rows: 8 MiB tiles
# of 2048 x 1024, in L3 for the merge, took the top-k of 20000 x 20000 rows
# from 0.52-0.53 s to 0.48 s with OpenBLAS's AVX-512 kernels (0.876 to
# 0.863 s with its AVX2 ones).  Tiles that are written out, mirrored or
# cast (pairwise_cosine) are best kept small: 0.423 against 0.435 s for a*a^T.
TALL_FACTOR = 4
# Fewer rows than this per thread and the threads cost more than they save.
MIN_ROWS_PER_STREAM = 64
# Products of fewer multiply-adds take well under a millisecond: not worth
# switching the BLAS threads for.
MIN_STREAM_WORK = 1 << 22


class Rows:
    """Per-row statistics of a ``(rows, d)`` matrix: the row norm is
    ``scale * hnorm``; ``zero`` and ``bad`` (NaN or inf) flag rows, and
    ``flag = zero | bad`` marks rows whose similarities are not computed."""

    def __init__(self, x):
        self.x = x
        n = x.shape[0]
        self.scale = np.empty(n, dtype=np.float64)
        self.hnorm = np.empty(n, dtype=np.float64)
        _split_threads(n, lambda r0, r1: kernels.row_stats(
            x[r0:r1], self.scale[r0:r1], self.hnorm[r0:r1]))
        self.zero = self.scale == 0.0
        self.bad = ~(self.scale < np.inf)
        self.flag = self.zero | self.bad
        self.any_flag = bool(self.flag.any())

    @property
    def nbytes(self):
        return self.scale.nbytes + self.hnorm.nbytes + 3 * self.zero.nbytes

    def normalised(self, start, stop, out, split=None):
        """Rows ``start:stop`` divided by their norms, into ``out`` (a buffer
        of at least ``(stop - start) * d`` elements); returns the view.
        ``split`` as in :func:`row_blocks` (default: over the threads)."""
        view = out[: (stop - start) * self.x.shape[1]].reshape(stop - start, self.x.shape[1])
        (split or _split_threads)(stop - start, lambda r0, r1: kernels.normalise_rows(
            self.x, start + r0, start + r1, self.scale, self.hnorm, view[r0:r1]))
        return view


def patch(tile, rows, cols, i0, j0, fill):
    """Zero rows/columns of a similarity tile get ``fill``, NaN/inf ones NaN."""
    i1, j1 = i0 + tile.shape[0], j0 + tile.shape[1]
    if rows.any_flag:
        tile[np.flatnonzero(rows.zero[i0:i1])] = fill
    if cols.any_flag:
        tile[:, np.flatnonzero(cols.zero[j0:j1])] = fill
    if rows.any_flag:
        tile[np.flatnonzero(rows.bad[i0:i1])] = np.nan
    if cols.any_flag:
        tile[:, np.flatnonzero(cols.bad[j0:j1])] = np.nan


def set_diagonal(tile, rows, i0, j0):
    """Self-similarity is exactly 1 for rows that are neither zero nor NaN/inf."""
    lo, hi = max(i0, j0), min(i0 + tile.shape[0], j0 + tile.shape[1])
    if lo >= hi:
        return
    idx = np.arange(lo, hi)
    keep = ~rows.flag[idx]
    tile[idx[keep] - i0, idx[keep] - j0] = 1.0


def stream_count(n, m, d):
    """How many per-thread streams suit an ``n x m`` product over ``d``: 1
    (one stream of multi-threaded BLAS calls) where BLAS cannot be made
    single-threaded, the product is too small to share or the threads would
    get too few rows each."""
    if not blas.can_limit() or n * m * d < MIN_STREAM_WORK:
        return 1
    return max(1, min(threads.thread_count(), n // MIN_ROWS_PER_STREAM))


class Tiling:
    """Tile sizes ``(ti, tj)`` for an ``n x m`` product with ``d`` columns in a
    compute dtype of ``itemsize`` bytes, within ``budget`` bytes of working
    memory, for ``streams`` per-thread streams (1: one stream).

    The working memory is: the fixed part (row statistics), the normalised
    right-hand matrix if it is kept whole (``pre``) and, for every stream,
    one normalised tile of left rows, one normalised block of right rows
    (when not ``pre``) and, when ``buffer``, one ``ti x tj`` score tile.
    ``want_rows`` x ``want_cols`` is the tile of the one-stream layout; the
    streams use smaller, cache-sized tiles (``TALL_FACTOR`` times as many
    rows when ``tall``: for selections that read each tile once)."""

    def __init__(self, n, m, d, itemsize, budget, fixed, *, buffer, want_rows, want_cols,
                 square=False, streams=1, tall=False, name="max_memory"):
        available = budget - fixed
        whole = m * d * itemsize
        self.pre = whole <= available // 2
        self.m = m
        self.streams = streams
        one_stream_tile = want_rows, want_cols
        if streams > 1:
            # at least one block of rows per stream
            want_rows = min(STREAM_ROWS * (TALL_FACTOR if tall else 1), -(-n // streams))
            want_cols = STREAM_COLS

        def cost(ti, tj):
            # one row and one column more: a last block of one row or one
            # column joins the one before it, and a lone row is doubled
            ti, tj = ti + 1, min(m, tj + 1)
            per_stream = ti * d + (0 if self.pre else tj * d) + (ti * tj if buffer else 0)
            return itemsize * streams * per_stream

        # Products of at least two rows and two columns wherever the problem
        # has them: see column_tiles.
        low_i, low_j = min(2, n), min(2, m)
        ti, tj = max(low_i, min(n, want_rows)), max(low_j, min(m, want_cols))
        if square:
            tj = max(tj, ti)
        rest = available - (whole if self.pre else 0)
        while cost(ti, tj) > rest and (ti > low_i or tj > low_j):
            if square:  # keep tj >= ti: the diagonal block fits in one tile
                if tj > ti:
                    tj = max(ti, tj // 2)
                else:
                    ti = tj = max(low_i, ti // 2)
            elif ti >= tj and ti > low_i:
                ti = max(low_i, ti // 2)
            else:
                tj = max(low_j, tj // 2)
        if cost(ti, tj) > rest:
            if streams > 1:  # one stream needs a third of the memory per tile
                self.__init__(n, m, d, itemsize, budget, fixed, buffer=buffer,
                              want_rows=one_stream_tile[0], want_cols=one_stream_tile[1],
                              square=square, name=name)
                return
            need = fixed + cost(low_i, low_j) + (whole if self.pre else 0)
            raise ValueError(
                f"{name}={budget} bytes is too small for this problem: the row "
                f"statistics and the smallest tile alone need {need} bytes."
            )
        self.n = n
        self.ti, self.tj = ti, tj
        self.working = cost(ti, tj) + (whole if self.pre else 0)  # bytes, besides ``fixed``

    def row_tiles(self):
        """``(i0, i1)`` blocks of ``ti`` rows; a last block of one row joins
        the one before it (see ``column_tiles``)."""
        return _bounds(0, self.n, self.ti)

    def column_tiles(self, start=0):
        """``(j0, j1)`` column tiles of width ``tj`` from ``start``, except
        that a last tile of one column joins the one before it.  NumPy hands
        a product of one row or one column to BLAS gemv or dot instead of
        gemm, and these round differently: two identical corpus rows could
        then score one ulp apart, and the tie would no longer go to the lower
        index.  Tiles are therefore at least two wide and blocks at least two
        high wherever the problem is (a lone query row is doubled:
        ``Buffers.left_rows``)."""
        return _bounds(start, self.m, self.tj)


def _bounds(start, stop, width):
    """``(a, b)`` ranges of ``width`` from ``start`` to ``stop``, a last range
    of one joining the one before it.  (A generator: a list of bounds would
    grow with the problem.)"""
    a = start
    while a < stop:
        b = min(stop, a + width)
        if stop - b == 1:
            b = stop
        yield a, b
        a = b


class Buffers:
    """One stream's scratch memory: normalised left rows, normalised right
    rows (when the plan does not keep them whole) and a score tile, each with
    room for the one extra row or column of a joined last block."""

    def __init__(self, plan, d, dtype, buffer=True):
        widest = min(plan.m, plan.tj + 1)
        self.d = d
        self.left = np.empty((plan.ti + 1) * d, dtype=dtype)
        self.right = None if plan.pre else np.empty(widest * d, dtype=dtype)
        self.scores = np.empty((plan.ti + 1) * widest, dtype=dtype) if buffer else None

    def left_rows(self, rows, i0, i1, split):
        """Rows ``i0:i1`` of ``rows`` (a :class:`Rows`) normalised; a lone
        row comes twice, so that its products are BLAS gemm like all others
        (use the first row of the result).  ``split`` as in :func:`row_blocks`."""
        if i1 - i0 > 1:
            return rows.normalised(i0, i1, self.left, split)
        pair = self.left[: 2 * self.d].reshape(2, self.d)
        rows.normalised(i0, i1, pair[0], split)
        pair[1] = pair[0]
        return pair

    def tile(self, rows, cols):
        return self.scores[: rows * cols].reshape(rows, cols)


def _split_inline(total, work):
    work(0, total)


def _split_threads(total, work):
    threads.run_split(total, work, minimum=64)


def row_blocks(plan, work, make_buffers):
    """Call ``work(i0, i1, buffers, split)`` for every block of rows of
    ``plan.row_tiles()``, ``buffers`` being the stream's own ``make_buffers()``.  ``split(
    total, part)`` runs ``part(r0, r1)`` over ``[0, total)``: over the
    threads in the one-stream layout, inline in a per-thread stream (whose
    thread is the parallelism).  Work on different blocks must not write to
    shared places."""
    if plan.streams <= 1 or plan.ti >= plan.n:
        buffers = make_buffers()
        for i0, i1 in plan.row_tiles():
            work(i0, i1, buffers, _split_threads)
        return
    with blas.single_threaded() as limited:
        if not limited:  # cannot happen when streams > 1; stay correct anyway
            plan.streams = 1
            row_blocks(plan, work, make_buffers)
            return
        blocks = plan.row_tiles()
        lock = threading.Lock()

        def stream(_start, _stop):
            buffers = make_buffers()
            while True:
                with lock:  # the next free block: threads that run late take fewer
                    bounds = next(blocks, None)
                if bounds is None:
                    return
                work(bounds[0], bounds[1], buffers, _split_inline)

        threads.run_parts([(s, s) for s in range(plan.streams)], stream)


def score_tiles(rows, cols, plan, compute, visit):
    """The products of the normalised rows of ``rows`` and ``cols`` (two
    :class:`Rows`), tile by tile as ``plan`` lays them out, in ``compute``
    precision: calls ``visit(i0, i1, j0, j1, tile, split)`` with the raw
    products (not clipped, not patched) for rows ``i0:i1`` and columns
    ``j0:j1``, in a buffer that the stream's next tile reuses; ``split`` as
    in :func:`row_blocks`.  ``visit`` runs in the stream's thread."""
    m, d = cols.x.shape[0], rows.x.shape[1]
    right_all = cols.normalised(0, m, np.empty(m * d, dtype=compute)) if plan.pre else None

    def work(i0, i1, buffers, split):
        xi = buffers.left_rows(rows, i0, i1, split)
        for j0, j1 in plan.column_tiles():
            yj = right_all[j0:j1] if plan.pre else cols.normalised(j0, j1, buffers.right, split)
            tile = buffers.tile(xi.shape[0], j1 - j0)
            np.matmul(xi, yj.T, out=tile)
            visit(i0, i1, j0, j1, tile[: i1 - i0], split)

    row_blocks(plan, work, lambda: Buffers(plan, d, compute))


def clip(tile, split):
    """Clip a score tile to [-1, 1] in place (rounding may leave |s| a few ulp
    above 1); ``split`` as in :func:`row_blocks` (the pass is bound by memory
    bandwidth, which one core does not saturate)."""
    if tile.flags.c_contiguous:
        split(tile.shape[0], lambda r0, r1: kernels.clip_rows(tile[r0:r1]))
    else:  # a tile of a strided ``out``: its rows are not contiguous
        split(tile.shape[0], lambda r0, r1: np.clip(tile[r0:r1], -1.0, 1.0, out=tile[r0:r1]))
