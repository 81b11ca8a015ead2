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

import numpy as np

from ._core import validate as v

__all__ = ["scaled_cosine", "scaled_cosine_loss"]

SCALINGS = ("minmax", "zscore")
WEIGHT_ON = ("a", "b", "both")


# ---------------------------------------------------------------------------
# validation and the forward/backward computation


def _check_inputs(a, b, scaling, weight_on):
    x = v.check_matrix(a, "a")
    y = v.check_matrix(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"a and b must have the same shape (B, D): row i of a is paired with row i "
            f"of b; got a with shape {x.shape} and b with shape {y.shape}."
        )
    if x.shape[0] == 0:
        raise ValueError("a and b must have at least one row; got an empty batch (B = 0).")
    if scaling is not None and not (isinstance(scaling, str) and scaling in SCALINGS):
        raise ValueError(f"scaling must be 'minmax', 'zscore' or None; got {scaling!r}.")
    v.check_choice(weight_on, "weight_on", WEIGHT_ON)
    out_dtype = np.result_type(v.output_dtype(x.dtype, "a"), v.output_dtype(y.dtype, "b"))
    return x, y, out_dtype


class _Side:
    """One batch: unit rows, norms kept as ``scale * hnorm`` (never squared
    raw), and the standardized norms ``z`` of the chosen scaling."""

    def __init__(self, x, scaling):
        xf = x.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            self.scale = np.max(np.abs(xf), axis=1) if xf.shape[1] else np.zeros(len(xf))
            self.zero = self.scale == 0.0
            safe = np.where(self.zero, 1.0, self.scale)
            scaled = xf / safe[:, None]
            self.hnorm = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
            self.unit = scaled / np.where(self.zero, 1.0, self.hnorm)[:, None]
            # norms relative to the largest scale: exact ratios, no overflow
            top = np.max(self.scale)
            self.top = top if top > 0 else 1.0
            self.rel = (self.scale / self.top) * self.hnorm
        self.scaling = scaling
        self.z = self._standardize()
        self.w = 1.0 if scaling is None else 1.0 / (1.0 + np.exp(-self.z))

    def _standardize(self):
        rel = self.rel
        if self.scaling is None:
            return np.zeros_like(rel)
        if self.scaling == "minmax":
            lo, hi = np.min(rel), np.max(rel)
            self.spread = hi - lo
            if self.spread == 0:  # all norms equal (or one row): z = 0
                return np.zeros_like(rel)
            return (rel - lo) / self.spread
        mean = np.mean(rel)
        self.spread = np.std(rel, ddof=1) if rel.size > 1 else 0.0
        if self.spread == 0:
            return np.zeros_like(rel)
        return (rel - mean) / self.spread

    def inverse_norm(self):
        """``1 / |x_i|`` as ``(1 / hnorm) / scale`` (no overflow); 0 for zero rows."""
        hnorm = np.where(self.zero, 1.0, self.hnorm)
        scale = np.where(self.zero, 1.0, self.scale)
        return np.where(self.zero, 0.0, (1.0 / hnorm) / scale)

    def norm_grad(self, u):
        """Given ``u_i = dL/dz_i``, the gradient ``dL/dx`` through the norms."""
        rel, z = self.rel, self.z
        if self.scaling is None or self.spread == 0:
            return np.zeros_like(self.unit)
        if self.scaling == "minmax":
            g = u / self.spread
            # min and max share their gradient evenly among ties (as PyTorch does)
            at_min = rel == np.min(rel)
            at_max = rel == np.max(rel)
            g = g + at_min * (np.sum(u * (z - 1.0)) / self.spread / at_min.sum())
            g = g - at_max * (np.sum(u * z) / self.spread / at_max.sum())
        else:
            count = rel.size
            g = (u - u.sum() / count - z * np.sum(u * z) / (count - 1)) / self.spread
        # d rel_i / d x_i = unit_i / top
        return (g / self.top)[:, None] * self.unit


