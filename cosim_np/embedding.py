"""Similarity of embeddings: axis-wise cosine, pairwise matrices, top-k, sets.

Each function validates its arguments and plans the call
(:mod:`cosim_np._core.embedding`), then hands it to a backend: the CPU
drivers of :mod:`cosim_np._cpu.pairs` (BLAS products of normalised rows in
one tile loop, Numba kernels for the row statistics and the top-k
selection) or the CUDA backend (:mod:`cosim_np._cuda`).

Overflow safety: inputs near the largest float give the true cosine. Vectors
are divided by their largest magnitude before anything is squared, but for
:func:`cosine_similarity` of float32, float16 or integer samples, whose squares
float64 holds without overflow or underflow anyway.
"""

import functools

from . import _backend
from ._core import embedding as core
from ._core import validate as v
from ._core.embedding import GreedyMatch
from ._cpu import pairs

__all__ = [
    "cosine_similarity",
    "pairwise_cosine",
    "topk_cosine",
    "set_similarity",
    "GreedyMatch",
]


@_backend.documented
def cosine_similarity(a, b, *, axis=-1, eps=0.0, fill=0.0, out=None, backend="auto"):
    """Cosine similarity of ``a`` and ``b`` along ``axis``, with broadcasting.

    Behaves like ``torch.nn.functional.cosine_similarity(a, b, dim=axis,
    eps=eps)``: ``a`` and ``b`` are broadcast against each other, the norms
    are taken on the broadcast shape, and the axis (or axes) in ``axis`` are
    reduced away. The broadcast is never materialised: ``(N, 1, D)`` against
    ``(1, M, D)`` allocates ``N * M`` results, not ``N * M * D`` products.
    On the CPU, each result's bits depend on its two vectors alone: not on
    the arrays' memory layout (C, Fortran, strided views), the other vectors
    or the thread count, so a slice of the inputs, or a Dask block of them,
    gives the same bits.

    Parameters
    ----------
    a, b : array_like
        Real arrays whose shapes broadcast against each other.
    axis : int or tuple of int, optional
        The axis (or axes) holding the vector components, counted on the
        broadcast shape (keyword-only). ``axis=(-2, -1)`` treats each
        ``H x W`` image plane as one vector: per-channel similarity of
        feature maps.
    eps : float, optional
        ``0`` (default): the pure cosine, and a pair involving an all-zero
        vector gets ``fill``. ``eps > 0``: each norm is clamped to at least
        ``eps``, ``dot / (max(|a|, eps) * max(|b|, eps))``, exactly as PyTorch
        does (a zero vector then gives 0).
    fill : float, optional
        Result for a pair with an all-zero vector when ``eps == 0`` (default
        ``0.0``; ``nan`` is allowed).
    out : numpy.ndarray, optional
        Where to write the result: an array of the result's shape (0-d for
        two vectors) and of dtype float16, float32 or float64, which then is
        the result's dtype. On the GPU too, ``out`` is a NumPy array.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend}

    Returns
    -------
    numpy.ndarray or numpy scalar
        ``out`` if given. Otherwise the broadcast shape with the reduced axes
        removed (a scalar for two vectors). float32 inputs give float32,
        float64 give float64, integers and bools give float64, float16 gives
        float16; mixed inputs follow NumPy promotion of those. Values lie in
        ``[-1, 1]`` (clipped); a vector containing NaN or ±inf gives NaN.

    Raises
    ------
    ValueError
        If the shapes do not broadcast, ``axis`` is out of range, repeated or
        empty, both inputs are 0-d, ``eps`` is negative or not finite, or
        ``out`` has the wrong shape or is read-only.
    TypeError
        For complex or non-numeric input, a non-integer ``axis``, or an
        ``out`` that is not a float ndarray.

    Notes
    -----
    The squared norms and the dot product of each pair are summed in float64
    in one read of the two vectors (fused multiply-adds in four interleaved
    sums, a fixed order), and the pairs are shared among threads
    (``numba.set_num_threads``). A float64 vector is first multiplied by the
    power of two that brings its largest magnitude into ``[1, 2)``, exactly,
    so inputs near ``1e308`` give the true cosine and scaling an input by a
    power of two leaves the result bit for bit (where no sample over- or
    underflows); float32, float16 and integer
    samples need no scaling (their squares and products stay within
    float64's normal range: inputs near ``3e38`` give the true cosine too). A
    reduced axis along which one input has length 1 and the other length
    ``D`` is read ``D`` times, never copied, where it is the only reduced
    axis or the input has length 1 along every reduced axis: the norm is
    that of the broadcast. (Where an input is broadcast along some of
    several reduced axes, as ``(1, H, W)`` against ``(C, H, W)`` over all
    three, its vectors are copied at their broadcast length: as many values
    as the other input has.)

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

    Per-channel similarity of two ``(C, H, W)`` feature maps, into an array
    of one's own:

    >>> x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    >>> out = np.empty(2, dtype=np.float32)
    >>> cosine_similarity(x, x[::-1], axis=(-2, -1), out=out).round(4)
    array([0.9297, 0.9297], dtype=float32)
    """
    if _backend.is_dask(a) or _backend.is_dask(b):
        return _backend.dask_impl("cosine_similarity", backend)(
            a, b, functools.partial(cosine_similarity, backend=backend), axis=axis, eps=eps,
            fill=fill, out=out)
    if _backend.wants_cuda(backend, a=a, b=b):
        return _backend.cuda_impl("cosine_similarity")(a, b, axis=axis, eps=eps, fill=fill,
                                                       out=out)
    x = v.as_real_array(a, "a", min_ndim=0)
    y = v.as_real_array(b, "b", min_ndim=0)
    plan = core.check_cosine_args(x, y, axis, eps, fill, out)
    return pairs.cosine_similarity(x, y, plan, out)


