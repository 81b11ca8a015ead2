"""Similarity of embeddings: axis-wise cosine, pairwise matrices, top-k, sets.

Each public function validates its arguments (``_validate``), plans the work
(dtypes, tiles within the memory budget: ``_tiles``) and runs it: BLAS matrix
products through NumPy for the dots, Numba kernels in ``_cpu.embedding`` for
the row statistics, the normalisation and the top-k selection fused into each
tile.

Overflow safety: every vector is divided by its largest magnitude before
anything is squared, so inputs near the largest float give the true cosine.
"""

import threading
from collections import namedtuple

import numpy as np

from . import _backend, _nearpairs
from ._core import validate as v
from ._cpu import embedding as kernels
from ._cpu import tiles as _tiles

__all__ = [
    "cosine_similarity",
    "pairwise_cosine",
    "topk_cosine",
    "set_similarity",
    "GreedyMatch",
]

DEFAULT_MAX_MEMORY = 256 * 2**20
SET_METHODS = ("mean", "centroid", "greedy", "chamfer")

GreedyMatch = namedtuple("GreedyMatch", ["precision", "recall", "f1"])
GreedyMatch.__doc__ = """Result of ``set_similarity(..., method="greedy")``.

Attributes
----------
precision : numpy.float64
    Weighted mean over the rows of ``a`` of their best cosine in ``b``.
recall : numpy.float64
    Weighted mean over the rows of ``b`` of their best cosine in ``a``.
f1 : numpy.float64
    The harmonic mean ``2 * precision * recall / (precision + recall)`` when
    precision and recall have the same sign, else 0. With opposite signs the
    formula is no mean (it leaves ``[-1, 1]`` and explodes as the sum nears
    0); 0 lies between the two, and f1 stays continuous in both.
"""


# ---------------------------------------------------------------------------
# planning helpers


def _promote(*dtypes):
    return np.result_type(*dtypes)


def _compute_dtype(result_dtype):
    """BLAS runs in float64 for float64 results, in float32 otherwise."""
    return np.dtype(np.float64) if result_dtype == np.float64 else np.dtype(np.float32)


def _kernel_input(x):
    """float32/float64 pass through (any strides); float16 -> float32; integers
    and bools -> float64 (a copy)."""
    if x.dtype in (np.float32, np.float64):
        return x
    return x.astype(np.float32 if x.dtype == np.float16 else np.float64)


def _check_same_d(x, y, a_name, b_name):
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same number of columns (vector "
            f"length d); got {a_name} with d={x.shape[1]} and {b_name} with d={y.shape[1]}."
        )


# ---------------------------------------------------------------------------
# cosine_similarity


