"""The CUDA backend, side by side with PyTorch and CuPy, in one run.

* ``sliding_cosine`` on a float32 signal of ``n = 2**27`` samples for
  ``m`` in 3, 64 and 1024 (``--log2n``, ``--ms``).  The achieved bandwidth
  (signal read once, result written once) is given as a fraction of a
  measured device-to-device copy.  The times are compared with the same
  computation in PyTorch (``conv1d`` for the dots, ``avg_pool1d`` of ``x**2``
  times ``m`` for the norms: the usual recipe, not robust to loud bursts) and
  in CuPy (``cupyx.scipy.ndimage.correlate1d`` and ``uniform_filter1d``).
* ``sliding_cosine`` over two axes (template matching): a float32 image of
  ``4096 x 4096`` pixels (``--image``) and square templates of 3, 8 and 32
  (``--templates``), against ``conv2d`` with ``avg_pool2d`` of the squares
  and CuPy's ``correlate`` with ``uniform_filter``.
* ``sliding_cosine`` + ``sliding_cosine_grad`` of a multi-channel bank (the
  1-D sharpened-cosine layer's shape) against a ``conv1d`` layer and PyTorch's
  autograd.
* First, a check: ``cosim_np.torch``'s layer on CUDA tensors against CPU
  tensors (its output and every gradient, float64); a difference above
  ``1e-10`` (relative) ends the run with status 2.
* ``pairwise_cosine`` and ``topk_cosine`` (float32, N x M, D) against
  ``torch.nn.functional.normalize`` + ``torch.matmul`` (+ ``torch.topk``).

Timing: every call is run once to warm up (Numba compiles the kernels on
first use, cuDNN picks its algorithms), then ``--repeat`` times between
device-wide synchronisations; the best (minimum) time is reported.  The
warm-up runs of cosim_np's calls are printed at the end as first calls.

Exit status: 0 after a run (missing PyTorch or CuPy only leaves their
columns out), 2 with a message when there is no usable GPU (no driver, no
device, or Numba's simulator) or when the layer's check fails.  ``python benchmarks/bench_gpu.py --help``.
"""

import argparse
import os
import sys
import time

import numpy as np


def fail(message):
    print(f"bench_gpu: {message}", file=sys.stderr)
    sys.exit(2)


def optional(name):
    try:
        return __import__(name)
    except Exception:  # not installed, or built without CUDA
        return None


FIRST_CALLS = {}  # the warm-up run of each timed function: Numba's compilation included


