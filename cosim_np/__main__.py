"""Command line: ``python -m cosim_np demo [--plot FILE]``,
``python -m cosim_np compile [--dtype ...] [--only TEXT] [--list]`` and
``python -m cosim_np match SIGNAL KERNEL [--k N] [--threshold T] ...``."""

import argparse
import sys

import numpy as np


def main(argv=None):
    try:
        return _main(argv)
    except BrokenPipeError:  # (its reader stopped reading, as head does: stop quietly)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _file_name(text):
    """An option's file name: not empty (an empty one wrote nothing, silently)."""
    if not text:
        raise argparse.ArgumentTypeError("needs a file name, got ''")
    return text


def _main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m cosim_np",
        description="cosim_np from the command line: the seed-000 demo, compiling the kernels "
                    "ahead, and finding where a kernel matches a signal in files.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the seed-000 motif experiment (A-E)",
        description="The seed-000 experiment: a signal holding five motifs (the kernel [1, 2, 3] "
                    "itself, negated, downscaled, a constant [2, 2, 2] and reversed) scored by "
                    "plain correlation and by the sliding cosine at p = 1 and p = 9; prints each "
                    "motif's peak response and what the table shows.")
    demo.add_argument("--plot", metavar="FILE", type=_file_name,
                      help="also write the figure to FILE (needs matplotlib)")
    ahead = commands.add_parser(
        "compile", help="compile the kernels of the common calls into Numba's on-disk cache",
        description="Compile ahead, into Numba's cache, every kernel that the common calls of "
                    "each public function use, so that no later process pays for compilation "
                    "(containers, HPC images, notebooks). The cache lies in NUMBA_CACHE_DIR when "
                    "that is set, else next to the installed package where its folder is "
                    "writable, else in Numba's per-user cache folder (~/.cache/numba): set "
                    "NUMBA_CACHE_DIR, when building an image and when running it, for kernels "
                    "that one user compiles and others load (they need only read it; to let "
                    "them add what they compile, chmod -R a+rwX it, without the sticky bit).")
    ahead.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                       choices=["float32", "float64"], help="input dtypes (default: both)")
    ahead.add_argument("--only", metavar="TEXT", help="only the functions whose line contains TEXT")
    ahead.add_argument("--list", action="store_true", help="list what would be compiled, and stop")
    match = commands.add_parser(
        "match", help="find where a kernel matches a signal (files: .npy, .csv, .txt, .wav)",
        description="Find where KERNEL matches SIGNAL (find_matches): greedy best-first peaks of "
                    "the sliding cosine with an exclusion zone. Files: .npy (one signal row, or "
                    "kernel of a bank, per row: samples along the last axis), .csv or .txt (one "
                    "column per signal row or kernel, numbers only: no header row) and .wav (one "
                    "signal row per channel). Prints the table of matches; --out writes it as CSV.")
    match.add_argument("signal", metavar="SIGNAL", help="the signal file")
    match.add_argument("kernel", metavar="KERNEL", help="the kernel file (several kernels: a bank)")
    match.add_argument("--k", type=int, metavar="N", help="at most N matches per signal row")
    match.add_argument("--threshold", type=float, metavar="T",
                       help="keep matches whose key is >= T: |score|, the score with --sign "
                            "positive, minus the score with --sign negative (0.8 keeps scores "
                            "<= -0.8)")
    match.add_argument("--sharpness", type=float, default=1.0, metavar="P", help="sharpness p (default 1)")
    match.add_argument("--exclusion", type=int, metavar="E",
                       help="no two matches within E windows (default: half the kernel's span)")
    match.add_argument("--sign", choices=["both", "positive", "negative"], default="both",
                       help="which matches count (default: both signs)")
    match.add_argument("--mode", choices=["valid", "same", "full", "causal"], default="valid",
                       help="the windows (default: valid)")
    match.add_argument("--center", action="store_true",
                       help="Pearson's correlation: each window and the kernel less their means "
                            "(matches riding on an offset or a baseline)")
    match.add_argument("--out", metavar="FILE", type=_file_name, help="write the matches to FILE (.csv or .txt) as CSV")
    match.add_argument("--plot", metavar="FILE", type=_file_name,
                       help="also draw the matches to FILE (needs matplotlib); of a signal of "
                            "several rows, the first row's")
    args = parser.parse_args(_negative_numbers(sys.argv[1:] if argv is None else argv))

    import numba

    if numba.config.DISABLE_JIT:  # (each kernel would refuse, in a traceback)
        {"match": match, "compile": ahead, "demo": demo}[args.command].error(
            "NUMBA_DISABLE_JIT is set: cosim_np's kernels do not run as Python (they would lose "
            "the compiled arithmetic they are written for); unset NUMBA_DISABLE_JIT")
    # (errors of a command's arguments are said with that command's usage, as argparse's own)
    if args.command == "match":
        return _match(args, match)
    if args.command == "compile":
        from . import _compile

        if args.list:
            entries = _compile.calls(args.dtype, args.only)
            if not entries:  # (as compiling them would say)
                ahead.error(f"no compiled function matches {args.only!r}; see 'python -m "
                            "cosim_np compile --list'.")
            for entry in entries:
                print(_compile.line(entry))
            return 0
        try:
            _compile.compile_ahead(args.dtype, args.only)
        except ValueError as exc:
            ahead.error(str(exc))
        return 0

    from . import demo as experiment

    path = args.plot and _plot_path(args.plot, demo, "demo.png")
    if path:  # (before the table: the command fails as a whole)
        _check_output(path, "--plot", demo)
    print(experiment.format_table())
    if path:
        try:
            experiment.plot(path)
        except (OSError, ValueError, RuntimeError) as exc:  # (RuntimeError: .pgf without TeX)
            demo.error(f"cannot write --plot file {path!r}: {exc}")
        print(f"\nfigure written to {path}")
    return 0


