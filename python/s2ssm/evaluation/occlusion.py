"""Occlusion (the paper's first open question): does a model keep predicting an object while an
occluder hides it, and does the learned causal graph survive?

The simulator's ``occlusion=True`` draws an occluder band over the middle of the field; it
changes only the rendering (states, amodal masks and ground-truth graphs are identical), so one
set of sequences rendered both ways gives, for every step, what the model sees (occluded frames)
and what it should predict (the slots of the clean frames). In practice the band hides the
ball as it crosses the middle (the paddles and the score never enter it).

Per model, on transitions t -> t + 1 (:func:`occlusion_metrics`):

- an object is **hidden** at step t when more than ``threshold`` of its (amodal) mask pixels are
  covered (they differ between the two renderings) (:func:`hidden_objects`);
- ``mse_hidden``: next-slot MSE of the objects hidden at the input step t, targets = clean slots
  of t + 1, inputs = occluded frames; ``mse_hidden_clean``: the same positions with clean
  inputs (what the model achieves when it can see the object); ``mse_hidden_copy``: the
  memoryless baseline "the next slot is the (occluded) current slot"; ``mse_visible``: objects
  visible at both t and t + 1, occluded inputs;
- ``mse_hidden_run``: ``mse_hidden`` by how long the object has been hidden (1, 2, 3+ steps):
  whether memory of the object decays;
- graphs: ``shd_hidden`` / ``shd_visible``: mean SHD of the learned local graphs (occluded
  inputs) against the ground truth on transitions with / without a hidden object;
  ``shd_hidden_clean``: clean inputs on the hidden transitions; ``graph_change_hidden``: SHD
  between the graphs learned from occluded and from clean inputs on those transitions (0: the
  graph survives). SHD conventions of :mod:`s2ssm.evaluation.metrics` (cell by cell, env column
  included, self-loops ignored).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from s2ssm import graph
from s2ssm.errors import InvalidInputError, S2ssmError
from s2ssm.evaluation.metrics import encode_sequences
from s2ssm.training.checkpoint import load_model
from s2ssm.training.data import SequenceSet, generate_sequences
from s2ssm.training.trainer import select_device

__all__ = [
    "RUN_BUCKETS",
    "hidden_objects",
    "hidden_run_lengths",
    "occlusion_markdown",
    "occlusion_metrics",
    "occlusion_pair",
    "run_occlusion",
]

log = logging.getLogger(__name__)

#: Buckets of ``mse_hidden_run``: hidden for 1, 2, or 3 and more consecutive steps.
RUN_BUCKETS: tuple[str, ...] = ("1", "2", "3+")


def occlusion_pair(
    env: str,
    n_sequences: int,
    seq_len: int,
    *,
    seed: int,
    resolution: int = 32,
    intervention_prob: float = 0.15,
    num_threads: int | None = None,
    velocity: str = "none",
) -> tuple[SequenceSet, SequenceSet]:
    """The same sequences of ``env`` rendered without and with the occluder: ``(clean,
    occluded)``; everything but the frames is identical (``velocity``: the cue of both)."""
    from s2ssm import sim

    clean = generate_sequences(
        (env,),
        n_sequences,
        seq_len,
        seed=seed,
        resolution=resolution,
        intervention_prob=intervention_prob,
        num_threads=num_threads,
        velocity=velocity,
    )
    batch = sim.generate(
        env,
        n_sequences,
        seq_len,
        seed=seed,
        resolution=resolution,
        intervention_prob=intervention_prob,
        occlusion=True,
        num_threads=num_threads,
        velocity=velocity,
    )
    same = all(
        np.array_equal(np.asarray(getattr(batch, name)), getattr(clean, name))
        for name in ("masks", "interventions", "local_graphs")
    )
    if not same:  # the experiment rests on this: only the rendering may change
        raise S2ssmError("the simulator's occlusion option changed more than the frames")
    return clean, dataclasses.replace(clean, frames=np.asarray(batch.frames, dtype=np.uint8))


def _check_pair(clean: SequenceSet, occluded: SequenceSet) -> None:
    if clean.frames.shape != occluded.frames.shape:
        raise InvalidInputError(
            f"clean and occluded frames must have the same shape, got {clean.frames.shape} and "
            f"{occluded.frames.shape}"
        )
    for name in ("masks", "local_graphs", "env_ids", "interventions"):
        if not np.array_equal(getattr(clean, name), getattr(occluded, name)):
            raise InvalidInputError(
                f"clean and occluded sequences differ in {name}: they must be the same "
                "sequences rendered twice (see occlusion_pair)"
            )


def hidden_objects(
    clean: SequenceSet, occluded: SequenceSet, num_objects: int = 4, threshold: float = 0.5
) -> np.ndarray:
    """Bool ``(N, T, K)``: object k is hidden at step t when more than ``threshold`` of its mask
    pixels differ between the two renderings (an object without pixels is never hidden)."""
    _check_pair(clean, occluded)
    if not 0.0 <= threshold < 1.0:
        raise InvalidInputError(f"threshold must be in [0, 1), got {threshold}")
    covered = (clean.frames != occluded.frames).any(axis=-1)  # (N, T, H, W)
    bits = (clean.masks[..., None] >> np.arange(num_objects, dtype=np.uint8)) & 1  # (N,T,H,W,K)
    inside = bits.astype(bool)
    total = inside.sum(axis=(2, 3))
    hidden = (inside & covered[..., None]).sum(axis=(2, 3))
    return (total > 0) & (hidden > threshold * total)


def hidden_run_lengths(hidden: np.ndarray) -> np.ndarray:
    """For bool ``(N, T, K)``, the number of consecutive hidden steps ending at each step
    (0 where visible), int ``(N, T, K)``."""
    runs = np.zeros(hidden.shape, dtype=np.int64)
    for t in range(hidden.shape[1]):
        prev = runs[:, t - 1] if t > 0 else 0
        runs[:, t] = np.where(hidden[:, t], prev + 1, 0)
    return runs


def _mean(values: torch.Tensor | np.ndarray, mask: npt.ArrayLike) -> float:
    """Mean of ``values`` where ``mask`` holds; nan when it holds nowhere."""
    arr = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    where = np.asarray(mask, dtype=bool)
    return float(arr[where].mean()) if where.any() else math.nan


@torch.no_grad()
def occlusion_metrics(
    model: Any,
    clean: SequenceSet,
    occluded: SequenceSet,
    *,
    threshold: float = 0.5,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The metrics of the module docstring for an :class:`s2ssm.models.S2SSM` (eval mode, each
    sequence with its environment's codebook row)."""

    k = model.config.model.num_objects
    hidden = hidden_objects(clean, occluded, k, threshold)
    device = next(model.parameters()).device
    model.eval()
    use_inter = model.config.model.use_interventions
    slots = {"clean": encode_sequences(model, clean, device, batch_size)}
    slots["occluded"] = encode_sequences(model, occluded, device, batch_size)
    t_all = clean.torch(device)
    preds: dict[str, list[torch.Tensor]] = {"clean": [], "occluded": []}
    graphs: dict[str, list[np.ndarray]] = {"clean": [], "occluded": []}
    for start in range(0, len(clean), batch_size):
        sl = slice(start, min(start + batch_size, len(clean)))
        inter = t_all["interventions"][sl] if use_inter else None
        for key in ("clean", "occluded"):
            out = model.dynamics(slots[key][sl], t_all["env_ids"][sl], inter)
            preds[key].append(out.pred[:, :-1].float())
            graphs[key].append(out.local_graphs()[:, :-1].cpu().numpy())
    target = slots["clean"][:, 1:]
    err = {key: (torch.cat(p) - target).pow(2).mean(-1) for key, p in preds.items()}  # (N,T-1,K)
    err_copy = (slots["occluded"][:, :-1] - target).pow(2).mean(-1)
    h_in, h_out = hidden[:, :-1], hidden[:, 1:]
    runs = hidden_run_lengths(hidden)[:, :-1]
    learned = {key: np.concatenate(g) for key, g in graphs.items()}  # (N, T-1, K, K+1)
    truth = clean.local_graphs[:, 1:].astype(bool)
    n, steps = truth.shape[:2]
    flat = {key: g.reshape(-1, k, k + 1) for key, g in learned.items()}
    flat_truth = truth.reshape(-1, k, k + 1)
    shd_occ = graph.shd(flat["occluded"], flat_truth, diagonal="ignore").reshape(n, steps)
    shd_clean = graph.shd(flat["clean"], flat_truth, diagonal="ignore").reshape(n, steps)
    change = graph.shd(flat["occluded"], flat["clean"], diagonal="ignore").reshape(n, steps)
    any_hidden = h_in.any(axis=-1)  # transitions whose input hides an object
    result: dict[str, Any] = {
        "hidden_fraction": float(hidden.mean()),
        "hidden_steps_per_object": hidden.sum(axis=(0, 1)).tolist(),
        "mse_hidden": _mean(err["occluded"], h_in),
        "mse_hidden_clean": _mean(err["clean"], h_in),
        "mse_hidden_copy": _mean(err_copy, h_in),
        "mse_visible": _mean(err["occluded"], ~h_in & ~h_out),
        "mse_hidden_run": {
            "1": _mean(err["occluded"], runs == 1),
            "2": _mean(err["occluded"], runs == 2),
            "3+": _mean(err["occluded"], runs >= 3),
        },
        "shd_hidden": _mean(shd_occ, any_hidden),
        "shd_hidden_clean": _mean(shd_clean, any_hidden),
        "shd_visible": _mean(shd_occ, ~any_hidden),
        "graph_change_hidden": _mean(change, any_hidden),
        "hidden_transitions": int(any_hidden.sum()),
        "transitions": int(any_hidden.size),
    }
    return result


