"""Numba kernels around the FFT path's transforms: cut a row into scaled
overlap-save blocks, and multiply their spectra by the kernels'."""

import math

import numpy as np

from ._jit import jit


@jit
def _max_and_sumsq(src, big, total):
    """Largest finite magnitude and sum of the finite squares of ``src``
    (added to ``big`` and ``total``), four independent chains of each: the
    sum only scales an error bound and need not be summed in order."""
    b0 = b1 = b2 = b3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    size = src.size
    p = 0
    while p + 4 <= size:
        v0 = abs(np.float64(src[p]))
        v1 = abs(np.float64(src[p + 1]))
        v2 = abs(np.float64(src[p + 2]))
        v3 = abs(np.float64(src[p + 3]))
        v0 = v0 if v0 < np.inf else 0.0
        v1 = v1 if v1 < np.inf else 0.0
        v2 = v2 if v2 < np.inf else 0.0
        v3 = v3 if v3 < np.inf else 0.0
        b0 = v0 if v0 > b0 else b0
        b1 = v1 if v1 > b1 else b1
        b2 = v2 if v2 > b2 else b2
        b3 = v3 if v3 > b3 else b3
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        p += 4
    while p < size:
        v0 = abs(np.float64(src[p]))
        v0 = v0 if v0 < np.inf else 0.0
        b0 = v0 if v0 > b0 else b0
        s0 += v0 * v0
        p += 1
    return max(max(big, b0), max(max(b1, b2), b3)), total + ((s0 + s1) + (s2 + s3))


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
        total = 0.0
        for c in range(nchan):
            big, total = _max_and_sumsq(row[c, start:stop], big, total)
        expo = math.frexp(big)[1] if big > 0.0 else 0
        exponents[g] = expo
        exact = -1000 <= expo <= 1000
        scale = math.ldexp(1.0, -expo) if exact else 1.0
        # squares of float64 extremes can overflow or underflow: rescale then
        rescan = big > 0.0 and not (1e-280 < total < 1e280)
        e0 = 0.0
        for c in range(nchan):
            dest = blocks[c, g]
            src = row[c, start:stop]
            if exact:
                for t in range(src.size):
                    val = np.float64(src[t])
                    dest[t] = val * scale if abs(val) < np.inf else 0.0
            else:
                for t in range(src.size):
                    val = np.float64(src[t])
                    dest[t] = math.ldexp(val, -expo) if abs(val) < np.inf else 0.0
            for t in range(src.size, nfft):
                dest[t] = 0.0
            if rescan:
                for t in range(src.size):
                    e0 += dest[t] * dest[t]
        if rescan:
            noise[g] = math.sqrt(e0)
        else:
            noise[g] = math.ldexp(math.sqrt(total), -expo)


@jit
def spectral_products(spectrum, spectra, product):
    """``product[g, k] = sum over c of spectrum[c, g] * spectra[k, c]``, the
    channels added in order: the transformed dots of every kernel with every
    block (NumPy's complex multiply runs one element at a time; this loop
    vectorises, on split real and imaginary parts)."""
    nchan, nblocks, nfreq = spectrum.shape
    nker = spectra.shape[0]
    for k in range(nker):
        for g in range(nblocks):
            dest = product[g, k]
            for f in range(nfreq):
                dest[f] = spectrum[0, g, f] * spectra[k, 0, f]
            for c in range(1, nchan):
                src = spectrum[c, g]
                weights = spectra[k, c]
                for f in range(nfreq):
                    dest[f] += src[f] * weights[f]
