"""Slow, obvious references: plain NumPy, float64, one window at a time.

Every fast path in cosim_np is compared with these on generated inputs.
They implement the definitions of the docs (docs/*.rst) and nothing clever: no blocking,
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


def unit(vector):
    """The direction of a vector: divided by its largest magnitude, then by
    its norm (exact under power-of-two scaling); zeros and NaN/inf rows as
    they are."""
    vector = np.asarray(vector, dtype=np.float64).ravel()
    if not (np.isfinite(vector).all() and vector.any()):
        return vector
    scaled = vector / np.max(np.abs(vector))
    return scaled / np.sqrt(np.sum(scaled * scaled))


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


def _two_pass(v):
    """``(deviations, M2)`` of a float64 vector in long double (a 64-bit
    significand on x86, where CI runs: errors some 2000 times below
    float64's): its values less their mean, and the sum of their squares."""
    values = np.asarray(v, dtype=np.float64).ravel().astype(np.longdouble)
    deviations = values - np.sum(values) / values.size
    return deviations, np.sum(deviations * deviations)


def centered_norm(w):
    """``||w - mean(w)||`` (all channels and taps) by two passes in long
    double; NaN for a window holding NaN or ±inf (``inf - mean(w)`` is
    undefined)."""
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        return np.nan
    return float(np.sqrt(_two_pass(w)[1]))


def pearson(w, k, noise_floor=0.0, fill=0.0):
    """Pearson's correlation of two equal-shaped vectors by the definition,
    two passes in long double: ``<w - mean w, k - mean k> / ((||w - mean w||
    + noise_floor) ||k - mean k||)``; ``fill`` for a constant window (all
    samples equal), NaN for NaN/inf."""
    w = np.asarray(w, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if not (np.isfinite(w).all() and np.isfinite(k).all()):
        return np.nan
    if np.all(w == w.flat[0]):
        return fill
    dw, m2w = _two_pass(w)
    dk, m2k = _two_pass(k)
    s = np.sum(dw * dk) / ((np.sqrt(m2w) + noise_floor) * np.sqrt(m2k))
    return float(np.clip(s, -1.0, 1.0))


def sliding_pearson(x, k, sharpness=1.0, mode="valid", dilation=1, noise_floor=0.0, fill=0.0):
    """``sliding_cosine(..., center=True)`` of one kernel ``(m,)`` over a 1-D
    signal, or of kernels ``(C_out, C_in, m)`` over a ``(C_in, n)`` signal
    (``(C_out, L)``: each window the ``(C_in, m)`` block, one vector)."""
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    multi = k.ndim == 3
    xs = x if multi else x[None]
    ks = k if multi else k[None, None]
    per_channel = [windows(xs[c], ks.shape[-1], dilation, mode) for c in range(xs.shape[0])]
    out = np.empty((ks.shape[0], len(per_channel[0])))
    for o in range(ks.shape[0]):
        for i in range(out.shape[1]):
            w = np.stack([per_channel[c][i] for c in range(xs.shape[0])])
            s = pearson(w, ks[o], noise_floor, fill)
            constant = np.isfinite(w).all() and np.all(w == w.flat[0])
            out[o, i] = s if (constant or np.isnan(s)) else float(sharpen(s, sharpness))
    return out if multi else out[0]


def windowed_centered_norm_1d(x, m, dilation=1, mode="valid"):
    return np.array([centered_norm(w) for w in windows(x, m, dilation, mode)])


def spatial_windows(x, m, dilation, modes, stride):
    """``(index, window)`` of every kept window of ``x`` ``(C, n_1, ..., n_r)``
    (float64): ``m``, ``dilation``, ``modes`` and ``stride`` one per axis;
    each window ``(C, m_1, ..., m_r)`` spans every channel."""
    x = np.asarray(x, dtype=np.float64)
    spans = [(mm - 1) * dd for mm, dd in zip(m, dilation)]
    pads = [(0, 0)] + [padding(mode, span) for mode, span in zip(modes, spans)]
    padded = np.pad(x, pads)
    counts = [padded.shape[1 + a] - spans[a] for a in range(len(m))]
    kept = [range(0, count, s) for count, s in zip(counts, stride)]
    for index in np.ndindex(*[len(k) for k in kept]):
        starts = [kept[a][i] for a, i in enumerate(index)]
        window = padded[(slice(None),) + tuple(
            slice(start, start + span + 1, dd) for start, span, dd in zip(starts, spans, dilation))]
        yield index, window


def spatial_shape(x, m, dilation, modes, stride):
    """The kept windows' counts per axis (of ``spatial_windows``)."""
    shape = []
    for a, (mm, dd, mode, s) in enumerate(zip(m, dilation, modes, stride)):
        span = (mm - 1) * dd
        left, right = padding(mode, span)
        shape.append(-(-(x.shape[1 + a] + left + right - span) // s))
    return tuple(shape)


def spatial_norms(x, m, dilation, modes, stride, center=False):
    """``windowed_norm`` over the r axes of ``x`` ``(C, n...)``, all channels
    in each window (one channel: ``x[None]``)."""
    out = np.empty(spatial_shape(x, m, dilation, modes, stride))
    for index, window in spatial_windows(x, m, dilation, modes, stride):
        out[index] = centered_norm(window) if center else exact_norm(window)
    return out


def spatial_cosine(x, kernels, sharpness=1.0, dilation=None, modes=None, stride=None,
                   noise_floor=0.0, fill=0.0, center=False):
    """``sliding_cosine`` of kernels ``(K, C, m_1, ..., m_r)`` over ``x``
    ``(C, n_1, ..., n_r)``: ``(K, nout_1, ..., nout_r)``, one window at a
    time by the definition (Pearson's correlation with ``center``)."""
    kernels = np.asarray(kernels, dtype=np.float64)
    m = kernels.shape[2:]
    r = len(m)
    dilation = dilation or (1,) * r
    modes = modes or ("valid",) * r
    stride = stride or (1,) * r
    out = np.empty((kernels.shape[0],) + spatial_shape(x, m, dilation, modes, stride))
    for index, window in spatial_windows(x, m, dilation, modes, stride):
        for k, kernel in enumerate(kernels):
            if center:
                s = pearson(window, kernel, noise_floor, fill)
                special = np.isfinite(window).all() and np.all(window == window.flat[0])
            else:
                s = cosine(window, kernel, noise_floor, fill)
                special = exact_norm(window) == 0.0 or exact_norm(kernel) == 0.0
            out[(k,) + index] = s if (special or np.isnan(s)) else float(sharpen(s, sharpness))
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


# ---------------------------------------------------------------------------
# ---- embedding similarity


def cosine_broadcast(a, b, axis=-1, eps=0.0, fill=0.0):
    """``cosine_similarity`` by the definition: materialise the broadcast,
    then one vector at a time.  ``eps > 0`` is PyTorch's formula
    ``dot / (max(|a|, eps) * max(|b|, eps))`` with fsum."""
    import math

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape, b.shape)
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    axes = tuple(sorted(ax % len(shape) for ax in axes))
    kept = [ax for ax in range(len(shape)) if ax not in axes]
    dest = list(range(len(kept), len(shape)))
    A = np.moveaxis(np.broadcast_to(a, shape), axes, dest)
    B = np.moveaxis(np.broadcast_to(b, shape), axes, dest)
    out = np.empty(tuple(shape[ax] for ax in kept))
    for idx in np.ndindex(out.shape):
        u, w = A[idx].ravel(), B[idx].ravel()
        if eps == 0.0:
            out[idx] = cosine(u, w, fill=fill)
        elif not (np.isfinite(u).all() and np.isfinite(w).all()):
            out[idx] = np.nan
        else:
            out[idx] = math.fsum(u * w) / (max(exact_norm(u), eps) * max(exact_norm(w), eps))
    return out


def pairwise_matrix(a, b=None, fill=0.0):
    """Every row of ``a`` against every row of ``b``, one pair at a time."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    return np.array([[cosine(u, w, fill=fill) for w in b] for u in a]).reshape(len(a), len(b))


def topk_from_matrix(matrix, k, exclude_self=False):
    """Top-k by a stable argsort of the full matrix: best first, ties to the
    lower index, NaN last."""
    scores, indices = [], []
    for i, row in enumerate(np.asarray(matrix, dtype=np.float64)):
        candidates = [j for j in range(row.size) if not (exclude_self and j == i)]
        keys = -row[candidates]  # NaN stays NaN and sorts last
        order = np.argsort(keys, kind="stable")[:k]
        chosen = np.array(candidates)[order]
        indices.append(chosen)
        scores.append(row[chosen])
    return np.array(scores).reshape(-1, k), np.array(indices, dtype=np.int64).reshape(-1, k)


def set_similarity(a, b, method="mean", weights_a=None, weights_b=None):
    """One score for two sets by the definitions, from the full matrix."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    wa = np.ones(len(a)) if weights_a is None else np.asarray(weights_a, dtype=np.float64)
    wb = np.ones(len(b)) if weights_b is None else np.asarray(weights_b, dtype=np.float64)
    wa, wb = wa / wa.sum(), wb / wb.sum()
    S = pairwise_matrix(a, b)
    if method == "mean":
        return float(wa @ S @ wb)
    if method == "centroid":
        return cosine(wa @ a, wb @ b)
    precision = float(wa @ S.max(axis=1))
    recall = float(wb @ S.max(axis=0))
    if method == "chamfer":
        return 0.5 * (precision + recall)
    if precision * recall > 0:  # same signs: their harmonic mean
        return precision, recall, 2 * precision * recall / (precision + recall)
    return precision, recall, 0.0


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def seed002_get_dot_sim_loss(emb, emb_rec):
    """NumPy transcription of seed 002's ``get_dot_sim_loss``, as written."""
    emb = np.asarray(emb, dtype=np.float64)
    emb_rec = np.asarray(emb_rec, dtype=np.float64)
    norm_emb = np.linalg.norm(emb, ord=2, axis=1)
    emb_scale = sigmoid((norm_emb - np.min(norm_emb)) / (np.max(norm_emb) - np.min(norm_emb)))
    norm_emb_rec = np.linalg.norm(emb_rec, ord=2, axis=1)
    emb_rec_scale = sigmoid(  # noqa: F841  (computed and unused, as in the seed)
        (norm_emb_rec - np.min(norm_emb_rec)) / (np.max(norm_emb_rec) - np.min(norm_emb_rec))
    )
    cos_sim_lpc = np.sum(emb * emb_rec, axis=1) / (
        np.linalg.norm(emb, axis=1) * np.linalg.norm(emb_rec, axis=1)
    )
    loss_lpc = 1 - np.mean(emb_scale * cos_sim_lpc)
    return loss_lpc


def scaled_cosine(a, b, scaling="minmax", weight_on="a"):
    """Per-row weighted cosine, row by row, from the definition in docs/scaled_loss.rst."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)

    def weights(x):
        n = np.array([exact_norm(row) for row in x])
        if scaling is None:
            return np.ones(len(x))
        if scaling == "minmax":
            spread = n.max() - n.min()
            z = np.zeros(len(x)) if spread == 0 else (n - n.min()) / spread
        else:
            sd = np.std(n, ddof=1) if len(n) > 1 else 0.0
            z = np.zeros(len(x)) if sd == 0 else (n - n.mean()) / sd
        return sigmoid(z)

    wa, wb = weights(a), weights(b)
    w = {"a": wa, "b": wb, "both": wa * wb}[weight_on]
    return np.array([w[i] * cosine(a[i], b[i]) for i in range(len(a))])


# ---------------------------------------------------------------------------
# finding matches


def match_scores(signal, kernel, sharpness=1.0, mode="valid", dilation=1, noise_floor=0.0, fill=0.0,
                 axis=-1):
    """The naive score array of every signal row, ``(rows, K, L)``, and the
    leading shape: a kernel ``(m,)`` or bank ``(K, m)`` along ``axis``, or
    multi-channel kernels ``(C_out, C_in, m)`` with the channels just before it."""
    x = np.asarray(signal, dtype=np.float64)
    kern = np.asarray(kernel, dtype=np.float64)
    ax = axis % x.ndim
    if kern.ndim == 3:
        x = np.moveaxis(x, (ax - 1, ax), (-2, -1))
        lead = x.shape[:-2]
        rows = x.reshape((-1,) + x.shape[-2:])
        scores = [sliding_cosine_multichannel(row, kern, sharpness, mode, dilation, noise_floor, fill)
                  for row in rows]
    else:
        x = np.moveaxis(x, ax, -1)
        lead = x.shape[:-1]
        bank = kern.reshape(-1, kern.shape[-1])
        scores = [np.stack([sliding_cosine_1d(row, k, sharpness, mode, dilation, noise_floor, fill)
                            for k in bank]) for row in x.reshape(-1, x.shape[-1])]
    return np.stack(scores), lead


def scores_as_rows(scores, kernel_ndim, axis):
    """``sliding_cosine``'s result in the ``(rows, K, L)`` layout."""
    scores = np.asarray(scores)
    ax = axis % (scores.ndim - (kernel_ndim == 2))
    if kernel_ndim == 2:
        moved = np.moveaxis(scores, (ax, ax + 1), (-2, -1))
    elif kernel_ndim == 3:
        moved = np.moveaxis(scores, (ax - 1, ax), (-2, -1))
    else:
        moved = np.moveaxis(scores, ax, -1)[..., None, :]
    return moved.reshape((-1,) + moved.shape[-2:]), moved.shape[:-2]


def greedy_matches(rows, k=None, threshold=None, exclusion=0, sign="both", single=True):
    """The definition of ``find_matches`` on a score array ``(rows, K, L)``,
    one candidate at a time: returns ``(row, index, kernel, score)`` best first."""
    import bisect

    found = []
    for r, s in enumerate(np.asarray(rows)):
        nker, length = s.shape
        with np.errstate(invalid="ignore"):
            key = {"both": np.abs(s), "positive": s, "negative": -s}[sign].astype(np.float64)
        if callable(threshold):
            thr = float(threshold(key.astype(s.dtype)[0] if single else key.astype(s.dtype)))
        else:
            thr = -np.inf if threshold is None else float(threshold)
        key = np.where(np.isnan(key), -np.inf, key)
        candidates = []
        for kk in range(nker):
            for i in range(length):
                left = key[kk, i - 1] if i > 0 else -np.inf
                right = key[kk, i + 1] if i + 1 < length else -np.inf
                if key[kk, i] > left and key[kk, i] >= right and key[kk, i] >= thr:
                    candidates.append((-key[kk, i], i, kk))
        candidates.sort()
        kept = []  # positions kept so far, in order (bisect finds the nearest)
        for negative, i, kk in candidates:
            if k is not None and len(kept) >= k:
                break
            at = bisect.bisect_left(kept, i - exclusion)
            if at == len(kept) or kept[at] > i + exclusion:  # none within the zone
                bisect.insort(kept, i)
                found.append((negative, r, i, kk, s[kk, i]))
    found.sort(key=lambda item: item[:4])
    row = np.array([f[1] for f in found], dtype=np.int64)
    index = np.array([f[2] for f in found], dtype=np.int64)
    kern = np.array([f[3] for f in found], dtype=np.int64)
    score = np.array([f[4] for f in found], dtype=np.asarray(rows).dtype)
    return row, index, kern, score


def find_matches(signal, kernel, *, k=None, threshold=None, exclusion=None, sign="both", sharpness=1.0,
                 mode="valid", dilation=1, noise_floor=0.0, fill=0.0, axis=-1, scores=None):
    """``find_matches`` by the definition: the whole score array (the naive
    references', or ``scores``, ``sliding_cosine``'s result), then the greedy
    loop.  Returns ``(row, index, kernel, score)`` best first and the leading shape."""
    kern = np.asarray(kernel, dtype=np.float64)
    m = kern.shape[-1]
    if exclusion is None:
        exclusion = ((m - 1) * dilation + 1) // 2
    if scores is None:
        rows, lead = match_scores(signal, kernel, sharpness, mode, dilation, noise_floor, fill, axis)
    else:
        rows, lead = scores_as_rows(scores, kern.ndim, axis)
    return greedy_matches(rows, k, threshold, exclusion, sign, single=kern.ndim == 1), lead


def greedy_box_matches(scores, k=None, threshold=None, exclusion=(0, 0), sign="both"):
    """The definition of ``find_matches`` over several sliding axes, for one
    batch index: ``scores`` ``(K, nout_1, ..., nout_r)``; candidates are the
    local maxima of the key along every axis (missing neighbours and NaN as
    -inf) at or above the threshold; kept best key first (ties to the lower
    index, then kernel) unless a kept match lies within ``exclusion`` along
    every axis.  Returns ``[(index tuple, kernel, score)]`` in that order."""
    s = np.asarray(scores, dtype=np.float64)
    key = {"both": np.abs(s), "positive": s, "negative": -s}[sign]
    key = np.where(np.isnan(key), -np.inf, key)
    limit = -np.inf if threshold is None else threshold
    candidates = []
    for index in np.ndindex(*key.shape):
        value = key[index]
        if value == -np.inf or value < limit:
            continue
        peak = True
        for axis in range(1, key.ndim):
            before = list(index)
            before[axis] -= 1
            after = list(index)
            after[axis] += 1
            left = key[tuple(before)] if before[axis] >= 0 else -np.inf
            right = key[tuple(after)] if after[axis] < key.shape[axis] else -np.inf
            peak = peak and value > left and value >= right
        if peak:
            candidates.append((-value, index[1:], index[0]))
    candidates.sort()
    kept = []
    for _, position, kernel in candidates:
        if k is not None and len(kept) >= k:
            break
        if any(all(abs(p - q) <= e for p, q, e in zip(position, other, exclusion))
               for other, _, _ in kept):
            continue
        kept.append((position, kernel, s[(kernel,) + position]))
    return kept
