"""The ``s2ssm`` command line: one subcommand per job (``python -m s2ssm`` works too).

One module per command group, each with ``add_parser(subparsers)`` setting ``run`` to a
function of the parsed arguments that returns the exit status; heavy imports (torch) happen
inside those functions, so ``s2ssm --help`` stays fast:

- :mod:`~s2ssm.cli.generate` -- ``generate``: a simulator data set on disk;
- :mod:`~s2ssm.cli.world_model` -- ``train``, ``eval``, ``plot``: one world-model run;
- :mod:`~s2ssm.cli.reproduce` -- ``reproduce``: the paper's protocol;
- :mod:`~s2ssm.cli.graph_demo` -- ``graph-demo``: the graph metrics on random graphs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from s2ssm import __version__
from s2ssm.errors import S2ssmError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from s2ssm.cli import generate, graph_demo, reproduce, world_model
    from s2ssm.cli._args import use_help_formatter

    parser = argparse.ArgumentParser(prog="s2ssm", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"s2ssm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate.add_parser(subparsers)
    world_model.add_parser(subparsers)
    reproduce.add_parser(subparsers)
    graph_demo.add_parser(subparsers)
    use_help_formatter(parser)
    return parser


#: The optional dependencies (import name -> the extra of pyproject.toml that installs it).
_EXTRAS = {"torch": "torch", "safetensors": "torch", "tqdm": "torch", "matplotlib": "plot",
           "triton": "triton", "tensorboard": "tensorboard", "gymnasium": "gym"}  # fmt: skip


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
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get((error.name or "").partition(".")[0])
        if extra is None:
            raise
        parser.exit(
            2,
            f"s2ssm {args.command}: error: this command needs {error.name}, which is not "
            f"installed: python -m pip install 's2ssm[{extra}]'\n",
        )
    except OSError as error:  # the file system's answer: a path that is a file, no permission
        parser.exit(1, f"s2ssm {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
