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
  learned no structure; ``shd_best_constant`` the same for the best constant graph and
  ``shd_tokens_only`` for the graph read from the intervention targets alone (a model told
  them), both fitted on the environment's training distribution
  (:mod:`s2ssm.evaluation.graph_baselines`; all under ``baselines`` with precision, recall
  and F1);
- ``edges[child][parent]``: per local edge, the AUROC of the model's edge score (expected path
  count from the gate probabilities) against the true edge, P(open | true), P(open | false);
- ``shd_global``: SHD between the aggregated graph (edges present in more than
  ``eval.global_min_fraction`` of the local graphs) and the environment's global graph;
- precision / recall / F1 of the local edges (self-loops ignored) and the learned edge density.

The environment code (``code``): with ``eval.env_code = "trained"`` a trained environment
uses its codebook row (``"trained"``) and one without (not in ``data.envs``) a code fitted on
its first ``eval.batch_size`` sequences with :func:`s2ssm.models.fit_env_code` (``"fitted"``).
With ``eval.env_code = "identified"`` the model is told nothing about the environment: each
sequence's code is fitted on its own first ``eval.context`` steps
(:func:`s2ssm.models.identify_env_codes`), and every score except the rollout's (which starts
after that context anyway) covers only the transitions after the context, t >= context - 1
(``"identified"``), the floor and the baselines included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ssm import graph, sim
from s2ssm.config import Config, apply_overrides
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.events import event_errors, event_table, transition_events
from s2ssm.evaluation.graph_baselines import (
    best_constant_graph,
    edge_report,
    graph_scores,
    tokens_only_graphs,
)
from s2ssm.evaluation.noise_floor import slot_noise_floor
from s2ssm.files import atomic_write_text
from s2ssm.models import S2SSM, adjacency_layers, fit_env_code, identify_env_codes, rollout
from s2ssm.training.checkpoint import load_model
from s2ssm.training.data import SequenceSet, env_id, generate_sequences, global_graph
from s2ssm.training.trainer import select_device

__all__ = [
    "SPLITS",
    "TABLE_EDGES",
    "EnvResult",
    "edge_markdown",
    "encode_sequences",
    "eval_table",
    "evaluate",
    "evaluate_env",
    "format_markdown",
    "learned_local_graphs",
]

log = logging.getLogger(__name__)

#: ``test``: the sequences of ``eval.seed`` (what tables report); ``validation``: those of
#: ``eval.validation_seed`` (where settings are chosen).
SPLITS: tuple[str, ...] = ("test", "validation")


@dataclass
class EnvResult:
    """The scores of one environment."""

    env: str
    code: str  # "trained", "fitted" or "identified"
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
    shd_best_constant: float  # the best constant graph's (graph_baselines)
    shd_tokens_only: float  # the intervention-token graph's; nan for a model not told them
    shd_global: int
    precision: float
    recall: float
    f1: float
    edge_density: float
    learned_global: list[list[float]]  # share of local graphs with each edge, (K, K + 1)
    true_global: list[list[bool]]
    # empty / best_constant / tokens_only: shd_local, precision, recall, f1 (graph_baselines)
    baselines: dict[str, Any] = field(default_factory=dict)
    edges: dict[str, Any] = field(default_factory=dict)  # [child][parent]: auroc, p_open_*, n
    # [event]: n, mse per object, for the events of s2ssm.evaluation.events
    events: dict[str, Any] = field(default_factory=dict)

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


def _eval_states(config: Config, env: str) -> sim.PongBatch:
    """The evaluation sequences of ``env`` without drawing them again: states, targets and
    true graphs of :func:`evaluate_env`'s data."""
    ecfg = config.eval
    return sim.generate(
        env,
        ecfg.sequences,
        ecfg.seq_len,
        seed=ecfg.seed,
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
        render=False,
    )


def _noise_floor(
    model: S2SSM,
    config: Config,
    env: str,
    device: torch.device,
    batch: sim.PongBatch,
    first: int = 0,
) -> float:
    """``mse_floor`` of :func:`evaluate_env`: the noise floor on the evaluation sequences
    (``batch``: their :func:`_eval_states`), transitions ``first`` .. T - 2."""
    ecfg = config.eval
    if ecfg.floor_draws <= 0:
        return float("nan")
    return slot_noise_floor(
        lambda f, m: model.encode_slots(f.to(device), m.to(device)),
        env,
        batch.states[:, first:],
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
        draws=ecfg.floor_draws,
        # a model told the intervention targets is measured against a predictor told them too
        targets=batch.interventions[:, first:] if config.model.use_interventions else None,
        velocity=config.data.velocity,
    )


