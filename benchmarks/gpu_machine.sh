#!/usr/bin/env bash
# The checks and timings owed on a lent GPU machine, in one call that fits its
# lease (RESULTS.md, "GPU"): the CUDA tests on the real GPU, then
# bench_gpu.py, on one half of the CPU cores; the CPU benchmarks (images, the
# signal corpus) on the other half at the same time, so that the CPU type of
# that machine is in the tables too.  Logs go to $OUT (or ./gpu_logs).
#
#   bash benchmarks/gpu_machine.sh [SECONDS] [PARTS]
#
# SECONDS: the whole budget, default 540; PARTS: "gpu cpu" (default), "gpu" or
# "cpu" (then that part has every core).  Wheels in .whl/ are installed first
# (into /tmp/site, ahead of the machine's own packages), since such a machine
# may have no package registry: ducc0 (the 'fft' extra), and numpy 2.4 where
# the machine's numba-cuda cannot import with its numpy (numba-cuda 0.30.4
# registers np.row_stack, which numpy 2.5 removed).
set -u
budget=${1:-540}
parts=${2:-gpu cpu}
out=${OUT:-gpu_logs}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac  # (cpu_part works from benchmarks/)
mkdir -p "$out"
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
cores=$(nproc)
half=$((cores / 2))
gpu_cores="$half-$((cores - 1))"
cpu_cores="0-$((half - 1))"
case "$parts" in gpu) gpu_cores="0-$((cores - 1))" ;; cpu) cpu_cores="0-$((cores - 1))" ;; esac
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    lscpu | grep -E "Model name|^CPU\(s\)|Thread|L3|Flags" | cut -c1-300
    python3 -c "
import numpy, scipy, numba, sys
print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'scipy', scipy.__version__,
      'numba', numba.__version__)
for name in ('numba_cuda', 'torch', 'cupy', 'cv2', 'skimage', 'ducc0', 'hypothesis', 'pytest'):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:
        print(name, 'absent', exc)
from numba import cuda
print('cuda available', cuda.is_available())
cuda.detect()
"
} > "$out/env.log" 2>&1

gpu_part() {
    # Several workers (pytest-xdist, where installed): one process compiles
    # the kernels and the CPU references for 137 tests in about 6 minutes.
    # SIGINT at the limit: pytest stops and still reports the failures so far.
    local workers=""
    python3 -c "import xdist" 2>/dev/null && workers="-n $(( half < 6 ? half : 6 ))"
    COSIM_REAL_GPU=1 timeout -s INT -k 20 $(( $(left) * 50 / 100 )) taskset -c "$gpu_cores" \
        python3 -m pytest tests -m cuda $workers -q -rfE --tb=short -p no:cacheprovider \
        --durations=15 --maxfail=20 > "$out/pytest_cuda.log" 2>&1
    echo "pytest rc=$?" >> "$out/pytest_cuda.log"
    timeout $(( $(left) - 15 )) taskset -c "$gpu_cores" \
        python3 benchmarks/bench_gpu.py --repeat 5 > "$out/bench_gpu.log" 2>&1
    echo "bench_gpu rc=$?" >> "$out/bench_gpu.log"
}

cpu_part() {
    cd benchmarks || return
    timeout $(( $(left) * 40 / 100 )) taskset -c "$cpu_cores" \
        python3 bench_images.py --repeat 3 > "$out/bench_images.log" 2>&1
    echo "bench_images rc=$?" >> "$out/bench_images.log"
    timeout $(( $(left) - 15 )) taskset -c "$cpu_cores" \
        python3 bench_sliding.py --signals --dtype float32 --threads 1 --repeat 2 \
        > "$out/bench_signals.log" 2>&1
    echo "bench_sliding rc=$?" >> "$out/bench_signals.log"
}

case "$parts" in *gpu*) gpu_part & ;; esac
case "$parts" in *cpu*) cpu_part & ;; esac
wait
tail -n 5 "$out"/*.log
