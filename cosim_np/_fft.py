"""Window-kernel dot products by blocked overlap-save FFT (``method="fft"``).

Only the dots come from here; the window norms stay on the exact blocked sums
of ``_cpu.sliding``, and that kernel also finishes the cosines.

Each block of ``nfft`` samples is scaled by a power of two (exact) before its
transform, so nothing overflows, and the dots stay in those block units: scaling the
input by ``2**j`` changes no bit.  Non-finite samples are zeroed in the transformed copy (the norms mark
their windows NaN), so one NaN cannot spread beyond its block's rounding.
The FFT's error in a dot is at most about ``log2(nfft) * eps * ||block|| *
max|K_hat|``; ``block_noise`` and ``spectral_peak`` carry those factors so the
kernel can recompute directly any window for which that bound is not small
against the window's own norm (near loud bursts).
"""

import math

import numpy as np
from scipy import fft as sfft

from ._cpu import blocks as blocks_cpu

# Transformed samples per chunk of blocks: bounds the temporary memory.
CHUNK_SAMPLES = 1 << 17


def fft_length(span):
    """FFT length for a kernel reaching ``span`` samples: long enough that
    most of each block is output, short enough to stay in cache."""
    return sfft.next_fast_len(max(512, 8 * (span + 1)), real=True)


def kernel_spectra(khat, dilation, nfft):
    """``conj(rfft(dilated kernel))``, shape ``(K, C, nfft//2 + 1)``, and the
    largest spectral magnitude of each kernel (for the error bound)."""
    nker, nchan, m = khat.shape
    dilated = np.zeros((nker, nchan, nfft))
    dilated[:, :, : (m - 1) * dilation + 1 : dilation] = np.nan_to_num(khat)
    spectra = np.conj(sfft.rfft(dilated, axis=-1))
    peak = np.max(np.abs(spectra), axis=(1, 2))
    return spectra, peak


def fft_dots(rows, khat, dilation, nfft, spectra, workers, dots):
    """Dots of every window of ``rows`` (``(B, C, N)``) with every kernel,
    written to ``dots`` (``(B, K, >= N - span)`` float64, reused across calls
    so that it stays in cache).

    The dots are left in the units of their block, ``2**exponents[b, g]``:
    every consumer then shifts exponents only (exact), whichever path a window
    takes.  Returns ``exponents`` and ``block_noise`` (``(B, nblocks)``, the
    scaled L2 norm of each block: the FFT error scale) and the block step:
    window ``i`` lies in block ``i // step``."""
    nrows, nchan, n = rows.shape
    nker, _, m = khat.shape
    span = (m - 1) * dilation
    step = nfft - span
    nwin = n - span
    nblocks = -(-nwin // step)
    noise = np.empty((nrows, nblocks))
    exponents = np.empty((nrows, nblocks), dtype=np.int64)
    per_chunk = max(1, CHUNK_SAMPLES // (nfft * nchan))
    blocks = np.empty((nchan, min(per_chunk, nblocks), nfft))
    for b in range(nrows):
        for g0 in range(0, nblocks, per_chunk):
            count = min(per_chunk, nblocks - g0)
            chunk = blocks[:, :count]
            blocks_cpu.prepare_blocks(
                rows[b], g0, step, chunk, exponents[b, g0 : g0 + count], noise[b, g0 : g0 + count]
            )
            spectrum = sfft.rfft(chunk, axis=-1, workers=workers)  # (C, G, F)
            if nchan == 1:
                product = spectrum[0][None, :, :] * spectra[:, 0, None, :]
            else:
                product = np.einsum("cgf,kcf->kgf", spectrum, spectra)
            out = sfft.irfft(product, n=nfft, axis=-1, workers=workers)
            blocks_cpu.scatter_dots(out, g0, step, dots, b)
    return exponents, noise, step


def error_factor(nfft):
    """Multiplier of ``eps * ||block|| * max|K_hat|`` bounding an FFT dot's error."""
    return 2.0 * math.log2(nfft) * np.finfo(np.float64).eps