@_backend.documented
def cosine_similarity(a, b, axis=-1, *, eps=0.0, fill=0.0, backend="auto"):
    """Cosine similarity of ``a`` and ``b`` along ``axis``, with broadcasting.

    Behaves like ``torch.nn.functional.cosine_similarity(a, b, dim=axis,
    eps=eps)``: ``a`` and ``b`` are broadcast against each other, the norms
    are taken on the broadcast shape, and the axis (or axes) in ``axis`` are
    reduced away. The broadcast is never materialised: ``(N, 1, D)`` against
    ``(1, M, D)`` allocates ``N * M`` results, not ``N * M * D`` products.

    Parameters
    ----------
    a, b : array_like
        Real arrays whose shapes broadcast against each other.
    axis : int or tuple of int, optional
        The axis (or axes) holding the vector components, counted on the
        broadcast shape. ``axis=(-2, -1)`` treats each ``H x W`` image plane
        as one vector: per-channel similarity of feature maps.
    eps : float, optional
        ``0`` (default): the pure cosine, and a pair involving an all-zero
        vector gets ``fill``. ``eps > 0``: each norm is clamped to at least
        ``eps``, ``dot / (max(|a|, eps) * max(|b|, eps))``, exactly as PyTorch
        does (a zero vector then gives 0).
    fill : float, optional
        Result for a pair with an all-zero vector when ``eps == 0`` (default
        ``0.0``; ``nan`` is allowed).
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend}

    Returns
    -------
    numpy.ndarray or numpy scalar
        The broadcast shape with the reduced axes removed (a scalar for two
        vectors). float32 inputs give float32, float64 give float64, integers
        and bools give float64, float16 gives float16; mixed inputs follow
        NumPy promotion of those. Values lie in ``[-1, 1]`` (clipped); a
        vector containing NaN or ±inf gives NaN.

    Raises
    ------
    ValueError
        If the shapes do not broadcast, ``axis`` is out of range, repeated or
        empty, both inputs are 0-d, or ``eps`` is negative or not finite.
    TypeError
        For complex or non-numeric input, or a non-integer ``axis``.

    Notes
    -----
    Every vector is divided by its largest magnitude before its squared norm
    and the dot products are formed (in float64), so inputs near ``1e308``
    (float64) or ``3e38`` (float32) give the true cosine. A reduced axis along
    which one input has length 1 and the other length ``D`` is summed first
    on the other input (``sum_k a * b_k = a * sum_k b_k``), and its norm is
    multiplied by ``sqrt(D)``, which is what the norm of the broadcast is.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import cosine_similarity
    >>> cosine_similarity([1.0, 0.0], [1.0, 1.0]).round(4)
    np.float64(0.7071)

    The reduced axis disappears; the others broadcast:

    >>> a = np.array([[1.0, 0.0], [0.0, 2.0]])          # 2 vectors
    >>> b = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])  # 3 vectors
    >>> cosine_similarity(a[:, None, :], b[None, :, :]).round(4)  # (2, 3) matrix
    array([[ 1.    ,  0.7071,  0.    ],
           [ 0.    ,  0.7071, -1.    ]])

    Per-channel similarity of two ``(C, H, W)`` feature maps:

    >>> x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    >>> cosine_similarity(x, x[::-1], axis=(-2, -1)).round(4)
    array([0.9297, 0.9297], dtype=float32)
    """
    if _backend.wants_cuda(backend, a=a, b=b):
        return _backend.cuda_impl("cosine_similarity")(a, b, axis, eps=eps, fill=fill)
    x = v.as_real_array(a, "a", min_ndim=0)
    y = v.as_real_array(b, "b", min_ndim=0)
    out_dtype, eps_value, fill_value, shape, axes, kept, out_shape = _check_cosine_args(
        x, y, axis, eps, fill)
    ndim = len(shape)

    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    y = y.reshape((1,) * (ndim - y.ndim) + y.shape)
    if any(shape[ax] == 0 for ax in axes):  # empty vectors are zero vectors
        value = fill_value if eps_value == 0.0 else 0.0
        return _scalar_or_array(np.full(out_shape, value, dtype=out_dtype))

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        xh, sx, nx2 = _scaled(x, axes, shape)
        yh, sy, ny2 = _scaled(y, axes, shape)
        # a reduced axis broadcast on one side only: sum the other side first
        for ax in axes:
            if xh.shape[ax] == 1 and yh.shape[ax] > 1:
                yh = yh.sum(axis=ax, keepdims=True)
            elif yh.shape[ax] == 1 and xh.shape[ax] > 1:
                xh = xh.sum(axis=ax, keepdims=True)
        dot = _reduced_dot(xh, yh, axes, kept)
        cos = dot / (np.sqrt(_drop(nx2, axes)) * np.sqrt(_drop(ny2, axes)))
        sx, sy = _drop(sx, axes), _drop(sy, axes)
        if eps_value > 0.0:
            n1 = sx * np.sqrt(_drop(nx2, axes))
            n2 = sy * np.sqrt(_drop(ny2, axes))
            cos = cos * (np.minimum(n1 / eps_value, 1.0) * np.minimum(n2 / eps_value, 1.0))
        if not (isinstance(cos, np.ndarray) and cos.shape == out_shape):
            cos = np.array(np.broadcast_to(cos, out_shape), dtype=np.float64)
        zero = np.broadcast_to((sx == 0.0) | (sy == 0.0), out_shape)
        bad = np.broadcast_to(~(sx < np.inf) | ~(sy < np.inf), out_shape)
    np.clip(cos, -1.0, 1.0, out=cos)
    cos[zero] = fill_value if eps_value == 0.0 else 0.0
    cos[bad] = np.nan
    return _scalar_or_array(cos.astype(out_dtype, copy=False))


