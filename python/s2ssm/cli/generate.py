"""``s2ssm generate``: write an Interventional Pong data set to sharded files with a manifest."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from s2ssm.cli._args import non_negative_int, positive_int, probability
from s2ssm.errors import InvalidInputError, S2ssmError

__all__ = ["add_parser", "main", "run"]

log = logging.getLogger(__name__)


def _resolution(text: str) -> int:
    value = positive_int(text)
    if not 16 <= value <= 128:
        raise argparse.ArgumentTypeError(f"expected 16 to 128 pixels, got {value}")
    return value


def _environment(text: str) -> str:
    from s2ssm.sim import env_name

    try:
        return env_name(int(text) if text.isdigit() else text)
    except S2ssmError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers: Any) -> None:
    """Registers the ``generate`` subcommand on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "generate",
        help="generate an Interventional Pong data set",
        description=__doc__,
    )
    from s2ssm.sim import ENVIRONMENTS
    from s2ssm.sim.io import SHARD_BYTES

    parser.add_argument(
        "--env",
        type=_environment,
        default="neutral",
        help="environment, name or id: " + ", ".join(ENVIRONMENTS),
    )
    parser.add_argument("--sequences", type=positive_int, required=True, help="number of sequences")
    parser.add_argument("--length", type=positive_int, required=True, help="steps per sequence")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of every draw (same seed, same bytes, whatever the threads)",
    )
    parser.add_argument("--resolution", type=_resolution, default=32, help="16 to 128 pixels")
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        help=f"sequences per shard (default: shards of at most {SHARD_BYTES >> 20} MiB)",
    )
    parser.add_argument(
        "--format",
        choices=("npz", "npy"),
        default="npz",
        help="npz: one compressed archive per shard; npy: one memory-mappable file per field",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="worker threads (default: all cores)"
    )
    parser.add_argument(
        "--velocity",
        choices=("none", "previous", "next_channel"),
        default="none",
        help="velocity cue: none; previous (the last ball position drawn inside the ball, "
        "SPARTAN); next_channel (a 4th channel with the projected next ball, CITRIS)",
    )
    parser.add_argument("--occlusion", action="store_true", help="draw the occluder band")
    parser.add_argument(
        "--intervention-prob",
        type=probability,
        default=0.15,
        help="probability of an intervention per target and step",
    )
    parser.add_argument(
        "--intervention-mode",
        choices=("single", "multi"),
        default="single",
        help="single: CITRIS's rule (none with probability (1 - p)^5, else one target); "
        "multi: each target independently",
    )
    parser.add_argument(
        "--citris",
        action="store_true",
        help="write a CITRIS dataset folder (train, val, test, *_indep, *_triplets .npz) of "
        "--sequences x --length training frames, the layout CITRIS's load_datasets reads",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``s2ssm generate``; returns the exit status (errors raise ``S2ssmError``)."""
    from s2ssm.sim.citris import export_citris
    from s2ssm.sim.io import DatasetSpec, write_dataset

    if args.citris:
        carried = {
            "--velocity": args.velocity == "none",  # CITRIS's images always have the 4th channel
            "--occlusion": not args.occlusion,
            "--format": args.format == "npz",
            "--shard-size": args.shard_size is None,
        }
        refused = [option for option, fine in carried.items() if not fine]
        if refused:
            raise InvalidInputError(
                f"--citris: CITRIS's layout cannot carry {', '.join(refused)} (its images are "
                "RGB + the projected ball, one .npz per split)"
            )
        path = export_citris(
            args.out,
            args.env,
            args.sequences * args.length,
            seed=args.seed,
            resolution=args.resolution,
            intervention_prob=args.intervention_prob,
            intervention_mode=args.intervention_mode,
            num_threads=args.threads,
        )
        log.info("wrote %s", path)
        return 0
    spec = DatasetSpec(
        env=args.env,
        n_sequences=args.sequences,
        seq_len=args.length,
        seed=args.seed,
        resolution=args.resolution,
        velocity=args.velocity,
        occlusion=args.occlusion,
        intervention_prob=args.intervention_prob,
        intervention_mode=args.intervention_mode,
        shard_size=args.shard_size,
        format=args.format,
    )
    manifest = write_dataset(
        args.out, spec, num_threads=args.threads, progress=False if args.quiet else None
    )
    frames = args.sequences * args.length
    log.info(
        "wrote %d sequences (%d frames) of %r in %d shards to %s",
        args.sequences,
        frames,
        args.env,
        manifest["n_shards"],
        args.out,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m s2ssm.cli.generate``): ``s2ssm generate ARGS``."""
    from s2ssm.cli import main as s2ssm_main

    return s2ssm_main(["generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
