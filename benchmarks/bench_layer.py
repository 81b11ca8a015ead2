"""A sharpened-cosine-similarity layer: cosim_np against PyTorch, side by side
in one run (issue 17, item 3).

Both compute, for a batch of multi-channel signals ``x`` ``(B, C_in, n)``,
a kernel ``weight`` ``(C_out, C_in, m)``, a sharpness per output channel
``p`` and a noise floor ``q**2``::

    s = <w, khat> / (||w|| + q**2),   out = sign(s) |s| ** (p**2)

* **PyTorch**: the dots by ``conv1d`` with the unit kernels, the window norms
  by ``conv1d`` of the squares with ones (the recipe of the SCS layers),
  autograd for the backward;
* **cosim_np**: ``cosim_np.torch.SharpenedCosine1d`` (the forward is
  ``sliding_cosine``, the backward ``sliding_cosine_grad``).

Rows: forward alone, and forward + backward of ``out.sum()`` (gradients of
the input, the kernel, ``p`` and ``q``), float32, best of ``--repeat`` runs
after a warm-up, interleaved; ratio = PyTorch / cosim_np (above 1: cosim_np
is faster).  Threads: ``torch.set_num_threads`` and ``numba.set_num_threads``
both.

``--images``: the 2-D layer (issue 18), ``SharpenedCosine2d`` against the
same recipe with ``conv2d``, on ``(B, C_in, n, n)`` images (noise, or crops
of scikit-image's photographs, ``corpus.image``).

Usage::

    python benchmarks/bench_layer.py                 # the issue's shapes, one and two threads
    python benchmarks/bench_layer.py --quick         # a smoke test
    python benchmarks/bench_layer.py --images        # the 2-D layer
    python benchmarks/bench_layer.py --images --products   # the bound of its dots

``--products``: the bound of the float64 sums: the layer's dots as one
BLAS product each way (its unit kernels ``(C_out, C_in m m)`` times the
windows as columns, float64 and float32, one thread), the fastest any
layout of them can run at that precision.
"""

import argparse

import numba
import numpy as np
from bench_sliding import best_times, cpu_model  # (this folder: run as benchmarks/bench_layer.py)

SHAPES = (  # (B, C_in, C_out, m, n)
    (8, 8, 32, 9, 10**5),
    (8, 1, 64, 128, 10**5),
)
IMAGE_SHAPES = (  # (B, C_in, C_out, m, n): m x m kernels over n x n images
    (8, 16, 32, 3, 128),
)


def torch_layer(torch, weight, p, q):
    """The conv1d formulation of the layer (conv2d for 2-D kernels),
    differentiable by autograd."""
    images = weight.dim() == 4
    conv = torch.nn.functional.conv2d if images else torch.nn.functional.conv1d
    ones = torch.ones((1,) + tuple(weight.shape[1:]), dtype=weight.dtype)
    spatial = (None,) * (weight.dim() - 1)

    def forward(x):
        khat = weight / weight.flatten(1).norm(dim=1)[(slice(None),) + spatial]
        norms = torch.sqrt(conv(x * x, ones))
        s = conv(x, khat) / (norms + q * q)
        return torch.sign(s) * s.abs() ** (p[(slice(None),) + spatial[1:]] ** 2)

    return forward


def layer_input(shape, signal):
    """The layer's input ``(B, C_in, n)``, float32: unit noise, or
    (``signal="corpus"``) channel ``c`` of row ``b`` a signal of the
    realistic corpus (``benchmarks/corpus.py``), the classes in turn."""
    batch, c_in, _, _, n = shape
    if signal == "noise":
        return np.random.default_rng(0).standard_normal((batch, c_in, n)).astype(np.float32)
    import corpus

    classes = corpus.available()
    return np.stack([[corpus.make(classes[(b * c_in + c) % len(classes)], n, np.float32,
                                  seed=b * c_in + c) for c in range(c_in)]
                     for b in range(batch)])


def image_input(shape, signal):
    """The 2-D layer's input ``(B, C_in, n, n)``, float32: unit noise, or
    (``signal="corpus"``) crops of the photographs (``corpus.image``)."""
    batch, c_in, _, _, n = shape
    if signal == "noise":
        return np.random.default_rng(0).standard_normal((batch, c_in, n, n)).astype(np.float32)
    import corpus

    pictures = [corpus.image(name, 512) for name in corpus.IMAGES[1:]]
    rng = np.random.default_rng(1)
    crops = [pictures[(b * c_in + c) % len(pictures)][i : i + n, j : j + n]
             for b in range(batch) for c in range(c_in)
             for i, j in [rng.integers(0, 512 - n, 2)]]
    return np.stack(crops).reshape(batch, c_in, n, n).astype(np.float32)