def _check_cosine_args(x, y, axis, eps, fill):
    """Validated ``cosine_similarity`` arguments for the arrays (or stand-ins
    of device arrays) ``x`` and ``y``: ``(out_dtype, eps, fill, broadcast
    shape, reduced axes, kept axes, out_shape)``.  Shared by the CPU and CUDA
    paths."""
    out_dtype = _promote(v.output_dtype(x.dtype, "a"), v.output_dtype(y.dtype, "b"))
    eps_value = v.check_real(eps, "eps", nonnegative=True)
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"a and b must broadcast against each other; got shapes {x.shape} and {y.shape}."
        ) from None
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("a and b are both 0-d: there is no axis holding vectors to compare.")
    axes = v.check_axes(axis, ndim)
    kept = [ax for ax in range(ndim) if ax not in axes]
    out_shape = tuple(shape[ax] for ax in kept)
    return out_dtype, eps_value, fill_value, shape, axes, kept, out_shape


def _scalar_or_array(result):
    return result[()] if result.ndim == 0 else result


def _drop(array, axes):
    """Remove the (length-1) reduced axes of a keepdims result."""
    return array.reshape(tuple(n for ax, n in enumerate(array.shape) if ax not in axes))


def _scaled(x, axes, shape):
    """``x / max|x|`` per vector (float64), the per-vector scale, and the
    squared norm of the scaled vector on the broadcast shape."""
    xf = x.astype(np.float64)
    absx = np.abs(xf)
    scale = np.max(absx, axis=axes, keepdims=True)
    del absx
    xf /= np.where(scale == 0.0, 1.0, scale)
    nx2 = np.sum(xf * xf, axis=axes, keepdims=True)
    factor = 1
    for ax in axes:
        if x.shape[ax] == 1:
            factor *= shape[ax]
    if factor != 1:
        nx2 *= factor
    return xf, scale, nx2


def _reduced_dot(xh, yh, axes, kept):
    """Sum over ``axes`` of ``xh * yh`` (the reduced axes now have equal
    lengths or length 1 on both sides), broadcasting the kept axes without
    materialising: a ``(..., 1, R) @ (..., R, 1)`` matmul per output."""
    nk = len(kept)
    xm = np.moveaxis(xh, axes, range(nk, nk + len(axes)))
    ym = np.moveaxis(yh, axes, range(nk, nk + len(axes)))
    rx, ry = int(np.prod(xm.shape[nk:])), int(np.prod(ym.shape[nk:]))
    xm = xm.reshape(xm.shape[:nk] + (1, rx))
    ym = ym.reshape(ym.shape[:nk] + (ry, 1))
    return np.matmul(xm, ym)[..., 0, 0]


# ---------------------------------------------------------------------------
# pairwise_cosine


