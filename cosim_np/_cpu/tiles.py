"""The one tile loop of the embedding functions: products of normalised rows.

:class:`Rows` holds per-row statistics, :class:`Tiling` lays out tiles
within a memory budget, and :func:`score_tiles` computes every tile of the
product of two sets of normalised rows and finishes it (clipped to
``[-1, 1]``, zero and NaN rows patched, the self-similarity set to 1) for
``pairwise_cosine``, ``topk_cosine`` and the best matches of
``set_similarity``.  It serves the three alike: tiles in a buffer or written
straight into the result, the a.a^T case (half the products, BLAS syrk on
the diagonal blocks, the rest mirrored), row blocks of a memmap in order.

:func:`row_blocks` runs the loop's work on every block of rows in one of two
ways:

* **per-thread streams** (where :mod:`.blas` can make NumPy's BLAS single-
  threaded): every thread takes the next block of rows, computes its small
  tiles with one-threaded BLAS calls and finishes each (clipping, top-k
  merge) while it is still in that core's cache;
* **one stream** otherwise: BLAS threads compute each (larger) tile and the
  row-wise finishing passes are split over the threads afterwards.

Both give the same values: every product is one BLAS call over the whole
vector length, and rows keep their column order within each thread.  The
tile shapes and thresholds are read from :mod:`cosim_np._core.config` at
call time.
"""

import threading

import numpy as np