def best_time(func, repeat, sync, first_call_as=None):
    """Best of ``repeat`` synchronised runs, after one warm-up run (timed
    under ``first_call_as`` in ``FIRST_CALLS`` when given)."""
    sync()
    start = time.perf_counter()
    func()
    sync()
    if first_call_as is not None:
        FIRST_CALLS[first_call_as] = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        func()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def copy_bandwidth(cuda, nbytes, repeat):
    src = cuda.device_array(nbytes // 4, dtype=np.float32)
    dst = cuda.device_array(nbytes // 4, dtype=np.float32)
    seconds = best_time(lambda: dst.copy_to_device(src), repeat, cuda.synchronize)
    return 2 * nbytes / seconds  # read + write


def torch_sliding(torch, signal, kernel):
    """Valid-mode cosine by conv1d and pooled squares (float32 throughout)."""
    functional = torch.nn.functional
    x = signal.view(1, 1, -1)
    k = kernel.view(1, 1, -1)
    m = kernel.numel()
    dots = functional.conv1d(x, k)
    norms = torch.sqrt(functional.avg_pool1d(x * x, m, stride=1) * m)
    return (dots / (norms * torch.linalg.norm(kernel))).view(-1)


def cupy_sliding(cupy, signal, kernel):
    from cupyx.scipy import ndimage

    m = kernel.size
    dots = ndimage.correlate1d(signal, kernel, mode="constant")
    norms = cupy.sqrt(ndimage.uniform_filter1d(signal * signal, m, mode="constant") * m)
    return dots / (norms * cupy.linalg.norm(kernel))


def with_anchors(row, kernel, args, cuda, torch, cupy, rows, torch_call, cupy_call):
    """``row`` with the same case timed in PyTorch and CuPy where they are
    there (``torch_call`` and ``cupy_call`` take the kernel on the device in
    their library's array), recorded in ``rows`` and printed."""
    if torch is not None:
        tkernel = torch.as_tensor(kernel, device="cuda")
        row["torch_ms"] = 1e3 * best_time(lambda: torch_call(tkernel), args.repeat,
                                          torch.cuda.synchronize)
    if cupy is not None:
        ckernel = cupy.asarray(kernel)
        row["cupy_ms"] = 1e3 * best_time(lambda: cupy_call(ckernel), args.repeat,
                                         cuda.synchronize)
    rows.append(row)
    report(row)


def bench_sliding(args, cuda, torch, cupy, rows):
    from cosim_np import sliding_cosine

    n = 2**args.log2n
    rng = np.random.default_rng(0)
    host = rng.standard_normal(n, dtype=np.float32)
    signal = cuda.to_device(host)
    tsignal = torch.as_tensor(host, device="cuda") if torch else None
    csignal = cupy.asarray(host) if cupy else None
    copy_bw = copy_bandwidth(cuda, host.nbytes, args.repeat)
    print(f"device-to-device copy: {copy_bw / 1e9:.0f} GB/s (read + write)")
    for m in args.ms:
        kernel = rng.standard_normal(m).astype(np.float32)
        case = f"sliding m={m}"
        ours = best_time(lambda: sliding_cosine(signal, kernel), args.repeat, cuda.synchronize,
                         case)
        moved = host.nbytes + 4 * (n - m + 1)
        row = {"case": case, "ours_ms": 1e3 * ours,
               "bandwidth": moved / ours / copy_bw}
        with_anchors(row, kernel, args, cuda, torch, cupy, rows,
                     lambda tkernel: torch_sliding(torch, tsignal, tkernel),
                     lambda ckernel: cupy_sliding(cupy, csignal, ckernel))


def torch_image(torch, image, template):
    """Valid-mode cosine over two axes by conv2d and pooled squares."""
    functional = torch.nn.functional
    kh, kw = template.shape
    x = image[None, None]
    dots = functional.conv2d(x, template[None, None])
    norms = torch.sqrt(functional.avg_pool2d(x * x, (kh, kw), stride=1) * (kh * kw))
    return (dots / (norms * torch.linalg.norm(template)))[0, 0]


def cupy_image(cupy, image, template):
    from cupyx.scipy import ndimage

    dots = ndimage.correlate(image, template, mode="constant")
    norms = cupy.sqrt(ndimage.uniform_filter(image * image, template.shape, mode="constant")
                      * template.size)
    return dots / (norms * cupy.linalg.norm(template))


def bench_images(args, cuda, torch, cupy, rows):
    """Template matching over two axes, ``--image`` squared float32 pixels
    (``torch.backends.cudnn.allow_tf32`` as PyTorch leaves it: see the
    output's first lines)."""
    from cosim_np import sliding_cosine

    rng = np.random.default_rng(2)
    host = rng.standard_normal((args.image, args.image), dtype=np.float32)
    image = cuda.to_device(host)
    timage = torch.as_tensor(host, device="cuda") if torch else None
    cimage = cupy.asarray(host) if cupy else None
    for m in args.templates:
        template = rng.standard_normal((m, m)).astype(np.float32)
        case = f"image {args.image}^2 {m}x{m}"
        row = {"case": case, "ours_ms": 1e3 * best_time(
            lambda: sliding_cosine(image, template, axis=(0, 1)), args.repeat, cuda.synchronize,
            case)}
        with_anchors(row, template, args, cuda, torch, cupy, rows,
                     lambda ttemplate: torch_image(torch, timage, ttemplate),
                     lambda ctemplate: cupy_image(cupy, cimage, ctemplate))


def bench_gradient(args, cuda, torch, rows):
    """Forward + backward of a multi-channel bank (the 1-D SCS layer's shape:
    batch 8, C_in 8, C_out 32, m 9, n = 10**5, float32): ``sliding_cosine``
    and ``sliding_cosine_grad`` on device arrays, against the conv1d layer
    (dots by ``conv1d``, norms by ``conv1d`` of the squares with ones) and
    autograd, every gradient (signal, kernel, sharpness, noise floor)."""
    from cosim_np import sliding_cosine, sliding_cosine_grad

    batch, c_in, c_out, m, n = 8, 8, 32, 9, 10**5
    rng = np.random.default_rng(1)
    host = rng.standard_normal((batch, c_in, n)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in, m)).astype(np.float32)
    signal = cuda.to_device(host)
    g = cuda.to_device(np.ones((batch, c_out, n - m + 1), np.float32))
    options = dict(sharpness=1.2, noise_floor=0.01)

    def ours():
        sliding_cosine(signal, weight, **options)
        return sliding_cosine_grad(signal, weight, g, **options)

    case = f"grad {batch}x{c_in}->{c_out} m={m}"
    row = {"case": case, "ours_ms": 1e3 * best_time(ours, args.repeat, cuda.synchronize, case)}
    if torch is not None:
        conv1d = torch.nn.functional.conv1d
        x = torch.as_tensor(host, device="cuda").requires_grad_()
        w = torch.as_tensor(weight, device="cuda").requires_grad_()
        p = torch.tensor(1.2, device="cuda", requires_grad=True)
        q = torch.tensor(0.01, device="cuda", requires_grad=True)
        ones = torch.ones((1, c_in, m), device="cuda")

        def theirs():
            khat = w / w.flatten(1).norm(dim=1)[:, None, None]
            s = conv1d(x, khat) / (torch.sqrt(conv1d(x * x, ones)) + q)
            out = torch.sign(s) * s.abs() ** (p * p)
            out.sum().backward()

        row["torch_ms"] = 1e3 * best_time(theirs, args.repeat, torch.cuda.synchronize)
        rows.append(row)
        report(row)
        # the adapter on CUDA tensors: the layer's forward + backward
        from cosim_np.torch import SharpenedCosine1d

        layer = SharpenedCosine1d(c_in, c_out, m, p_init=1.2).cuda()

        def layer_step():
            layer.zero_grad()
            layer(x.detach()).sum().backward()

        row = {"case": f"layer {batch}x{c_in}->{c_out} m={m}",
               "ours_ms": 1e3 * best_time(layer_step, args.repeat, torch.cuda.synchronize),
               "torch_ms": row["torch_ms"]}
    rows.append(row)
    report(row)


def check_layer_on_cuda(torch):
    """The adapter on CUDA tensors against CPU tensors (a small float64
    layer: output and every gradient); CI has no GPU to run this on.
    Returns the largest difference."""
    from cosim_np.torch import SharpenedCosine1d

    torch.manual_seed(0)
    cpu = SharpenedCosine1d(3, 4, 5, padding="same", center=True, stride=2, p_init=1.3,
                            q_init=0.2, dtype=torch.float64)
    gpu = SharpenedCosine1d(3, 4, 5, padding="same", center=True, stride=2,
                            dtype=torch.float64).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 3, 2000, dtype=torch.float64)
    xg = x.cuda().requires_grad_()
    x.requires_grad_()
    outs = [model(data) for model, data in ((cpu, x), (gpu, xg))]
    for out in outs:
        (out * out).sum().backward()
    pairs = [(outs[0], outs[1]), (x.grad, xg.grad)] + [
        (a.grad, b.grad) for a, b in zip(cpu.parameters(), gpu.parameters())]
    with torch.no_grad():
        worst = max(float((a - b.cpu()).abs().max() / (1 + a.abs().max())) for a, b in pairs)
    print(f"layer on CUDA tensors against CPU tensors: largest relative difference {worst:.2e}")
    return worst


