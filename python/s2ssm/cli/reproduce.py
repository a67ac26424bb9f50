"""``s2ssm reproduce``: the experiments of arXiv 2505.02074 end to end (the protocol is
:mod:`s2ssm.experiments`); picks the setting (a preset or a protocol file), runs it, prints
the tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s2ssm.cli._args import positive_int
from s2ssm.errors import InvalidInputError

__all__ = ["add_parser", "reproduce_main", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``reproduce`` subcommand on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's experiments (resumable)",
        description=(
            "Train S2-SSM, SPARTAN, the Transformer ablation and the dense SSM on the 7 simple "
            "environments (intervention targets unknown), evaluate next-slot MSE and SHD per "
            "environment with each test sequence's environment identified from its first "
            "steps, then zero-shot and 10%-data fine-tuning on the 4 composite environments; "
            "mean ± std over seeds. "
            "Rerunning with the same --out continues an interrupted reproduction."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced setting: one seed, few steps, small model (a 2-core CPU, < 40 min)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="run directory (default: results/quick with --quick, else results/full)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="number of seeds (0 .. N-1); default: 1 with --quick, 3 otherwise",
    )
    parser.add_argument(
        "--device",
        default=None,
        help='torch device for training and evaluation ("auto", "cpu", "cuda", "cuda:1")',
    )
    parser.add_argument(
        "--config",
        metavar="TOML",
        default=None,
        help="protocol file ([protocol] + config tables) instead of the built-in preset, or "
        "a shipped one by name (reproduce_quick, reproduce_paper)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config value, e.g. --set optim.steps=100, or a protocol field, "
        "e.g. --set protocol.composite_envs=[] (repeatable)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the reproduction; prints the markdown table and where the results are."""
    summary = reproduce_main(
        quick=args.quick,
        out=args.out,
        seeds=args.seeds,
        device=args.device,
        config=args.config,
        overrides=args.overrides,
    )
    root = Path(summary["out"])
    print((root / "results.md").read_text(encoding="utf-8"))
    print(
        json.dumps(
            {
                "out": str(root),
                "ran": len(summary["ran"]),
                "skipped": len(summary["skipped"]),
                "complete": summary["complete"],
            }
        ),
        file=sys.stderr,
    )
    return 0


def reproduce_main(
    *,
    quick: bool,
    out: str | Path | None,
    seeds: int | None,
    device: str | None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """What ``s2ssm reproduce`` does: pick the setting (``config`` file, else the ``quick`` or
    ``paper`` preset), apply ``seeds`` (a count: seeds 0..n-1) and ``device``, run."""
    from s2ssm.experiments import load_protocol, preset, run_protocol

    extra = list(overrides) + ([f'run.device="{device}"'] if device else [])
    if config is not None:
        protocol, base = load_protocol(config, extra)
    else:
        protocol, base = preset("quick" if quick else "paper", extra)
    if seeds is not None:
        if seeds <= 0:
            raise InvalidInputError(f"--seeds must be a positive count, got {seeds}")
        protocol = dataclasses.replace(protocol, seeds=tuple(range(seeds)))
    root = Path(out) if out is not None else Path("results") / ("quick" if quick else "full")
    return run_protocol(protocol, base, root, progress=progress)
