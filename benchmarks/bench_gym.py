"""Steps/s of the gymnasium environments (Rust, one call per step for the whole batch) vs the
NumPy reference stepping the same games (``s2ssm.sim.reference.step`` + ``render``), and the
single-game env's steps/s, at 32 x 32, the vector env on one thread (``--threads``).

    python benchmarks/bench_gym.py [--seconds 1.0] [--envs 1,64,1024]

A step here is one game advancing one transition, frame rendered. Build in release mode first
(``maturin develop --release``); needs the ``gymnasium`` extra.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from s2ssm.sim import reference as ref
from s2ssm.sim.gym import InterventionalPongEnv, InterventionalPongVectorEnv


def rate(work: Callable[[], int], seconds: float) -> float:
    """Game steps per wall second over repeated calls of ``work`` (after one warm-up call)."""
    work()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += work()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per configuration")
    parser.add_argument("--envs", default="1,64,1024", help="comma-separated numbers of games")
    parser.add_argument("--threads", type=int, default=1, help="threads of the vector env")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'games':>6} {'rust steps/s':>13} {'numpy ref steps/s':>18} {'x ref':>7}")
    for n in (int(v) for v in args.envs.split(",")):
        venv = InterventionalPongVectorEnv(n, intervention_prob=0.15, num_threads=args.threads)
        venv.reset(seed=0)

        def rust(venv: InterventionalPongVectorEnv = venv, n: int = n) -> int:
            venv.step(None)
            return n

        seqs = np.arange(n, dtype=np.uint64)
        state = {"s": ref.initial_state(0, seqs), "t": 0}

        def numpy(seqs: np.ndarray = seqs, state: dict = state, n: int = n) -> int:
            s = state["s"]
            nxt, _, _ = ref.step(s, 0, 0, seqs, state["t"], 0.15)
            previous = np.stack([s.ball_x, s.ball_y], axis=-1)
            ref.render(nxt, 32, previous=previous)
            state["s"], state["t"] = nxt, state["t"] + 1
            return n

        ours, theirs = rate(rust, args.seconds), rate(numpy, args.seconds)
        print(f"{n:>6} {ours:>13,.0f} {theirs:>18,.0f} {ours / theirs:>7,.0f}")
    env = InterventionalPongEnv(intervention_prob=0.15)
    env.reset(seed=0)

    def single() -> int:
        env.step(None)
        return 1

    print(f"single InterventionalPongEnv: {rate(single, args.seconds):,.0f} steps/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