@_backend.documented
def pairwise_cosine(a, b=None, *, out=None, dtype=None, fill=0.0, max_memory=None,
                    backend="auto"):
    """The full matrix of cosine similarities between the rows of ``a`` and ``b``.

    ``result[i, j]`` is the cosine of ``a[i]`` and ``b[j]``. Rows are
    normalised once (overflow-safe, in float64) and the matrix is built tile by
    tile with BLAS matrix products, so the working memory stays within
    ``max_memory`` and ``out`` may be a :class:`numpy.memmap` larger than RAM.

    Parameters
    ----------
    a : array_like, shape (N, D)
        One vector per row.
    b : array_like, shape (M, D), optional
        One vector per row. ``None`` compares ``a`` with itself: the result is
        exactly symmetric with exactly 1 on the diagonal for non-zero rows, and
        only half of the products are computed.
    out : numpy.ndarray, shape (N, M), optional
        Where to write the result (a ``numpy.memmap`` works: it is written tile
        by tile, row block after row block).
    dtype : {None, float16, float32, float64}, optional
        Result dtype. Default: ``out.dtype`` if ``out`` is given, otherwise the
        dtype policy (float32 stays float32, float64, integers and bools give
        float64). The products run in float64 BLAS for a float64 result and in
        float32 BLAS otherwise.
    fill : float, optional
        Similarity of a pair involving an all-zero row (default ``0.0``).
    max_memory : int or str, optional
        Bound on the working memory in bytes, or a string such as ``"64MiB"``
        (default 256 MiB). The result itself is not counted; neither is the
        float64 copy made of integer or bool inputs.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, ``out`` must be a NumPy array.

    Returns
    -------
    numpy.ndarray, shape (N, M)
        ``out`` if given. Values in ``[-1, 1]``; rows containing NaN or ±inf
        give NaN.

    Raises
    ------
    ValueError
        If an input is not 2-d, the row lengths differ, ``out`` has the wrong
        shape or dtype or is read-only, or ``max_memory`` cannot hold even one
        row tile.
    TypeError
        For complex or non-numeric input, an unsupported ``dtype``, or an
        ``out`` that is not an ndarray.

    See Also
    --------
    topk_cosine : the best ``k`` matches per row without the full matrix.

    Notes
    -----
    Tiles are shared among ``numba.get_num_threads()`` threads; see
    :ref:`embedding-threads` for how NumPy's BLAS is used meanwhile.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import pairwise_cosine
    >>> a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> pairwise_cosine(a).round(4)
    array([[1.    , 0.7071, 0.    ],
           [0.7071, 1.    , 0.    ],
           [0.    , 0.    , 0.    ]])
    >>> pairwise_cosine(a, [[2.0, 0.0], [0.0, -3.0]], fill=np.nan).round(4)
    array([[ 1.    ,  0.    ],
           [ 0.7071, -0.7071],
           [    nan,     nan]])
    """
    if _backend.wants_cuda(backend, a=a, b=b):
        return _backend.cuda_impl("pairwise_cosine")(
            a, b, out=out, dtype=dtype, fill=fill, max_memory=max_memory)
    xa = v.check_matrix(a, "a")
    same = b is None
    yb = xa if same else v.check_matrix(b, "b")
    fill_value, budget, result_dtype = _check_pairwise_args(xa, yb, same, out, dtype, fill,
                                                            max_memory)
    x = _kernel_input(xa)
    y = x if same else _kernel_input(yb)
    if out is None:
        out = np.empty((x.shape[0], y.shape[0]), dtype=result_dtype)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n == 0 or m == 0:
        return out
    compute = _compute_dtype(result_dtype)
    target = np.asarray(out)  # a plain view (of a memmap too)
    # (a single row goes through a buffer: its product is computed twice over)
    direct = target.dtype == compute and target.strides[1] == compute.itemsize and n > 1

    rows = _tiles.Rows(x)
    cols = rows if same else _tiles.Rows(y)
    fixed = rows.nbytes + (0 if same else cols.nbytes)
    c = compute.itemsize
    if direct:
        # Writing straight into the result needs no score buffer.  In one
        # stream of multi-threaded BLAS calls: one call over as many rows as
        # the budget allows (every extra call leaves the BLAS threads spinning
        # while the clipping runs), in row blocks of at most 64 MiB for a
        # memmap so that pages are written out in order.
        want_rows = n if not isinstance(out, np.memmap) else max(1, 2**26 // (m * c))
        want_cols = m
    else:
        want_rows, want_cols = 1024, 4096  # a 16 MiB float32 score tile
    # Per-thread streams pay off where a tile needs more than one pass while
    # hot (the mirrored half of a*a^T, the cast of a buffered tile): 0.62 s
    # against 0.98 s for NumPy's own a @ a.T at N = 20000, D = 256.  Straight
    # into the result, one multi-threaded BLAS call is faster (0.90 s against
    # 0.95 s): OpenBLAS's threads share their packed panels.
    streams = _tiles.stream_count(n, m, d) if same or not direct else 1
    plan = _tiles.Tiling(n, m, d, c, budget, fixed, buffer=not direct, want_rows=want_rows,
                         want_cols=want_cols, square=same, streams=streams)
    right_all = cols.normalised(0, m, np.empty(m * d, dtype=compute)) if plan.pre else None
    # Straight into the result, the clip would read the whole result once
    # more; a grid of the corpus rows finds the few scores it could change.
    near = None
    if direct and not same and plan.pre and plan.tj >= m:
        near = _nearpairs.fitting(right_all, plan.ti, budget - fixed - plan.working)

    def work(i0, i1, buffers, split):
        if same and plan.pre and i1 - i0 > 1:
            xi = right_all[i0:i1]
        else:
            xi = buffers.left_rows(rows, i0, i1, split)
        for j0, j1 in plan.column_tiles(i0 if same else 0):
            # a*a^T on one buffer: NumPy calls BLAS syrk (half the work) and
            # copies the upper triangle down, so the block is exactly symmetric
            syrk = same and j0 == i0 and j1 == i1 and i1 - i0 > 1
            if syrk:
                yj = xi
            elif plan.pre:
                yj = right_all[j0:j1]
            else:
                yj = cols.normalised(j0, j1, buffers.right, split)
            tile = target[i0:i1, j0:j1] if direct else buffers.tile(xi.shape[0], j1 - j0)
            np.matmul(xi, yj.T, out=tile)
            tile = tile[: i1 - i0]
            if near is None or not near.clip(tile, xi[: i1 - i0], split):
                _tiles.clip(tile, split)
            _tiles.patch(tile, rows, cols, i0, j0, fill_value)
            if same:
                _tiles.set_diagonal(tile, rows, i0, j0)
                if j0 == i0 and not syrk:  # make the diagonal block exactly symmetric
                    kernels.mirror_upper(tile)
            if not direct:
                target[i0:i1, j0:j1] = tile
            if same:
                lo = max(j0, i1)  # columns strictly below the row block's diagonal block
                if lo < j1:
                    if direct:
                        kernels.transpose_into(tile[:, lo - j0 :], target[lo:j1, i0:i1])
                    else:
                        target[lo:j1, i0:i1] = tile[:, lo - j0 :].T

    _tiles.row_blocks(plan, work, lambda: _tiles.Buffers(plan, d, compute, buffer=not direct))
    return out


def _check_pairwise_args(x, y, same, out, dtype, fill, max_memory):
    """Validated ``pairwise_cosine`` arguments for the checked matrices (or
    stand-ins of device matrices) ``x`` and ``y``: ``(fill, budget,
    result_dtype)``.  Shared by the CPU and CUDA paths."""
    if not same:
        _check_same_d(x, y, "a", "b")
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    budget = v.check_memory(max_memory, "max_memory", DEFAULT_MAX_MEMORY)
    requested = v.check_dtype_choice(dtype, "dtype")
    policy = _promote(
        v.output_dtype(x.dtype, "a"),
        v.output_dtype(y.dtype, "b") if not same else np.float16,
    )
    if out is None:
        return fill_value, budget, requested if requested is not None else policy
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray; got {type(out).__name__}.")
    result_dtype = requested if requested is not None else out.dtype
    if result_dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"out must have dtype float16, float32 or float64; got {out.dtype}.")
    v.check_out(out, (x.shape[0], y.shape[0]), result_dtype)
    return fill_value, budget, result_dtype


