"""The scores of ``find_matches`` on a Dask array, served to the CPU's
selection one block of windows at a time.

The scores are the Dask ``sliding_cosine`` of the signal (bit for bit the
in-memory ones with ``method="direct"``); each block along the sliding axis
is computed when the selection reaches it, every row at once, and dropped
after its scan, so the client holds one block of scores at a time beside
the candidates.  (The selection itself runs on the client: the scores pass
through it, block by block.)
"""

import dask.array as da
import numpy as np

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
        moved = moved.rechunk({axis: -1 for axis in range(moved.ndim - 1)})
        self.rows = moved.reshape((-1,) + moved.shape[lead:])
        self.nrows = self.rows.shape[0]
        self.compute = plans.compute_dtype(plan.out_dtype)

    def tiles(self):
        found, w0 = [], 0
        for j, width in enumerate(self.rows.chunks[-1]):
            block = self.rows.blocks[:, :, j]
            found.append((w0, width, lambda block=block: np.ascontiguousarray(
                block.compute(), dtype=self.compute)))
            w0 += width
        return found


def score_tiles(signal, kernel, block_function, plan, **options):
    """The tiles of the scores of ``find_matches`` on the Dask ``signal``
    (``block_function``: the public ``sliding_cosine``; ``plan``: its
    ``SlidingPlan``)."""
    return BlockScores(block_function(signal, kernel, **options), plan)
