"""The norm-weighted cosine of seed 002 and its training loss.

For row pairs ``(a_i, b_i)`` of two ``(B, D)`` batches::

    cos_i = a_i . b_i / (|a_i| |b_i|)
    w_i   = sigmoid(z_i),   z_i = (|a_i| - min|a|) / (max|a| - min|a|)   ("minmax")
                            z_i = (|a_i| - mean|a|) / std|a|             ("zscore")
    value_i = w_i * cos_i
    loss    = 1 - mean_i(value_i)

Everything is computed in float64 on rows divided by their largest magnitude
(overflow-safe), and the gradients with respect to both inputs are derived by
hand (``return_grad=True``), so the loss can be used without an autograd
framework.
"""

from . import _backend
from ._core import embedding as core
from ._core import validate as v

__all__ = ["scaled_cosine", "scaled_cosine_loss"]

@_backend.documented
def scaled_cosine(a, b, *, scaling="minmax", weight_on="a", return_grad=False, grad_output=None,
                  backend="auto"):
    """Row-wise cosine weighted by a sigmoid of the standardized row norms (seed 002).

    ``value_i = w_i * cos(a_i, b_i)`` with ``w_i = sigmoid(z_i)`` computed from
    the L2 norm of row ``i`` relative to the other rows of its batch.

    Parameters
    ----------
    a, b : array_like, shape (B, D)
        Paired batches: row ``i`` of ``a`` goes with row ``i`` of ``b``.
    scaling : {'minmax', 'zscore', None}, optional
        How norms become ``z``: ``'minmax'`` (default, seed 002 as written)
        ``z = (|x| - min) / (max - min)`` so ``w`` lies in
        ``[0.5, sigmoid(1)]``; ``'zscore'`` (the variant the seed plans)
        ``z = (|x| - mean) / std`` with the sample standard deviation
        (``ddof=1``, PyTorch's default); ``None``: no weight (``w = 1``), the
        plain row-wise cosine. A batch whose norms are all equal (one row, for
        instance) gets ``z = 0``, i.e. ``w = 0.5``; so does one whose norms
        differ by no more than their rounding, ``(D + 8) 2**-52`` of the
        largest (rows of the same components in another order, rows
        normalised in float64), where the seed's ``z`` would be rounding
        errors divided by themselves. A row holding NaN or ±inf on the
        weighted side makes ``min``, ``max`` (or the mean) NaN, and so every
        row's value, as in the seed for NaN (for ±inf and ``'minmax'`` the
        seed's ``max`` is inf, which gives the other rows ``z = 0``; its
        loss is NaN either way); on the other side, or without
        scaling, its own value only (and, as in PyTorch's autograd, the
        gradients of its own row and of the rows that set the weights'
        scale: those at the min and the max for ``'minmax'``, every row for
        ``'zscore'``).
    weight_on : {'a', 'b', 'both'}, optional
        Whose norms give the weight: ``'a'`` (default, as in the seed),
        ``'b'``, or ``'both'`` (the product of the two weights).
    return_grad : bool, optional
        Also return the gradients with respect to ``a`` and ``b``.
    grad_output : array_like, shape (B,), optional
        With ``return_grad``: the gradients are those of
        ``sum(grad_output * values)`` (a vector-Jacobian product, like
        ``values.backward(grad_output)``); default all ones.
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU the batches are copied to the host and
        computed there (the work is no more than the copy); the results go
        back to the device, as the inputs' kind of array.

    Returns
    -------
    values : numpy.ndarray, shape (B,)
        dtype by the policy: float32 stays float32, float64, integers and
        bools give float64, float16 stays float16.
    grad_a, grad_b : numpy.ndarray, shape (B, D)
        Only with ``return_grad=True``; same dtype as ``values``.

    Raises
    ------
    ValueError
        If ``a`` and ``b`` are not 2-d of the same shape, the batch is empty,
        or ``scaling``/``weight_on`` is unknown.
    TypeError
        For complex or non-numeric input.

    Notes
    -----
    A row that is all zeros has cosine 0 (and gradient 0 through the cosine).
    Where the weight is not differentiable -- ties for the smallest or largest
    norm -- the gradient of ``min``/``max`` is shared evenly among the tied
    rows, as in PyTorch; when all norms are equal ``z`` is the constant 0 and
    nothing flows through the weights.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import scaled_cosine
    >>> a = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    >>> b = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    >>> scaled_cosine(a, b).round(4)
    array([0.3536, 0.7311, 0.5048])
    >>> scaled_cosine(a, b, scaling=None).round(4)  # the plain cosines
    array([0.7071, 1.    , 0.7071])
    """
    if _backend.wants_cuda(backend, a=a, b=b, grad_output=grad_output):
        return _backend.cuda_impl("scaled_cosine")(
            a, b, scaling=scaling, weight_on=weight_on, return_grad=return_grad,
            grad_output=grad_output)
    x, y = v.check_matrix(a, "a"), v.check_matrix(b, "b")
    plan = core.check_scaled_args(x, y, scaling, weight_on)
    g = core.check_grad_output(grad_output, core.check_flag(return_grad, "return_grad"),
                               x.shape[0])
    return core.scaled_cosine(x, y, plan, g)


