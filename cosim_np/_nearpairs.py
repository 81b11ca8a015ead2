"""Clipping a product of normalised rows to ``[-1, 1]`` by visiting only the
pairs that rounding could take past +-1, instead of reading the whole result.

**The bound.**  Rows normalised in a precision of unit roundoff ``u`` (one
rounding per entry of a float64 quotient) have norms within
``nu = 2 u + 4 d 2**-53`` of 1.  A BLAS product of length ``d`` rounds a
dot product by at most ``gamma = d u / (1 - d u)`` times the product of the
norms, whatever its order of summation or use of FMA.  A computed score
above 1 therefore needs the rows' directions to have a cosine above
``1 - tau``, ``tau = gamma + 2 nu``: they are within ``sqrt(2 tau)`` of each
other, and the rows themselves within ``sqrt(2 tau) + 2 nu``.  A score below
-1 needs the same of one row and the other's negation.

**The search.**  Projections onto four orthonormal directions do not lengthen
differences, so those pairs are within that radius (plus the projections'
own rounding) in four dimensions too.  The corpus projections are sorted
into a grid of cells at least the radius wide over their first two
coordinates; every row looks at the 3 x 3 cells around its projection and
around its negation and clips the scores of the pairs within the radius
(``_cpu.nearpairs``).  Any other score is within ``[-1, 1]`` already.

**When.**  For 20000 x 20000 float32 rows of length 256 the radius is 0.0056,
a row compares about 230 points (for both signs), and the pass takes 1.5 ms
on two threads, 5 to 6 ms with the projections and the grid, against 44 ms
for reading the 1.6 GB result (that pass is bound by memory bandwidth).  The
radius grows as ``sqrt(d u)`` and the points crowd together on data of many
near-duplicates: a dry run over a sample of rows measures the comparisons,
and where they would cost more than reading the result the caller clips
every score instead.
"""

import functools
import math

import numpy as np

from ._cpu import nearpairs as kernels

DIRECTIONS = 4
# Most cells along a grid side: a 512 x 512 grid of int64 starts is 2 MiB.
MAX_GRID_SIDE = 512
# Rows of a tile whose comparisons are counted before the pass.
SAMPLE_ROWS = 64
# One comparison (its share of a cell range's set-up included) costs about six
# times as much as reading one score in the whole-result clip (0.6 against
# 0.11 ns on the CI machine): the grid is used while a row compares fewer than
# (columns / COMPARE_COST) points, a margin of almost three for the projections
# and the grid.
COMPARE_COST = 16
# The float32 storage of the projections.
U32 = 2.0**-24


@functools.lru_cache(maxsize=8)
def _directions(d):
    """``(d, 4)`` orthonormal columns from a fixed seed (the same in every
    call and process); beyond ``d`` columns, zeros."""
    gauss = np.random.default_rng(0x636F73).standard_normal((d, DIRECTIONS))
    directions = np.zeros((d, DIRECTIONS))
    basis = np.linalg.qr(gauss)[0]
    directions[:, : basis.shape[1]] = basis
    return directions


def radius(d, compute):
    """Distance in projection space within which a pair's score could round
    past +-1 (see the module docstring); None where ``d u`` is too large for
    the bound to be of use."""
    u = np.finfo(compute).eps / 2
    if d * u >= 0.01:
        return None
    gamma = d * u / (1 - d * u)
    nu = 2 * u + 4 * d * 2.0**-53
    tau = gamma + 2 * nu
    # each side's projection: rounded like a dot product in each of its four
    # coordinates (2 gamma over the four), then stored in float32
    projections = 2 * (2 * gamma + U32) * (1 + nu)
    # directions rounded to the compute dtype lengthen vectors by at most 2u
    return (math.sqrt(2 * tau) + 2 * nu) * (1 + 4 * u + 4 * U32) + projections


def grid_side(points):
    return min(MAX_GRID_SIDE, max(4, 2 * math.isqrt(points)))


