"""``s2ssm train``, ``s2ssm eval``, ``s2ssm eval-table`` and ``s2ssm plot``: train a world
model into a run directory, score a checkpoint per environment, put several scores side by
side, draw its figures."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from s2ssm.config import presets

__all__ = ["add_parser"]

log = logging.getLogger(__name__)


def _run_train(args: argparse.Namespace) -> int:
    from s2ssm.config import load_config
    from s2ssm.training.trainer import train

    overrides = list(args.set or [])
    if args.out_dir:
        overrides.append(f"run.out_dir={json.dumps(args.out_dir)}")
    if args.tensorboard:
        overrides.append(f"run.tensorboard={json.dumps(args.tensorboard)}")
    config = load_config(args.config, overrides)
    result = train(config, resume=args.resume)
    last = result.history[-1] if result.history else {}
    summary = {k: last[k] for k in ("step", "phase", "loss", "mse", "lambda") if k in last}
    log.info("done: %s; checkpoint %s", summary, result.checkpoint)
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from s2ssm.evaluation.metrics import evaluate, format_markdown

    results, target = evaluate(
        args.checkpoint,
        overrides=list(args.set or []),
        envs=args.env,
        device=args.device,
        out_dir=args.out,
        split=args.split,
        json_path=args.json,
    )
    sys.stdout.write(format_markdown(results))
    log.info("wrote %s and %s", args.json or target / "eval.json", target / "eval.md")
    return 0


def _run_eval_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from s2ssm.errors import InvalidInputError
    from s2ssm.evaluation.events import event_table
    from s2ssm.evaluation.metrics import eval_table

    reports = []
    for name in args.reports:
        path = Path(name)
        try:
            reports.append((path.parent.name or str(path), json.loads(path.read_text("utf-8"))))
        except (OSError, ValueError) as error:
            raise InvalidInputError(f"{name}: not a readable eval.json ({error})") from None
    if args.events:
        rows = []
        for label, report in reports:
            for r in report["results"]:
                if not r.get("events"):
                    raise InvalidInputError(f"{label}: its eval.json has no events (re-run eval)")
                rows.append((label, r["env"], r["events"]))
        sys.stdout.write(event_table(rows))
    else:
        sys.stdout.write(eval_table(reports))
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    from s2ssm.evaluation.plots import plot

    for path in plot(
        args.checkpoint,
        envs=args.env,
        overrides=list(args.set or []),
        out_dir=args.out,
        device=args.device,
    ):
        print(path)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``train``, ``eval`` and ``plot`` on the ``s2ssm`` subparsers."""
    set_help = "override a config field, e.g. --set model.num_layers=3 (repeatable)"

    p = subparsers.add_parser(
        "train",
        help="train S2-SSM (or a baseline) from a TOML config",
        description="Train the world model; runs under torchrun for several processes/GPUs.",
    )
    p.add_argument(
        "--config",
        metavar="TOML",
        help="a TOML config file, or a shipped preset by name ("
        + ", ".join(presets())
        + "); the defaults if omitted",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--out-dir", help="run directory (same as --set run.out_dir=...)")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also log the training metrics to this TensorBoard directory (needs "
        "s2ssm[tensorboard]; same as --set run.tensorboard=...)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the run directory's latest checkpoint"
    )
    p.set_defaults(run=_run_train)

    p = subparsers.add_parser(
        "eval",
        help="rollout MSE and SHD of a checkpoint, per environment",
        description="Evaluate a checkpoint (a run directory, checkpoint directory or "
        "model.safetensors); writes eval.json and eval.md.",
    )
    p.add_argument(
        "checkpoint",
        help="a run directory (its latest checkpoint), a checkpoint directory or a "
        "model.safetensors file",
    )
    p.add_argument("--env", action="append", help="environment (repeatable); default eval.envs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--out", help="output directory (default: the run directory)")
    p.add_argument(
        "--json", metavar="FILE", help="write the JSON report here (default OUT/eval.json)"
    )
    p.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="test: eval.seed's sequences (report these); validation: eval.validation_seed's "
        "(choose settings on these)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.set_defaults(run=_run_eval)

    p = subparsers.add_parser(
        "eval-table",
        help="several eval.json reports side by side (markdown)",
        description="Print a markdown table of eval.json files: a row per run and environment, "
        "the learned graph beside the empty and best constant graphs, per-edge AUROC.",
    )
    p.add_argument(
        "reports", nargs="+", metavar="EVAL_JSON", help="eval.json files written by s2ssm eval"
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="instead: the 1-step errors of the ball and the score (x 1e-3) per transition event "
        "(collision, point, near a paddle, other; s2ssm.evaluation.events)",
    )
    p.set_defaults(run=_run_eval_table)

    p = subparsers.add_parser(
        "plot",
        help="learned vs true graph heatmaps and a rollout strip (PNG)",
        description="Draw the figures of a checkpoint (needs matplotlib: s2ssm[plot]).",
    )
    p.add_argument(
        "checkpoint",
        help="a run directory (its latest checkpoint), a checkpoint directory or a "
        "model.safetensors file",
    )
    p.add_argument("--env", action="append", help="environment (repeatable); default eval.envs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--out", help="output directory (default: RUN/plots)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.set_defaults(run=_run_plot)
