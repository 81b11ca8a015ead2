"""Command line: ``python -m cosim_np demo [--plot FILE]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cosim_np", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the seed-000 motif experiment (A-E)")
    demo.add_argument("--plot", metavar="FILE", help="also write the figure to FILE (needs matplotlib)")
    args = parser.parse_args(argv)

    from . import demo as experiment

    print(experiment.format_table())
    if args.plot:
        experiment.plot(args.plot)
        print(f"\nfigure written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