def nbytes(rows, points):
    """Generous working memory of a grid over ``points`` columns clipping
    tiles of ``rows`` rows."""
    side = grid_side(points)
    # per point: projections in the compute dtype and in float32, the valid
    # ones, two cells and their key, the order (twice) and the sorted copy;
    # per cell: counts and starts; per row: its projections, twice; and
    # 16 KiB for the directions and the small arrays' overheads
    return 160 * points + 16 * (side * side + 1) + 64 * rows + 2**14


class NearPairs:
    """The grid of the projections ``q`` (``(points, 4)`` float32) of the
    columns of score tiles, for pairs within ``radius``; ``directions``
    (``(d, 4)`` in the compute dtype) project the tiles' rows.
    :meth:`of_rows` builds it from normalised corpus rows."""

    def __init__(self, q, radius, directions):
        self.columns = q.shape[0]
        self.directions = directions
        # NaN/inf rows get NaN scores (patched by the caller), never clipped ones
        valid = np.flatnonzero(np.isfinite(q).all(axis=1))
        q = q[valid]
        side = grid_side(self.columns)
        self.origin, self.width, cells = [], [], []
        for axis in range(2):
            values = q[:, axis]
            low = np.float32(values.min()) if values.size else np.float32(0)
            high = np.float32(values.max()) if values.size else np.float32(0)
            # a margin over the radius: the cell of a point and of a row are
            # each computed with rounding (relative 1e-7 of at most 512 cells)
            width = np.float32(max(radius * (1 + 2.0**-10), (high - low) / (side - 1)))
            self.origin.append(low)
            self.width.append(width)
            cells.append(np.floor((values - low) / width).astype(np.int64))
        self.grid_cols = int(cells[1].max()) + 1 if valid.size else 1
        grid_rows = int(cells[0].max()) + 1 if valid.size else 1
        key = cells[0] * self.grid_cols + cells[1]
        order = np.argsort(key, kind="stable")
        self.order = valid[order]
        self.points = np.ascontiguousarray(q[order].T)
        self.cell_start = np.zeros(grid_rows * self.grid_cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=grid_rows * self.grid_cols),
                  out=self.cell_start[1:])
        # float32 distances round by a few 1e-7: a margin that keeps every
        # pair within the radius
        self.radius2 = np.float32(radius * radius * (1 + 2.0**-16))

    @classmethod
    def of_rows(cls, right):
        """The grid of normalised corpus rows ``right`` (``(m, d)``, compute dtype)."""
        d = right.shape[1]
        directions = _directions(d).astype(right.dtype)
        return cls(_project(right, directions), radius(d, right.dtype), directions)

    def _pass(self, tile, projections, clip):
        return kernels.clip_near_pairs(
            tile, projections, self.points, self.order, self.cell_start, self.grid_cols,
            self.origin[0], self.origin[1], self.width[0], self.width[1], self.radius2, clip)

    def clip(self, tile, left, split):
        """Clip ``tile`` (the scores of the normalised rows ``left`` against
        all of this grid's columns) to ``[-1, 1]``, ``split`` as in
        ``_tiles.row_blocks``.  Returns False, having changed nothing, where
        the grid would cost more than reading the whole tile."""
        return self.clip_projected(tile, _project(left, self.directions), split)

    def clip_projected(self, tile, projections, split):
        """:meth:`clip` for rows given by their projections (float32)."""
        rows = tile.shape[0]
        sample = projections[:: max(1, rows // SAMPLE_ROWS)]
        compared = self._pass(tile, sample, False)
        if compared * COMPARE_COST > sample.shape[0] * self.columns:
            return False
        split(rows, lambda r0, r1: self._pass(tile[r0:r1], projections[r0:r1], True))
        return True


def _project(rows, directions):
    """The float32 projections ``(n, 4)`` of ``rows`` onto ``directions``."""
    return np.matmul(rows, directions).astype(np.float32)


def fitting(right, rows, spare):
    """A :class:`NearPairs` over ``right`` for tiles of up to ``rows`` rows, or
    None where the bound is of no use or the grid needs more than ``spare``
    bytes."""
    m, d = right.shape
    if radius(d, right.dtype) is None or nbytes(rows, m) > spare:
        return None
    return NearPairs.of_rows(right)
