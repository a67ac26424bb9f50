"""Export in the layout CITRIS's ``load_datasets`` reads (phlippe/CITRIS,
``experiments/datasets.py``, ``InterventionalPongDataset``), with the split sizes of its
generator (``data_generation/data_generation_interventional_pong.py``).

A dataset of ``n`` frames is a folder of seven ``.npz`` files, keys ``images``, ``latents``,
``targets`` and ``keys`` (:data:`CITRIS_KEYS`, a plain string array):

=====================  ======  =========================================================
file                   frames  content
=====================  ======  =========================================================
``train.npz``          n       one sequence: images ``(n, R, R, 4)`` uint8, latents
                               ``(n, 8)`` float32, targets ``(n - 1, 8)`` float32
                               (``targets[i]``: the interventions of frame ``i -> i + 1``)
``val.npz``            n // 10 the same, another sequence
``test.npz``           n // 10 the same, another sequence
``val_indep.npz``      n // 4  i.i.d. frames (independent games, each at a random step),
                               targets all ones ``(m, 8)``
``test_indep.npz``     n // 4  the same, other games
``val_triplets.npz``   n // 10 two distinct frames of ``val.npz`` and a third rendered from
                               their latents mixed by a source mask: images ``(m, 3, R, R,
                               4)``, latents ``(m, 3, 8)``, targets ``(m, 8)`` uint8 (1: the
                               variable comes from frame 2; only intervened variables
                               switch, at least one does)
``test_triplets.npz``  n // 10 the same, from ``test.npz``
=====================  ======  =========================================================

Images are RGB plus CITRIS's projected-ball channel (the next ball position, dark on white:
``255 - coverage``). Sequences ``0, 1, 2`` of ``seed`` give train, val and test; the i.i.d.
frames and the triplets draw from NumPy's PCG64 seeded with ``(seed, split)``: the same seed
gives the same bytes on every platform.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s2ssm.errors import InvalidInputError
from s2ssm.files import atomic_write_stream
from s2ssm.sim._api import PongBatch, _int, generate, render
from s2ssm.sim._envs import STATE_NAMES, TARGETS

__all__ = ["CITRIS_FILES", "CITRIS_KEYS", "export_citris"]

#: CITRIS's latent keys (sorted, as its generator saves them).
CITRIS_KEYS = (
    "ball_vel_dir",
    "ball_vel_magn",
    "ball_x",
    "ball_y",
    "paddle_left_y",
    "paddle_right_y",
    "score_left",
    "score_right",
)
#: The files of an export, in the order they are written.
CITRIS_FILES = (
    "train.npz",
    "val.npz",
    "test.npz",
    "val_indep.npz",
    "test_indep.npz",
    "val_triplets.npz",
    "test_triplets.npz",
)
#: Our state variable behind each CITRIS key, and the intervention target of each (None: never).
_STATE_OF_KEY = ("ball_dir", "ball_speed", "ball_x", "ball_y", *STATE_NAMES[:2], *STATE_NAMES[6:])
_TARGET_OF_KEY = (
    "ball_dir",
    None,
    "ball_x",
    "ball_y",
    "paddle_left_y",
    "paddle_right_y",
    None,
    None,
)
_STATE_COLUMNS = [STATE_NAMES.index(k) for k in _STATE_OF_KEY]
#: Games behind the i.i.d. frames run up to this many steps before the frame is taken.
_INDEP_MAX_STEP = 64
#: Split codes of the NumPy streams (with the seed).
_SPLIT_CODES = {"val_indep": 1, "test_indep": 2, "val_triplets": 3, "test_triplets": 4}


def _latents(states: np.ndarray) -> np.ndarray:
    """Our states ``(..., len(STATE_NAMES))`` as CITRIS latents ``(..., 8)`` float32."""
    return np.ascontiguousarray(states[..., _STATE_COLUMNS], dtype=np.float32)


def _states(latents: np.ndarray) -> np.ndarray:
    """CITRIS latents ``(..., 8)`` as our states (float64)."""
    states = np.zeros((*latents.shape[:-1], len(STATE_NAMES)))
    states[..., _STATE_COLUMNS] = latents
    return states


def _images(frames: np.ndarray) -> np.ndarray:
    """Our ``next_channel`` frames with CITRIS's channel 4 (dark ball on white)."""
    images = frames.copy()
    images[..., 3] = 255 - images[..., 3]
    return images


def _render(latents: np.ndarray, resolution: int, num_threads: int | None) -> np.ndarray:
    frames, _ = render(
        _states(latents), resolution=resolution, velocity="next_channel", num_threads=num_threads
    )
    return _images(frames)


