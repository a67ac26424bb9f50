"""Frames/s of ``s2ssm.sim.generate`` (frames, masks, states, interventions, local graphs) vs
the plain NumPy reference, at 32 x 32 and 64 x 64, 1 and 2 threads, reused and fresh buffers.

    python benchmarks/bench_sim.py [--seconds 1.0] [--batches 64x32,256x64]

Each batch size is timed separately: a batch that fits in the last-level cache (64 x 32 frames
at 32 x 32 = 8 MB) shows the compute rate, a larger one (256 x 64 = 64 MB) the DRAM-bound rate.
Wall-clock rates are what a user sees; "per core" rates divide by the process CPU time, which
stays meaningful on a machine shared with other jobs. CITRIS's matplotlib generator is the
anchor: about 190,000 frames in 10-15 min on 8 processes, roughly 30 frames/s per process.
Build in release mode first (``maturin develop --release``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from s2ssm import sim
from s2ssm.sim import reference as ref

CITRIS_FRAMES_PER_S_PER_PROCESS = 30.0


def measure(work: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second), best of repeated calls."""
    work()  # warm-up (page faults of fresh buffers, renderer cache)
    best_wall, best_cpu = 0.0, 0.0
    deadline = time.perf_counter() + seconds
    while True:
        w0, c0 = time.perf_counter(), time.process_time()
        frames = work()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        best_wall = max(best_wall, frames / wall)
        best_cpu = max(best_cpu, frames / max(cpu, 1e-9))
        if time.perf_counter() > deadline:
            return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per configuration")
    parser.add_argument(
        "--batches", default="64x32,256x64", help="comma-separated SEQUENCESxSTEPS per call"
    )
    parser.add_argument("--env", default="neutral")
    args = parser.parse_args()
    batches = [tuple(int(v) for v in b.split("x")) for b in args.batches.split(",")]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"env {args.env!r}; batch = sequences x steps per generate call\n")
    header = f"{'res':>4} {'batch':>7} {'thr':>3} {'buffers':>7} {'frames/s':>12} {'per core':>12}"
    print(header + f" {'numpy ref':>10} {'x ref/core':>10} {'x CITRIS':>9}")
    for res in (32, 64):

        def reference(res: int = res) -> int:
            ref.generate(args.env, 16, 16, seed=0, resolution=res)
            return 16 * 16

        ref_wall, ref_cpu = measure(reference, args.seconds)
        print(f"{res:>4} numpy reference (1 process): {ref_wall:,.0f} frames/s wall")
        for n, t in batches:
            rates: dict[tuple[int, str], float] = {}
            for threads in (1, 2):
                for reuse in (True, False):
                    out = sim.generate(args.env, n, t, seed=0, resolution=res) if reuse else None

                    def work(
                        res: int = res,
                        n: int = n,
                        t: int = t,
                        threads: int = threads,
                        out: sim.PongBatch | None = out,
                    ) -> int:
                        sim.generate(
                            args.env, n, t, seed=1, resolution=res, num_threads=threads, out=out
                        )
                        return n * t

                    wall, cpu = measure(work, args.seconds)
                    label = "reused" if reuse else "fresh"
                    rates[(threads, label)] = wall
                    print(
                        f"{res:>4} {f'{n}x{t}':>7} {threads:>3} {label:>7} {wall:>12,.0f}"
                        f" {cpu:>12,.0f} {ref_cpu:>10,.0f} {cpu / ref_cpu:>10,.0f}"
                        f" {wall / CITRIS_FRAMES_PER_S_PER_PROCESS:>9,.0f}"
                    )
            for label in ("reused", "fresh"):
                print(
                    f"{res:>4} {f'{n}x{t}':>7} scaling 1 -> 2 threads ({label}): "
                    f"{rates[(2, label)] / rates[(1, label)]:.2f}x"
                )
        print()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