def _read(path, name, parser):
    """A signal or kernel file as an array: rows along the first axis, samples
    along the last (a text or sound file's columns are rows; a .npy file is
    taken as NumPy lays it out, memory-mapped where it is larger than
    ``config.CLI_MEMORY_MAP_BYTES``: a read-only array, for which Numba
    compiles kernels apart, as ``compile`` does for the common calls)."""
    import os

    from ._core import config

    if os.path.isdir(path):
        parser.error(f"{name} file {path!r} is a folder; name a file in it")
    if not os.path.isfile(path):
        parser.error(f"{name} file {path!r} does not exist")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            mapped = os.path.getsize(path) > config.CLI_MEMORY_MAP_BYTES
            data = np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            import warnings

            with warnings.catch_warnings():  # (an empty file: said below, by name)
                warnings.filterwarnings("ignore", "loadtxt: input contained no data")
                # (utf-8-sig: the byte-order mark a spreadsheet writes is no number)
                data = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2,
                                  encoding="utf-8-sig")
        elif suffix == ".wav":
            data = _read_wav(path, name, parser)
        else:
            parser.error(f"{name} file {path!r}: unknown type {suffix or '(no suffix)'}; "
                         "use .npy, .csv, .txt or .wav")
    except (ValueError, OSError, EOFError) as exc:  # (EOFError: an empty .npy file)
        hint = (" (a .csv file holds numbers separated by commas, a .txt file numbers "
                "separated by spaces or tabs; no header row)"
                if suffix in (".csv", ".txt") and "could not convert string" in str(exc) else "")
        parser.error(f"cannot read {name} file {path!r}: {exc}{hint}")
    if data.size == 0:
        parser.error(f"{name} file {path!r} holds no samples (shape {data.shape})")
    if suffix == ".npy":
        return data
    if suffix == ".wav":
        data = data.reshape(data.shape[0], -1)
        if data.dtype == np.uint8:  # 8-bit PCM: silence at 128
            data = data.astype(np.int16) - 128
    data = np.ascontiguousarray(data.T)
    return data[0] if data.shape[0] == 1 else data


