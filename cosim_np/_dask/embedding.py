"""pairwise_cosine, topk_cosine and cosine_similarity of Dask arrays.

Rows are independent of each other, so every block of the result is the
in-memory function (handed in by the public module as ``block_function``)
on blocks of rows: the products of query block ``i`` and corpus block ``j``
are the in-memory products of those rows.  The vector length ``d`` is made
one chunk (a product reads whole rows).  Top-k lists of the corpus blocks
are merged by a tree (``dask.array.reduction``), best score first, NaN
last, ties to the lower global index, as in memory.
"""

import functools

import dask
import dask.array as da
import numpy as np

from .._core import embedding as core
from .._core import validate as v
from .sliding import no_out


def _standin(array):
    """A zero-memory NumPy array of ``array``'s shape and dtype, for the checks."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, array.dtype), array.shape,
                                           (0,) * array.ndim, writeable=False)


def _lazy(value, name):
    """``value`` as a Dask array: itself, an ``xarray.DataArray``'s values
    (lazy or not; it has a Dask graph too), or its checked NumPy array (a
    masked array, a sparse matrix or a ragged list refused as in memory:
    a mask was dropped)."""
    v.refuse_delayed(value, name)
    if v.is_xarray(value):
        value = value.data
    if isinstance(value, da.Array):
        return value
    return da.from_array(v.as_real_array(value, name, min_ndim=0))


def _as_dask(value, name):
    """A checked 2-d Dask array of rows, its vector axis in one chunk."""
    array = _lazy(value, name)
    v.check_matrix(_standin(v.check_known_shape(array, name)), name)
    return array.rechunk({1: -1})


def _row_blocks(array):
    """The Dask array's blocks of rows (its vector axis one chunk), as
    delayed NumPy arrays, with their lengths."""
    return list(array.to_delayed().ravel()), array.chunks[0]


def pairwise_cosine(a, b, block_function, *, out=None, dtype=None, fill=0.0, max_memory=None):
    """``pairwise_cosine`` of Dask arrays: a lazy ``(N, M)`` Dask array whose
    block ``(i, j)`` is ``block_function`` of row blocks ``i`` and ``j`` (of
    row block ``i`` with itself, ``b=None``, on the diagonal of a.a^T:
    exactly symmetric with a unit diagonal, as in memory)."""
    no_out(out, "Dask arrays")
    x = _as_dask(a, "a")
    same = b is None
    y = x if same else _as_dask(b, "b")
    plan = core.check_pairwise_args(_standin(x), _standin(y), same, None, dtype, fill, max_memory)
    options = dict(dtype=plan.result_dtype, fill=fill, max_memory=max_memory)
    left, rows = _row_blocks(x)
    right, cols = _row_blocks(y)
    call = dask.delayed(block_function, pure=True)
    grid = [[None] * len(right) for _ in left]
    for i, xi in enumerate(left):
        for j, yj in enumerate(right):
            if same and j < i:  # the transpose of a block above the diagonal: exactly symmetric
                grid[i][j] = grid[j][i].T
                continue
            grid[i][j] = da.from_delayed(call(xi, None if same and i == j else yj, **options),
                                         shape=(rows[i], cols[j]), dtype=plan.result_dtype,
                                         meta=np.empty((0, 0), plan.result_dtype))
    return da.block(grid)


def _merge(scores, indices, k):
    """The ``k`` best of each row of ``(scores, indices)``: higher first,
    NaN last, ties to the lower index."""
    key = np.where(np.isnan(scores), np.inf, -scores.astype(np.float64))
    order = np.lexsort((indices, key), axis=-1)[:, :k]
    return (np.take_along_axis(scores, order, axis=-1),
            np.take_along_axis(indices, order, axis=-1))


def _merge_pair(first, second):
    """Two partial top-k lists ``(scores, indices)`` of the same queries, merged."""
    k = first[0].shape[1]
    return _merge(np.concatenate([first[0], second[0]], axis=1),
                  np.concatenate([first[1], second[1]], axis=1), k)


def _partial_topk(block_function, k, total, offset, queries, corpus, options, own=None):
    """One query block's top-k among one corpus block (``corpus`` None: the
    queries themselves), padded to ``k`` with NaN scores at index ``total``
    (past the corpus: they rank last and never show).  ``own``: with
    ``exclude_self`` and a corpus of its own, the corpus block's row of the
    block's first query (each next query's one further on), whose matches
    with themselves are left out; None where no query's own row is here."""
    rows = queries.shape[0]
    available = (rows - bool(options.get("exclude_self"))) if corpus is None else corpus.shape[0]
    take = min(k + (own is not None), available)  # (one more, for the own row left out)
    scores = np.full((rows, k), np.nan)
    indices = np.full((rows, k), total, dtype=np.int64)
    if take > 0:
        s, idx = block_function(queries, corpus, take, **options)
        if own is not None:
            mine = idx == own + np.arange(rows)[:, None]
            s, idx = _merge(np.where(mine, np.nan, s), np.where(mine, total - offset, idx),
                            min(k, take))
        scores[:, : s.shape[1]], indices[:, : s.shape[1]] = s, idx + offset
    return scores, indices


