"""Sequences for training and evaluation, drawn from the Interventional Pong simulator.

Everything is a deterministic function of (environment, seed, sequence index): DDP rank r of w
generates sequences ``[r * n / w, (r + 1) * n / w)`` of each environment (``start_index``), and a
training batch is a function of (seed, step, rank), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2ssm.errors import InvalidInputError

__all__ = [
    "SequenceSet",
    "batch_indices",
    "env_id",
    "env_name",
    "generate_sequences",
    "global_graph",
    "load_dataset",
]


def _sim():  # type: ignore[no-untyped-def]
    from s2ssm import sim

    return sim


def env_id(name: str) -> int:
    """The simulator's id of environment ``name``."""
    names = list(_sim().environments())
    if name not in names:
        raise InvalidInputError(f"unknown environment {name!r}; known: {', '.join(names)}")
    return names.index(name)


def env_name(index: int) -> str:
    """The simulator's name of environment id ``index``."""
    return str(_sim().env_name(index))


def global_graph(name: str) -> np.ndarray:
    """The environment's ground-truth global graph, bool (K, K + 1) child x parent."""
    return np.asarray(_sim().global_graph(name), dtype=bool)


@dataclass
class SequenceSet:
    """A set of simulated sequences (numpy, on the host)."""

    frames: np.ndarray  # uint8 (N, T, H, W, 3)
    masks: np.ndarray  # uint8 (N, T, H, W), bit k = object k
    interventions: np.ndarray  # bool (N, T, I)
    local_graphs: np.ndarray  # bool (N, T, K, K + 1); entry t is the transition t - 1 -> t
    env_ids: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def take(self, index: np.ndarray) -> SequenceSet:
        """The sequences at ``index`` (in that order)."""
        return SequenceSet(
            self.frames[index],
            self.masks[index],
            self.interventions[index],
            self.local_graphs[index],
            self.env_ids[index],
        )

    def torch(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The arrays as tensors on ``device`` (frames and masks stay uint8)."""
        return {
            "frames": torch.from_numpy(np.ascontiguousarray(self.frames)).to(device),
            "masks": torch.from_numpy(np.ascontiguousarray(self.masks)).to(device),
            "interventions": torch.from_numpy(np.ascontiguousarray(self.interventions)).to(device),
            "env_ids": torch.from_numpy(np.ascontiguousarray(self.env_ids)).to(device),
        }

    @staticmethod
    def concat(parts: list[SequenceSet]) -> SequenceSet:
        if not parts:
            raise InvalidInputError("nothing to concatenate")
        return SequenceSet(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("frames", "masks", "interventions", "local_graphs", "env_ids")
            )
        )


def generate_sequences(
    envs: tuple[str, ...] | list[str],
    n_per_env: int,
    seq_len: int,
    *,
    seed: int,
    start_index: int = 0,
    resolution: int = 32,
    intervention_prob: float = 0.15,
    num_threads: int | None = None,
    velocity: str = "none",
) -> SequenceSet:
    """``n_per_env`` sequences of each environment, sequence indices from ``start_index``;
    ``intervention_prob`` is the simulator's per-step intervention probability, ``velocity``
    its velocity cue (``sim.generate``)."""
    sim = _sim()
    parts = []
    for name in envs:
        env_id(name)  # clear error for an unknown name
        batch = sim.generate(
            name,
            n_per_env,
            seq_len,
            seed=seed,
            start_index=start_index,
            resolution=resolution,
            intervention_prob=intervention_prob,
            num_threads=num_threads,
            velocity=velocity,
        )
        parts.append(
            SequenceSet(
                np.asarray(batch.frames, dtype=np.uint8),
                np.asarray(batch.masks, dtype=np.uint8),
                np.asarray(batch.interventions, dtype=bool),
                np.asarray(batch.local_graphs, dtype=bool),
                np.asarray(batch.env_ids, dtype=np.int64),
            )
        )
    return SequenceSet.concat(parts)


def load_dataset(path: str, *, rank: int = 0, world: int = 1) -> SequenceSet:
    """This rank's share (:func:`shard_range`) of a dataset directory written by
    ``s2ssm generate`` (:mod:`s2ssm.sim.io`), read into memory after every shard's sha256 is
    checked against its manifest (a damaged shard raises ``DatasetError`` naming it)."""
    from s2ssm.sim import io

    ds = io.open_dataset(path)
    ds.verify()
    start, stop = shard_range(len(ds), rank, world)
    parts = []
    for k, shard in enumerate(ds.shards):
        arrays = ds.shard_arrays(k)
        first = int(shard["start_index"])
        lo, hi = max(start, first), min(stop, first + int(arrays["frames"].shape[0]))
        if lo >= hi:
            continue
        sl = slice(lo - first, hi - first)
        parts.append(
            SequenceSet(
                np.array(arrays["frames"][sl], dtype=np.uint8),
                np.array(arrays["masks"][sl], dtype=np.uint8),
                np.array(arrays["interventions"][sl], dtype=bool),
                np.array(arrays["local_graphs"][sl], dtype=bool),
                np.array(arrays["env_ids"][sl], dtype=np.int64),
            )
        )
    return SequenceSet.concat(parts)


def batch_indices(n: int, batch_size: int, *, seed: int, step: int, rank: int) -> np.ndarray:
    """Indices of the training batch of ``step`` on ``rank``: uniform with replacement, a pure
    function of its arguments."""
    rng = np.random.default_rng([seed, step, rank, 0x5EED])
    return rng.integers(0, n, size=batch_size)


def shard_range(n_total: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of the sequences of ``rank`` when ``n_total`` are split over ``world``."""
    if n_total < world:
        raise InvalidInputError(
            f"data.train_sequences ({n_total}) must be at least the number of ranks ({world})"
        )
    start = n_total * rank // world
    return start, n_total * (rank + 1) // world
