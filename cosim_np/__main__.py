"""Command line: ``python -m cosim_np demo [--plot FILE]`` and
``python -m cosim_np compile [--dtype ...] [--only TEXT] [--list]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cosim_np", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the seed-000 motif experiment (A-E)")
    demo.add_argument("--plot", metavar="FILE", help="also write the figure to FILE (needs matplotlib)")
    ahead = commands.add_parser(
        "compile", help="compile the kernels of the common calls into Numba's on-disk cache",
        description="Compile ahead, into Numba's cache, every kernel that the common calls of "
                    "each public function use, so that no later process pays for compilation "
                    "(containers, HPC images, notebooks). The cache lies next to the installed "
                    "package, or in NUMBA_CACHE_DIR when that is set (use it where the package "
                    "directory is not writable).")
    ahead.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                       choices=["float32", "float64"], help="input dtypes (default: both)")
    ahead.add_argument("--only", metavar="TEXT", help="only the functions whose line contains TEXT")
    ahead.add_argument("--list", action="store_true", help="list what would be compiled, and stop")
    args = parser.parse_args(argv)

    if args.command == "compile":
        from . import _compile

        if args.list:
            for label, dtype, _ in _compile.calls(args.dtype):
                print(f"{label} ({dtype})")
            return 0
        try:
            _compile.compile_ahead(args.dtype, args.only)
        except ValueError as exc:
            parser.error(str(exc))
        return 0

    from . import demo as experiment

    print(experiment.format_table())
    if args.plot:
        experiment.plot(args.plot)
        print(f"\nfigure written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
