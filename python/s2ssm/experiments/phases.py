"""Running the protocol: what each kind of unit does (pre-train the shared VAE, train a model,
evaluate it on a simple environment, zero-shot and fine-tuning on a composite one, occlusion),
and :func:`run_protocol`, which runs the units of :func:`~s2ssm.experiments.protocol.plan_units`
in a resumable run directory and writes the report."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from s2ssm.config import Config, EvalConfig, config_to_dict
from s2ssm.errors import S2ssmError
from s2ssm.evaluation import plots
from s2ssm.evaluation.metrics import evaluate_env
from s2ssm.evaluation.occlusion import occlusion_metrics, occlusion_pair
from s2ssm.experiments.finetune import finetune_dynamics, set_env_code, trained_code
from s2ssm.experiments.protocol import (
    Protocol,
    Unit,
    model_config,
    plan_units,
    protocol_to_dict,
    vae_config,
)
from s2ssm.experiments.report import write_results
from s2ssm.experiments.rundir import RunDirectory, run_units
from s2ssm.models import S2SSM
from s2ssm.training import trainer
from s2ssm.training.checkpoint import find_checkpoint, load_model, load_trainer_state
from s2ssm.training.data import SequenceSet, generate_sequences

__all__ = ["evaluate_model", "run_protocol"]

log = logging.getLogger(__name__)


def evaluate_model(
    model: S2SSM,
    eval_cfg: EvalConfig,
    env: str,
    *,
    code: torch.Tensor | None = None,
    identify_from: torch.Tensor | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of ``model`` on ``env`` with :func:`s2ssm.evaluation.metrics.evaluate_env` (its
    metrics: ``mse_1step``, ``shd_local``, ``shd_global``, ``mse_rollout``, F1, ...) under
    ``eval_cfg``, always with the environment's own codebook row (never a code fitted on the
    test sequences): ``code`` is written into that row first (zero-shot: the mean trained
    code). With ``eval_cfg.env_code = "identified"`` no row is read: each test sequence's code
    is fitted on its first ``eval_cfg.context`` steps, starting from ``identify_from`` (default
    the mean trained code). Returns the scores (a JSON-able dict) and the raw arrays for
    :mod:`s2ssm.evaluation.plots`."""
    if code is not None:
        set_env_code(model, env, code)
    cfg = model.config
    envs = tuple(dict.fromkeys((*cfg.data.envs, env)))  # "trained": use the row
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, envs=envs), eval=eval_cfg)
    device = next(model.parameters()).device
    result, raw = evaluate_env(model, cfg, env, device, identify_from=identify_from)
    return result.as_dict(), raw


@dataclass
class _Context:
    """What the units of one invocation share (settings and the loaded model)."""

    protocol: Protocol
    base: Config
    root: Path
    loaded: tuple[tuple[str, int], S2SSM] | None = None

    def device(self) -> torch.device:
        return trainer.select_device(self.base.run.device)

    def run_dir(self, model: str, seed: int) -> Path:
        return self.root / "runs" / model / f"seed{seed}"

    def model(self, model: str, seed: int, fresh: bool = False) -> S2SSM:
        """The trained model (cached for the simple environments; ``fresh`` loads a private copy
        that zero-shot and fine-tuning may change)."""
        key = (model, seed)
        if not fresh and self.loaded is not None and self.loaded[0] == key:
            return self.loaded[1]
        loaded, _info = load_model(self.run_dir(model, seed), self.device())
        if not fresh:
            self.loaded = (key, loaded)
        return loaded  # type: ignore[no-any-return]


