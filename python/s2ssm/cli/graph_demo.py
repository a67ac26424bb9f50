"""``s2ssm graph-demo``: the batched graph metrics on a million random local graphs."""

from __future__ import annotations

import argparse
import time

import numpy as np

from s2ssm import graph
from s2ssm.cli._args import non_negative_int, positive_int, probability
from s2ssm.errors import InvalidInputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``graph-demo`` subcommand."""
    parser = subparsers.add_parser(
        "graph-demo",
        help="score random graphs against a true graph with the Rust metrics",
        description=__doc__,
    )
    parser.add_argument(
        "--graphs", type=positive_int, default=1_000_000, help="graphs scored in one batch"
    )
    parser.add_argument(
        "--nodes", type=positive_int, default=8, help=f"nodes per graph, 1 to {graph.MAX_NODES}"
    )
    parser.add_argument("--density", type=probability, default=0.2, help="edge probability")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the random graphs"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Draws random per-layer graphs, builds causal graphs and scores them."""
    if args.graphs < 1 or not 1 <= args.nodes <= graph.MAX_NODES:
        raise InvalidInputError(f"--graphs must be >= 1 and --nodes in 1..{graph.MAX_NODES}")
    rng = np.random.default_rng(args.seed)
    true = rng.random((args.nodes, args.nodes)) < args.density
    layers = rng.random((args.graphs, 2, args.nodes, args.nodes)) < args.density / 2
    start = time.perf_counter()
    learned = graph.causal_graph(layers)
    built = time.perf_counter() - start
    truth = np.broadcast_to(true, learned.shape)
    start = time.perf_counter()
    distances = {
        (reversal, diagonal): graph.shd(learned, truth, reversal=reversal, diagonal=diagonal)
        for reversal in ("double", "single")
        for diagonal in ("ignore", "count")
    }
    metrics = graph.edge_metrics(learned, truth)
    scored = time.perf_counter() - start
    print(
        f"{args.graphs:,} two-layer stacks of {args.nodes} nodes -> causal graphs "
        f"in {built * 1e3:.1f} ms; 4 SHD conventions + edge metrics in {scored * 1e3:.1f} ms"
    )
    for (reversal, diagonal), values in distances.items():
        print(
            f"  SHD reversal={reversal:<6} diagonal={diagonal:<6} mean {values.mean():6.3f}  "
            f"min {values.min():3d}  max {values.max():3d}"
        )
    print(
        f"  precision {metrics.precision.mean():.3f}  recall {metrics.recall.mean():.3f}  "
        f"F1 {metrics.f1.mean():.3f}  mean predicted edges {metrics.nnz.mean():.2f}"
    )
    return 0
