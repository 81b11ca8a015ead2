"""The embedding functions on the GPU.

Validation and plans are the core's (:mod:`cosim_np._core.embedding`, run on
stand-ins of the device inputs).  Inputs are read in place with their
strides; rows are normalised on the fly as the tiles are loaded, so no
normalised copy is made.

``set_similarity`` composes these: greedy and chamfer scores from the top-1
of each set in the other (on the device), the means of the measures on the
host.  ``mean`` and ``centroid`` read each set once, as does the
norm-weighted cosine (``scaled_cosine``, ``scaled_cosine_loss``): those are
computed by the core's host formulas on copies, and their arrays go back to
the device.
"""

import numpy as np

from .._core import embedding as core
from .._core import validate as v
from . import kernels
from .arrays import Call, blocks, settings, strided_offsets


def _broadcast_strides(x, ndim):
    """Element strides of ``x`` on a broadcast shape of ``ndim`` axes: 0 on
    the axes it lacks or has length 1."""
    pad = ndim - x.ndim
    return [0] * pad + [0 if n == 1 else s for n, s in zip(x.shape, x.strides)]


def cosine_similarity(a, b, *, axis=-1, eps=0.0, fill=0.0, out=None):
    call = Call(a, b)
    x = call.operand(a, "a", min_ndim=0)
    y = call.operand(b, "b", min_ndim=0)
    out_dtype, eps_value, fill_value, shape, axes, kept, out_shape = core.check_cosine_args(
        x.standin, y.standin, axis, eps, fill, out)
    result = call.empty(out_shape, out_dtype)
    if result.size:
        kept_shape = [shape[ax] for ax in kept] or [1]
        reduced = [shape[ax] for ax in axes]
        args = []
        for operand in (x, y):
            strides = _broadcast_strides(operand, len(shape))
            flat, base = operand.flat()
            offsets = strided_offsets(reduced, [strides[ax] for ax in axes])
            kept_strides = [strides[ax] for ax in kept] or [0]
            args += [flat, base, call.to_device(np.array(kept_strides, np.int64)),
                     call.to_device(offsets)]
        call.launch(kernels.cosine_pairs, blocks(result.size), settings.threads, 0, *args,
                    call.to_device(np.array(kept_shape, np.int64)), eps_value, fill_value,
                    result.reshape(result.size))
    return call.deliver(result, out, scalar=not out_shape)


class _Stats:
    """Row scales and scaled norms on the device (``kernels.row_stats``)."""

    def __init__(self, call, operand):
        rows = operand.shape[0]
        self.array = operand.array
        self.scale = call.empty((rows,), np.float64)
        self.hnorm = call.empty((rows,), np.float64)
        if rows:
            call.launch(kernels.row_stats, blocks(rows), settings.threads, 0,
                        operand.array, self.scale, self.hnorm)

    @property
    def args(self):
        return self.array, self.scale, self.hnorm


def _matrices(call, a, b, names, same):
    x = call.operand(a, names[0])
    y = x if same else call.operand(b, names[1])
    v.check_matrix(x.standin, names[0])
    if not same:
        v.check_matrix(y.standin, names[1])
    return x, y


