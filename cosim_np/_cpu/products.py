"""Direct dots as matrix products, for kernel banks and multi-channel kernels.

A block of windows is laid out one window per column (every channel's taps,
float64), and its dots with all the kernels come from one product of the
unit kernels ``(K, C*m)`` with that block (BLAS ``dgemm``, on one thread of
ours): float64 accumulation, the error bound of the loops'
(``(taps + 4) eps`` relative to the window's norm, Higham's for any order
of summation), at a small part of their cost per multiply-add.  The norms
stay the exact blocked sums (``_cpu.sliding``) or centered statistics
(``_cpu.centered``) of the tile, and the loops' finishing step makes the
cosines.

Range and scale: a window whose sum of squares left the float64 range (a
float64 row with magnitudes outside ``[SAFE_MIN, SAFE_MAX]``) has its column
scaled by its own power of two before the product, as the loops rescale
such windows.  A product's entry depends only on its own column's values,
in a fixed order for a given block shape (not for any shape: a block of
one window may go through a vector product), and blocks start at fixed
offsets of their tile: scaling the input by a power of two then changes no
output bit, and every split of the windows (threads, Dask chunks at tiles)
gives the same bits.  Nothing here validates.
"""

import math

import numpy as np

from ._jit import jit
from .centered import _tile_m2, rescaled_m2
from .sliding import (
    KERNEL_NONFINITE,
    _finish_kernel,
    _out_of_range,
    _rescaled_cosine,
    _rescaled_sumsq,
    _shared_denominators,
    sumsq_scan,
    tile_sumsq_by_scan,
)

# A tile's sums of squares (into its buffers' third), or its centered ones
# (into an array of their own), exactly as the loops take them: the two
# paths' norms are the same bits.
tile_m2 = _tile_m2


def tile_sumsq(m, d):
    """The scan that sums the squares of a tile's windows of ``m`` taps ``d``
    apart, as the direct loops do (only it compiled on a first call)."""
    return tile_sumsq_by_scan[sumsq_scan(m, d)]


@jit
def window_columns(x, b, nrows, i0, count, m, d, means, columns):
    """``columns[c*m + j, r*count + t] = x[b + r, c, i0 + t + j*d]``
    (float64) for ``r < nrows``, ``t < count``: the windows ``i0 ..`` of
    rows ``b ..``, one per column, row after row, each less its mean
    ``means[r*count + t]`` where ``means`` is not empty (the gradients'
    centered windows)."""
    less_means = means.size > 0
    for r in range(nrows):
        for c in range(x.shape[1]):
            for j in range(m):
                taps = x[b + r, c, i0 + j * d : i0 + j * d + count]
                dest = columns[c * m + j, r * count : (r + 1) * count]
                if less_means:
                    mean = means[r * count : (r + 1) * count]
                    for t in range(count):
                        dest[t] = taps[t] - mean[t]
                else:
                    for t in range(count):
                        dest[t] = taps[t]


@jit
def rescale_columns(x, b, i0, count, m, d, sumsq, center, columns, scales, sums, rescaled):
    """Scale the column of each window ``i0 + t`` whose sum of squares
    (``center``: M2) ``sumsq[t]`` left the float64 range by its power of two ``2**-scales[t]``
    (its samples' largest magnitude), with ``sums[t]`` its sum of squares so
    scaled, summed as the tile's were (``rescaled[t]`` True; False
    elsewhere)."""
    for t in range(count):
        rescaled[t] = _out_of_range(sumsq[t])
        if not rescaled[t]:
            continue
        i = i0 + t
        if center:
            e, s = rescaled_m2(x, b, i, m, d)
        else:
            e, s = _rescaled_sumsq(x, b, i, m, d, np.bool_(False))
        scales[t] = e
        sums[t] = s
        for c in range(x.shape[1]):
            for j in range(m):
                columns[c * m + j, t] = math.ldexp(np.float64(x[b, c, i + j * d]), -e)


@jit
def finish_block(dots, sumsq, count, exponent, noise_floor, fill, kernel_state, shared, any_rescaled,
                 scales, sums, rescaled, spare, out, b, start):
    """The sharpened cosines of a block's windows with every kernel, from
    their dots (``dots[k, t]``) and sums of squares, into ``out[b, k, start
    + t]``; windows with ``rescaled[t]`` (when ``any_rescaled``) from their
    scaled samples' sum ``sums[t]``.  ``shared``: room for the block's
    denominators for a bank, else empty; ``spare``: room for a block."""
    for k in range(dots.shape[0]):
        if k == 0 and dots.shape[0] > 1:
            _shared_denominators(sumsq, count, noise_floor, shared)
        if any_rescaled and kernel_state[k] != KERNEL_NONFINITE:
            # (before _finish_kernel, which may sharpen in place in dots[k])
            for t in range(count):
                if rescaled[t]:
                    spare[t] = _rescaled_cosine(dots[k, t], scales[t], sums[t], exponent,
                                                noise_floor, fill, kernel_state[k])
        dest = out[b, k, start : start + count]
        _finish_kernel(dots[k], sumsq, shared, count, exponent, noise_floor, fill,
                       kernel_state[k], dest)
        if any_rescaled and kernel_state[k] != KERNEL_NONFINITE:
            for t in range(count):
                if rescaled[t]:
                    dest[t] = spare[t]