def _read_wav(path, name, parser):
    """The samples of a .wav file, SciPy's warnings (a chunk skipped, a file
    cut short) said in a line each, and a file SciPy cannot parse refused."""
    import warnings

    from scipy.io import wavfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, data = wavfile.read(path)
        except Exception as exc:  # (a malformed header fails in SciPy's parser, any which way)
            parser.error(f"cannot read {name} file {path!r} as a WAV file: "
                         f"{type(exc).__name__}: {exc}")
    for warning in caught:
        print(f"{name} file {path!r}: {warning.message}", file=sys.stderr)
    return np.asarray(data)


def _negative_numbers(argv):
    """``--threshold -inf`` as ``--threshold=-inf`` (and ``--sharpness``):
    argparse reads a value that begins with a dash and is no plain number
    (``-inf``, ``-1e-3``) as an option, and answers "expected one
    argument"."""
    argv = list(argv)
    at = 0
    while at < len(argv) - 1:
        if argv[at] in ("--threshold", "--sharpness") and argv[at + 1].startswith("-"):
            try:
                float(argv[at + 1])
            except ValueError:
                at += 1
                continue
            argv[at : at + 2] = [f"{argv[at]}={argv[at + 1]}"]
        at += 1
    return argv


def _match(args, parser):
    from .matches import find_matches

    # where the results go, before the work (a search of 10**9 samples ended
    # on a folder that is not there)
    if args.out:
        _check_output(args.out, "--out", parser)
    if args.plot:
        _check_output(_plot_path(args.plot, parser), "--plot", parser)

    signal = _read(args.signal, "signal", parser)
    kernel = _read(args.kernel, "kernel", parser)
    if kernel.ndim == 2 and kernel.shape[-1] == 1 and kernel.shape[0] > 1:
        if args.kernel.lower().endswith((".csv", ".txt")):
            print(f"note: kernel file {args.kernel!r} has one line of {kernel.shape[0]} values, "
                  f"read as {kernel.shape[0]} kernels of one tap (one column per kernel); for one "
                  f"kernel of {kernel.shape[0]} taps, put one value per line", file=sys.stderr)
        elif args.kernel.lower().endswith(".npy"):
            print(f"note: kernel file {args.kernel!r} holds an array of shape {kernel.shape}, read "
                  f"as {kernel.shape[0]} kernels of one tap (the last axis holds the taps); for "
                  f"one kernel of {kernel.shape[0]} taps, save a 1-d array", file=sys.stderr)
    for name, path, data in (("signal", args.signal, signal), ("kernel", args.kernel, kernel)):
        if not 1 <= data.ndim <= 2:
            parser.error(f"{name} file {path!r} holds an array of shape {data.shape}; a "
                         "signal or kernel file holds one or two axes (rows of samples)")
    if signal.ndim == 2 and signal.shape[1] < kernel.shape[-1] <= signal.shape[0]:
        text = not args.signal.lower().endswith((".npy", ".wav"))
        print(f"note: signal file {args.signal!r} was read as {signal.shape[0]} rows of "
              f"{signal.shape[1]} sample(s), each shorter than the kernel's {kernel.shape[-1]} "
              f"taps ({'one column per row' if text else 'the last axis holds the samples'}); "
              f"for one signal of {signal.shape[0]} samples, "
              f"{'put one value per line' if text else 'save a 1-d array'}", file=sys.stderr)
    if signal.size >= 1 << 24:
        print(f"scoring {signal.shape[-1]:,} samples x {max(1, signal.size // signal.shape[-1])} row(s)...",
              file=sys.stderr, flush=True)
    try:
        found = find_matches(signal, kernel, k=args.k, threshold=args.threshold, sharpness=args.sharpness,
                             exclusion=args.exclusion, sign=args.sign, mode=args.mode,
                             center=args.center)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    columns = ["index", "score", "kernel"] + (["row"] if signal.ndim == 2 else [])
    table = [[int(i), float(s), int(k)] + ([int(b[0])] if signal.ndim == 2 else [])
             for i, s, k, b in zip(found.index, found.score, found.kernel, found.batch)]
    print(f"{len(found)} match{'es' if len(found) != 1 else ''} (exclusion {found.exclusion})")
    print("  ".join(f"{c:>8}" for c in columns))
    for row in table:
        print("  ".join(f"{v:>8.4f}" if isinstance(v, float) else f"{v:>8}" for v in row))
    if args.out:
        try:
            with open(args.out, "w") as handle:
                handle.write(",".join(columns) + "\n")
                for row in table:
                    handle.write(",".join(repr(v) if isinstance(v, float) else str(v)
                                          for v in row) + "\n")
        except OSError as exc:
            parser.error(f"cannot write --out file {args.out!r}: {exc}")
        print(f"written to {args.out}")
    if args.plot:
        from .matches import plot_matches

        if signal.ndim == 2 and signal.shape[0] > 1:
            print(f"note: --plot draws the first of the signal's {signal.shape[0]} rows and its "
                  "matches (the table has every row's)", file=sys.stderr)
        figure = plot_matches(signal if signal.ndim == 1 else signal[0], found if signal.ndim == 1 else
                              _first_row(found), kernel=kernel, mode=args.mode, sharpness=args.sharpness,
                              center=args.center, sign=args.sign, threshold=args.threshold)
        save_figure(figure, args.plot, parser)
    return 0