def topk_cosine(queries, corpus, k, block_function, *, exclude_self=False, fill=0.0,
                max_memory=None):
    """``topk_cosine`` of Dask arrays: lazy ``(scores, indices)`` of shape
    ``(N, k)``, chunked as the queries' rows.  Each query block's lists from
    every corpus block are merged pairwise, a tree of ``log2`` of the corpus
    blocks' count levels."""
    x = _as_dask(queries, "queries")
    same = corpus is None
    y = x if same else _as_dask(corpus, "corpus")
    plan = core.check_topk_args(_standin(x), _standin(y), same, k, exclude_self, fill, max_memory)
    kk, dtype = plan.k, plan.result_dtype
    left, rows = _row_blocks(x)
    right, cols = _row_blocks(y)
    offsets = np.concatenate([[0], np.cumsum(cols)])
    firsts = np.concatenate([[0], np.cumsum(rows)])  # each query block's first row
    part = dask.delayed(_partial_topk, pure=True, nout=2)
    merge = dask.delayed(_merge_pair, pure=True, nout=2)
    scores, indices = [], []
    for i, xi in enumerate(left):
        lists = []
        for j, yj in enumerate(right):
            options = dict(fill=fill, max_memory=max_memory)
            if same and i == j:
                options["exclude_self"] = exclude_self
            own = int(firsts[i] - offsets[j])
            if same or not exclude_self or not -rows[i] < own < cols[j]:
                own = None  # (no query's own corpus row in this block)
            lists.append(part(block_function, kk, int(offsets[-1]), int(offsets[j]), xi,
                              None if same and i == j else yj, options, own))
        while len(lists) > 1:  # a tree of pairwise merges
            lists = [merge(lists[t], lists[t + 1]) if t + 1 < len(lists) else lists[t]
                     for t in range(0, len(lists), 2)]
        best = lists[0]
        scores.append(da.from_delayed(best[0], shape=(rows[i], kk), dtype=np.float64))
        indices.append(da.from_delayed(best[1], shape=(rows[i], kk), dtype=np.int64))
    return (da.concatenate(scores).astype(dtype), da.concatenate(indices))


def cosine_similarity(a, b, block_function, *, axis=-1, eps=0.0, fill=0.0, out=None):
    """``cosine_similarity`` of Dask arrays (one of them may be NumPy): the
    reduced axes made one chunk, the kept ones broadcast block by block
    without being materialised (an axis of length 1 stays 1 in its blocks,
    so each block runs the very arithmetic of the in-memory call)."""
    no_out(out, "Dask arrays")
    x, y = _lazy(a, "a"), _lazy(b, "b")
    v.check_known_shape(x, "a")
    v.check_known_shape(y, "b")
    plan = core.check_cosine_args(_standin(x), _standin(y), axis, eps, fill, None)
    ndim = len(plan.shape)
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    y = y.reshape((1,) * (ndim - y.ndim) + y.shape)
    whole = {ax: -1 for ax in plan.axes}
    x, y = x.rechunk(whole), y.rechunk(whole)
    block = functools.partial(block_function, axis=plan.axes, eps=eps, fill=fill)

    def per_block(left, right):
        return np.asarray(block(left, right), dtype=plan.out_dtype)

    index = tuple(range(ndim))
    return da.blockwise(per_block, tuple(plan.kept), x, index, y, index, concatenate=True,
                        dtype=plan.out_dtype,
                        meta=np.empty((0,) * len(plan.kept), dtype=plan.out_dtype))
