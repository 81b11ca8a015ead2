"""What both backends need for the embedding functions: argument checks, the
dtype policy, the plans of shapes, the result type of greedy matching, and
the few host formulas both backends finish with.

* ``check_*_args`` take the validated inputs, or the CUDA backend's
  zero-memory stand-ins of device inputs (only shapes and dtypes are read),
  and return the plan of the call as a named tuple.
* :func:`set_rows` checks one set's weights and mask; :func:`set_scores`
  turns best matches into precision, recall and F1 (greedy, chamfer);
  :func:`unit_mean` and :func:`centroid_cosine` are the two other measures.
* :func:`scaled_values` is the norm-weighted cosine of seed 002 with its
  hand-derived gradients, on host arrays.

Nothing here imports Numba or a backend.
"""

import functools
from collections import namedtuple

import numpy as np

from . import config
from . import validate as v

SET_MEASURES = ("mean", "centroid", "greedy", "chamfer")
SCALINGS = ("minmax", "zscore")
WEIGHT_ON = ("a", "b", "both")

GreedyMatch = namedtuple("GreedyMatch", ["precision", "recall", "f1"], module="cosim_np.embedding")
GreedyMatch.__doc__ = """Result of ``set_similarity(..., measure="greedy")``.

Attributes
----------
precision : numpy scalar
    Weighted mean over the rows of ``a`` of their best cosine in ``b``.
recall : numpy scalar
    Weighted mean over the rows of ``b`` of their best cosine in ``a``.
f1 : numpy scalar
    The harmonic mean ``2 * precision * recall / (precision + recall)`` when
    precision and recall have the same sign, else 0. With opposite signs the
    formula is no mean (it leaves ``[-1, 1]`` and explodes as the sum nears
    0); 0 lies between the two, and f1 stays continuous in both.

All three have the dtype of ``set_similarity``'s result (float32 for float32
sets, float64 for float64, integer and bool sets).

Examples
--------
>>> import numpy as np
>>> from cosim_np import set_similarity
>>> a = np.array([[1.0, 0], [0, 1]])
>>> b = np.array([[1.0, 0], [1, 1], [0, 1]])
>>> match = set_similarity(a, b, measure="greedy")
>>> round(float(match.precision), 4), round(float(match.recall), 4)
(1.0, 0.9024)
>>> precision, recall, f1 = match
"""


# ---------------------------------------------------------------------------
# the dtype policy of the matrix functions


def promote(*dtypes):
    """NumPy's promotion of the policy's output dtypes."""
    return np.result_type(*dtypes)


def compute_dtype(result_dtype):
    """The products run in float64 for float64 results, in float32 otherwise."""
    return np.dtype(np.float64) if result_dtype == np.float64 else np.dtype(np.float32)


def kernel_input(x):
    """float32/float64 pass through (any strides); float16 -> float32; integers
    and bools -> float64 (a copy)."""
    if x.dtype in (np.float32, np.float64):
        return x
    return x.astype(np.float32 if x.dtype == np.float16 else np.float64)


def check_same_d(x, y, a_name, b_name):
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same number of columns (vector "
            f"length d); got {a_name} with d={x.shape[1]} and {b_name} with d={y.shape[1]}."
        )


def check_result_out(out, shape, requested=None):
    """An ``out`` argument of the functions that return one array: a writeable
    ndarray of the result's shape whose dtype is float16, float32 or float64
    (the result's dtype unless ``requested`` names one, which ``out`` must
    then have).  Returns the result dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray; got {type(out).__name__}.")
    v.check_byte_order(out)
    result_dtype = requested if requested is not None else out.dtype
    if result_dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"out must have dtype float16, float32 or float64; got {out.dtype}.")
    v.check_out(out, shape, result_dtype)
    return np.dtype(result_dtype)


# ---------------------------------------------------------------------------
# cosine_similarity

CosinePlan = namedtuple("CosinePlan", ["out_dtype", "eps", "fill", "shape", "axes", "kept",
                                       "out_shape"])


def _fill_of(fill, dtype):
    """``fill`` (checked) as the result's ``dtype`` rounds it, a float: a
    value past its range is ±inf, as in the sliding functions, with no
    warning from the tiles it is written into."""
    with np.errstate(over="ignore"):
        return float(np.float64(fill).astype(dtype))


def check_cosine_args(x, y, axis, eps, fill, out=None):
    """The plan of ``cosine_similarity`` for the arrays (or stand-ins) ``x``
    and ``y``: result dtype, ``eps``, ``fill``, the broadcast shape, the
    reduced axes, the kept axes and the result's shape."""
    out_dtype = promote(v.output_dtype(x.dtype, "a"), v.output_dtype(y.dtype, "b"))
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
    if out is not None:
        out_dtype = check_result_out(out, out_shape)
    return CosinePlan(out_dtype, eps_value, _fill_of(fill_value, out_dtype), shape, axes, kept,
                      out_shape)