def _plot_path(path, parser, example="matches.png"):
    """The file ``--plot PATH`` writes: ``PATH``, with ``.png`` added where
    it has no suffix (as matplotlib would add it, unsaid); a folder is
    refused, with ``example`` as a file to name in it."""
    import os

    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        parser.error(f"cannot write --plot file {path!r}: it is a folder; name a file in it, "
                     f"such as {os.path.join(path, example)!r}")
    return path if os.path.splitext(path)[1] else path + ".png"


def _check_output(path, option, parser):
    """End the command, naming ``path``, where it cannot be written: a
    folder, a folder that is not there, a table's of another type than CSV
    text, or (a figure) without matplotlib or of a type matplotlib does not
    write."""
    import os

    if os.path.isdir(path):
        parser.error(f"cannot write {option} file {path!r}: it is a folder; name a file in it")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        parser.error(f"cannot write {option} file {path!r}: there is no folder {folder!r}")
    if option == "--out" and os.path.splitext(path)[1].lower() not in ("", ".csv", ".txt"):
        parser.error(f"cannot write --out file {path!r}: --out writes the table as CSV text; "
                     "name a .csv or .txt file")
    if option == "--plot":
        try:
            from matplotlib.figure import Figure
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed; install it with: "
                         "pip install 'cosim_np[plot]'")

        suffix = os.path.splitext(path)[1][1:].lower()
        known = Figure().canvas.get_supported_filetypes()
        if suffix not in known:
            parser.error(f"cannot write {option} file {path!r}: unknown type {suffix!r}; use one "
                         f"of {', '.join(sorted(known))}")


def save_figure(figure, path, parser):
    """``figure`` written to ``path`` (its type from the suffix, PNG without
    one), or the command ended with a message naming the file."""
    path = _plot_path(path, parser)
    import matplotlib.pyplot as plt

    try:
        figure.savefig(path, dpi=110)
    except (OSError, ValueError, RuntimeError) as exc:  # (RuntimeError: .pgf without TeX)
        parser.error(f"cannot write --plot file {path!r}: {exc}")
    finally:
        plt.close(figure)  # (main() called in a process that goes on)
    print(f"figure written to {path}")


def _first_row(found):
    """The matches of the first signal row."""
    from .matches import Matches

    keep = found.batch[:, 0] == 0
    return Matches(found.index[keep], found.score[keep], found.kernel[keep], found.batch[keep],
                   exclusion=found.exclusion, threshold=found.threshold)


if __name__ == "__main__":
    sys.exit(main())
