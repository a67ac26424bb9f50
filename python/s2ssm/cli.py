"""The ``s2ssm`` command line: one subcommand per job (``python -m s2ssm`` works too)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from s2ssm import __version__
from s2ssm.errors import S2ssmError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from s2ssm import demo, experiment_cli, reproduce_cli
    from s2ssm.sim import cli as sim_cli

    parser = argparse.ArgumentParser(prog="s2ssm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"s2ssm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sim_cli.add_parser(subparsers)
    experiment_cli.add_parsers(subparsers)
    reproduce_cli.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``s2ssm`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except S2ssmError as error:
        parser.exit(2, f"s2ssm {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