# ---------------------------------------------------------------------------
# pairwise_cosine and topk_cosine

PairwisePlan = namedtuple("PairwisePlan", ["fill", "budget", "result_dtype"])
TopkPlan = namedtuple("TopkPlan", ["k", "fill", "budget", "result_dtype"])


def check_pairwise_args(x, y, same, out, dtype, fill, max_memory):
    """The plan of ``pairwise_cosine`` for the checked matrices (or
    stand-ins) ``x`` and ``y`` (``same``: ``b`` is None, ``y`` is ``x``)."""
    if not same:
        check_same_d(x, y, "a", "b")
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    budget = v.check_memory(max_memory, "max_memory", config.DEFAULT_MAX_MEMORY)
    requested = v.check_dtype_choice(dtype, "dtype")
    if out is not None:
        result_dtype = check_result_out(out, (x.shape[0], y.shape[0]), requested)
    elif requested is not None:
        result_dtype = requested
    else:
        result_dtype = promote(v.output_dtype(x.dtype, "a"),
                               v.output_dtype(y.dtype, "b") if not same else np.float16)
    return PairwisePlan(_fill_of(fill_value, result_dtype), budget, result_dtype)


def check_topk_args(x, y, same, k, exclude_self, fill, max_memory):
    """The plan of ``topk_cosine`` for the checked matrices (or stand-ins)
    ``x`` and ``y`` (``same``: ``corpus`` is None, ``y`` is ``x``)."""
    if not same:
        check_same_d(x, y, "queries", "corpus")
    kk = v.check_positive_int(k, "k")
    v.check_bool(exclude_self, "exclude_self")
    fill_value = v.check_real(fill, "fill", finite=False, allow_nan=True)
    budget = v.check_memory(max_memory, "max_memory", config.DEFAULT_MAX_MEMORY)
    n, m = x.shape[0], y.shape[0]
    if exclude_self and n != m:
        raise ValueError(
            f"exclude_self=True needs queries and corpus to be the same rows (N == M); "
            f"got N={n} queries and M={m} corpus rows."
        )
    limit = m - 1 if exclude_self else m
    if limit == 0:  # (no k can do: "at most 0" contradicts "k >= 1")
        why = "one row, each query itself, with exclude_self=True" if m else "no rows"
        raise ValueError(f"corpus has no rows to rank ({why}), so no k can be met (k={kk}).")
    if kk > limit:
        extra = " minus the excluded self-match" if exclude_self else ""
        raise ValueError(
            f"k={kk} is larger than the corpus: it has {m} rows{extra}, so k must be "
            f"at most {limit}."
        )
    result_dtype = promote(v.output_dtype(x.dtype, "queries"),
                           v.output_dtype(y.dtype, "corpus") if not same else np.float16)
    return TopkPlan(kk, _fill_of(fill_value, result_dtype), budget, result_dtype)


# ---------------------------------------------------------------------------
# set_similarity

SetPlan = namedtuple("SetPlan", ["measure", "budget", "result_dtype"])


def check_set_args(x, y, measure, max_memory):
    """The plan of ``set_similarity`` for the checked matrices (or stand-ins)
    ``x`` and ``y``: the measure, the memory budget and the result dtype
    (the policy's, as for the other functions)."""
    v.check_choice(measure, "measure", SET_MEASURES)
    check_same_d(x, y, "a", "b")
    budget = v.check_memory(max_memory, "max_memory", config.DEFAULT_MAX_MEMORY)
    result_dtype = promote(v.output_dtype(x.dtype, "a"), v.output_dtype(y.dtype, "b"))
    return SetPlan(measure, budget, result_dtype)


