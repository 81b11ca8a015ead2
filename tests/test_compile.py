"""``python -m cosim_np compile``: compiling ahead into Numba's cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import cosim_np
from cosim_np import _compile

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cache_dir, **variables):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **variables)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True)


def test_every_public_array_function_is_compiled_ahead():
    labels = " ".join(label for label, _, _ in _compile.calls())
    for name in ("sliding_cosine", "windowed_norm", "sharpen", "cosine_similarity",
                 "pairwise_cosine", "topk_cosine", "set_similarity", "scaled_cosine",
                 "find_matches", "sliding_cosine_grad"):
        assert name in labels and name in cosim_np.__all__
    assert {dtype for _, dtype, _ in _compile.calls()} == {"float32", "float64"}
    assert {dtype for _, dtype, _ in _compile.calls(["float32"])} == {"float32"}


def test_every_call_runs_and_reports_its_progress():
    lines = []
    seconds = _compile.compile_ahead(write=lines.append)
    planned = _compile.calls()
    assert seconds > 0
    assert len(lines) == len(planned) + 2  # a heading and a closing line
    for index, (line, (label, dtype, _)) in enumerate(zip(lines[1:], planned), 1):
        assert line.startswith(f"[{index}/{len(planned)}] {label} ({dtype}): ")
        assert line.endswith(" s")


def test_a_dtype_named_twice_is_compiled_once():
    twice = [_compile.line(entry) for entry in _compile.calls(["float32", "float32", np.float32])]
    assert twice == [_compile.line(entry) for entry in _compile.calls(["float32"])]


def test_each_line_of_progress_is_shown_as_it_is_written(monkeypatch):
    """Piped (a container build, ``| tee``), the lines waited in Python's
    buffer until the end, minutes of silence (an exploratory test)."""
    import io

    class Stream(io.StringIO):
        def __init__(self):
            super().__init__()
            self.shown = []

        def flush(self):
            self.shown.append(self.getvalue().count("\n"))

    stream = Stream()
    monkeypatch.setattr(sys, "stdout", stream)
    _compile.compile_ahead(("float64",), only="sharpen")
    lines = stream.getvalue().count("\n")
    assert lines == 3 and all(count in stream.shown for count in range(1, lines + 1))


def test_the_command_fills_the_cache_that_later_processes_load(tmp_path):
    done = run("-m", "cosim_np", "compile", "--only", "sharpen", "--dtype", "float64",
               cache_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[1/1] sharpen (float64): " in done.stdout and "Done in" in done.stdout
    assert str(tmp_path) in done.stdout
    assert list(tmp_path.rglob("*.nbi")) and list(tmp_path.rglob("*.nbc"))
    later = run("-c", "import numpy as np, cosim_np; from cosim_np._cpu import sliding;"
                "cosim_np.sharpen(np.ones(3), 2.0);"
                "print(sum(sliding.sharpen_kernel.stats.cache_hits.values()),"
                "      sum(sliding.sharpen_kernel.stats.cache_misses.values()))",
                cache_dir=tmp_path)
    assert later.returncode == 0, later.stderr
    assert later.stdout.split() == ["1", "0"]  # loaded, not compiled


def test_the_command_says_where_numba_caches_when_numba_cache_dir_is_unusable(tmp_path):
    """Numba passes over a NUMBA_CACHE_DIR it cannot create or write without
    a word; the command must not claim the kernels went there."""
    (tmp_path / "a file").write_text("")
    unusable = tmp_path / "a file" / "cache"
    done = run("-m", "cosim_np", "compile", "--only", "sharpen", "--dtype", "float64",
               cache_dir=unusable)
    assert done.returncode == 0, done.stderr
    heading = done.stdout.splitlines()[0]
    assert f"NUMBA_CACHE_DIR={unusable} cannot be written to" in heading
    assert heading.startswith("Compiling cosim_np's kernels into Numba's cache (next to the "
                              "package, in the __pycache__ folders of ")


# A NUMBA_CACHE_DIR this process may read but not write, as a container's
# user or another user of a shared folder meets it (simulated: the tests may
# run as root, whom permission bits do not stop).
READ_ONLY_CACHE = """
from numba.core import caching

def unwritable(self):
    raise PermissionError(13, "Permission denied", self.get_cache_path())

def refused(self, filepath):
    raise PermissionError(13, "Permission denied", filepath)

