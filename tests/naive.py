"""Slow, obvious references: plain NumPy, float64, one window at a time.

Every fast path in cosim_np is compared with these on generated inputs.
They implement the definitions in DESIGN.md and nothing clever: no blocking,
no rescaling tricks beyond what the definition itself needs.
"""

import numpy as np

# ---------------------------------------------------------------------------
# sliding cosine similarity


def padding(mode, span):
    """(left, right) zero padding that turns ``mode`` into 'valid'."""
    return {
        "valid": (0, 0),
        "full": (span, span),
        "same": (span - span // 2, span // 2),
        "causal": (span, 0),
    }[mode]


def windows(x, m, dilation, mode):
    """List of float64 windows of a 1-D signal (each window a 1-D array)."""
    x = np.asarray(x, dtype=np.float64)
    span = (m - 1) * dilation
    left, right = padding(mode, span)
    padded = np.concatenate([np.zeros(left), x, np.zeros(right)])
    count = padded.size - span
    return [padded[i : i + span + 1 : dilation] for i in range(count)]


def exact_norm(w):
    """L2 norm by math.fsum of squares of the scaled window (no overflow)."""
    import math

    w = np.asarray(w, dtype=np.float64).ravel()
    if np.isnan(w).any():
        return np.nan
    if np.isinf(w).any():
        return np.inf
    big = np.max(np.abs(w)) if w.size else 0.0
    if big == 0.0:
        return 0.0
    scaled = w / big
    return big * math.sqrt(math.fsum(scaled * scaled))


def cosine(w, k, noise_floor=0.0, fill=0.0):
    """Cosine of two equal-shaped vectors by the definition, each vector first
    divided by its largest magnitude so that nothing overflows or underflows."""
    import math

    w = np.asarray(w, dtype=np.float64).ravel()
    k = np.asarray(k, dtype=np.float64).ravel()
    if not (np.isfinite(w).all() and np.isfinite(k).all()):
        return np.nan
    if not (w.any() and k.any()):
        return fill
    w_big, k_big = np.max(np.abs(w)), np.max(np.abs(k))
    w_unit, k_unit = w / w_big, k / k_big
    dot = math.fsum(w_unit * k_unit)
    with np.errstate(over="ignore"):  # a huge noise floor relative to w: s -> 0
        den = (exact_norm(w_unit) + noise_floor / w_big) * exact_norm(k_unit)
    return float(np.clip(dot / den, -1.0, 1.0))


def sharpen(s, p):
    s = np.asarray(s, dtype=np.float64)
    return np.sign(s) * np.abs(s) ** (p * p)


def windowed_norm_1d(x, m, dilation=1, mode="valid"):
    return np.array([exact_norm(w) for w in windows(x, m, dilation, mode)])


def sliding_cosine_1d(x, k, sharpness=1.0, mode="valid", dilation=1, noise_floor=0.0, fill=0.0):
    """One kernel ``(m,)`` over a 1-D signal."""
    k = np.asarray(k, dtype=np.float64)
    out = []
    for w in windows(x, k.size, dilation, mode):
        s = cosine(w, k, noise_floor, fill)
        is_fill = exact_norm(w) == 0.0 or exact_norm(k) == 0.0
        out.append(s if (is_fill or np.isnan(s)) else float(sharpen(s, sharpness)))
    return np.array(out)


def sliding_cosine_multichannel(x, kernels, sharpness=1.0, mode="valid", dilation=1, noise_floor=0.0, fill=0.0):
    """Kernels ``(C_out, C_in, m)`` over a ``(C_in, n)`` signal: each window is
    the ``(C_in, m)`` block across all channels, taken as one vector."""
    x = np.asarray(x, dtype=np.float64)
    kernels = np.asarray(kernels, dtype=np.float64)
    c_out, c_in, m = kernels.shape
    per_channel = [windows(x[c], m, dilation, mode) for c in range(c_in)]
    count = len(per_channel[0])
    out = np.empty((c_out, count))
    for o in range(c_out):
        for i in range(count):
            w = np.stack([per_channel[c][i] for c in range(c_in)])
            s = cosine(w, kernels[o], noise_floor, fill)
            is_fill = exact_norm(w) == 0.0 or exact_norm(kernels[o]) == 0.0
            out[o, i] = s if (is_fill or np.isnan(s)) else float(sharpen(s, sharpness))
    return out


def seed000_cosine_similarity(signal, kernel, sharpness, padding, as_written=False):
    """NumPy transcription of the seed-000 PyTorch function.

    ``signal`` is ``(batch, channels, length)``, ``kernel`` is ``(m,)``;
    ``F.pad`` + ``unfold`` + ``F.cosine_similarity`` (eps=1e-8, each norm
    clamped) + a sign, then the last ``padding`` outputs are dropped.

    The seed takes the sign from ``torch.einsum('bdij,k->bdi', x, kernel)``:
    with two different indices that is ``sum(window) * sum(kernel)``, not the
    dot product, an index typo.  ``as_written=False`` uses the dot, the
    sign-preserving sharpening the seed describes; ``as_written=True`` keeps the
    typo."""
    signal = np.asarray(signal, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    m = kernel.size
    x = np.pad(signal, ((0, 0), (0, 0), (padding, padding)))
    x = np.lib.stride_tricks.sliding_window_view(x, m, axis=2)  # unfold(2, m, 1)
    eps = 1e-8
    dot = np.einsum("bdik,k->bdi", x, kernel)
    sim = dot / (np.maximum(np.linalg.norm(x, axis=-1), eps) * max(np.linalg.norm(kernel), eps))
    sgn = np.sign(np.einsum("bdij,k->bdi", x, kernel) if as_written else dot)
    sim = sgn * np.abs(sim) ** (sharpness**2)
    return sim[:, :, :-padding]