def set_rows(n, name, mask, weights, mask_name, weights_name):
    """The rows of one set of ``n`` rows that take part (``keep``: a boolean
    array, or None for all) and their weights (float64, summing to 1)."""
    w = None
    if weights is not None:
        v.refuse_masked(weights, weights_name,
                        f"{weights_name}.filled(0) to give the rows under the mask no weight")
        w = np.asarray(weights)
        v.output_dtype(w.dtype, weights_name)
        if w.shape != (n,):
            raise ValueError(f"{weights_name} must have shape ({n},), one weight per row of "
                             f"{name}; got shape {w.shape}.")
        w = w.astype(np.float64)
    keep = None
    if mask is not None:
        v.refuse_masked(mask, mask_name,
                        f"{mask_name}.filled(False) to take the rows under the mask as padding")
        keep = np.asarray(mask)
        if keep.dtype != np.bool_:
            raise TypeError(f"{mask_name} must be a boolean array (True = a real row, "
                            f"False = padding); got dtype {keep.dtype}.")
        if keep.shape != (n,):
            raise ValueError(f"{mask_name} must have shape ({n},), one flag per row of "
                             f"{name}; got shape {keep.shape}.")
        if w is not None:
            w = w[keep]  # (padding rows' weights are ignored with them, NaN or not)
        n = int(keep.sum())
    if w is not None and (not np.all(np.isfinite(w)) or np.any(w < 0)):
        raise ValueError(f"{weights_name} must be finite and >= 0" + (
            " (on the unmasked rows)." if mask is not None else "."))
    if n == 0:
        raise ValueError(f"{name} has no rows to compare" + (
            f" (after {mask_name})." if mask is not None else "."))
    if w is None:
        w = np.ones(n)
    # (scaled by a power of two first: finite weights then have a finite sum)
    scaled = np.ldexp(w, -np.frexp(w.max())[1])
    if not scaled.sum() > 0:
        raise ValueError(f"{weights_name} must not all be zero (on the unmasked rows).")
    scaled /= scaled.sum()
    # a weight too small beside the largest to be represented keeps the least
    # one: a row of weight above 0 still counts (its NaN makes the score NaN)
    scaled[(w > 0) & (scaled == 0)] = np.finfo(np.float64).smallest_subnormal
    return keep, scaled


def set_is_nan(measure, bad_a, bad_b, wa, wb):
    """Does a row with NaN or inf make the score NaN?  For the means, only a
    row that has weight; for best matches, any row (it has a best match)."""
    if measure in ("greedy", "chamfer"):
        return bool(bad_a.any() or bad_b.any())
    return bool(bad_a[wa > 0].any() or bad_b[wb > 0].any())


def set_nan(measure, dtype):
    nan = np.array(np.nan, dtype=dtype)[()]
    return GreedyMatch(nan, nan, nan) if measure == "greedy" else nan


def set_scores(measure, best_a, best_b, wa, wb, dtype):
    """``'greedy'`` or ``'chamfer'`` from each row's best cosine in the other
    set: weighted means in float64, rounded once to ``dtype``."""
    precision = float(np.dot(wa, np.asarray(best_a, dtype=np.float64)))
    recall = float(np.dot(wb, np.asarray(best_b, dtype=np.float64)))
    if measure == "chamfer":
        return np.array(0.5 * (precision + recall), dtype=dtype)[()]
    same_sign = precision * recall > 0
    f1 = 2.0 * precision * recall / (precision + recall) if same_sign else 0.0
    return GreedyMatch(*(np.array(value, dtype=dtype)[()] for value in (precision, recall, f1)))


def unit_mean(x, scale, hnorm, w):
    """``sum_i w_i x_i / |x_i|`` in float64 from the rows' statistics (the
    norm of row ``i`` is ``scale[i] * hnorm[i]``); zero rows and rows of
    weight 0 contribute nothing."""
    live = (scale > 0) & (w > 0)
    scaled = x[live].astype(np.float64) / scale[live, None]
    return (w[live] / hnorm[live]) @ scaled


def centroid(x, scale, w):
    """The weighted centroid of the rows of weight > 0, on a common scale so
    that it cannot overflow (the cosine does not depend on that scale)."""
    live = w > 0
    big = scale[live].max()
    big = 1.0 if big == 0 else big
    return w[live] @ (x[live].astype(np.float64) / big)