def _sequence_arrays(batch: PongBatch) -> dict[str, np.ndarray]:
    targets = np.zeros((batch.states.shape[1], len(CITRIS_KEYS)), np.float32)
    for j, name in enumerate(_TARGET_OF_KEY):
        if name is not None:
            targets[:, j] = batch.interventions[0, :, TARGETS.index(name)]
    return {
        "images": _images(batch.frames[0]),
        "latents": _latents(batch.states[0]),
        "targets": targets[1:],
    }


def _indep_arrays(
    env: str | int,
    m: int,
    first_sequence: int,
    rng: np.random.Generator,
    options: dict,
    resolution: int,
    num_threads: int | None,
) -> dict[str, np.ndarray]:
    """``m`` frames of independent games (sequences ``first_sequence ..``), each at a random
    step."""
    games = generate(
        env,
        m,
        _INDEP_MAX_STEP,
        seed=options["seed"],
        start_index=first_sequence,
        render=False,
        intervention_prob=options["intervention_prob"],
        intervention_mode=options["intervention_mode"],
        num_threads=num_threads,
    )
    steps = rng.integers(0, _INDEP_MAX_STEP, size=m)
    latents = _latents(games.states[np.arange(m), steps])
    return {
        "images": _render(latents, resolution, num_threads),
        "latents": latents,
        "targets": np.ones_like(latents),
    }


def _triplet_arrays(
    source: dict[str, np.ndarray],
    m: int,
    rng: np.random.Generator,
    resolution: int,
    num_threads: int | None,
) -> dict[str, np.ndarray]:
    """``m`` triplets from a sequence file's arrays, as CITRIS's generator builds them."""
    n = len(source["latents"])
    intervened = source["targets"].sum(axis=0) > 0
    pairs = np.empty((m, 2), np.int64)
    masks = np.empty((m, len(CITRIS_KEYS)), np.uint8)
    for i in range(m):
        pairs[i] = rng.choice(n, size=2, replace=False)
        while True:  # at least one variable from frame 2 (CITRIS: resample until std != 0)
            mask = rng.integers(0, 2, size=len(CITRIS_KEYS)) * intervened
            if mask.any():
                break
        masks[i] = mask
    first, second = source["latents"][pairs[:, 0]], source["latents"][pairs[:, 1]]
    mixed = np.where(masks == 0, first, second).astype(np.float32)
    images = np.stack(
        [
            source["images"][pairs[:, 0]],
            source["images"][pairs[:, 1]],
            _render(mixed, resolution, num_threads),
        ],
        axis=1,
    )
    return {
        "images": images,
        "latents": np.stack([first, second, mixed], axis=1),
        "targets": masks,
    }


def export_citris(
    directory: str | os.PathLike[str],
    env: str | int,
    n_frames: int,
    *,
    seed: int,
    resolution: int = 32,
    intervention_prob: float = 0.15,
    intervention_mode: str = "single",
    num_threads: int | None = None,
) -> Path:
    """Writes the seven files of a CITRIS dataset of ``n_frames`` training frames into
    ``directory`` (created if missing; see the module docstring); returns it.

    The triplets mix only intervened variables, so ``intervention_prob`` must be positive.
    Everything is held in memory, as CITRIS's one-sequence format requires. Each file is
    written atomically.
    """
    n_frames = _int("n_frames", n_frames, 20, 2**31)
    seed = _int("seed", seed, 0, 2**64 - 1)
    if not intervention_prob > 0:
        raise InvalidInputError(
            "intervention_prob: CITRIS's triplets mix intervened variables; expected a "
            f"probability above 0, got {intervention_prob}"
        )
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"directory: {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    options = {
        "seed": seed,
        "intervention_prob": intervention_prob,
        "intervention_mode": intervention_mode,
    }
    sizes = {"train": n_frames, "val": n_frames // 10, "test": n_frames // 10}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for sequence, (split, size) in enumerate(sizes.items()):
        batch = generate(
            env,
            1,
            size,
            start_index=sequence,
            resolution=resolution,
            velocity="next_channel",
            num_threads=num_threads,
            **options,
        )
        arrays[split] = _sequence_arrays(batch)
    first_game = 3
    for split in ("val", "test"):
        rng = np.random.Generator(np.random.PCG64([seed, _SPLIT_CODES[f"{split}_indep"]]))
        m = n_frames // 4
        arrays[f"{split}_indep"] = _indep_arrays(
            env, m, first_game, rng, options, resolution, num_threads
        )
        first_game += m
    for split in ("val", "test"):
        rng = np.random.Generator(np.random.PCG64([seed, _SPLIT_CODES[f"{split}_triplets"]]))
        arrays[f"{split}_triplets"] = _triplet_arrays(
            arrays[split], n_frames // 10, rng, resolution, num_threads
        )
    keys = np.array(CITRIS_KEYS)
    for name in CITRIS_FILES:
        data = arrays[name.removesuffix(".npz")]
        atomic_write_stream(
            out / name, lambda f, data=data: np.savez_compressed(f, **data, keys=keys)
        )
    return out