def _baselines(config: Config, env: str, truth: np.ndarray, tokens: np.ndarray) -> dict[str, Any]:
    """Scores of the graphs that need no model (:mod:`s2ssm.evaluation.graph_baselines`) on
    the evaluation transitions ``truth`` (N, K, K + 1) with targets ``tokens`` (N, I): the
    empty graph, the best constant graph and (for a model told the targets) the tokens-only
    graph, both fitted on ``env``'s training distribution (``data.train_sequences`` sequences,
    ``data.seed``, ``data.intervention_prob``; states only)."""
    dcfg = config.data
    train = sim.generate(
        env,
        dcfg.train_sequences,
        dcfg.seq_len,
        seed=dcfg.seed,
        resolution=dcfg.resolution,
        intervention_prob=dcfg.intervention_prob,
        render=False,
    )
    k = truth.shape[1]
    train_truth = np.asarray(train.local_graphs[:, 1:], bool).reshape(-1, k, k + 1)
    train_tokens = np.asarray(train.interventions[:, 1:], bool).reshape(-1, tokens.shape[-1])
    constant = best_constant_graph(train_truth)
    result: dict[str, Any] = {
        "empty": graph_scores(np.zeros_like(truth), truth),
        "best_constant": {**graph_scores(constant, truth), "graph": constant.tolist()},
        "tokens_only": None,
    }
    if config.model.use_interventions:
        told = tokens_only_graphs(train_truth, train_tokens, tokens)
        result["tokens_only"] = graph_scores(told, truth)
    return result