def vector_cosine(p, q):
    """Cosine of two float64 vectors, overflow-safe, clipped to ``[-1, 1]``;
    0 if either is all zeros."""
    sp, sq = np.max(np.abs(p), initial=0.0), np.max(np.abs(q), initial=0.0)
    if sp == 0 or sq == 0:
        return 0.0
    p, q = p / sp, q / sq
    return float(np.clip(np.dot(p, q) / (np.sqrt(np.dot(p, p)) * np.sqrt(np.dot(q, q))),
                         -1.0, 1.0))


# ---------------------------------------------------------------------------
# scaled_cosine and scaled_cosine_loss

ScaledPlan = namedtuple("ScaledPlan", ["out_dtype", "scaling", "weight_on"])


def check_scaled_args(x, y, scaling, weight_on):
    """The checks shared by ``scaled_cosine`` and ``scaled_cosine_loss`` for
    the checked matrices (or stand-ins) ``x`` and ``y``."""
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
    out_dtype = promote(v.output_dtype(x.dtype, "a"), v.output_dtype(y.dtype, "b"))
    return ScaledPlan(out_dtype, scaling, weight_on)


def check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {v.shown(value)}.")
    return bool(value)


def check_grad_output(grad_output, return_grad, rows):
    """The float64 vector ``g`` of ``sum(g * values)`` whose gradients are
    asked for (all ones by default), or None without ``return_grad``."""
    if not return_grad:
        if grad_output is not None:
            raise ValueError("grad_output is only used with return_grad=True.")
        return None
    if grad_output is None:
        return np.ones(rows)
    v.refuse_masked(grad_output, "grad_output",
                    "grad_output.filled(0) to give the pairs under the mask no gradient")
    g = np.asarray(grad_output)
    v.output_dtype(g.dtype, "grad_output")
    if g.shape != (rows,):
        raise ValueError(
            f"grad_output must have shape ({rows},), one value per row; got shape {g.shape}."
        )
    return g.astype(np.float64)


def check_rng(rng):
    if rng is not None and (isinstance(rng, (bool, np.bool_)) or not isinstance(
            rng, (np.random.Generator, int, np.integer))):
        raise TypeError(
            f"rng must be None, an integer seed or a numpy.random.Generator; got {v.shown(rng)}."
        )
    if isinstance(rng, (int, np.integer)) and rng < 0:
        raise ValueError(f"rng, a seed, must be a non-negative integer; got {rng!r}.")
    return rng


class _Side:
    """One batch: unit rows, norms kept as ``scale * hnorm`` (never squared
    raw), and the standardized norms ``z`` of the chosen scaling."""

    def __init__(self, x, scaling):
        if x.dtype.kind != "f":  # (the magnitude of an integer minimum overflows)
            x = x.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # (magnitudes and their maximum are exact in any float dtype)
            self.scale = (np.max(np.abs(x), axis=1).astype(np.float64) if x.shape[1]
                          else np.zeros(len(x)))
            self.zero = self.scale == 0.0
            safe = np.where(self.zero, 1.0, self.scale)
            # (C order whatever x's: the row sums' order, so their bits, follow it)
            self.scaled = np.divide(x, safe[:, None], dtype=np.float64, order="C")
            self.hnorm = np.sqrt(np.einsum("ij,ij->i", self.scaled, self.scaled))
            self.safe_hnorm = np.where(self.zero, 1.0, self.hnorm)
            # norms relative to the largest scale: exact ratios, no overflow
            top = np.max(self.scale)
            self.top = top if top > 0 else 1.0
            self.rel = (self.scale / self.top) * self.hnorm
        self.scaling = scaling
        self.z = self._standardize()
        self.w = 1.0 if scaling is None else 1.0 / (1.0 + np.exp(-self.z))

    @functools.cached_property
    def unit(self):
        """The rows divided by their norms (made when the gradients need them)."""
        return self.scaled / self.safe_hnorm[:, None]

    def _standardize(self):
        rel = self.rel
        if self.scaling is None:
            return np.zeros_like(rel)
        lo, hi = np.min(rel), np.max(rel)
        # Norms as close as their rounding are equal (one row, rows of the
        # same components in another order, rows normalised in float64): z
        # = 0, not their rounding errors divided by themselves.  Each norm is
        # within (D + 8) 2**-54 of its own value, relatively (D rounded
        # squares summed, a root, the division by the largest magnitude and
        # the product with it), so two equal ones within (D + 8) 2**-53;
        # twice that is taken.  (Also where the mean of equal norms is a
        # unit off them, and their std that rounding, ~1e-17, not 0.)
        if hi - lo <= hi * (self.scaled.shape[1] + 8) * 2.0**-52:
            self.spread = 0.0
            return np.zeros_like(rel)
        if self.scaling == "minmax":
            self.spread = hi - lo
            return (rel - lo) / self.spread
        mean = np.mean(rel)
        self.spread = np.std(rel, ddof=1)
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
            return np.zeros_like(self.scaled)
        if self.scaling == "minmax":
            g = u / self.spread
            # min and max share their gradient evenly among ties (as PyTorch does)
            at_min = rel == np.min(rel)
            at_max = rel == np.max(rel)
            # (np.where: a NaN sum reaches the tied rows only, as in PyTorch;
            # a mask times NaN would be NaN in every row)
            g = g + np.where(at_min, np.sum(u * (z - 1.0)) / self.spread / at_min.sum(), 0.0)
            g = g - np.where(at_max, np.sum(u * z) / self.spread / at_max.sum(), 0.0)
        else:
            count = rel.size
            g = (u - u.sum() / count - z * np.sum(u * z) / (count - 1)) / self.spread
        # d rel_i / d x_i = unit_i / top
        return (g / self.top)[:, None] * self.unit