def _finetune(
    ctx: _Context,
    model: S2SSM,
    unit: Unit,
    data: SequenceSet,
    init_code: torch.Tensor,
    inputs: SequenceSet | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (a fresh copy) on ``data`` with the protocol's settings, λ continuing
    from the trained run's schedule; returns what the unit records about it."""
    cfg = model.config
    found = find_checkpoint(ctx.run_dir(unit.model, unit.seed))
    state = load_trainer_state(found) if found is not None else {}
    history = finetune_dynamics(
        model,
        data,
        init_code=init_code,
        steps=ctx.protocol.finetune_steps,
        lr=ctx.protocol.finetune_lr,
        batch_size=ctx.protocol.finetune_batch_size,
        sparsity=cfg.sparsity,
        lambda_state=state.get("lambda"),
        seed=unit.seed,
        weight_decay=cfg.optim.weight_decay,
        grad_clip=cfg.optim.grad_clip,
        inputs=inputs,
    )
    return {
        "finetune_sequences": len(data),
        "finetune_final_mse": history[-1]["mse"] if history else None,
    }


def _finetune_size(ctx: _Context, cfg: Config) -> int:
    """Fine-tuning sequences: ``finetune_fraction`` of the per-environment training data."""
    return max(1, round(ctx.protocol.finetune_fraction * cfg.data.train_sequences))


def _run_occlusion(ctx: _Context, unit: Unit) -> dict[str, Any]:
    """``occlusion``: the trained model on occluded frames; ``occlusion_finetune``: the same
    after fine-tuning a copy on occluded frames of the environment's training distribution
    (the model reads occluded slots and is scored on the clean ones)."""
    t0 = time.perf_counter()
    ev = ctx.base.eval
    extra: dict[str, Any] = {}
    if unit.kind == "occlusion_finetune":
        model = ctx.model(unit.model, unit.seed, fresh=True)
        cfg = model.config
        ft_clean, ft_occluded = occlusion_pair(
            unit.env,
            _finetune_size(ctx, cfg),
            cfg.data.seq_len,
            seed=cfg.data.seed,
            resolution=cfg.data.resolution,
            intervention_prob=cfg.data.intervention_prob,
            num_threads=ctx.base.run.num_threads or None,
            velocity=cfg.data.velocity,
        )
        own_code = trained_code(model, (unit.env,))  # a trained environment keeps its code
        extra = _finetune(ctx, model, unit, ft_clean, own_code, inputs=ft_occluded)
    else:
        model = ctx.model(unit.model, unit.seed)
    clean, occluded = occlusion_pair(
        unit.env,
        ev.sequences,
        ev.seq_len,
        seed=ev.seed,
        resolution=ctx.base.data.resolution,
        intervention_prob=ev.intervention_prob,
        num_threads=ctx.base.run.num_threads or None,
        velocity=ctx.base.data.velocity,
    )
    result = occlusion_metrics(model, clean, occluded, batch_size=ev.batch_size)
    for bucket, value in result.pop("mse_hidden_run").items():
        result[f"mse_hidden_run_{bucket}"] = value
    result.update(extra)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def _run_train(ctx: _Context, unit: Unit) -> dict[str, Any]:
    if unit.kind == "pretrain":
        cfg = vae_config(ctx.base, ctx.protocol, unit.seed, ctx.root)
    else:
        cfg = model_config(ctx.base, ctx.protocol, unit.model, unit.seed, ctx.root)
    t0 = time.perf_counter()
    result = trainer.train(cfg, resume=True)
    wall = time.perf_counter() - t0
    last: dict[str, Any] = result.history[-1] if result.history else {}
    return {
        "wall_s": round(wall, 3),
        "steps": result.step,
        "steps_this_call": len(result.history),
        "checkpoint": str(Path(result.checkpoint).relative_to(ctx.root))
        if result.checkpoint is not None
        else None,
        "final": {
            k: last[k]
            for k in ("mse", "paths", "lambda", "edge_density", "vae_recon", "vae_kl")
            if k in last
        },
    }


def _run_eval(ctx: _Context, unit: Unit) -> dict[str, Any]:
    t0 = time.perf_counter()
    code = start = None
    extra: dict[str, Any] = {}
    if unit.kind == "simple":
        model = ctx.model(unit.model, unit.seed)
    elif unit.kind == "zero_shot":
        model = ctx.model(unit.model, unit.seed, fresh=True)
        code = trained_code(model, ctx.protocol.simple_envs)
    else:
        model = ctx.model(unit.model, unit.seed, fresh=True)
        cfg = model.config
        ft_data = generate_sequences(
            (unit.env,),
            _finetune_size(ctx, cfg),
            cfg.data.seq_len,
            seed=cfg.data.seed,
            resolution=cfg.data.resolution,
            intervention_prob=cfg.data.intervention_prob,
            num_threads=ctx.base.run.num_threads or None,
            velocity=cfg.data.velocity,
        )
        mean_code = trained_code(model, ctx.protocol.simple_envs)
        extra = _finetune(ctx, model, unit, ft_data, mean_code)
        start = trained_code(model, (unit.env,))  # identified: start from the adapted row
    result, raw = evaluate_model(model, ctx.base.eval, unit.env, code=code, identify_from=start)
    if ctx.protocol.figures and unit.seed == ctx.protocol.seeds[0]:
        _unit_figures(ctx, model, unit, raw)
    result.update(extra)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def _unit_figures(ctx: _Context, model: S2SSM, unit: Unit, raw: dict[str, Any]) -> None:
    """Graph heatmaps and the rollout strip of one evaluation (:mod:`s2ssm.evaluation.plots`)."""
    stem = f"{unit.kind}__{unit.model}__{unit.env}"
    try:
        plots.plot_graphs(raw, unit.env, ctx.root / "figures" / f"graphs__{stem}.png")
        plots.plot_rollout(
            model,
            raw,
            ctx.base.eval.context,
            unit.env,
            ctx.root / "figures" / f"rollout__{stem}.png",
        )
    except S2ssmError as error:  # matplotlib missing
        log.warning("no figures: %s", error)


def run_protocol(
    protocol: Protocol,
    base: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    on_unit: Callable[[Unit, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every unit of ``protocol`` not yet recorded in ``out_dir``, then write the tables and
    figures. Returns the summary written to ``OUT/results.json`` (its ``ran`` / ``skipped``
    list the unit ids of this call). ``on_unit`` is called after each unit is recorded."""
    root = Path(out_dir)
    rundir = RunDirectory(root)
    rundir.bind({"protocol": protocol_to_dict(protocol), "config": config_to_dict(base)})
    if base.run.num_threads > 0:  # also for evaluations of a resumed run that trains nothing
        torch.set_num_threads(base.run.num_threads)
    ctx = _Context(protocol, base, root)
    runners = {
        "pretrain": _run_train,
        "train": _run_train,
        "occlusion": _run_occlusion,
        "occlusion_finetune": _run_occlusion,
    }
    t_start = time.perf_counter()
    ran, skipped = run_units(
        rundir,
        plan_units(protocol),
        lambda unit: runners.get(unit.kind, _run_eval)(ctx, unit),
        progress=progress,
        desc="reproduce",
        on_unit=on_unit,
    )
    return write_results(
        rundir, protocol, base, ran=ran, skipped=skipped, wall_s=time.perf_counter() - t_start
    )
