"""PyTorch datasets over the simulator (streamed) and over shards on disk (imports torch)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from s2ssm.sim._api import _int, iterate
from s2ssm.sim.io import ShardedDataset

__all__ = ["PongIterableDataset", "PongShardDataset"]


def _to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.array(value)) for name, value in arrays.items()}


class PongIterableDataset(IterableDataset):  # type: ignore[type-arg]
    """Streams ``n_sequences`` freshly generated sequences (one dict of tensors per sequence).

    With DataLoader workers, worker ``w`` of ``W`` generates a contiguous block of sequence
    indices, so the set of sequences (and each sequence's bytes) does not depend on ``W``.
    ``options`` go to :func:`s2ssm.sim.generate` (``resolution``, ``velocity``, ...);
    ``num_threads`` defaults to 1 inside workers.
    """

    def __init__(
        self,
        env: str | int,
        n_sequences: int,
        seq_len: int,
        *,
        seed: int = 0,
        batch_size: int = 64,
        start_index: int = 0,
        **options: Any,
    ) -> None:
        super().__init__()
        self.env = env
        self.n_sequences = _int("n_sequences", n_sequences, 1)
        self.seq_len = _int("seq_len", seq_len, 1)
        self.seed = _int("seed", seed, 0, 2**64 - 1)
        self.batch_size = _int("batch_size", batch_size, 1)
        self.start_index = _int("start_index", start_index, 0)
        self.options = options

    def __len__(self) -> int:
        return self.n_sequences

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        start, stop = 0, self.n_sequences
        options = dict(self.options)
        if info is not None:
            per = -(-self.n_sequences // info.num_workers)
            start = min(self.n_sequences, info.id * per)
            stop = min(self.n_sequences, start + per)
            options.setdefault("num_threads", 1)
        if stop <= start:
            return
        for batch in iterate(
            self.env,
            stop - start,
            self.seq_len,
            seed=self.seed,
            batch_size=self.batch_size,
            start_index=self.start_index + start,
            **options,
        ):
            arrays = batch.arrays()
            for i in range(len(batch)):
                yield _to_torch({name: value[i] for name, value in arrays.items()})


class PongShardDataset(Dataset):  # type: ignore[type-arg]
    """Map-style dataset over a directory written by ``s2ssm generate`` (one item = one
    sequence as a dict of tensors; ``.npy`` shards are memory-mapped)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.data = ShardedDataset(path)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _to_torch(self.data[index])