# ---------------------------------------------------------------------------
# topk_cosine


@_backend.documented
def topk_cosine(queries, corpus, k, *, exclude_self=False, fill=0.0, max_memory=None,
                backend="auto"):
    """The ``k`` rows of ``corpus`` most cosine-similar to each row of ``queries``.

    The similarity matrix is never built: it is computed tile by tile (BLAS
    products of pre-normalised rows) and each tile is folded into running
    top-``k`` lists by a compiled selection loop, so the working memory stays
    within ``max_memory`` whatever ``N * M`` is.

    Parameters
    ----------
    queries : array_like, shape (N, D)
        One query vector per row.
    corpus : array_like, shape (M, D), or None
        One vector per row; ``None`` searches ``queries`` itself (then the
        self-match scores exactly 1 for non-zero rows, as the diagonal of
        ``pairwise_cosine(a)`` does). Passing ``queries`` again, or a copy,
        searches another array that happens to be equal: the scores are the
        products' as rounded, within a few units of rounding of 1 for the
        self-match, the same whichever of the two is passed.
    k : int
        How many matches per query, ``1 <= k <= M`` (``M - 1`` with
        ``exclude_self``).
    exclude_self : bool, optional
        Leave out ``corpus[i]`` from the matches of ``queries[i]``: the usual
        nearest-neighbour query of a set against itself. Needs ``N == M``.
    fill : float, optional
        Score of a pair involving an all-zero row (default ``0.0``).
    max_memory : int or str, optional
        Bound on the working memory in bytes, or a string such as ``"64MiB"``
        (default 256 MiB). The results are not counted; neither is the float64
        copy made of integer or bool inputs.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend}

    Returns
    -------
    scores : numpy.ndarray, shape (N, k)
        Best first. float32 for float32 inputs (products in float32 BLAS),
        float64 for float64, integer and bool inputs, float16 for float16.
    indices : numpy.ndarray of int64, shape (N, k)
        The corpus rows of ``scores``. Equal scores are ordered by increasing
        index (the lower index wins a tie at the k-th place); NaN scores (rows
        with NaN or ±inf) rank last.

    Raises
    ------
    ValueError
        If ``k`` is larger than the corpus (the message names both numbers),
        an input is not 2-d, the row lengths differ, ``exclude_self`` is used
        with ``N != M``, or ``max_memory`` cannot hold even one tile.
    TypeError
        For complex or non-numeric input or a non-integer ``k``.

    Notes
    -----
    Tiles are shared among ``numba.get_num_threads()`` threads, each folding
    its tiles into the lists while they are in its cache; see
    :ref:`embedding-threads` for how NumPy's BLAS is used meanwhile.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import topk_cosine
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    >>> scores, idx = topk_cosine([[2.0, 0.1], [0.0, -1.0]], corpus, 2)
    >>> idx
    array([[0, 2],
           [0, 3]])
    >>> scores.round(4)
    array([[0.9988, 0.7415],
           [0.    , 0.    ]])

    Nearest neighbour of every row among the others:

    >>> topk_cosine(corpus, None, 1, exclude_self=True)[1].ravel()
    array([2, 2, 0, 1])
    """
    if _backend.wants_cuda(backend, queries=queries, corpus=corpus):
        return _backend.cuda_impl("topk_cosine")(
            queries, corpus, k, exclude_self=exclude_self, fill=fill, max_memory=max_memory)
    xq = v.check_matrix(queries, "queries")
    # (only None means the same rows: the result must not depend on whether
    # an equal corpus is the queries object itself)
    same = corpus is None
    yc = xq if same else v.check_matrix(corpus, "corpus")
    kk, fill_value, budget, result_dtype = _check_topk_args(
        xq, yc, same, corpus is None, k, exclude_self, fill, max_memory)
    x = _kernel_input(xq)
    y = x if same else _kernel_input(yc)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    compute = _compute_dtype(result_dtype)
    best_s = np.full((n, kk), np.nan, dtype=compute)
    best_i = np.full((n, kk), m, dtype=np.int64)
    if n == 0:
        return best_s.astype(result_dtype), best_i

    rows = _tiles.Rows(x)
    cols = rows if same else _tiles.Rows(y)
    fixed = rows.nbytes + (0 if same else cols.nbytes)
    plan = _tiles.Tiling(n, m, d, compute.itemsize, budget, fixed, buffer=True, want_rows=1024,
                         want_cols=4096, streams=_tiles.stream_count(n, m, d), tall=True)
    self_col = 0 if exclude_self else -1

    def merge(i0, i1, j0, j1, tile, split):
        _tiles.patch(tile, rows, cols, i0, j0, fill_value)
        if same and not exclude_self:
            _tiles.set_diagonal(tile, rows, i0, j0)
        split(i1 - i0, lambda r0, r1: kernels.merge_topk(
            tile[r0:r1], i0 + r0, j0, rows.flag[i0 + r0 : i0 + r1], cols.flag[j0:j1], self_col,
            best_s, best_i))

    _tiles.score_tiles(rows, cols, plan, compute, merge)
    return best_s.astype(result_dtype, copy=False), best_i