def run(shape, threads, repeat, signal="noise", images=False):
    import torch

    from cosim_np.torch import SharpenedCosine1d, SharpenedCosine2d

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    batch, c_in, c_out, m, n = shape
    torch.manual_seed(0)
    layer = SharpenedCosine2d if images else SharpenedCosine1d
    ours = layer(c_in, c_out, m, p_init=1.2, q_init=0.1)
    weight = ours.weight.detach().clone().requires_grad_()
    p = ours.p.detach().clone().requires_grad_()
    q = ours.q.detach().clone().requires_grad_()
    theirs = torch_layer(torch, weight, p, q)
    data = image_input(shape, signal) if images else layer_input(shape, signal)
    x = torch.from_numpy(data).requires_grad_()

    def forward(layer):
        def call():
            with torch.no_grad():
                layer(x)
        return call

    def both(layer, params):
        def call():
            for tensor in params + [x]:
                tensor.grad = None
            layer(x).sum().backward()
        return call

    worst = float(np.max(np.abs(ours(x).detach().numpy() - theirs(x).detach().numpy())))
    times = best_times([forward(theirs), forward(ours), both(theirs, [weight, p, q]),
                        both(ours, list(ours.parameters()))], repeat)
    return times, worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 10**4, one thread")
    parser.add_argument("--images", action="store_true", help="the 2-D layer (IMAGE_SHAPES)")
    parser.add_argument("--signals", nargs="+", default=["noise", "corpus"],
                        choices=["noise", "corpus"],
                        help="the input: unit noise, and the corpus's classes, one per channel")
    parser.add_argument("--products", action="store_true",
                        help="time the layer's dots as BLAS products (the float64 bound)")
    args = parser.parse_args()
    if args.products:
        products(IMAGE_SHAPES if args.images else SHAPES, args.repeat)
        return
    import torch

    import cosim_np

    shapes = IMAGE_SHAPES if args.images else SHAPES
    if args.quick:
        shapes = tuple(shape[:4] + (64 if args.images else 10**4,) for shape in shapes)
        args.threads = [1]
    print(f"cosim_np {cosim_np.__version__}, numba {numba.__version__}, torch {torch.__version__}")
    print(f"CPU: {cpu_model()}")
    kind = "2-D (n x n images, m x m kernels)" if args.images else "1-D"
    print(f"\nSCS layer, {kind}, float32, best of the runs; ratio = PyTorch / cosim_np")
    print(f"{'B':>3}{'C_in':>5}{'C_out':>6}{'m':>5}{'n':>8}{'thr':>4} {'input':>7}  {'pass':<18}"
          f"{'PyTorch ms':>11}{'cosim_np ms':>12}{'ratio':>7}")
    for shape in shapes:
        for signal in args.signals:
            for threads in args.threads:
                report(shape, threads, signal,
                       *run(shape, threads, args.repeat, signal, args.images))


def products(shapes, repeat):
    """The layer's forward dots as BLAS products of ``(C_out, C_in m^r)``
    unit kernels and 2**14 windows as columns, float64 and float32, one
    thread: the rate, and what every window of the shape costs at it."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_model()}; one thread; the forward's dots as one product")
    for batch, c_in, c_out, m, n in shapes:
        r = 2 if shapes is IMAGE_SHAPES else 1
        taps = c_in * m**r
        count = batch * c_out * taps * (n - m + 1) ** r
        for dtype in (np.float64, np.float32):
            kernels = rng.standard_normal((c_out, taps)).astype(dtype)
            columns = rng.standard_normal((taps, 1 << 14)).astype(dtype)
            out = np.empty((c_out, columns.shape[1]), dtype)
            with threadpool_limits(1):
                (best,) = best_times([lambda: np.matmul(kernels, columns, out=out)], repeat)
            rate = c_out * taps * columns.shape[1] / best
            print(f"  {(batch, c_in, c_out, m, n)} {np.dtype(dtype).name}: {rate / 1e9:.1f} "
                  f"GMAC/s; the shape's {count / 1e6:.0f} M products {count / rate * 1e3:.1f} ms")


def report(shape, threads, signal, times, worst):
    """The two lines of one shape, thread count and input."""
    t_fwd, o_fwd, t_both, o_both = times
    head = ("".join(f"{v:>{w}}" for v, w in zip(shape, (3, 5, 6, 5, 8))) + f"{threads:>4}"
            + f" {signal:>7}")
    print(f"{head}  {'forward':<18}{t_fwd * 1e3:>11.1f}{o_fwd * 1e3:>12.1f}"
          f"{t_fwd / o_fwd:>7.2f}")
    print(f"{head}  {'forward + backward':<18}{t_both * 1e3:>11.1f}{o_both * 1e3:>12.1f}"
          f"{t_both / o_both:>7.2f}   (largest difference of the outputs {worst:.1e})")


if __name__ == "__main__":
    main()