from .._core import config
from . import blas, threads
from . import embedding as kernels


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
    if not blas.can_limit() or n * m * d < config.MIN_STREAM_WORK:
        return 1
    return max(1, min(threads.thread_count(), n // config.MIN_ROWS_PER_STREAM))


class Tiling:
    """Tile sizes ``(ti, tj)`` for an ``n x m`` product with ``d`` columns in a
    compute dtype of ``itemsize`` bytes, within ``budget`` bytes of working
    memory, for ``streams`` per-thread streams (1: one stream).

    The working memory is: the fixed part (row statistics), the normalised
    right-hand matrix if it is kept whole (``pre``) and, for every stream,
    one normalised tile of left rows, one normalised block of right rows
    (when not ``pre``) and, when ``buffer``, one ``ti x tj`` score tile, and
    ``rounded`` bytes a score of the tile's copy in the result's dtype where
    the scores are rounded before a visit reads them (float16 results: 2).
    ``want_rows`` x ``want_cols`` is the tile of the one-stream layout
    (default ``config.ONE_STREAM_ROWS`` x ``config.ONE_STREAM_COLS``); the
    streams use smaller, cache-sized tiles (``config.TALL_FACTOR`` times as
    many rows when ``tall``: for selections that read each tile once).
    ``square`` keeps ``tj >= ti``, so that the diagonal block of a product
    of rows with themselves fits in one tile."""

    def __init__(self, n, m, d, itemsize, budget, fixed, *, buffer, want_rows=None,
                 want_cols=None, square=False, streams=1, tall=False, rounded=0,
                 name="max_memory"):
        want_rows = config.ONE_STREAM_ROWS if want_rows is None else want_rows
        want_cols = config.ONE_STREAM_COLS if want_cols is None else want_cols
        available = budget - fixed
        whole = m * d * itemsize
        self.pre = whole <= available // 2
        self.m = m
        self.streams = streams
        one_stream_tile = want_rows, want_cols
        if streams > 1:
            # at least one block of rows per stream
            want_rows = min(config.STREAM_ROWS * (config.TALL_FACTOR if tall else 1),
                            -(-n // streams))
            want_cols = config.STREAM_COLS

        def cost(ti, tj):
            # one row and one column more: a last block of one row or one
            # column joins the one before it, and a lone row is doubled
            ti, tj = ti + 1, min(m, tj + 1)
            per_stream = ti * d + (0 if self.pre else tj * d) + (ti * tj if buffer else 0)
            return streams * (itemsize * per_stream + rounded * ti * tj)

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
                              square=square, rounded=rounded, name=name)
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
        high wherever the problem is; a lone query row is doubled
        (``Buffers.left_rows``), and so is a corpus of one row (``score_tiles``):
        a Dask corpus may come in blocks of one row."""
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
    threads.run_split(total, work, minimum=config.MIN_ROWS_PER_SPLIT)


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


def score_tiles(rows, cols, plan, compute, *, fill, clipped=True, diagonal=False, upper=False,
                target=None, direct=False, visit=None):
    """The one tile loop: the products of the normalised rows of ``rows`` and
    ``cols`` (two :class:`Rows`), tile by tile as ``plan`` lays them out, in
    ``compute`` precision, each tile finished before the next is computed:

    * ``clipped``: clipped to ``[-1, 1]`` (rounding may take a product of
      nearly parallel rows a few ulp past 1);
    * pairs with a zero row get ``fill``, pairs with a NaN/inf row NaN;
    * ``diagonal`` (``rows is cols``): the self-similarity of every regular
      row is exactly 1;
    * ``upper`` (``rows is cols``, a.a^T): only the tiles on and above each
      row block's diagonal block are computed; a diagonal block that is one
      tile is one BLAS syrk call (NumPy's ``x @ x.T``: half the work,
      exactly symmetric), any other is mirrored from its upper triangle;
    * ``target``: the ``(n, m)`` result, into which every tile is written
      (with ``upper``, its transpose below the diagonal too); ``direct``:
      the products are computed straight into ``target``'s tiles (its dtype
      is ``compute`` and its rows are contiguous), with no score buffer;
    * ``visit(i0, i1, j0, j1, tile, split)``, if given, is called with the
      finished tile of rows ``i0:i1`` and columns ``j0:j1`` (a buffer that
      the stream's next tile reuses); ``split`` as in :func:`row_blocks`.

    Everything runs in the stream's thread (see :func:`row_blocks`)."""
    m, d = cols.x.shape[0], rows.x.shape[1]
    right_all = cols.normalised(0, m, np.empty(m * d, dtype=compute)) if plan.pre else None

    def work(i0, i1, buffers, split):
        if upper and right_all is not None and i1 - i0 > 1:
            xi = right_all[i0:i1]  # the same rows, normalised already
        else:
            xi = buffers.left_rows(rows, i0, i1, split)
        for j0, j1 in plan.column_tiles(i0 if upper else 0):
            # x @ x.T on one array: NumPy calls BLAS syrk and copies the
            # upper triangle down, so the block is exactly symmetric
            syrk = upper and j0 == i0 and j1 == i1 and i1 - i0 > 1
            if syrk:
                yj = xi
            elif right_all is not None:
                yj = right_all[j0:j1]
            else:
                yj = cols.normalised(j0, j1, buffers.right, split)
            lone = j1 - j0 == 1
            if lone:  # (a corpus of one row, doubled: see column_tiles; its column C-contiguous)
                tile = np.ascontiguousarray((xi @ np.concatenate((yj, yj)).T)[: i1 - i0, :1])
            else:
                tile = target[i0:i1, j0:j1] if direct else buffers.tile(xi.shape[0], j1 - j0)
                np.matmul(xi, yj.T, out=tile)
                tile = tile[: i1 - i0]
            if clipped:
                clip(tile, split)
            patch(tile, rows, cols, i0, j0, fill)
            if diagonal:
                set_diagonal(tile, rows, i0, j0)
            if upper and j0 == i0 and not syrk:
                kernels.mirror_upper(tile)
            if visit is not None:
                visit(i0, i1, j0, j1, tile, split)
            if target is not None:
                _store(tile, target, i0, j0, direct and not lone, upper)

    row_blocks(plan, work, lambda: Buffers(plan, d, compute, buffer=not direct))


def _store(tile, target, i0, j0, direct, upper):
    """Write a finished tile of rows ``i0:`` and columns ``j0:`` into
    ``target`` (unless it was computed there) and, for a product of rows
    with themselves, its part below the diagonal block transposed."""
    i1, j1 = i0 + tile.shape[0], j0 + tile.shape[1]
    with np.errstate(under="ignore"):  # (a float16 target: tiny cosines round to 0)
        if not direct:
            target[i0:i1, j0:j1] = tile
        lo = max(j0, i1)  # columns strictly below the row block's diagonal block
        if upper and lo < j1:
            if direct:
                kernels.transpose_into(tile[:, lo - j0 :], target[lo:j1, i0:i1])
            else:
                target[lo:j1, i0:i1] = tile[:, lo - j0 :].T


def clip(tile, split):
    """Clip a score tile to [-1, 1] in place (rounding may leave |s| a few ulp
    above 1); ``split`` as in :func:`row_blocks` (the pass is bound by memory
    bandwidth, which one core does not saturate)."""
    if tile.flags.c_contiguous or tile.strides[-1] == tile.itemsize:
        # (each row contiguous, as in columns of ``out``: np.clip of the whole
        # view would buffer a copy beyond max_memory)
        split(tile.shape[0], lambda r0, r1: kernels.clip_rows(tile[r0:r1]))
    else:  # a tile of a strided ``out``: its rows are not contiguous
        split(tile.shape[0], lambda r0, r1: np.clip(tile[r0:r1], -1.0, 1.0, out=tile[r0:r1]))