def _check_topk_args(x, y, same, no_corpus, k, exclude_self, fill, max_memory):
    """Validated ``topk_cosine`` arguments for the checked matrices (or
    stand-ins of device matrices) ``x`` and ``y``: ``(k, fill, budget,
    result_dtype)``.  Shared by the CPU and CUDA paths."""
    if not same:
        _check_same_d(x, y, "queries", "corpus")
    kk = v.check_positive_int(k, "k")
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self must be True or False; got {exclude_self!r}.")
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    budget = v.check_memory(max_memory, "max_memory", DEFAULT_MAX_MEMORY)
    n, m = x.shape[0], y.shape[0]
    if exclude_self and n != m:
        raise ValueError(
            f"exclude_self=True needs queries and corpus to be the same rows (N == M); "
            f"got N={n} queries and M={m} corpus rows."
        )
    limit = m - 1 if exclude_self else m
    if kk > limit:
        extra = " minus the excluded self-match" if exclude_self else ""
        raise ValueError(
            f"k={kk} is larger than the corpus: it has {m} rows{extra}, so k must be "
            f"at most {limit}."
        )
    result_dtype = _promote(
        v.output_dtype(x.dtype, "queries"),
        v.output_dtype(y.dtype, "corpus") if not no_corpus else np.float16,
    )
    return kk, fill_value, budget, result_dtype