def scaled_values(x, y, scaling, weight_on, grad_output=None):
    """Per-row values ``w_i * cos_i`` (float64) and, if ``grad_output`` is
    given, the gradients of ``sum(grad_output * values)`` with respect to
    ``x`` and ``y``; everything in float64 on rows divided by their largest
    magnitude (overflow-safe)."""
    sa, sb = _Side(x, scaling), _Side(y, scaling)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # the dot of the rows scaled to magnitudes at most 1, over their norms
        dots = np.einsum("ij,ij->i", sa.scaled, sb.scaled)
        cos = np.clip(dots / (sa.safe_hnorm * sb.safe_hnorm), -1.0, 1.0)
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
        unit_x, unit_y = sa.unit, sb.unit
        grad_x = (gc * inv_nx)[:, None] * (unit_y - cos[:, None] * unit_x)
        grad_y = (gc * inv_ny)[:, None] * (unit_x - cos[:, None] * unit_y)
        # through the weights: d sigmoid(z) / dz = w (1 - w)
        if scaling is not None and weight_on in ("a", "both"):
            grad_x = grad_x + sa.norm_grad(g * cos * wb * sa.w * (1.0 - sa.w))
        if scaling is not None and weight_on in ("b", "both"):
            grad_y = grad_y + sb.norm_grad(g * cos * wa * sb.w * (1.0 - sb.w))
    return values, grad_x, grad_y


def scaled_cosine(x, y, plan, grad_output):
    """``scaled_cosine``'s results on host arrays: ``values`` or ``(values,
    grad_a, grad_b)`` in the result dtype."""
    values, gx, gy = scaled_values(x, y, plan.scaling, plan.weight_on, grad_output)
    values = values.astype(plan.out_dtype)
    if grad_output is None:
        return values
    return values, gx.astype(plan.out_dtype), gy.astype(plan.out_dtype)


def scaled_cosine_loss(x, y, plan, shuffle, rng, return_grad):
    """``scaled_cosine_loss``'s results on host arrays: ``loss`` or ``(loss,
    grad_a, grad_b)`` in the result dtype."""
    count = x.shape[0]
    perm = None
    if shuffle:
        perm = np.random.default_rng(rng).permutation(count)
        y = y[perm]
    g = np.full(count, -1.0 / count) if return_grad else None
    values, gx, gy = scaled_values(x, y, plan.scaling, plan.weight_on, g)
    loss = (1.0 - np.mean(values)).astype(plan.out_dtype)
    if not return_grad:
        return loss
    if perm is not None:
        unshuffled = np.empty_like(gy)
        unshuffled[perm] = gy
        gy = unshuffled
    return loss, gx.astype(plan.out_dtype), gy.astype(plan.out_dtype)