def bench_embedding(args, cuda, torch, rows):
    from cosim_np import pairwise_cosine, topk_cosine

    if torch is None:
        print("pairwise/top-k: skipped (PyTorch with CUDA is the anchor; not available)")
        return
    functional = torch.nn.functional
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(args.rows, args.dim, device="cuda", generator=gen)
    b = torch.randn(args.rows, args.dim, device="cuda", generator=gen)
    sync = torch.cuda.synchronize

    def torch_pairwise():
        return functional.normalize(a, dim=1) @ functional.normalize(b, dim=1).T

    cases = [
        ("pairwise", lambda: pairwise_cosine(a, b), torch_pairwise),
        (f"topk k={args.k}", lambda: topk_cosine(a, b, args.k),
         lambda: torch.topk(torch_pairwise(), args.k, dim=1)),
    ]
    for name, ours, theirs in cases:
        row = {"case": f"{name} {args.rows}x{args.rows}x{args.dim}",
               "ours_ms": 1e3 * best_time(ours, args.repeat, sync),
               "torch_ms": 1e3 * best_time(theirs, args.repeat, sync)}
        rows.append(row)
        report(row)


def report(row):
    parts = [f"{row['case']:<28}", f"ours {row['ours_ms']:9.3f} ms"]
    if "bandwidth" in row:
        parts.append(f"{100 * row['bandwidth']:5.1f}% of copy bandwidth")
    for other in ("torch", "cupy"):
        if f"{other}_ms" in row:
            parts.append(f"{other} {row[f'{other}_ms']:9.3f} ms "
                         f"(ours/{other} = {row['ours_ms'] / row[f'{other}_ms']:.2f})")
    print("  ".join(parts), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log2n", type=int, default=27, help="signal length 2**LOG2N")
    parser.add_argument("--ms", type=int, nargs="+", default=[3, 64, 1024], help="kernel lengths")
    parser.add_argument("--rows", type=int, default=20000, help="N = M for pairwise/top-k")
    parser.add_argument("--dim", type=int, default=256, help="D for pairwise/top-k")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best is reported)")
    parser.add_argument("--image", type=int, default=4096, help="image side for --templates")
    parser.add_argument("--templates", type=int, nargs="+", default=[3, 8, 32],
                        help="square template sides (0: no image rows)")
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args(argv)

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        fail("NUMBA_ENABLE_CUDASIM is set: simulator timings mean nothing; unset it.")
    try:
        from numba import cuda
    except Exception as exc:
        fail(f"numba.cuda cannot be imported ({exc}).")
    if not cuda.is_available():
        fail("no CUDA GPU and driver found (numba.cuda.is_available() is False); nothing to time.")
    torch = optional("torch")
    if torch is not None and not torch.cuda.is_available():
        torch = None
    cupy = optional("cupy")
    device = cuda.get_current_device()
    print(f"GPU: {device.name.decode() if isinstance(device.name, bytes) else device.name}; "
          f"PyTorch: {torch.__version__ if torch else 'absent'}"
          f"{f' (cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32})' if torch else ''}; "
          f"CuPy: {cupy.__version__ if cupy else 'absent'}")
    rows = []
    if torch is not None and check_layer_on_cuda(torch) > 1e-10:
        fail("the layer on CUDA tensors disagrees with the CPU (above)")
    bench_sliding(args, cuda, torch, cupy, rows)
    if 0 not in args.templates:
        bench_images(args, cuda, torch, cupy, rows)
    bench_gradient(args, cuda, torch, rows)
    if not args.skip_embedding:
        bench_embedding(args, cuda, torch, rows)
    print("first calls (warm-up run, compilation included): " + ", ".join(
        f"{case} {seconds:.2f} s" for case, seconds in FIRST_CALLS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