@_backend.documented
def pairwise_cosine(a, b=None, *, out=None, dtype=None, fill=0.0, max_memory=None,
                    backend="auto"):
    """The full matrix of cosine similarities between the rows of ``a`` and ``b``.

    ``result[i, j]`` is the cosine of ``a[i]`` and ``b[j]``. Rows are
    normalised once (overflow-safe, in float64) and the matrix is built tile by
    tile with BLAS matrix products, so the working memory stays within
    ``max_memory`` and ``out`` may be a ``numpy.memmap`` larger than RAM.

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
        by tile, row block after row block). It may overlap an input, which is
        then read from a copy.
    dtype : {None, float16, float32, float64}, optional
        Result dtype. Default: ``out.dtype`` if ``out`` is given, otherwise the
        dtype policy (float16 and float32 stay themselves; float64, integers
        and bools give float64). The products run in float64 BLAS for a float64 result and in
        float32 BLAS otherwise.
    fill : float, optional
        Similarity of a pair involving an all-zero row (default ``0.0``).
    max_memory : int or str, optional
        Bound on the working memory in bytes, or a string such as ``"64MiB"``
        (default 256 MiB). The result itself is not counted; neither are the
        copies made of inputs of other dtypes than float32 and float64
        (float32 of float16, float64 of integers and bools). (On the GPU the matrix
        is computed whole on the device: there it bounds nothing.)
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, ``out`` must be a NumPy array.

    Returns
    -------
    numpy.ndarray, shape (N, M)
        ``out`` if given. Values in ``[-1, 1]`` (and ``fill``, which may lie
        outside); rows containing NaN or ±inf give NaN.

    Raises
    ------
    ValueError
        If an input is not 2-d, the row lengths differ, ``out`` has the wrong
        shape, another dtype than a given ``dtype`` or is read-only, or
        ``max_memory`` cannot hold even one row tile.
    TypeError
        For complex or non-numeric input, an unsupported ``dtype``, or an
        ``out`` that is not an ndarray of float16, float32 or float64.

    See Also
    --------
    topk_cosine : the best ``k`` matches per row without the full matrix.

    Notes
    -----
    Tiles are shared among ``numba.get_num_threads()`` threads; see
    :ref:`embedding-threads` for how NumPy's BLAS is used meanwhile. An
    entry is a BLAS product of two normalised rows, which BLAS may round at
    the edge of its block otherwise than inside it: copies of one row can
    score a unit in the last place apart (in float32 most often). The
    blocks follow the tiles, which ``max_memory``, the thread count (and a
    float32 result's BLAS thread count, which another thread's call of
    this library may lower meanwhile) and ``out`` set (an ``out`` of the products' dtype with contiguous rows is
    written in place, any other through a buffer, a memmap in row blocks),
    so entries may change by a unit in the last place with them; :func:`cosine_similarity`, which
    uses no BLAS, gives the same bits whatever its ``out``.

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
    if _backend.is_dask(a) or _backend.is_dask(b):
        return _backend.dask_impl("pairwise_cosine", backend)(
            a, b, functools.partial(pairwise_cosine, backend=backend), out=out, dtype=dtype,
            fill=fill, max_memory=max_memory)
    if _backend.wants_cuda(backend, a=a, b=b):
        return _backend.cuda_impl("pairwise_cosine")(
            a, b, out=out, dtype=dtype, fill=fill, max_memory=max_memory)
    xa = v.check_matrix(a, "a")
    same = b is None
    yb = xa if same else v.check_matrix(b, "b")
    plan = core.check_pairwise_args(xa, yb, same, out, dtype, fill, max_memory)
    x = core.kernel_input(xa)
    y = x if same else core.kernel_input(yb)
    return pairs.pairwise_cosine(x, y, same, plan, out)


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
        (default 256 MiB). The results are not counted; neither are the
        copies made of inputs of other dtypes than float32 and float64
        (float32 of float16, float64 of integers and bools). On the GPU it
        bounds the device's partial top-``k`` lists, whose own smallest
        size, not the CPU's tiles, sets the least it takes.
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
        with NaN or ±inf) rank last. Float16 scores rank as they are returned
        (equal once rounded: a tie), except on the GPU, which ranks them by
        their float32 values before the rounding.

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

    Ties are between scores as computed. A score is a BLAS product of two
    normalised rows, and BLAS may round a product at the edge of its block
    otherwise than one inside it (by a unit in the last place, in float32
    most often): copies of one corpus row, or rows whose exact cosines tie,
    can score a unit apart, and they rank by those scores, in an order that
    may change with ``max_memory``, the number of threads and the other
    queries of the call (which set the blocks' edges). Where exact
    ties matter, round the scores before ranking (for instance with
    :func:`pairwise_cosine` and ``np.round``).

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
    if _backend.is_dask(queries) or _backend.is_dask(corpus):
        return _backend.dask_impl("topk_cosine", backend)(
            queries, corpus, k, functools.partial(topk_cosine, backend=backend),
            exclude_self=exclude_self, fill=fill, max_memory=max_memory)
    if _backend.wants_cuda(backend, queries=queries, corpus=corpus):
        return _backend.cuda_impl("topk_cosine")(
            queries, corpus, k, exclude_self=exclude_self, fill=fill, max_memory=max_memory)
    xq = v.check_matrix(queries, "queries")
    # (only None means the same rows: the result must not depend on whether
    # an equal corpus is the queries object itself)
    same = corpus is None
    yc = xq if same else v.check_matrix(corpus, "corpus")
    plan = core.check_topk_args(xq, yc, same, k, exclude_self, fill, max_memory)
    x = core.kernel_input(xq)
    y = x if same else core.kernel_input(yc)
    return pairs.topk_cosine(x, y, same, exclude_self, plan)


@_backend.documented
def set_similarity(a, b, *, measure="mean", weights_a=None, weights_b=None, mask_a=None,
                   mask_b=None, max_memory=None, backend="auto"):
    """One similarity score for two sets of vectors.

    Parameters
    ----------
    a : array_like, shape (N, D)
        The first set, one vector per row (e.g. the token or sentence
        embeddings of one document).
    b : array_like, shape (M, D)
        The second set.
    measure : {'mean', 'centroid', 'greedy', 'chamfer'}, optional
        Which score, by definition (keyword-only):

        * ``'mean'`` (default): the (weighted) mean of the ``N * M`` pairwise
          cosines, computed in ``O((N + M) * D)`` as the dot product of the
          weighted means of the normalised vectors.
        * ``'centroid'``: the cosine of the two (weighted) centroids of the
          raw vectors; long vectors count more.
        * ``'greedy'``: best-match scores as in BERTScore [1]_: precision is
          the weighted mean over rows of ``a`` of their best cosine in ``b``,
          recall the same over rows of ``b``, and F1 their harmonic mean
          (see :class:`GreedyMatch` for opposite signs).
        * ``'chamfer'``: the symmetric Chamfer similarity [2]_, the mean of
          greedy precision and recall.
    weights_a, weights_b : array_like, optional
        Non-negative finite per-row weights (e.g. IDF, as BERTScore's
        importance weighting; those of rows a mask leaves out are not
        looked at); default equal weights. They weight the means of every
        measure, and only their ratios count: a weight above 0 counts
        however small beside the others.
    mask_a, mask_b : array_like of bool, optional
        ``True`` for real rows, ``False`` for padding; masked rows are ignored
        entirely (as if absent).
    max_memory : int or str, optional
        Working-memory bound for ``'greedy'`` and ``'chamfer'`` (default 256 MiB),
        besides the copies of the rows that masks keep and of inputs of other
        dtypes than float32 and float64 (as :func:`topk_cosine`).
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU, ``'greedy'`` and ``'chamfer'`` take each row's
        best match from :func:`topk_cosine` with ``k=1`` both ways there;
        ``'mean'`` and ``'centroid'``, which cost no more than reading the
        sets once, copy them to the host and are computed there, as is a
        mask that keeps more than one run of rows. Weights and masks are
        host arrays.

    Returns
    -------
    numpy scalar or GreedyMatch
        A scalar in ``[-1, 1]``; for ``'greedy'`` a :class:`GreedyMatch`
        ``(precision, recall, f1)``. The dtype follows the policy of the
        other functions: float32 sets give float32, float64, integer and
        bool sets give float64, float16 gives float16; mixed sets follow
        NumPy promotion. It is a NumPy scalar on every backend. An all-zero
        vector has cosine 0 with everything. A row containing NaN or ±inf
        makes the score NaN: for ``'mean'`` and ``'centroid'`` where it has
        a weight above 0 (a row of weight 0 is left out of those means),
        for ``'greedy'`` and ``'chamfer'`` always (its cosines take part in
        the other set's best matches, whatever its weight).

    Raises
    ------
    ValueError
        For an unknown ``measure``, inputs that are not 2-d, different row
        lengths, weights or masks of the wrong shape, negative or non-finite
        weights, all-zero weights, a set left empty by its mask, or a
        ``max_memory`` that cannot hold even one tile (``'greedy'`` and
        ``'chamfer'``).
    TypeError
        For complex or non-numeric input or a non-boolean mask.

    References
    ----------
    .. [1] T. Zhang, V. Kishore, F. Wu, K. Q. Weinberger and Y. Artzi,
       "BERTScore: Evaluating Text Generation with BERT", International
       Conference on Learning Representations (ICLR), 2020.
    .. [2] H. G. Barrow, J. M. Tenenbaum, R. C. Bolles and H. C. Wolf,
       "Parametric correspondence and chamfer matching: Two new techniques
       for image matching", Proceedings of the 5th International Joint
       Conference on Artificial Intelligence (IJCAI), 1977, pp. 659-663.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import set_similarity
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> b = np.array([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    >>> round(float(set_similarity(a, b)), 4)  # mean of the 6 pairwise cosines
    0.6381
    >>> round(float(set_similarity(a, b, measure="centroid")), 4)
    0.9971
    >>> p, r, f1 = set_similarity(a, b, measure="greedy")
    >>> round(float(p), 4), round(float(r), 4), round(float(f1), 4)
    (0.8536, 0.8047, 0.8284)
    >>> round(float(set_similarity(a, b, measure="chamfer", mask_b=[True, False, True])), 4)
    0.8536

    float32 sets give float32 scores:

    >>> set_similarity(a.astype(np.float32), b.astype(np.float32)).dtype
    dtype('float32')
    """
    if _backend.wants_cuda(backend, a=a, b=b, weights_a=weights_a, weights_b=weights_b,
                           mask_a=mask_a, mask_b=mask_b):
        return _backend.cuda_impl("set_similarity")(
            a, b, measure=measure, weights_a=weights_a, weights_b=weights_b, mask_a=mask_a,
            mask_b=mask_b, max_memory=max_memory)
    xa = v.check_matrix(a, "a")
    yb = v.check_matrix(b, "b")
    plan = core.check_set_args(xa, yb, measure, max_memory)
    keep_a, wa = core.set_rows(xa.shape[0], "a", mask_a, weights_a, "mask_a", "weights_a")
    keep_b, wb = core.set_rows(yb.shape[0], "b", mask_b, weights_b, "mask_b", "weights_b")
    x = core.kernel_input(xa if keep_a is None else xa[keep_a])
    y = core.kernel_input(yb if keep_b is None else yb[keep_b])
    return pairs.set_similarity(x, y, wa, wb, plan)