def evaluate_env(
    model: S2SSM,
    config: Config,
    env: str,
    device: torch.device,
    identify_from: torch.Tensor | None = None,
) -> tuple[EnvResult, dict[str, Any]]:
    """Scores of ``model`` on environment ``env``; also returns the raw arrays (slots,
    predictions, learned and true graphs) that :mod:`s2ssm.evaluation.plots` draws.
    ``identify_from`` (d_model,): with ``eval.env_code = "identified"``, where each sequence's
    fit starts (default: the mean code of ``data.envs``), e.g. the row fine-tuning learnt."""
    ecfg, mcfg = config.eval, config.model
    data = generate_sequences(
        (env,),
        ecfg.sequences,
        ecfg.seq_len,
        seed=ecfg.seed,
        resolution=config.data.resolution,
        intervention_prob=ecfg.intervention_prob,
        velocity=config.data.velocity,
    )
    model.eval()
    dyn = model.dynamics
    slots = encode_sequences(model, data, device, ecfg.batch_size)
    inter_all = torch.from_numpy(data.interventions).to(device) if mcfg.use_interventions else None
    trained = env in config.data.envs and env_id(env) < dyn.env_slot.codebook.num_embeddings
    identified = ecfg.env_code == "identified"
    c, h = ecfg.context, ecfg.horizon
    codes = None  # (N or 1, d_model), or the codebook rows
    if identified:
        rows = dyn.env_slot.codebook.weight.detach()
        known = [env_id(e) for e in config.data.envs if env_id(e) < rows.shape[0]]
        # the mean trained code, as a zero-shot code, unless the caller knows better
        init = rows[known].mean(0) if identify_from is None else identify_from.to(rows)
        with torch.enable_grad():
            codes = identify_env_codes(
                dyn, slots, c, inter_all, init=init, steps=ecfg.fit_code_steps, lr=ecfg.fit_code_lr
            )
    elif not trained:
        head = slice(0, min(ecfg.batch_size, len(data)))
        with torch.enable_grad():
            codes = fit_env_code(
                dyn,
                slots[head],
                None if inter_all is None else inter_all[head],
                steps=ecfg.fit_code_steps,
                lr=ecfg.fit_code_lr,
            ).unsqueeze(0)
    ids_all = torch.full((len(data),), env_id(env), device=device, dtype=torch.long)

    preds, edges, scores, rollouts = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(data), ecfg.batch_size):
            sl = slice(i, min(i + ecfg.batch_size, len(data)))
            code = None if codes is None else codes[sl] if identified else codes
            ids = None if code is not None else ids_all[sl]
            inter = None if inter_all is None else inter_all[sl]
            out = dyn(slots[sl], ids, inter, code)
            preds.append(out.pred.float())
            edges.append(out.edges)
            scores.append(out.local_edge_scores()[:, :-1].cpu().numpy())
            inter_roll = None if inter is None else inter[:, : c + h]
            rollouts.append(rollout(dyn, slots[sl, :c], h, ids, inter_roll, code).float())
    pred = torch.cat(preds)
    edge = torch.cat(edges)
    roll = torch.cat(rollouts)

    first = c - 1 if identified else 0  # the first scored transition t -> t + 1
    squared = (pred[:, first:-1] - slots[:, first + 1 :]) ** 2  # (N, T - 1 - first, K, D)
    mse_1 = float(squared.mean())
    mse_copy = float(((slots[:, first:-1] - slots[:, first + 1 :]) ** 2).mean())
    states = _eval_states(config, env)
    # the states regenerated without frames must be those of the frames scored here
    if not np.array_equal(np.asarray(states.local_graphs, bool), data.local_graphs.astype(bool)):
        raise RuntimeError(f"{env}: the evaluation states do not match the evaluation frames")
    mse_floor = _noise_floor(model, config, env, device, states, first)
    slot_var = float(slots.var(dim=(0, 1)).mean())
    per_step = ((roll - slots[:, c : c + h]) ** 2).mean(dim=(0, 2, 3))

    k = mcfg.num_objects
    learned = learned_local_graphs(edge[:, first:-1])  # transitions t -> t + 1, t >= first
    truth = data.local_graphs[:, first + 1 :].astype(bool)
    flat_l = learned.reshape(-1, k, k + 1)
    flat_t = truth.reshape(-1, k, k + 1)
    own = graph_scores(flat_l, flat_t)
    shd_local = own["shd_local"]
    precision, recall, f1 = own["precision"], own["recall"], own["f1"]
    shd_dense = graph_scores(np.ones_like(flat_t), flat_t)["shd_local"]
    tokens = data.interventions[:, first + 1 :].reshape(-1, data.interventions.shape[-1])
    baselines = _baselines(config, env, flat_t, tokens)
    off = ~np.eye(k, k + 1, dtype=bool)
    density = float(flat_l[:, off].mean())
    names = [str(o) for o in sim.OBJECTS][:k]
    events = transition_events(
        states.states[:, first:], states.local_graphs[:, first:], sim.OBJECTS, sim.STATE_NAMES
    )
    errors = squared.mean(dim=-1).cpu().numpy()
    edge_stats = edge_report(
        np.concatenate(scores)[:, first:].reshape(-1, k, k + 1),
        flat_l,
        flat_t,
        names,
        [*names, "env"],
    )

    share = flat_l.mean(axis=0)
    true_global = global_graph(env)
    learned_global = share > ecfg.global_min_fraction
    shd_global = int(graph.shd(learned_global, true_global, diagonal="ignore"))
    result = EnvResult(
        env=env,
        code="identified" if identified else "trained" if trained else "fitted",
        sequences=len(data),
        mse_1step=mse_1,
        mse_copy=mse_copy,
        mse_floor=mse_floor,
        slot_var=slot_var,
        mse_rollout=float(per_step.mean()),
        mse_rollout_steps=[float(x) for x in per_step],
        shd_local=shd_local,
        shd_local_dense=shd_dense,
        shd_local_empty=baselines["empty"]["shd_local"],
        shd_best_constant=baselines["best_constant"]["shd_local"],
        shd_tokens_only=baselines["tokens_only"]["shd_local"]
        if baselines["tokens_only"] is not None
        else math.nan,
        shd_global=shd_global,
        precision=precision,
        recall=recall,
        f1=f1,
        edge_density=density,
        learned_global=share.round(4).tolist(),
        true_global=true_global.tolist(),
        baselines=baselines,
        edges=edge_stats,
        events=event_errors(errors, events, tuple(names)),
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
        "code": codes,
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
    ("shd_best_constant", "SHD local (best constant)", "{:.3f}"),
    ("shd_tokens_only", "SHD local (tokens only)", "{:.3f}"),
    ("shd_global", "SHD global", "{}"),
    ("f1", "F1 local", "{:.3f}"),
    ("edge_density", "edge density", "{:.3f}"),
)


