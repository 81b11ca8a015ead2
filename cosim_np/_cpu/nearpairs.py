"""Numba kernel for clipping a score tile at its nearly (anti-)parallel pairs.

:func:`clip_near_pairs` visits, for every row of a tile and for the row's
projection and its negation, the grid cells around it (see
``cosim_np._nearpairs``), compares four-dimensional distances and clips the
tile entries of the pairs within the radius.  No validation: the caller
builds the grid.
"""

import numpy as np

from ._jit import jit


@jit
def clip_near_pairs(tile, p, q, order, cell_start, grid_cols, origin0, origin1, width0, width1,
                    radius2, clip):
    """Clip ``tile[r, order[t]]`` to ``[-1, 1]`` for every row ``r`` and every
    corpus point ``t`` with ``|q[:, t] -+ p[r]|^2 <= radius2``.

    ``p`` (rows, 4) and ``q`` (4, points) are float32 projections, ``q`` in
    grid order: the points of cell ``(c0, c1)`` are
    ``cell_start[c0 * grid_cols + c1]`` to ``cell_start[c0 * grid_cols + c1 + 1]``,
    with ``c = floor((q - origin) / width)`` over the first two coordinates
    and cells at least the radius wide, so the 3 x 3 cells around a row's
    own cell hold every point within the radius.  With ``clip`` false
    nothing is written (a dry run to measure the work).  Returns the number
    of points compared."""
    rows = p.shape[0]
    grid_rows = (cell_start.size - 1) // grid_cols
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    compared = 0
    for r in range(rows):
        for side in range(2):
            sign = np.float32(1.0) if side == 0 else np.float32(-1.0)
            p0, p1, p2, p3 = sign * p[r, 0], sign * p[r, 1], sign * p[r, 2], sign * p[r, 3]
            # np.floor keeps the float: NaN and huge values fail the test below
            f0 = np.floor((p0 - origin0) / width0)
            f1 = np.floor((p1 - origin1) / width1)
            # no cell within one of this one (False for NaN too)
            if not (f0 > -2 and f0 < grid_rows + 1 and f1 > -2 and f1 < grid_cols + 1):
                continue
            c0, c1 = int(f0), int(f1)
            low, high = max(c1 - 1, 0), min(c1 + 1, grid_cols - 1)
            for band in range(max(c0 - 1, 0), min(c0 + 2, grid_rows)):
                start = cell_start[band * grid_cols + low]
                stop = cell_start[band * grid_cols + high + 1]
                compared += stop - start
                # count first, in a loop that vectorises (over slices: indices
                # from 0 need no negative-index handling, which stops the
                # vectoriser; 2.5x faster); most cells hold no pair
                near = 0
                a0, a1, a2, a3 = q0[start:stop], q1[start:stop], q2[start:stop], q3[start:stop]
                for t in range(a0.size):
                    near += 1 if _within(a0, a1, a2, a3, t, p0, p1, p2, p3, radius2) else 0
                if near == 0 or not clip:
                    continue
                for t in range(a0.size):
                    if _within(a0, a1, a2, a3, t, p0, p1, p2, p3, radius2):
                        j = order[start + t]
                        if tile[r, j] > 1.0:
                            tile[r, j] = 1.0
                        elif tile[r, j] < -1.0:
                            tile[r, j] = -1.0
    return compared


@jit
def _within(a0, a1, a2, a3, t, p0, p1, p2, p3, radius2):
    """Is point ``t`` of the coordinate slices ``a0..a3`` within the squared
    radius of ``(p0, p1, p2, p3)``?"""
    e0, e1, e2, e3 = a0[t] - p0, a1[t] - p1, a2[t] - p2, a3[t] - p3
    return e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3 <= radius2
