"""The embedding functions on the GPU.

Validation and plans are the core's (:mod:`cosim_np._core.embedding`, run on
stand-ins of the device inputs).  Inputs are read in place with their
strides; rows are normalised on the fly as the tiles are loaded, so no
normalised copy is made.
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
    kk, fill_value, budget, result_dtype = core.check_topk_args(
        x.standin, y.standin, same, k, exclude_self, fill, max_memory)
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
        parts = min(col_tiles, -(-settings.min_blocks // row_tiles), 65535,
                    max(1, budget // (16 * n * kk)))
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
                    *rows.args, *cols.args, same, bool(exclude_self), fill_value, single, span,
                    best_s, best_i)
        call.launch(kernels.topk_merge, blocks(n), settings.threads, 0,
                    best_s, best_i, m, scores, index)
    return call.deliver(scores), call.deliver(index)