def format_markdown(results: list[EnvResult], title: str = "") -> str:
    """The results as markdown: one table of scores (a row per environment), then per
    environment a table of its local edges (AUROC, P(open | true), P(open | false))."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(head for _, head, _ in _COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in _COLUMNS) + "|")
    for r in results:
        cells = [fmt.format(getattr(r, key)) for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    for r in results:
        if r.edges:
            lines += ["", f"Local edges, {r.env}:", "", edge_markdown(r.edges).rstrip("\n")]
    rows = [(title or "model", r.env, r.events) for r in results if r.events]
    if rows:
        lines += ["", "1-step error by transition event (x 1e-3):", "", event_table(rows).rstrip()]
    return "\n".join(lines) + "\n"


def edge_markdown(edges: dict[str, Any]) -> str:
    """An ``edges`` report (:func:`~s2ssm.evaluation.graph_baselines.edge_report`) as a
    markdown table: a row per local edge parent -> child."""

    def cell(value: float | None, fmt: str = "{:.3f}") -> str:
        return "n/a" if value is None else fmt.format(value)

    lines = [
        "| edge | true share | AUROC | P(open \\| true) | P(open \\| false) |",
        "|---|---|---|---|---|",
    ]
    for child, row in edges.items():
        for parent, e in row.items():
            share = e["n_true"] / e["n"] if e["n"] else None
            lines.append(
                f"| {parent} -> {child} | {cell(share)} | {cell(e['auroc'])} | "
                f"{cell(e['p_open_true'])} | {cell(e['p_open_false'])} |"
            )
    return "\n".join(lines) + "\n"


#: The local edges of :func:`eval_table`, as (parent, child): the interactions of Pong (the
#: report of :mod:`s2ssm.experiments.report` adds the environment's edges).
TABLE_EDGES: tuple[tuple[str, str], ...] = (
    ("ball", "left_paddle"),
    ("ball", "right_paddle"),
    ("left_paddle", "ball"),
    ("right_paddle", "ball"),
    ("ball", "score"),
)


def eval_table(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Several ``eval.json`` reports (label, parsed JSON) side by side as markdown: a row per
    (report, environment) with MSE against the floor and the copy baseline, the local SHD
    against the empty and best constant graphs, F1, edge density, and per edge of
    :data:`TABLE_EDGES` its AUROC and P(open | true) / P(open | false)."""

    def num(value: Any, fmt: str) -> str:
        return "n/a" if value is None or value != value else fmt.format(value)

    head = ["run", "split", "env", "MSE", "MSE / floor", "MSE copy", "SHD local", "SHD empty"]
    head += ["SHD best constant", "F1", "edge density"]
    head += [f"{p} -> {c} AUROC, P(open \\| true / false)" for p, c in TABLE_EDGES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, report in reports:
        for r in report["results"]:
            floor = r["mse_floor"]
            cells = [label, str(report.get("split", "test")), r["env"]]
            cells += [num(r["mse_1step"], "{:.2e}"), num(r["mse_1step"] / floor, "{:.2f}")]
            cells += [num(r["mse_copy"], "{:.2e}"), num(r["shd_local"], "{:.3f}")]
            cells += [num(r["shd_local_empty"], "{:.3f}"), num(r["shd_best_constant"], "{:.3f}")]
            cells += [num(r["f1"], "{:.3f}"), num(r["edge_density"], "{:.3f}")]
            for parent, child in TABLE_EDGES:
                e = r["edges"][child][parent]
                cells.append(
                    f"{num(e['auroc'], '{:.2f}')}, {num(e['p_open_true'], '{:.2f}')} / "
                    f"{num(e['p_open_false'], '{:.3f}')}"
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate(
    checkpoint: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    envs: list[str] | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    split: str = "test",
    json_path: str | Path | None = None,
) -> tuple[list[EnvResult], Path]:
    """Evaluate ``checkpoint`` on ``envs`` (default ``eval.envs`` of its config, with ``--set``
    ``overrides``) on the ``split`` ``"test"`` (sequences of ``eval.seed``, what tables
    report) or ``"validation"`` (``eval.validation_seed``, where settings are chosen); writes
    ``eval.json`` (or ``json_path``) and ``eval.md`` into ``out_dir`` (default: the
    checkpoint's run directory) and returns the results and that directory."""
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {SPLITS}, got {split!r}")
    dev = select_device(device)
    model, info = load_model(checkpoint, dev)
    config = apply_overrides(info.config, overrides)
    if split == "validation":  # score the validation sequences: the two seeds trade places
        ecfg = config.eval
        swapped = dataclasses.replace(ecfg, seed=ecfg.validation_seed, validation_seed=ecfg.seed)
        config = dataclasses.replace(config, eval=swapped)
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
        "split": split,
        "eval_seed": config.eval.seed,
        "results": [r.as_dict() for r in results],
    }
    json_file = Path(json_path) if json_path is not None else target / "eval.json"
    atomic_write_text(json_file, json.dumps(report, indent=2) + "\n")
    sparsity = "on" if config.sparsity.enabled else "off"
    title = f"{config.model.kind} (sparsity {sparsity}), step {info.step}, {split} split"
    atomic_write_text(target / "eval.md", format_markdown(results, title))
    return results, target