# ---------------------------------------------------------------------------
# set_similarity


def _set_rows(value, name, mask, weights, mask_name, weights_name):
    """Validated rows of one set with their weights (masked rows removed)."""
    x = _kernel_input(v.check_matrix(value, name))
    n = x.shape[0]
    w = None
    if weights is not None:
        w = np.asarray(weights)
        v.output_dtype(w.dtype, weights_name)
        if w.shape != (n,):
            raise ValueError(f"{weights_name} must have shape ({n},), one weight per row of "
                             f"{name}; got shape {w.shape}.")
        w = w.astype(np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"{weights_name} must be finite and >= 0.")
    if mask is not None:
        keep = np.asarray(mask)
        if keep.dtype != np.bool_:
            raise TypeError(f"{mask_name} must be a boolean array (True = a real row, "
                            f"False = padding); got dtype {keep.dtype}.")
        if keep.shape != (n,):
            raise ValueError(f"{mask_name} must have shape ({n},), one flag per row of "
                             f"{name}; got shape {keep.shape}.")
        x = x[keep]
        if w is not None:
            w = w[keep]
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows left to compare (after {mask_name}).")
    if w is None:
        w = np.ones(x.shape[0])
    if not w.sum() > 0:
        raise ValueError(f"{weights_name} must not all be zero (on the unmasked rows).")
    return x, w / w.sum()


