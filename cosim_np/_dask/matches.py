"""``find_matches`` on a Dask array: the candidates of every block, found
where the block's scores are, and gathered.

The scores are the Dask ``sliding_cosine`` of the signal (bit for bit the
in-memory ones with ``method="direct"``).  Each block of windows, with one
window of each neighbouring block (``dask.array.overlap``: a window on a
border is judged with its true neighbours), gives its local maxima at or
above the threshold or, with ``k``, the best ``pool`` of them per row (a
row's best ``pool`` over the whole signal are among the union of its
blocks' best ``pool``).  Only those candidates reach the client, where the
CPU's greedy selection runs on them (``candidates``).

Where that cannot be exact -- a row whose pool kept fewer than ``k``
matches while leaving candidates out -- the scores are served to the CPU's
scan one block at a time instead (``score_tiles``): each block is computed
when the scan reaches it and dropped after, so the client holds one block
of scores at a time.  A threshold given as a callable needs every key of a
row: the blocks are gathered into the whole score array on the client
(``_cpu.matches.select_source``), as the docs say.
"""

import uuid

import dask
import dask.array as da
import numpy as np

from .._core import matches as matching
from .._core import sliding as plans


class BlockScores:
    """``(rows, K, L)`` scores of a lazy ``sliding_cosine`` result, as the
    tiles the CPU's selection scans: ``tiles()`` gives ``(w0, width, make)``
    per block of windows, ``make()`` computing that block."""

    def __init__(self, scores, plan):
        kernel_axes, caller_axes = plans.moved_axes(plan.ax, plan.channel_axis,
                                                    bool(plan.bank_shape))
        moved = da.moveaxis(scores, caller_axes, kernel_axes)
        if plan.channel_axis is None and not plan.bank_shape:
            moved = moved[..., None, :]
        lead = moved.ndim - 2
        # (the kernels of a window in one block; rows keep what chunks they
        # can: a block of windows of every row would hold the scores of all)
        moved = moved.rechunk({axis: -1 for axis in range(1, moved.ndim - 1)})
        self.rows = moved.reshape((-1,) + moved.shape[lead:])
        self.nrows = self.rows.shape[0]
        self.compute = plans.compute_dtype(plan.out_dtype)

    def tiles(self):
        # (the blocks of one graph, optimised once: arrays cut from the
        # scores would each be optimised apart, giving a scheduler the same
        # keys with other tasks from one compute to the next; see _scores)
        blocks = self.rows.to_delayed()  # (row blocks, 1, blocks of windows)
        found, w0 = [], 0
        for j, width in enumerate(self.rows.chunks[-1]):
            found.append((w0, width, lambda column=tuple(blocks[:, 0, j]): np.ascontiguousarray(
                np.concatenate(dask.compute(*column)), dtype=self.compute)))
            w0 += width
        return found


def _block_candidates(block, first, has_left, has_right, sign, threshold, pool):
    """The candidates of one block of scores ``(rows, K, W)`` whose windows
    start at ``first``; ``has_left`` / ``has_right``: the block holds one
    window of the neighbouring block on that side.  Returns ``(row, index,
    kernel, score, offered)``, ``offered`` the candidates each row had
    before its best ``pool`` were kept (``pool`` 0: all)."""
    with np.errstate(invalid="ignore"):
        keys = np.abs(block) if sign == 0 else block if sign > 0 else -block
    keys = np.where(np.isnan(keys), -np.inf, keys).astype(np.float64)
    edge = np.full(keys.shape[:2] + (1,), -np.inf)
    ext = np.concatenate(([] if has_left else [edge]) + [keys] + ([] if has_right else [edge]),
                         axis=-1)
    centre, left, right = ext[..., 1:-1], ext[..., :-2], ext[..., 2:]
    found = (centre > left) & (centre >= right) & (centre >= threshold)
    row, ker, at = np.nonzero(found)
    own = block[..., 1:] if has_left else block
    score = own[row, ker, at]
    key = centre[row, ker, at]
    index = first + at
    offered = np.bincount(row, minlength=block.shape[0])
    if pool:
        order = np.lexsort((ker, index, -key, row))
        row, index, ker, score, key = row[order], index[order], ker[order], score[order], key[order]
        keep = matching.first_per_row(row, pool)
        row, index, ker, score = row[keep], index[keep], ker[keep], score[keep]
    return row, index, ker, score, offered


def candidates(signal, kernel, block_function, plan, mplan, **options):
    """The candidates of ``find_matches`` on the Dask ``signal``, found block
    by block on the workers and gathered: ``(row, index, kernel, score,
    offered)`` NumPy arrays (``block_function``: the public
    ``sliding_cosine``; ``plan``, ``mplan``: the call's plans)."""
    rows = BlockScores(_scores(signal, kernel, block_function, options), plan).rows
    widths = rows.chunks[-1]
    padded = da.overlap.overlap(rows, depth={0: 0, 1: 0, 2: 1}, boundary="none")
    starts = np.concatenate([[0], np.cumsum(widths)])
    firsts = np.concatenate([[0], np.cumsum(rows.chunks[0])])
    last = len(widths) - 1
    pool = 0 if mplan.k is None else mplan.pool
    find = dask.delayed(_block_candidates, pure=True, nout=5)
    blocks = padded.to_delayed()  # (row blocks, 1, blocks of windows)
    parts = dask.compute(*[find(blocks[i, 0, j], int(starts[j]), j > 0, j < last, mplan.sign,
                                mplan.threshold, pool)
                           for i in range(blocks.shape[0]) for j in range(blocks.shape[2])])
    offered = np.zeros(rows.shape[0], dtype=np.int64)
    found = []
    for n, (row, index, ker, score, count) in enumerate(parts):
        i = n // blocks.shape[2]  # (the block's row block)
        found.append((row + firsts[i], index, ker, score))
        offered[firsts[i] : firsts[i + 1]] += count
    row, index, ker, score = (np.concatenate(column) for column in zip(*found))
    return row, index, ker, score, offered


def score_tiles(signal, kernel, block_function, plan, **options):
    """The tiles of the scores of ``find_matches`` on the Dask ``signal``
    (``block_function``: the public ``sliding_cosine``; ``plan``: its
    ``SlidingPlan``)."""
    return BlockScores(_scores(signal, kernel, block_function, options), plan)


def _scores(signal, kernel, block_function, options):
    """The lazy scores, under keys of their own: the candidates and then the
    scan of one call, or two calls in a row, would otherwise give a
    dask.distributed scheduler the same keys with other tasks (each graph
    optimised its own way), which it warns may fail (dask issue 9888)."""
    scores = block_function(signal, kernel, **options)
    # (an identity layer under a name of its own: the layers made from it
    # take their names from it; dask's clone() breaks the rechunk's fusion)
    return scores.map_blocks(_same, dtype=scores.dtype, name=f"cosim-scores-{uuid.uuid4().hex}")


def _same(block):
    """A block as it is (the identity layer of :func:`_scores`)."""
    return block