@_backend.documented
def scaled_cosine_loss(a, b, *, scaling="minmax", weight_on="a", shuffle=False, rng=None,
                       return_grad=False, backend="auto"):
    """The training loss of seed 002: ``1 - mean(w * cos)``.

    With ``scaling="minmax", weight_on="a"`` (the defaults) this is seed 002's
    ``get_dot_sim_loss(emb=a, emb_rec=b)`` exactly, except that a batch whose
    norms are all equal, or differ by no more than their rounding (see
    :func:`scaled_cosine`'s ``scaling``), gives ``w = 0.5`` instead of NaN
    or the seed's quotient of rounding errors, and that a zero row's cosine
    is 0 where the seed's is NaN (see :doc:`/scaled_loss`).

    Parameters
    ----------
    a, b : array_like, shape (B, D)
        Paired batches (seed 002: ``emb`` and ``emb_rec``).
    scaling : {'minmax', 'zscore', None}, optional
        See :func:`scaled_cosine`.
    weight_on : {'a', 'b', 'both'}, optional
        See :func:`scaled_cosine`.
    shuffle : bool, optional
        The shuffled-pairs baseline: pair ``a`` with a random permutation of
        the rows of ``b`` (seed 002's ``emb_rec_shuffled``). A random
        permutation may leave some rows in place.
    rng : None, int or numpy.random.Generator, optional
        Source of the permutation when ``shuffle=True`` (passed to
        ``numpy.random.default_rng``: give a seed or a Generator for a
        reproducible baseline).
    return_grad : bool, optional
        Also return the gradients of the loss with respect to ``a`` and ``b``
        (for ``shuffle=True``, with respect to ``b`` in its original order).
    backend : {'auto', 'cpu', 'cuda'}, optional
        {backend} On the GPU the batches are copied to the host and
        computed there (the work is no more than the copy); the results go
        back to the device, as the inputs' kind of array.

    Returns
    -------
    loss : numpy scalar
        dtype by the policy (float32 for float32 inputs, float64 otherwise,
        float16 for float16); for device inputs, a device array of one
        element.
    grad_a, grad_b : numpy.ndarray, shape (B, D)
        Only with ``return_grad=True``.

    Raises
    ------
    ValueError, TypeError
        As :func:`scaled_cosine`; ``TypeError`` also for an ``rng`` that is not
        ``None``, an integer or a Generator.

    Examples
    --------
    >>> import numpy as np
    >>> from cosim_np import scaled_cosine_loss
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(64, 16))
    >>> emb_rec = emb + 0.1 * rng.normal(size=(64, 16))   # a good reconstruction
    >>> loss = scaled_cosine_loss(emb, emb_rec)
    >>> baseline = scaled_cosine_loss(emb, emb_rec, shuffle=True, rng=1)
    >>> bool(loss < 0.5 < baseline)
    True
    >>> loss, grad_a, grad_b = scaled_cosine_loss(emb, emb_rec, return_grad=True)
    >>> grad_a.shape
    (64, 16)
    """
    if _backend.wants_cuda(backend, a=a, b=b):
        return _backend.cuda_impl("scaled_cosine_loss")(
            a, b, scaling=scaling, weight_on=weight_on, shuffle=shuffle, rng=rng,
            return_grad=return_grad)
    x, y = v.check_matrix(a, "a"), v.check_matrix(b, "b")
    plan = core.check_scaled_args(x, y, scaling, weight_on)
    shuffle = core.check_flag(shuffle, "shuffle")
    return_grad = core.check_flag(return_grad, "return_grad")
    return core.scaled_cosine_loss(x, y, plan, shuffle, core.check_rng(rng), return_grad)