def set_similarity(a, b, method="mean", *, weights_a=None, weights_b=None, mask_a=None,
                   mask_b=None, max_memory=None):
    """One similarity score for two sets of vectors.

    Parameters
    ----------
    a : array_like, shape (N, D)
        The first set, one vector per row (e.g. the token or sentence
        embeddings of one document).
    b : array_like, shape (M, D)
        The second set.
    method : {'mean', 'centroid', 'greedy', 'chamfer'}, optional
        * ``'mean'`` (default): the (weighted) mean of the ``N * M`` pairwise
          cosines, computed in ``O((N + M) * D)`` as the dot product of the
          weighted means of the normalised vectors.
        * ``'centroid'``: the cosine of the two (weighted) centroids of the
          raw vectors; long vectors count more.
        * ``'greedy'``: best-match scores as in BERTScore: precision is the
          weighted mean over rows of ``a`` of their best cosine in ``b``,
          recall the same over rows of ``b``, and F1 their harmonic mean
          (see :class:`GreedyMatch` for opposite signs).
        * ``'chamfer'``: the symmetric Chamfer similarity, the mean of
          greedy precision and recall.
    weights_a, weights_b : array_like, optional
        Non-negative per-row weights (e.g. IDF); default equal weights. They
        weight the means of every method.
    mask_a, mask_b : array_like of bool, optional
        ``True`` for real rows, ``False`` for padding; masked rows are ignored
        entirely (as if absent).
    max_memory : int or str, optional
        Working-memory bound for ``'greedy'`` and ``'chamfer'`` (default 256 MiB).

    Returns
    -------
    numpy.float64 or GreedyMatch
        A float64 scalar in ``[-1, 1]``; for ``'greedy'`` a
        :class:`GreedyMatch` ``(precision, recall, f1)``. An all-zero vector
        has cosine 0 with everything; a set containing NaN or ±inf gives NaN.

    Raises
    ------
    ValueError
        For an unknown ``method``, inputs that are not 2-d, different row
        lengths, weights or masks of the wrong shape, negative or non-finite
        weights, all-zero weights, or a set left empty by its mask.
    TypeError
        For complex or non-numeric input or a non-boolean mask.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import set_similarity
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> b = np.array([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    >>> round(float(set_similarity(a, b)), 4)  # mean of the 6 pairwise cosines
    0.6381
    >>> round(float(set_similarity(a, b, "centroid")), 4)
    0.9971
    >>> p, r, f1 = set_similarity(a, b, "greedy")
    >>> round(float(p), 4), round(float(r), 4), round(float(f1), 4)
    (0.8536, 0.8047, 0.8284)
    >>> round(float(set_similarity(a, b, "chamfer", mask_b=[True, False, True])), 4)
    0.8536
    """
    v.check_choice(method, "method", SET_METHODS)
    x, wa = _set_rows(a, "a", mask_a, weights_a, "mask_a", "weights_a")
    y, wb = _set_rows(b, "b", mask_b, weights_b, "mask_b", "weights_b")
    _check_same_d(x, y, "a", "b")
    budget = v.check_memory(max_memory, "max_memory", DEFAULT_MAX_MEMORY)
    if x.shape[1] == 0:
        x = np.zeros((x.shape[0], 1))
        y = np.zeros((y.shape[0], 1))
    rows, cols = _tiles.Rows(x), _tiles.Rows(y)
    if rows.bad[wa > 0].any() or cols.bad[wb > 0].any() or (
        method in ("greedy", "chamfer") and (rows.bad.any() or cols.bad.any())
    ):
        nan = np.float64(np.nan)
        return GreedyMatch(nan, nan, nan) if method == "greedy" else nan

    if method == "mean":
        ma = _weighted_unit_mean(rows, wa)
        mb = _weighted_unit_mean(cols, wb)
        return np.float64(np.clip(np.dot(ma, mb), -1.0, 1.0))
    if method == "centroid":
        ca = _weighted_centroid(x, rows, wa)
        cb = _weighted_centroid(y, cols, wb)
        return np.float64(cosine_similarity(ca, cb))

    best_a, best_b = _best_matches(rows, cols, budget)
    precision = np.float64(np.dot(wa, best_a))
    recall = np.float64(np.dot(wb, best_b))
    if method == "chamfer":
        return np.float64(0.5 * (precision + recall))
    same_sign = precision * recall > 0
    f1 = np.float64(2.0 * precision * recall / (precision + recall) if same_sign else 0.0)
    return GreedyMatch(precision, recall, f1)


def _weighted_unit_mean(rows, w):
    """``sum_i w_i x_i / |x_i|`` in float64 (zero rows contribute nothing)."""
    n, d = rows.x.shape
    unit = rows.normalised(0, n, np.empty(n * d, dtype=np.float64))
    unit[rows.flag] = 0.0  # zero rows; NaN rows reach here only with weight 0
    return w @ unit


def _weighted_centroid(x, rows, w):
    """Weighted centroid, computed on a common scale so that it cannot overflow
    (the cosine does not depend on that scale)."""
    big = rows.scale.max()
    big = 1.0 if big == 0 else big
    return w @ (x.astype(np.float64) / big)


def _best_matches(rows, cols, budget):
    """Best cosine of each row of ``rows`` among ``cols`` and vice versa, tile
    by tile (float64 products)."""
    n, d = rows.x.shape
    m = cols.x.shape[0]
    best_a = np.full(n, -np.inf)
    best_b = np.full(m, -np.inf)
    plan = _tiles.Tiling(n, m, d, 8, budget, rows.nbytes + cols.nbytes, buffer=True,
                         want_rows=1024, want_cols=4096, streams=_tiles.stream_count(n, m, d))
    lock = threading.Lock()  # streams share the columns' best

    def fold(i0, i1, j0, j1, tile, split):
        _tiles.clip(tile, split)
        _tiles.patch(tile, rows, cols, i0, j0, 0.0)
        np.maximum(best_a[i0:i1], tile.max(axis=1), out=best_a[i0:i1])
        col_best = tile.max(axis=0)
        with lock:
            np.maximum(best_b[j0:j1], col_best, out=best_b[j0:j1])

    _tiles.score_tiles(rows, cols, plan, np.dtype(np.float64), fold)
    return best_a, best_b
