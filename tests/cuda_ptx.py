"""Compile every CUDA kernel for the real target (PTX through NVVM), no GPU
needed: catches what the simulator, which runs kernels as Python, cannot
(unsupported constructs, casts, typing).  Run as a script with NVVM findable
(``CUDA_HOME`` pointing at a CUDA toolkit, or ``pip install
nvidia-cuda-nvcc-cu12`` and ``CUDA_HOME=.../site-packages/nvidia/cuda_nvcc``);
``tests/test_cuda.py`` runs it when it finds one.  Prints one line per kernel
and signature; exits 1 on the first failure."""

import os
import sys
from types import SimpleNamespace


def flat(t):
    return t[::1]


def signatures():
    from numba import types

    f64, i64, i8, b1 = types.float64, types.int64, types.int8, types.boolean
    inputs = (types.float16, types.float32, types.float64, types.int8, types.uint16,
              types.int64, types.boolean)
    outputs = (types.float16, types.float32, types.float64)
    for x in inputs:
        geometry = (flat(x), flat(i64), i64, i64, i64, i64, i64)  # x roff cs nchan ts n pl
        yield "window_sumsq", geometry + (i64, i64, f64[:, ::1])
        yield "window_m2", geometry + (i64, i64, f64[:, ::1], f64[:, ::1])
        yield "window_means", geometry + (i64, i64, f64[:, ::1])
        yield "grad_kernel_sums", geometry + (i64, f64[:, :, ::1], f64[:, ::1], b1, i64,
                                              f64[:, :, :, ::1])
        yield "grad_coefficients", (f64[:, :, ::1], f64[:, ::1], flat(x), flat(i64), i64, i64,
                                    i64, flat(i8), f64, f64, b1, f64[:, :, ::1], f64[:, :, ::1],
                                    f64[:, ::1], f64[:, ::1])
        yield "sharpen", (flat(x), i64, flat(i64), flat(i64), f64, flat(types.float64))
        yield "row_stats", (x[:, :], flat(f64), flat(f64))
        yield "cosine_pairs", (flat(x), i64, flat(i64), flat(i64), flat(x), i64, flat(i64),
                               flat(i64), flat(i64), f64, f64, flat(f64))
        for out in outputs:
            outs = (flat(out), flat(i64), i64, i64)
            yield "finish_norms", (f64[:, ::1],) + geometry[:7] + (i64, i64, b1, b1, i64,
                                                                  flat(out), flat(i64), i64)
            yield "sliding_cosine", geometry + (f64[:, :, ::1], flat(i8), i64, i64, f64[:, ::1], b1,
                                                b1, f64, f64, f64, i64) + outs
            yield "grad_signal", geometry + (f64[:, :, ::1], i64, f64[:, :, ::1], f64[:, ::1],
                                             f64[:, ::1], f64[:, ::1], b1) + outs
            matrices = (x[:, :], flat(f64), flat(f64)) * 2
            yield "pairwise", matrices + (b1, f64, b1, out[:, ::1])
            per_axis = (flat(i64),) * 7  # strides sizes pads m d stride nout
            spatial = (flat(x), flat(i64), i64, i64) + per_axis
            yield "spatial_windows", spatial + (f64[:, ::1], flat(i8), b1, b1, f64, f64, f64,
                                                flat(out), flat(i64), i64, flat(i64))
            yield "spatial_grad_signal", spatial + (f64[:, ::1], f64[:, :, ::1]) + (
                f64[:, ::1],) * 3 + (b1, flat(out), flat(i64), i64, flat(i64))
        spatial = (flat(x), flat(i64), i64, i64) + (flat(i64),) * 7
        yield "spatial_means", spatial + (f64[:, ::1],)
        yield "spatial_grad_kernel_sums", spatial + (f64[:, :, ::1], f64[:, ::1], b1, i64,
                                                     f64[:, :, ::1])
    matrices = (f64[:, :], flat(f64), flat(f64)) * 2
    yield "topk_tiles", matrices + (b1, b1, f64, b1, i64, f64[:, :, ::1], i64[:, :, ::1])
    for out in outputs:
        yield "topk_merge", (f64[:, :, ::1], i64[:, :, ::1], i64, out[:, ::1], i64[:, ::1])
    yield "chunk_sums", (f64[:, ::1], i64, f64[:, ::1])
    yield "fill", (flat(f64), f64)
    yield "fill", (flat(i64), i64)


def main():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    from numba import cuda
    from numba.cuda import dispatcher

    from cosim_np._cuda import kernels

    # Device functions are compiled for the current device's compute
    # capability: stand in for the GPU this machine may lack.
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(8, 0))
    for name, sig in signatures():
        kernel = getattr(kernels, name)
        try:
            cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
        except Exception as exc:  # report which one, then fail
            print(f"FAIL {name}{sig}: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok   {name}{tuple(str(t) for t in sig)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