caching.UserProvidedCacheLocator.ensure_cache_path = unwritable
caching.IndexDataCacheFile._open_for_write = refused
"""


def test_a_read_only_numba_cache_dir_is_read_and_what_it_lacks_compiled_in_memory(tmp_path):
    """Numba passes over a cache folder it cannot write: kernels compiled
    into an image's NUMBA_CACHE_DIR were all compiled again by its users
    (27.8 s against 2.7 s, an exploratory test); and where a kernel could
    not be saved (a folder of mode 1777 whose files another user owns) the
    call raised PermissionError.  Now the folder's kernels load, and the
    ones it lacks are compiled in memory, with one warning."""
    (tmp_path / "plus_one.py").write_text(
        "from cosim_np._cpu._jit import jit\n\n\n@jit\ndef plus_one(x):\n    return x + 1\n")
    paths = dict(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    filled = run("-c", "from plus_one import plus_one; print(plus_one(1.0))",
                 cache_dir=tmp_path / "cache", **paths)
    assert filled.stdout == "2.0\n", filled.stderr
    used = run("-c", READ_ONLY_CACHE + (
        "from plus_one import plus_one\n"
        "print(plus_one(1.0), plus_one(1), plus_one(True))\n"
        "stats = plus_one.stats\n"
        "print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))\n"),
        cache_dir=tmp_path / "cache", **paths)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split("\n")[:2] == ["2.0 2 2", "1 2"]  # one loaded, two compiled
    assert used.stderr.count("could not be saved in the Numba cache folder") == 1
    assert "chmod -R a+rwX" in used.stderr


def test_the_command_refuses_a_numba_cache_dir_it_can_only_read(tmp_path):
    """The kernels load from a read-only NUMBA_CACHE_DIR, but compiling ahead
    into it saves nothing: said, and the command fails."""
    filled = run("-m", "cosim_np", "compile", "--only", "sharpen", "--dtype", "float64",
                 cache_dir=tmp_path)
    assert filled.returncode == 0, filled.stderr
    done = run("-c", READ_ONLY_CACHE + (
        "import sys\nfrom cosim_np.__main__ import main\n"
        "sys.exit(main(['compile', '--only', 'sharpen', '--dtype', 'float64']))\n"),
        cache_dir=tmp_path)
    assert done.returncode == 2
    assert f"the cache lies nowhere: NUMBA_CACHE_DIR={tmp_path} can be read but not written" in (
        done.stderr)


def test_the_command_lists_and_refuses_what_matches_nothing(tmp_path):
    listed = run("-m", "cosim_np", "compile", "--list", "--dtype", "float32", cache_dir=tmp_path)
    assert listed.returncode == 0
    assert "sliding_cosine, method='fft' (and 'auto' for long kernels) (float32)" in listed.stdout
    assert "float64" not in listed.stdout
    refused = run("-m", "cosim_np", "compile", "--only", "no such function", cache_dir=tmp_path)
    assert refused.returncode == 2
    assert "no compiled function matches 'no such function'" in refused.stderr
    assert not list(tmp_path.rglob("*.nbc"))
    unlisted = run("-m", "cosim_np", "compile", "--list", "--only", "no such function",
                   cache_dir=tmp_path)  # (as the compiling would say)
    assert unlisted.returncode == 2 and unlisted.stderr == refused.stderr
    # --only narrows --list too, and matches the lines as --list prints them
    narrowed = run("-m", "cosim_np", "compile", "--list", "--only", "sharpen (float64)",
                   cache_dir=tmp_path)
    assert narrowed.returncode == 0 and narrowed.stdout.splitlines() == ["sharpen (float64)"]
    assert [_compile.line(entry) for entry in _compile.calls(only="sharpen (float64)")] == \
        ["sharpen (float64)"]


# Records each function Numba compiles, with its argument types as written
# without literal types (Literal[int](0) -> int64): a function compiled twice
# for one such signature was compiled once for a constant some caller passed
# (see cosim_np/_cpu/_jit.py, "Constants").  And whether Numba compiles its
# message for arrays of mismatched shapes (copying one array into a slice of
# another), which brings its string formatting: seconds of a first call.
_RECORD_COMPILATIONS = """
import json, re, sys
COMMON_CALLS = sys.argv.pop()
from numba.core import event
compiled = []

class Listener(event.Listener):
    def on_start(self, ev):
        func = ev.data["dispatcher"].py_func
        if "raise_with_shape_context" in func.__qualname__:
            compiled.append(["numba's shape-mismatch message", ""])
        if func.__module__.startswith("cosim_np"):
            args = str(ev.data["args"])
            args = re.sub(r"Literal\\[int\\]\\(-?\\d+\\)", "int64", args)
            args = re.sub(r"Literal\\[bool\\]\\((True|False)\\)", "bool", args)
            compiled.append([func.__module__ + "." + func.__qualname__, args])

    def on_end(self, ev):
        pass