def pairwise_cosine(a, b=None, *, out=None, dtype=None, fill=0.0, max_memory=None):
    call = Call(a, b)
    same = b is None
    x, y = _matrices(call, a, b, ("a", "b"), same)
    fill_value, _, result_dtype = core.check_pairwise_args(
        x.standin, y.standin, same, out, dtype, fill, max_memory)
    n, m = x.shape[0], y.shape[0]
    result = call.empty((n, m), result_dtype)
    if n and m:
        rows = _Stats(call, x)
        cols = rows if same else _Stats(call, y)
        width = settings.tile
        grid = (-(-m // width), min(-(-n // width), 65535))
        single = core.compute_dtype(result_dtype) == np.float32
        call.launch(kernels.pairwise, grid, (width, width), 16 * width * (width + 1),
                    *rows.args, *cols.args, same, fill_value, single, result)
    return call.deliver(result, out)


def topk_cosine(queries, corpus, k, *, exclude_self=False, fill=0.0, max_memory=None):
    call = Call(queries, corpus)
    same = corpus is None  # (as on the CPU: an equal corpus is not the same rows)
    x, y = _matrices(call, queries, corpus, ("queries", "corpus"), same)
    plan = core.check_topk_args(x.standin, y.standin, same, k, exclude_self, fill, max_memory)
    scores, index = _topk(call, x, y, same, bool(exclude_self), plan)
    return call.deliver(scores), call.deliver(index)


def _topk(call, x, y, same, exclude_self, plan):
    """Device arrays ``(scores, index)`` of the top-k of the operands ``x``
    against ``y`` by ``plan`` (:class:`cosim_np._core.embedding.TopkPlan`)."""
    kk, fill_value, budget, result_dtype = plan
    n, m = x.shape[0], y.shape[0]
    scores = call.empty((n, kk), result_dtype)
    index = call.empty((n, kk), np.int64)
    if n:
        rows = _Stats(call, x)
        cols = rows if same else _Stats(call, y)
        width = settings.tile
        row_tiles, col_tiles = -(-n // width), -(-m // width)
        # Column partitions keep the GPU busy for few queries; their partial
        # lists (16 bytes an entry) stay within max_memory.
        if budget < 16 * n * kk:
            raise ValueError(f"max_memory={budget} bytes is too small for this problem: the "
                             f"top-k lists alone need {16 * n * kk} bytes.")
        parts = min(col_tiles, -(-settings.min_blocks // row_tiles), 65535,
                    budget // (16 * n * kk))
        span = -(-col_tiles // max(1, parts)) * width
        parts = -(-m // span)
        best_s = call.empty((parts, n, kk), np.float64)
        best_i = call.empty((parts, n, kk), np.int64)
        for array, value in ((best_s, np.nan), (best_i, m)):
            flat = array.reshape(array.size)
            call.launch(kernels.fill, blocks(array.size), settings.threads, 0, flat, value)
        single = core.compute_dtype(result_dtype) == np.float32
        call.launch(kernels.topk_tiles, (row_tiles, parts), (width, width),
                    8 * width * (3 * width + 2),
                    *rows.args, *cols.args, same, exclude_self, fill_value, single, span,
                    best_s, best_i)
        call.launch(kernels.topk_merge, blocks(n), settings.threads, 0,
                    best_s, best_i, m, scores, index)
    return scores, index


# ---------------------------------------------------------------------------
# host copies


def _to_host(call, device):
    """A NumPy copy of a contiguous device array."""
    host = device.copy_to_host(stream=call.stream)
    call.stream.synchronize()
    return host


def _host_copy(call, operand):
    """A NumPy copy of an operand, whatever its strides."""
    flat, base = operand.flat()
    offsets = strided_offsets(operand.shape, operand.strides, base)
    return _to_host(call, flat)[offsets].reshape(operand.shape)


def _host(call, value, name, min_ndim=1):
    """``value`` on the host: a device array copied, anything else as it is."""
    if value is None or not v.on_device(value):
        return value
    return _host_copy(call, call.operand(value, name, min_ndim))


def _back(call, result):
    """Host results as the kind of array that came in (a tuple item by item)."""
    if isinstance(result, tuple):
        return tuple(_back(call, item) for item in result)
    if call.kind == "host":
        return result
    return call.deliver(call.to_device(np.asarray(result)))


# ---------------------------------------------------------------------------
# set_similarity


def set_similarity(a, b, *, measure="mean", weights_a=None, weights_b=None, mask_a=None,
                   mask_b=None, max_memory=None):
    """Best matches ('greedy', 'chamfer') from the top-1 of each set in the
    other, on the device; 'mean' and 'centroid' from host copies of the
    sets with the row statistics computed on the device.  The score is a
    NumPy scalar, as on the CPU."""
    call = Call(a, b)
    x, y = _matrices(call, a, b, ("a", "b"), False)
    plan = core.check_set_args(x.standin, y.standin, measure, max_memory)
    keep_a, wa = core.set_rows(x.shape[0], "a", _host(call, mask_a, "mask_a"),
                               _host(call, weights_a, "weights_a"), "mask_a", "weights_a")
    keep_b, wb = core.set_rows(y.shape[0], "b", _host(call, mask_b, "mask_b"),
                               _host(call, weights_b, "weights_b"), "mask_b", "weights_b")
    stats_a, stats_b = _Stats(call, x), _Stats(call, y)
    scale_a, scale_b = _to_host(call, stats_a.scale), _to_host(call, stats_b.scale)
    if keep_a is not None:
        scale_a = scale_a[keep_a]
    if keep_b is not None:
        scale_b = scale_b[keep_b]
    if core.set_is_nan(measure, ~(scale_a < np.inf), ~(scale_b < np.inf), wa, wb):
        return core.set_nan(measure, plan.result_dtype)
    if measure in ("mean", "centroid"):
        xh, yh = _host_copy(call, x), _host_copy(call, y)
        if keep_a is not None:
            xh = xh[keep_a]
        if keep_b is not None:
            yh = yh[keep_b]
        if measure == "centroid":
            cos = core.vector_cosine(core.centroid(xh, scale_a, wa), core.centroid(yh, scale_b, wb))
            return np.array(cos, dtype=plan.result_dtype)[()]
        hnorm_a, hnorm_b = _to_host(call, stats_a.hnorm), _to_host(call, stats_b.hnorm)
        ma = core.unit_mean(xh, scale_a, hnorm_a if keep_a is None else hnorm_a[keep_a], wa)
        mb = core.unit_mean(yh, scale_b, hnorm_b if keep_b is None else hnorm_b[keep_b], wb)
        return np.array(np.clip(np.dot(ma, mb), -1.0, 1.0), dtype=plan.result_dtype)[()]
    x, y = _kept(call, x, keep_a, "a"), _kept(call, y, keep_b, "b")
    if x.shape[1] == 0:  # empty vectors are zero vectors: every cosine is 0
        best_a, best_b = np.zeros(x.shape[0]), np.zeros(y.shape[0])
    else:
        top1 = core.TopkPlan(1, 0.0, plan.budget, plan.result_dtype)
        best_a = _to_host(call, _topk(call, x, y, False, False, top1)[0])[:, 0]
        best_b = _to_host(call, _topk(call, y, x, False, False, top1)[0])[:, 0]
    return core.set_scores(measure, best_a, best_b, wa, wb, plan.result_dtype)


def _kept(call, operand, keep, name):
    """The rows of ``operand`` that ``keep`` keeps: a view for one run of
    rows, otherwise gathered through the host."""
    if keep is None or keep.all():
        return operand
    index = np.flatnonzero(keep)
    first, last = int(index[0]), int(index[-1]) + 1
    if last - first == index.size:
        return call.operand(operand.array[first:last], name)
    return call.operand(np.ascontiguousarray(_host_copy(call, operand)[keep]), name)


# ---------------------------------------------------------------------------
# scaled_cosine and scaled_cosine_loss: host copies


def scaled_cosine(a, b, *, scaling="minmax", weight_on="a", return_grad=False, grad_output=None):
    call = Call(a, b)
    x, y = v.check_matrix(_host(call, a, "a"), "a"), v.check_matrix(_host(call, b, "b"), "b")
    plan = core.check_scaled_args(x, y, scaling, weight_on)
    g = core.check_grad_output(_host(call, grad_output, "grad_output"),
                               core.check_flag(return_grad, "return_grad"), x.shape[0])
    return _back(call, core.scaled_cosine(x, y, plan, g))


def scaled_cosine_loss(a, b, *, scaling="minmax", weight_on="a", shuffle=False, rng=None,
                       return_grad=False):
    call = Call(a, b)
    x, y = v.check_matrix(_host(call, a, "a"), "a"), v.check_matrix(_host(call, b, "b"), "b")
    plan = core.check_scaled_args(x, y, scaling, weight_on)
    shuffle = core.check_flag(shuffle, "shuffle")
    return_grad = core.check_flag(return_grad, "return_grad")
    return _back(call, core.scaled_cosine_loss(x, y, plan, shuffle, core.check_rng(rng),
                                               return_grad))
