"""Numba kernels of ``sliding_cosine_grad``: the gradients of ``L = sum(g *
out)`` with respect to the signal and the kernels, from per-window
coefficients the driver forms (``_cpu.drivers.sliding_cosine_grad``).

With ``s`` a window's unsharpened cosine, ``n`` its norm (centered with
``center``), ``q`` the noise floor and ``gamma = g * d out / d s``::

    dL/dw = a * khat - c * w_c / n,      a = gamma / (n + q),  c = a * s
    dL/dk = (sum_i a_i w_c,i - (sum_i gamma_i s_i) khat) / ||k_c||

where ``w_c`` is the window (less its mean with ``center``; ``khat`` is then
the unit centered kernel, and both terms already have zero mean).  The rows
arrive padded: ``x`` is ``(B, C, L)`` float64 and window ``i`` is ``x[b, :,
i : i + (m-1)*d + 1 : d]`` for ``i < a.shape[2]``.  Every sum runs in a fixed
order in float64; nothing here validates.
"""


from ._jit import jit


@jit
def window_means(x, m, d, means):
    """``means[b, i]``: the mean of window ``i`` over its channels and taps,
    as the first sample plus the mean of the differences from it (a
    constant window gets its value exactly; an offset costs no digits of
    the spread)."""
    nchan = x.shape[1]
    nwin = means.shape[1]
    count = m * nchan
    for b in range(x.shape[0]):
        dest = means[b]
        first = x[b, 0, :nwin]
        for i in range(nwin):
            dest[i] = 0.0
        for c in range(nchan):
            for j in range(m):
                taps = x[b, c, j * d : j * d + nwin]
                for i in range(nwin):
                    dest[i] += taps[i] - first[i]
        for i in range(nwin):
            dest[i] = first[i] + dest[i] / count


@jit
def signal_grad(x, khat, a, c, norms, means, d, grad):
    """``grad[b, ch, p]`` (zeroed here): the gradient with respect to sample
    ``p`` of the padded rows, ``sum over windows i holding it as tap j, and
    kernels k, of a[b, k, i] * khat[k, ch, j] - c[b, k, i] * (x[b, ch, p] -
    means[b, i]) / norms[b, i]`` (``means`` all zero without ``center``);
    kernels, then taps, in order.  ``x / n`` before the product: the
    coefficient ``c`` grows as ``1 / n``, so their product stays in range
    as the true gradient does."""
    nker, nchan, m = khat.shape
    nwin = a.shape[2]
    for b in range(x.shape[0]):
        mean = means[b]
        norm = norms[b]
        for ch in range(nchan):
            dest = grad[b, ch]
            for p in range(dest.size):
                dest[p] = 0.0
            for k in range(nker):
                ak = a[b, k]
                ck = c[b, k]
                for j in range(m):
                    weight = khat[k, ch, j]
                    taps = x[b, ch, j * d : j * d + nwin]
                    part = dest[j * d : j * d + nwin]
                    for i in range(nwin):
                        part[i] += ak[i] * weight - ck[i] * ((taps[i] - mean[i]) / norm[i])


@jit
def kernel_sums(x, a, means, d, sums):
    """``sums[k, ch, j] = sum over rows b and windows i of a[b, k, i] *
    (x[b, ch, i + j d] - means[b, i])``, in four chains of windows."""
    nker, nchan, m = sums.shape
    nwin = a.shape[2]
    for k in range(nker):
        for ch in range(nchan):
            for j in range(m):
                s0 = s1 = s2 = s3 = 0.0
                for b in range(x.shape[0]):
                    ak = a[b, k]
                    mean = means[b]
                    taps = x[b, ch, j * d : j * d + nwin]
                    i = 0
                    while i + 4 <= nwin:
                        s0 += ak[i] * (taps[i] - mean[i])
                        s1 += ak[i + 1] * (taps[i + 1] - mean[i + 1])
                        s2 += ak[i + 2] * (taps[i + 2] - mean[i + 2])
                        s3 += ak[i + 3] * (taps[i + 3] - mean[i + 3])
                        i += 4
                    for i in range(i, nwin):
                        s0 += ak[i] * (taps[i] - mean[i])
                sums[k, ch, j] = (s0 + s1) + (s2 + s3)