event.register("numba:compile", Listener())
from cosim_np import _compile
_compile.compile_ahead(sys.argv[1:], write=lambda line: None)
ahead = len(compiled)
exec(COMMON_CALLS)
print(json.dumps([compiled[:ahead], compiled[ahead:]]))
"""

# Calls as users make them, on inputs larger than compiling ahead uses (real
# images are cut into bands, large products into row blocks per thread):
# after compiling ahead none of them may compile anything.
_COMMON_CALLS = """
import numpy as np
import cosim_np as c
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    img = rng.standard_normal((300, 300)).astype(dt)
    color = np.stack([img, img[::-1], img.T])
    x = rng.standard_normal(20000).astype(dt)
    c.sliding_cosine(x, x[:3]), c.sliding_cosine(x, x[:4], dilation=2)  # (one kernel each)
    c.sliding_cosine(x, x[:9], mode="same"), c.sliding_cosine(x, x[:64])
    c.sliding_cosine(x, x[:1024]), c.sliding_cosine(x, x[:256], center=True)
    c.sliding_cosine(x[:5000], x[:256])  # direct dots for a short signal
    c.sliding_cosine(np.concatenate([x, x * 1e8]), x[:1024])  # quiet beside loud
    c.sliding_cosine(np.stack([x, x]), x[:20], dilation=3, stride=2)
    c.sliding_cosine(x, np.stack([x[:20], x[20:40]]), mode="full", sharpness=1.5)
    c.sliding_cosine(x, x[:30], sharpness=2.0), c.sliding_cosine(x, x[:400], sharpness=2.0)
    c.sliding_cosine(img, img[:3, :3], axis=(0, 1), sharpness=2.0)
    c.sliding_cosine((x * 100).astype(np.int16), x[:300])
    c.find_matches(x, x[:50], k=3), c.windowed_norm(x, 50)
    rows = img[:, :200]  # (short rows: a window or a few chunks each)
    c.windowed_norm(rows, 20), c.windowed_norm(rows[:, :64], 64)
    c.sliding_cosine(rows, rows[0], method="direct"), c.sliding_cosine(rows, rows[0, :150])
    c.sliding_cosine_grad(x, x[:20], np.ones(x.size - 19, dt))
    for template in (img[:3, :3], img[:8, :8], img[:32, :32]):
        for center in (False, True):
            c.sliding_cosine(img, template, axis=(0, 1), center=center)
            c.sliding_cosine(color, np.stack([template] * 3)[None], axis=(1, 2), center=center)
    c.sliding_cosine((np.abs(img) * 50).astype(np.uint8), img[:8, :8], axis=(0, 1))
    c.sliding_cosine(img, np.stack([img[:5, :5], img[5:10, 5:10]]), axis=(0, 1))
    c.sliding_cosine(np.stack([color] * 2), color[None, :, :8, :8], axis=(2, 3))
    c.sliding_cosine(img, img[:5, :5], axis=(0, 1), mode="same", stride=2)
    c.find_matches(img, img[:8, :8], axis=(0, 1), k=5)
    c.find_matches(img, img[:32, :32], axis=(0, 1), threshold=0.5)
    c.windowed_norm(img, (5, 5), axis=(0, 1))
    c.sliding_cosine_grad(img, img[:5, :5], np.ones((296, 296), dt), axis=(0, 1))
    c.pairwise_cosine(img[:, :64]), c.pairwise_cosine(img[:64].T, img[:10, :64])
    c.topk_cosine(img[:, :64], img[:100, 1:65], 5)
    c.cosine_similarity(img[:, :64], img[:, 1:65])
    # read-only arrays (pandas' to_numpy, memory maps opened 'r'), typed apart by Numba
    ro, ri = x.copy(), img.copy()
    ro.setflags(write=False)
    ri.setflags(write=False)
    c.sliding_cosine(ro, x[:3]), c.sliding_cosine(ro, x[:64]), c.sliding_cosine(ro, x[:1024])
    c.sliding_cosine(ro, x[:256], center=True), c.find_matches(ro, x[:50], k=3)
    c.windowed_norm(ro, 50)
    c.sliding_cosine(ri, img[:3, :3], axis=(0, 1))
    c.sliding_cosine(ri, img[:8, :8], axis=(0, 1), center=True)
    c.pairwise_cosine(ri[:, :64])