def run_occlusion(
    checkpoints: Mapping[str, str | Path],
    *,
    env: str = "neutral",
    sequences: int = 64,
    seq_len: int | None = None,
    seed: int = 2_000_003,
    threshold: float = 0.5,
    intervention_prob: float | None = None,
    device: str = "auto",
) -> dict[str, dict[str, Any]]:
    """:func:`occlusion_metrics` of every checkpoint (name -> run directory or checkpoint) on
    the same ``sequences`` sequences of ``env`` (length and intervention probability default
    to each checkpoint's ``eval`` config; resolution = its ``data.resolution``)."""

    dev = select_device(device)
    results = {}
    for name, path in checkpoints.items():
        model, info = load_model(path, dev)
        cfg = info.config
        clean, occluded = occlusion_pair(
            env,
            sequences,
            seq_len or cfg.eval.seq_len,
            seed=seed,
            resolution=cfg.data.resolution,
            intervention_prob=cfg.eval.intervention_prob
            if intervention_prob is None
            else intervention_prob,
            velocity=cfg.data.velocity,
        )
        results[name] = occlusion_metrics(
            model, clean, occluded, threshold=threshold, batch_size=cfg.eval.batch_size
        )
        log.info("occlusion %s: mse_hidden %.3g", name, results[name]["mse_hidden"])
    return results


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mse_visible", "MSE visible"),
    ("mse_hidden", "MSE hidden"),
    ("mse_hidden_clean", "MSE hidden (clean input)"),
    ("mse_hidden_copy", "MSE hidden (copy)"),
    ("shd_visible", "SHD visible"),
    ("shd_hidden", "SHD hidden"),
    ("graph_change_hidden", "graph change hidden"),
)


def occlusion_markdown(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A markdown table: one row per (label, metrics), the main columns of the module doc."""
    head = ["model", *(title for _, title in _COLUMNS), "MSE hidden by run 1 / 2 / 3+"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in rows:
        cells = [label]
        for key, _ in _COLUMNS:
            value = float(m[key])
            cells.append("n/a" if math.isnan(value) else f"{value:.3g}")
        runs = m["mse_hidden_run"]
        cells.append(
            " / ".join("n/a" if math.isnan(runs[b]) else f"{runs[b]:.3g}" for b in RUN_BUCKETS)
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
