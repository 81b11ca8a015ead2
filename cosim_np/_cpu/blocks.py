"""Numba kernels around the FFT path's transforms: cut a row into scaled
overlap-save blocks, and put the transformed dots back."""

import math

import numpy as np

from ._jit import jit


@jit
def prepare_blocks(row, g0, step, blocks, exponents, noise):
    """Copy blocks ``g0, g0+1, ...`` of ``row`` (``(C, n)``; block ``g`` starts
    at ``g*step``, samples past ``n`` are zeros) into ``blocks`` (``(C, G,
    nfft)`` float64), each scaled by ``2**-e`` (exact) so its largest finite
    magnitude lies in [0.5, 1); NaN/inf become 0 (the norms mark their
    windows).  ``noise[g]`` is the scaled block's L2 norm (the FFT error scale,
in units of ``2**exponents[g]``)."""
    nchan, n = row.shape
    nblocks, nfft = blocks.shape[1], blocks.shape[2]
    for g in range(nblocks):
        start = (g0 + g) * step
        stop = min(n, start + nfft)
        big = 0.0
        for c in range(nchan):
            for p in range(start, stop):
                mag = abs(np.float64(row[c, p]))
                big = max(big, mag if mag < np.inf else 0.0)
        expo = math.frexp(big)[1] if big > 0.0 else 0
        exponents[g] = expo
        exact = -1000 <= expo <= 1000
        scale = math.ldexp(1.0, -expo) if exact else 1.0
        e0 = 0.0
        e1 = 0.0
        for c in range(nchan):
            dest = blocks[c, g]
            for t in range(nfft):
                val = 0.0
                if start + t < stop:
                    val = np.float64(row[c, start + t])
                    val = val if abs(val) < np.inf else 0.0
                    val = val * scale if exact else math.ldexp(val, -expo)
                dest[t] = val
            for t in range(0, nfft - 1, 2):  # two chains: the sum is only an error scale
                e0 += dest[t] * dest[t]
                e1 += dest[t + 1] * dest[t + 1]
            if nfft % 2:
                e0 += dest[nfft - 1] * dest[nfft - 1]
        noise[g] = math.sqrt(e0 + e1)


@jit
def scatter_dots(out, g0, step, dots, b):
    """``dots[b, k, (g0+g)*step + t] = out[k, g, t]``: the first ``step``
    outputs of each block (the rest wrapped around), still in the block's
    units ``2**exponent``."""
    nker, nblocks = out.shape[0], out.shape[1]
    nwin = dots.shape[2]
    for k in range(nker):
        for g in range(nblocks):
            start = (g0 + g) * step
            count = min(step, nwin - start)
            src = out[k, g]
            dest = dots[b, k, start : start + count]
            for t in range(count):
                dest[t] = src[t]