def _compute(x, y, scaling, weight_on, grad_output):
    """Per-row values and, if ``grad_output`` is given, the gradients of
    ``sum(grad_output * values)`` with respect to ``x`` and ``y``."""
    sa, sb = _Side(x, scaling), _Side(y, scaling)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cos = np.clip(np.einsum("ij,ij->i", sa.unit, sb.unit), -1.0, 1.0)
        cos = np.where(sa.zero | sb.zero, 0.0, cos)
        one = np.ones_like(cos)
        wa = sa.w if weight_on in ("a", "both") and scaling is not None else one
        wb = sb.w if weight_on in ("b", "both") and scaling is not None else one
        values = wa * wb * cos
        if grad_output is None:
            return values, None, None
        g = grad_output
        # through the cosine: d cos / d x = (unit_y - cos unit_x) / |x|
        inv_nx, inv_ny = sa.inverse_norm(), sb.inverse_norm()
        live = ~(sa.zero | sb.zero)
        gc = np.where(live, g * wa * wb, 0.0)
        grad_x = (gc * inv_nx)[:, None] * (sb.unit - cos[:, None] * sa.unit)
        grad_y = (gc * inv_ny)[:, None] * (sa.unit - cos[:, None] * sb.unit)
        # through the weights: d sigmoid(z) / dz = w (1 - w)
        if scaling is not None and weight_on in ("a", "both"):
            grad_x = grad_x + sa.norm_grad(g * cos * wb * sa.w * (1.0 - sa.w))
        if scaling is not None and weight_on in ("b", "both"):
            grad_y = grad_y + sb.norm_grad(g * cos * wa * sb.w * (1.0 - sb.w))
    return values, grad_x, grad_y


# ---------------------------------------------------------------------------
# public functions


def scaled_cosine(a, b, *, scaling="minmax", weight_on="a", return_grad=False, grad_output=None):
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
        instance) gets ``z = 0``, i.e. ``w = 0.5``.
    weight_on : {'a', 'b', 'both'}, optional
        Whose norms give the weight: ``'a'`` (default, as in the seed),
        ``'b'``, or ``'both'`` (the product of the two weights).
    return_grad : bool, optional
        Also return the gradients with respect to ``a`` and ``b``.
    grad_output : array_like, shape (B,), optional
        With ``return_grad``: the gradients are those of
        ``sum(grad_output * values)`` (a vector-Jacobian product, like
        ``values.backward(grad_output)``); default all ones.

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
    x, y, out_dtype = _check_inputs(a, b, scaling, weight_on)
    if not isinstance(return_grad, (bool, np.bool_)):
        raise TypeError(f"return_grad must be True or False; got {return_grad!r}.")
    g = None
    if return_grad:
        if grad_output is None:
            g = np.ones(x.shape[0])
        else:
            g = np.asarray(grad_output)
            v.output_dtype(g.dtype, "grad_output")
            if g.shape != (x.shape[0],):
                raise ValueError(
                    f"grad_output must have shape ({x.shape[0]},), one value per row; "
                    f"got shape {g.shape}."
                )
            g = g.astype(np.float64)
    elif grad_output is not None:
        raise ValueError("grad_output is only used with return_grad=True.")
    values, gx, gy = _compute(x, y, scaling, weight_on, g)
    values = values.astype(out_dtype)
    if not return_grad:
        return values
    return values, gx.astype(out_dtype), gy.astype(out_dtype)


def scaled_cosine_loss(a, b, *, scaling="minmax", weight_on="a", shuffle=False, rng=None,
                       return_grad=False):
    """The training loss of seed 002: ``1 - mean(w * cos)``.

    With ``scaling="minmax", weight_on="a"`` (the defaults) this is seed 002's
    ``get_dot_sim_loss(emb=a, emb_rec=b)`` exactly, except that a batch whose
    norms are all equal gives ``w = 0.5`` instead of NaN.

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
        :func:`numpy.random.default_rng`: give a seed or a Generator for a
        reproducible baseline).
    return_grad : bool, optional
        Also return the gradients of the loss with respect to ``a`` and ``b``
        (for ``shuffle=True``, with respect to ``b`` in its original order).

    Returns
    -------
    loss : numpy scalar
        dtype by the policy (float32 for float32 inputs, float64 otherwise,
        float16 for float16).
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
    x, y, out_dtype = _check_inputs(a, b, scaling, weight_on)
    for flag, name in ((shuffle, "shuffle"), (return_grad, "return_grad")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False; got {flag!r}.")
    if rng is not None and not isinstance(rng, (np.random.Generator, int, np.integer)):
        raise TypeError(
            f"rng must be None, an integer seed or a numpy.random.Generator; got {rng!r}."
        )
    count = x.shape[0]
    perm = None
    if shuffle:
        perm = np.random.default_rng(rng).permutation(count)
        y = y[perm]
    g = np.full(count, -1.0 / count) if return_grad else None
    values, gx, gy = _compute(x, y, scaling, weight_on, g)
    loss = (1.0 - np.mean(values)).astype(out_dtype)
    if not return_grad:
        return loss
    if perm is not None:
        unshuffled = np.empty_like(gy)
        unshuffled[perm] = gy
        gy = unshuffled
    return loss, gx.astype(out_dtype), gy.astype(out_dtype)
