"""Evaluation of a checkpoint: rollout MSE and structural Hamming distances, per environment.

For each environment, ``eval.sequences`` fresh sequences (seed ``eval.seed``, disjoint from any
training seed by default) are encoded with the checkpoint's VAE and the dynamics run in
evaluation mode (deterministic, thresholded gates). Reported per environment:

- ``mse_1step``: next-slot MSE with teacher forcing (every transition of every sequence);
  ``mse_copy``: the same for "nothing moves" (predict slot t for t + 1), and ``slot_var``: the
  variance of the slots, both to read ``mse_1step`` against the scale of the latent space;
  ``mse_floor``: the irreducible next-slot MSE of this slot space
  (:mod:`s2ssm.evaluation.noise_floor`, ``eval.floor_draws`` re-simulations per transition;
  ``nan`` when 0), the level no model can beat;
- ``mse_rollout``: MSE of an autoregressive rollout of ``eval.horizon`` steps after
  ``eval.context`` observed ones, averaged over the horizon (``mse_rollout_steps`` per step);
- ``shd_local``: mean SHD between the learned local graph of each transition and the
  simulator's ground truth (``s2ssm.graph.shd``, ``reversal="double"``, self-loops ignored: the
  model's own-history path is never gated, see :mod:`s2ssm.models`); ``shd_local_dense`` and
  ``shd_local_empty`` the same for the complete and the empty graph, the scores of models that
  learned no structure;
- ``shd_global``: SHD between the aggregated graph (edges present in more than
  ``eval.global_min_fraction`` of the local graphs) and the environment's global graph;
- precision / recall / F1 of the local edges (self-loops ignored) and the learned edge density.

Environments without a trained code (not in ``data.envs``) get one fitted on their first
``eval.batch_size`` sequences with :func:`s2ssm.models.fit_env_code` (``code = "fitted"``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ssm import graph
from s2ssm.config import Config, apply_overrides
from s2ssm.evaluation.noise_floor import slot_noise_floor
from s2ssm.files import atomic_write_text
from s2ssm.models import S2SSM, adjacency_layers, fit_env_code, rollout
from s2ssm.training.checkpoint import load_model
from s2ssm.training.data import SequenceSet, env_id, generate_sequences, global_graph
from s2ssm.training.trainer import select_device

__all__ = [
    "EnvResult",
    "encode_sequences",
    "evaluate",
    "evaluate_env",
    "format_markdown",
    "learned_local_graphs",
]

log = logging.getLogger(__name__)


@dataclass
class EnvResult:
    """The scores of one environment."""

    env: str
    code: str  # "trained" or "fitted"
    sequences: int
    mse_1step: float
    mse_copy: float
    mse_floor: float
    slot_var: float
    mse_rollout: float
    mse_rollout_steps: list[float]
    shd_local: float
    shd_local_dense: float
    shd_local_empty: float
    shd_global: int
    precision: float
    recall: float
    f1: float
    edge_density: float
    learned_global: list[list[float]]  # share of local graphs with each edge, (K, K + 1)
    true_global: list[list[bool]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def learned_local_graphs(edges: torch.Tensor) -> np.ndarray:
    """Bool local graphs (..., K, K + 1) from per-layer edges (..., L, K, K + 1), computed with
    the Rust ``s2ssm.graph.causal_graph`` (child x parent, (Ā - I) > 0)."""
    lead = edges.shape[:-3]
    k = edges.shape[-2]
    square = adjacency_layers(edges.to(torch.uint8)).cpu().numpy()
    flat = square.reshape(-1, *square.shape[-3:])
    graphs = graph.causal_graph(flat, layout="child_parent")[:, :k, :]
    return graphs.reshape(*lead, k, k + 1)


@torch.no_grad()
def encode_sequences(
    model: S2SSM, data: SequenceSet, device: torch.device, batch_size: int = 64
) -> torch.Tensor:
    """Slots (N, T, K, D) of every sequence of ``data`` (the VAE's posterior means), float32,
    encoded ``batch_size`` sequences at a time."""
    model.vae.eval()
    chunks = []
    for i in range(0, len(data), batch_size):
        part = data.take(np.arange(i, min(i + batch_size, len(data)))).torch(device)
        chunks.append(model.encode_slots(part["frames"], part["masks"]).float())
    return torch.cat(chunks)


def _noise_floor(model: S2SSM, config: Config, env: str, device: torch.device) -> float:
    """``mse_floor`` of :func:`evaluate_env`: the noise floor on the evaluation sequences."""
    ecfg = config.eval
    if ecfg.floor_draws <= 0:
        return float("nan")
    from s2ssm import sim

    batch = sim.generate(
        env,
        ecfg.sequences,
        ecfg.seq_len,
        seed=ecfg.seed,
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
        render=False,  # the same states as the evaluation sequences, without drawing them again
    )
    return slot_noise_floor(
        lambda f, m: model.encode_slots(f.to(device), m.to(device)),
        env,
        batch.states,
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
        draws=ecfg.floor_draws,
        # a model told the intervention targets is measured against a predictor told them too
        targets=batch.interventions if config.model.use_interventions else None,
    )


def evaluate_env(
    model: S2SSM, config: Config, env: str, device: torch.device
) -> tuple[EnvResult, dict[str, Any]]:
    """Scores of ``model`` on environment ``env``; also returns the raw arrays (slots,
    predictions, learned and true graphs) that :mod:`s2ssm.evaluation.plots` draws."""
    ecfg, mcfg = config.eval, config.model
    data = generate_sequences(
        (env,),
        ecfg.sequences,
        ecfg.seq_len,
        seed=ecfg.seed,
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
    )
    model.eval()
    dyn = model.dynamics
    slots = encode_sequences(model, data, device, ecfg.batch_size)
    inter_all = torch.from_numpy(data.interventions).to(device) if mcfg.use_interventions else None
    trained = env in config.data.envs and env_id(env) < dyn.env_slot.codebook.num_embeddings
    code = None
    if not trained:
        head = slice(0, min(ecfg.batch_size, len(data)))
        with torch.enable_grad():
            code = fit_env_code(
                dyn,
                slots[head],
                None if inter_all is None else inter_all[head],
                steps=ecfg.fit_code_steps,
                lr=ecfg.fit_code_lr,
            ).unsqueeze(0)
    ids_all = torch.full((len(data),), env_id(env), device=device, dtype=torch.long)

    preds, edges, rollouts = [], [], []
    c, h = ecfg.context, ecfg.horizon
    with torch.no_grad():
        for i in range(0, len(data), ecfg.batch_size):
            sl = slice(i, min(i + ecfg.batch_size, len(data)))
            ids = None if code is not None else ids_all[sl]
            inter = None if inter_all is None else inter_all[sl]
            out = dyn(slots[sl], ids, inter, code)
            preds.append(out.pred.float())
            edges.append(out.edges)
            inter_roll = None if inter is None else inter[:, : c + h]
            rollouts.append(rollout(dyn, slots[sl, :c], h, ids, inter_roll, code).float())
    pred = torch.cat(preds)
    edge = torch.cat(edges)
    roll = torch.cat(rollouts)

    mse_1 = float(((pred[:, :-1] - slots[:, 1:]) ** 2).mean())
    mse_copy = float(((slots[:, :-1] - slots[:, 1:]) ** 2).mean())
    mse_floor = _noise_floor(model, config, env, device)
    slot_var = float(slots.var(dim=(0, 1)).mean())
    per_step = ((roll - slots[:, c : c + h]) ** 2).mean(dim=(0, 2, 3))

    k = mcfg.num_objects
    learned = learned_local_graphs(edge[:, :-1])  # transitions t -> t + 1, t = 0 .. T - 2
    truth = data.local_graphs[:, 1:].astype(bool)
    flat_l = learned.reshape(-1, k, k + 1)
    flat_t = truth.reshape(-1, k, k + 1)
    shd_local = float(np.mean(graph.shd(flat_l, flat_t, diagonal="ignore")))
    dense = np.ones_like(flat_t)
    shd_dense = float(np.mean(graph.shd(dense, flat_t, diagonal="ignore")))
    empty = np.zeros_like(flat_t)
    shd_empty = float(np.mean(graph.shd(empty, flat_t, diagonal="ignore")))
    metrics = graph.edge_metrics(flat_l, flat_t, diagonal="ignore")
    tp, fp, fn = (int(np.sum(getattr(metrics, f))) for f in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    off = ~np.eye(k, k + 1, dtype=bool)
    density = float(flat_l[:, off].mean())

    share = flat_l.mean(axis=0)
    true_global = global_graph(env)
    learned_global = share > ecfg.global_min_fraction
    shd_global = int(graph.shd(learned_global, true_global, diagonal="ignore"))
    result = EnvResult(
        env=env,
        code="trained" if trained else "fitted",
        sequences=len(data),
        mse_1step=mse_1,
        mse_copy=mse_copy,
        mse_floor=mse_floor,
        slot_var=slot_var,
        mse_rollout=float(per_step.mean()),
        mse_rollout_steps=[float(x) for x in per_step],
        shd_local=shd_local,
        shd_local_dense=shd_dense,
        shd_local_empty=shd_empty,
        shd_global=shd_global,
        precision=precision,
        recall=recall,
        f1=f1,
        edge_density=density,
        learned_global=share.round(4).tolist(),
        true_global=true_global.tolist(),
    )
    raw = {
        "data": data,
        "slots": slots,
        "pred": pred,
        "rollout": roll,
        "learned": learned,
        "truth": truth,
        "learned_share": share,
        "true_global": true_global,
        "code": code,
    }
    return result, raw


_COLUMNS = (
    ("env", "env", "{}"),
    ("code", "code", "{}"),
    ("mse_1step", "MSE 1-step", "{:.3g}"),
    ("mse_copy", "MSE copy", "{:.3g}"),
    ("mse_floor", "MSE floor", "{:.3g}"),
    ("slot_var", "slot var", "{:.3g}"),
    ("mse_rollout", "MSE rollout", "{:.3g}"),
    ("shd_local", "SHD local", "{:.3f}"),
    ("shd_local_dense", "SHD local (complete)", "{:.3f}"),
    ("shd_local_empty", "SHD local (empty)", "{:.3f}"),
    ("shd_global", "SHD global", "{}"),
    ("f1", "F1 local", "{:.3f}"),
    ("edge_density", "edge density", "{:.3f}"),
)


def format_markdown(results: list[EnvResult], title: str = "") -> str:
    """The results as a markdown table."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(head for _, head, _ in _COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in _COLUMNS) + "|")
    for r in results:
        cells = [fmt.format(getattr(r, key)) for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate(
    checkpoint: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    envs: list[str] | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
) -> tuple[list[EnvResult], Path]:
    """Evaluate ``checkpoint`` on ``envs`` (default ``eval.envs`` of its config, with ``--set``
    ``overrides``); writes ``eval.json`` and ``eval.md`` into ``out_dir`` (default: the
    checkpoint's run directory) and returns the results and that directory."""
    dev = select_device(device)
    model, info = load_model(checkpoint, dev)
    config = apply_overrides(info.config, overrides)
    names = list(envs) if envs else list(config.eval.envs)
    for name in names:
        env_id(name)
    results = []
    for name in names:
        result, _ = evaluate_env(model, config, name, dev)
        log.info("%s: mse_1step %.3g shd_local %.3f", name, result.mse_1step, result.shd_local)
        results.append(result)
    target = Path(out_dir) if out_dir is not None else info.path.parent.parent
    report = {
        "checkpoint": str(info.path),
        "step": info.step,
        "model": config.model.kind,
        "sparsity": config.sparsity.enabled,
        "results": [r.as_dict() for r in results],
    }
    atomic_write_text(target / "eval.json", json.dumps(report, indent=2) + "\n")
    sparsity = "on" if config.sparsity.enabled else "off"
    title = f"{config.model.kind} (sparsity {sparsity}), step {info.step}"
    atomic_write_text(target / "eval.md", format_markdown(results, title))
    return results, target