"""


def test_compiling_ahead_compiles_no_function_twice_nor_error_messages(tmp_path):
    done = run("-c", _RECORD_COMPILATIONS, "float32", "float64", _COMMON_CALLS,
               cache_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    ahead, later = json.loads(done.stdout.splitlines()[-1])
    compiled = [tuple(entry) for entry in ahead]
    assert len(compiled) > 50  # (an empty cache: everything compiled here)
    twice = sorted({entry for entry in compiled if compiled.count(entry) > 1})
    assert not twice, twice
    assert ("numba's shape-mismatch message", "") not in compiled
    # what the common calls needed was compiled ahead
    assert not later, sorted({name for name, _ in later})


_FIRST_FFT_CALL = """
import json, sys
import numpy as np
from numba.core import event
compiled = []

class Listener(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Listener())
import cosim_np
from cosim_np._cpu import drivers
rng = np.random.default_rng(0)
x = rng.standard_normal(100_000)
kernel = rng.standard_normal(256)
assert drivers.choose_method("auto", 256, 1, 1, 1, x.size - 255, 255) == "fft"
cosim_np.sliding_cosine(x, kernel)
noise = list(compiled)
x[50_000:] *= 1e8  # quiet windows beside loud ones: direct dots
cosim_np.sliding_cosine(x, kernel)
loud = compiled[len(noise):]
assert drivers.choose_method("auto", 256, 1, 1, 1, 5000 - 255, 255) == "direct"
cosim_np.sliding_cosine(x[:5000], kernel)
print(json.dumps([noise, loud, compiled[len(noise) + len(loud):]]))
"""


def test_a_first_call_compiles_only_what_it_uses(tmp_path):
    # windows that all take the FFT's dots compile neither the direct dots
    # nor the plan's centered steps; long windows, by either method, only the
    # chain scans of the sums of squares
    done = run("-c", _FIRST_FFT_CALL, cache_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    noise, loud, short = json.loads(done.stdout.splitlines()[-1])
    direct = {"fft_direct_kernel", "_tile_dots", "_recompute_flagged"}
    assert "fft_kernel" in noise and not direct & set(noise)
    assert "block_references" not in noise
    assert direct <= set(loud)
    assert "direct_kernel_chains" in short
    assert not {"_tap_sumsq", "_lane_sumsq", "_tile_sumsq"} & set(noise + loud + short)
    # and the next process loads them all, the kernels compiled per scan
    # (closures over their scan) included
    again = run("-c", _FIRST_FFT_CALL, cache_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1]) == [[], [], []]


def test_numba_disable_jit_is_refused_by_name_not_run_wrong(tmp_path):
    """Run as Python (NUMBA_DISABLE_JIT=1, to debug Numba code), the kernels
    met intrinsics with no code, and past those, NumPy scalars that do not
    behave as the compiled types (float32 results wrong by 0.74): every
    kernel now refuses with the way out."""
    script = ("import numpy as np, cosim_np\n"
              "x = np.linspace(-1, 2, 60, dtype=np.float32)\n"
              "for call in (lambda: cosim_np.sliding_cosine(x, x[:5], sharpness=1.5),\n"
              "             lambda: cosim_np.cosine_similarity(np.ones((2, 3)), np.ones(3)),\n"
              "             lambda: cosim_np.pairwise_cosine(np.eye(3))):\n"
              "    try:\n"
              "        call()\n"
              "    except RuntimeError as exc:\n"
              "        print(exc)\n")
    done = run("-c", script, cache_dir=tmp_path, NUMBA_DISABLE_JIT="1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("cosim_np's kernels do not run with NUMBA_DISABLE_JIT=1") and
               "unset NUMBA_DISABLE_JIT" in line for line in lines)


def test_compiling_ahead_with_no_writable_cache_fails_saying_so(monkeypatch):
    """Where Numba can write no cache (a read-only install and home), the
    command said "Done; later processes load these kernels" and exited 0."""
    monkeypatch.setattr(_compile, "cache_path", lambda: None)
    lines = []
    try:
        _compile.compile_ahead(["float64"], "sharpen", write=lines.append)
    except ValueError as exc:
        assert str(exc).startswith("nothing can be compiled ahead: the cache lies nowhere: Numba "
                                   "finds no writable cache folder")
    else:
        raise AssertionError("compile_ahead ran with no cache to fill")
    assert lines == []
