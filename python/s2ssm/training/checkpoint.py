"""Checkpoints: weights + config as safetensors, trainer state (optimizer, λ, RNG) beside them.

Layout of a run directory::

    RUN/config.json                        the run's config
    RUN/metrics.jsonl                      one JSON object per logged step
    RUN/checkpoints/step_0000200/model.safetensors   weights; metadata: config, step
    RUN/checkpoints/step_0000200/trainer.pt          optimizer state, λ schedule, RNG states
    RUN/checkpoints/latest                 name of the newest complete checkpoint

A checkpoint directory is written under a temporary name and renamed into place, and ``latest``
is replaced atomically after it, so a crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from s2ssm.config import Config, config_from_json, config_to_json
from s2ssm.errors import InvalidInputError
from s2ssm.files import atomic_write_text, umask

__all__ = [
    "FORMAT",
    "CheckpointInfo",
    "CorruptCheckpointError",
    "checkpoints_newest_first",
    "find_checkpoint",
    "load_model",
    "load_trainer_state",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "s2ssm-checkpoint-v1"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"


class CorruptCheckpointError(InvalidInputError):
    """A checkpoint's files cannot be read back (truncated, damaged, not ours)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint on disk: its directory, step and config."""

    path: Path
    step: int
    config: Config


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    config: Config,
    trainer_state: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` of ``run_dir`` atomically, point ``latest`` at it, and keep
    only the newest ``keep`` checkpoints. Returns the checkpoint directory."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        metadata = {"format": FORMAT, "config": config_to_json(config), "step": str(step)}
        save_file(tensors, str(tmp / MODEL_FILE), metadata=metadata)
        torch.save({"format": FORMAT, "step": step, **trainer_state}, tmp / TRAINER_FILE)
        for file in (MODEL_FILE, TRAINER_FILE):  # safetensors writes 0600: the umask's mode
            os.chmod(tmp / file, 0o666 & ~umask())
        os.chmod(tmp, 0o777 & ~umask())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", name + "\n")
    older = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != name)
    for stale in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint directory meant by ``path``: a run directory (its latest checkpoint), a
    ``checkpoints`` directory, a checkpoint directory or its ``model.safetensors``. ``None`` if
    a run directory has no checkpoint yet; :class:`InvalidInputError` if nothing matches."""
    p = Path(path)
    if p.is_file() and p.name == MODEL_FILE:
        return p.parent
    if (p / MODEL_FILE).is_file():
        return p
    for root in (p / "checkpoints", p):
        latest = root / "latest"
        if latest.is_file():
            target = root / latest.read_text(encoding="utf-8").strip()
            if (target / MODEL_FILE).is_file():
                return target
            raise InvalidInputError(f"{latest} points at {target}, which has no {MODEL_FILE}")
    if p.is_dir():
        return None
    raise InvalidInputError(f"checkpoint {str(p)!r} does not exist")


def read_checkpoint(path: str | Path) -> tuple[CheckpointInfo, dict[str, torch.Tensor]]:
    """The info and the weights of a checkpoint (see :func:`find_checkpoint` for ``path``)."""
    found = find_checkpoint(path)
    if found is None:
        raise InvalidInputError(f"no checkpoint in {str(path)!r}")
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(found / MODEL_FILE), framework="pt") as handle:
            meta = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise CorruptCheckpointError(f"{found / MODEL_FILE} cannot be read: {error}") from None
    if meta.get("format") != FORMAT or "step" not in meta or "config" not in meta:
        raise CorruptCheckpointError(
            f"{found / MODEL_FILE} is not an s2ssm checkpoint (format {meta.get('format')!r})"
        )
    info = CheckpointInfo(found, int(meta["step"]), config_from_json(meta["config"]))
    return info, tensors


def checkpoints_newest_first(run_dir: str | Path) -> list[Path]:
    """The checkpoint directories of a run, the one ``latest`` names first, then the others
    from the newest step down (to fall back to when the newest cannot be read)."""
    root = Path(run_dir) / "checkpoints"
    found = []
    try:
        latest = find_checkpoint(run_dir)
    except InvalidInputError:  # latest names a directory that is gone: use the others
        latest = None
    if latest is not None:
        found.append(latest)
    if root.is_dir():
        steps = sorted((p for p in root.glob("step_*") if (p / MODEL_FILE).is_file()), reverse=True)
        found += [p for p in steps if p != latest]
    return found


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, CheckpointInfo]:
    """An :class:`s2ssm.models.S2SSM` in eval mode with the checkpoint's weights and config
    (a codebook that grew after training, see ``fit_env_code``, is grown to match)."""
    from s2ssm.models import S2SSM

    info, tensors = read_checkpoint(path)
    model = S2SSM(info.config)
    key = "dynamics.env_slot.codebook.weight"
    rows = tensors[key].shape[0] if key in tensors else None
    if rows is not None and rows != model.dynamics.env_slot.codebook.num_embeddings:
        model.dynamics.env_slot.codebook = torch.nn.Embedding(rows, tensors[key].shape[1])
    model.load_state_dict(tensors)
    model.to(device)
    model.eval()
    return model, info


def load_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The trainer state saved beside a checkpoint's weights (loaded with ``weights_only``)."""
    try:
        state: dict[str, Any] = torch.load(
            checkpoint_dir / TRAINER_FILE, map_location="cpu", weights_only=True
        )
    except Exception as error:  # truncated zip, bad pickle, missing file, ...
        raise CorruptCheckpointError(
            f"{checkpoint_dir / TRAINER_FILE} cannot be read: {error}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(
            f"{checkpoint_dir / TRAINER_FILE} is not an s2ssm trainer state"
        )
    return state
