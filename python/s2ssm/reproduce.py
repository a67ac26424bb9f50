"""Reproduce the experiments of arXiv 2505.02074 with one resumable command (``s2ssm reproduce``).

The protocol (issue #6):

0. **Shared VAE.** Per seed, the object VAE is pre-trained once on the simple environments;
   every model of the seed starts from it (frozen), so all predict in the same slot space.
1. **Simple environments.** For every model variant (:data:`MODEL_VARIANTS`: S2-SSM, the
   equivalent Transformer, the dense SSM with λ = 0) and seed, train one world model on the 7
   simple environments together (each with its own environment code), then evaluate next-slot
   MSE and SHD on held-out sequences of each simple environment.
2. **Composite environments.** For each of the 4 composite environments: *zero-shot* (no
   parameter changes; the environment code is the mean of the trained codes) and *fine-tuned*
   (the composite environment's codebook row is initialised to that mean, then the dynamics are
   fine-tuned, VAE frozen, on ``finetune_fraction`` = 10% of the per-environment training data).
3. **Occlusion** (beyond the paper, :mod:`s2ssm.occlusion`): the trained models on
   ``occlusion_envs`` rendered with the simulator's occluder; with ``occlusion_finetune``, again
   after fine-tuning a copy (the ``finetune_*`` settings) on occluded frames of the environment,
   the model reading occluded slots and scored on the clean ones.
4. Mean ± sample standard deviation (``ddof = 1``) over the seeds; markdown and JSON tables,
   graph heatmaps and rollout strips.

Run directory (``OUT``)::

    OUT/protocol.json            the protocol and base config; a rerun must match it
    OUT/units/<unit>.json        one record per finished unit of work, written atomically
    OUT/runs/vae/seed<s>/        the seed's shared VAE pre-training (protocol.shared_vae)
    OUT/runs/<model>/seed<s>/    training runs (s2ssm.train; an interrupted one resumes from
                                 its last checkpoint)
    OUT/results.json, OUT/results.md
    OUT/figures/graphs__<phase>__<model>.png    overview: learned vs true global graphs
    OUT/figures/{graphs,rollout}__<unit>.png    per evaluation of the first seed (s2ssm.plot)

A unit whose record exists is skipped, so an interrupted reproduction continues where it
stopped. The metrics are those of :mod:`s2ssm.evaluate` (what exactly "SHD" means is spelled
out there); where the paper does not pin a detail down, the choice is ours and documented.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ssm.checkpoint import (
    atomic_write_text,
    find_checkpoint,
    load_model,
    load_trainer_state,
    write_json,
)
from s2ssm.config import (
    Config,
    EvalConfig,
    SparsityConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)
from s2ssm.errors import InvalidInputError, InvalidTypeError, S2ssmError
from s2ssm.experiment_data import SequenceSet, batch_indices, env_id, generate_sequences
from s2ssm.model import S2SSM, LambdaSchedule, dynamics_loss

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "COMPOSITE_ENVS",
    "METRICS",
    "MODEL_VARIANTS",
    "OCCLUSION_METRICS",
    "PRESETS",
    "SIMPLE_ENVS",
    "Protocol",
    "RunDirectory",
    "Unit",
    "aggregate",
    "evaluate_model",
    "finetune_dynamics",
    "format_mean_std",
    "load_protocol",
    "markdown_tables",
    "mean_std",
    "model_config",
    "occlusion_table",
    "plan_units",
    "preset",
    "run_protocol",
    "set_env_code",
    "trained_code",
    "vae_config",
]

log = logging.getLogger(__name__)

#: The simple environments (ids 0..6): neutral and the six single-mechanism ones.
SIMPLE_ENVS: tuple[str, ...] = (
    "neutral",
    "sine",
    "left_away",
    "right_mirror",
    "friction",
    "bounce",
    "gravity",
)
#: The composite environments (ids 7..10), seen only at test time.
COMPOSITE_ENVS: tuple[str, ...] = (
    "gravity_bounce",
    "friction_bounce",
    "sine_left_away",
    "gravity_right_away",
)
#: Model variant -> (model.kind, sparsity.enabled).
MODEL_VARIANTS: dict[str, tuple[str, bool]] = {
    "s2ssm": ("ssm", True),
    "transformer": ("transformer", True),
    "dense_ssm": ("ssm", False),
}
#: Metrics aggregated over seeds (those of :class:`s2ssm.evaluate.EnvResult`).
METRICS: tuple[str, ...] = (
    "mse_1step",
    "mse_copy",
    "mse_floor",
    "mse_over_floor",
    "mse_rollout",
    "shd_local",
    "shd_local_dense",
    "shd_global",
    "f1",
    "edge_density",
)
PHASES: tuple[str, ...] = ("simple", "zero_shot", "finetune")
#: Metrics of the occlusion units (see :mod:`s2ssm.occlusion`), aggregated the same way.
OCCLUSION_METRICS: tuple[str, ...] = (
    "mse_visible",
    "mse_hidden",
    "mse_hidden_clean",
    "mse_hidden_copy",
    "mse_hidden_run_1",
    "mse_hidden_run_2",
    "mse_hidden_run_3+",
    "shd_visible",
    "shd_hidden",
    "shd_hidden_clean",
    "graph_change_hidden",
    "hidden_fraction",
)
PHASE_TITLES = {
    "simple": "Simple environments (trained on all 7)",
    "zero_shot": "Composite environments, zero-shot",
    "finetune": "Composite environments, fine-tuned on 10% of the data",
}


# --------------------------------------------------------------------------------------------
# Protocol settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """What ``s2ssm reproduce`` runs; the training config of every model is the base
    :class:`~s2ssm.config.Config` with ``data.envs = simple_envs`` and the variant's
    ``model.kind`` / ``sparsity.enabled``."""

    models: tuple[str, ...] = tuple(MODEL_VARIANTS)
    simple_envs: tuple[str, ...] = SIMPLE_ENVS
    composite_envs: tuple[str, ...] = COMPOSITE_ENVS
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_fraction: float = 0.1  # of data.train_sequences (which is per environment)
    finetune_steps: int = 300
    finetune_lr: float = 5e-4
    finetune_batch_size: int = 32
    zero_shot: bool = True
    occlusion_envs: tuple[str, ...] = ("neutral",)  # trained envs, rendered with the occluder
    # also fine-tune each model on occluded frames of occlusion_envs (the finetune_* settings;
    # inputs occluded, targets the clean slots) and score the occlusion again
    occlusion_finetune: bool = True
    shared_vae: bool = True  # pre-train the object VAE once per seed, shared by every model
    figures: bool = True

    def __post_init__(self) -> None:
        for name in ("models", "simple_envs", "composite_envs", "seeds", "occlusion_envs"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple):
                raise InvalidTypeError(f"protocol.{name} must be a tuple, got {value!r}")
            if len(set(value)) != len(value):
                raise InvalidInputError(f"protocol.{name} has duplicates: {value!r}")
        unknown = [m for m in self.models if m not in MODEL_VARIANTS]
        if not self.models or unknown:
            raise InvalidInputError(
                f"protocol.models must be non-empty names from {tuple(MODEL_VARIANTS)}, got "
                f"{self.models!r}"
            )
        if not self.simple_envs:
            raise InvalidInputError("protocol.simple_envs must name at least one environment")
        for name in (*self.simple_envs, *self.composite_envs):
            env_id(name)  # a clear error for an unknown environment
        untrained = sorted(set(self.occlusion_envs) - set(self.simple_envs))
        if untrained:
            raise InvalidInputError(
                f"protocol.occlusion_envs must be trained (simple) environments, got {untrained}"
            )
        both = set(self.simple_envs) & set(self.composite_envs)
        if both:
            raise InvalidInputError(
                f"environments {sorted(both)} are both training (simple) and test (composite)"
            )
        if not self.seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds
        ):
            raise InvalidInputError(
                f"protocol.seeds must be non-negative integers, got {self.seeds!r}"
            )
        if not 0.0 < self.finetune_fraction <= 1.0:
            raise InvalidInputError(
                f"protocol.finetune_fraction must be in (0, 1], got {self.finetune_fraction}"
            )
        if self.finetune_steps < 0 or self.finetune_batch_size <= 0 or self.finetune_lr <= 0:
            raise InvalidInputError(
                "protocol.finetune_steps must be >= 0 and finetune_batch_size, finetune_lr > 0; "
                f"got {self.finetune_steps}, {self.finetune_batch_size}, {self.finetune_lr}"
            )


def _protocol_from_dict(data: Mapping[str, Any]) -> Protocol:
    """A :class:`Protocol` from a ``[protocol]`` table, keys and types checked like a config's
    (``s2ssm.config``'s builder: lists become tuples, unknown keys are an error)."""
    from s2ssm.config import _build

    return _build(Protocol, data, "protocol.")


def _protocol_to_dict(protocol: Protocol) -> dict[str, Any]:
    return {
        f.name: list(v) if isinstance(v := getattr(protocol, f.name), tuple) else v
        for f in dataclasses.fields(protocol)
    }


#: The two built-in settings, the same as ``configs/reproduce_quick.toml`` and
#: ``configs/reproduce_paper.toml`` (a test keeps them equal). ``quick`` is sized for a 2-core
#: CPU in under 30 minutes (21-25 measured); ``paper`` is the full protocol (3 seeds, GPU). The
#: paper does not publish every hyperparameter; where it does not, the values are ours.
#: The λ schedule of both presets, measured with ``--quick`` (docs/results.md): λ in
#: [1e-6, 1e-2], never below its start, τ = 0.95 x the warm-up's error; the window and the
#: warm-up scale with each preset's run length.
_LAMBDA_SCHEDULE: dict[str, float] = {
    "lambda_init": 1e-6,
    "lambda_min": 1e-6,
    "lambda_max": 1e-2,
    "target_ratio": 0.95,
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "protocol": {
            "seeds": [0],
            "finetune_steps": 100,
            "finetune_lr": 1e-3,
            "finetune_batch_size": 16,
        },
        # one torch thread: on a shared 2-core machine two threads made an SSM step up to 70x
        # slower (oversubscription); one thread is also the faster choice for these small ops
        "run": {"log_every": 25, "checkpoint_every": 250, "num_threads": 1},
        "data": {
            "train_sequences": 1024,
            "seq_len": 16,
            "resolution": 32,
            "intervention_prob": 0.15,
        },
        "vae": {
            "latent_dim": 16,
            "channels": [16, 32, 32],
            "decoder_channels": 16,
            "beta": 1e-4,
            "pretrain_steps": 800,
            "batch_size": 128,
            "lr": 3e-3,
        },
        "model": {
            "d_model": 32,
            "num_layers": 2,
            "num_heads": 1,
            "d_state": 8,
            "expand": 2,
            "use_interventions": True,
        },
        "sparsity": {**_LAMBDA_SCHEDULE, "target_window": 100, "warmup_steps": 1000},
        "optim": {"steps": 2000, "batch_size": 32, "lr": 2e-3, "warmup_steps": 50},
        "eval": {
            "sequences": 32,
            "seq_len": 16,
            "intervention_prob": 0.15,
            "batch_size": 32,
            "context": 4,
            "horizon": 6,
        },
    },
    "paper": {
        "protocol": {
            "seeds": [0, 1, 2],
            "finetune_steps": 500,
            "finetune_lr": 5e-4,
            "finetune_batch_size": 32,
        },
        "run": {"log_every": 50, "checkpoint_every": 500},
        "data": {
            "train_sequences": 1000,
            "seq_len": 32,
            "resolution": 32,
            "intervention_prob": 0.15,
        },
        "vae": {"latent_dim": 32, "pretrain_steps": 3000, "batch_size": 256},
        "model": {
            "d_model": 128,
            "num_layers": 3,
            "num_heads": 1,
            "d_state": 16,
            "use_interventions": True,
        },
        "sparsity": {**_LAMBDA_SCHEDULE, "target_window": 1000, "warmup_steps": 10000},
        "optim": {"steps": 20000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 500},
        "eval": {
            "sequences": 256,
            "seq_len": 32,
            "intervention_prob": 0.15,
            "batch_size": 64,
            "context": 8,
            "horizon": 16,
        },
    },
}


def _split(data: Mapping[str, Any], overrides: Iterable[str]) -> tuple[Protocol, Config]:
    data = dict(data)
    protocol = _protocol_from_dict(data.pop("protocol", {}))
    return protocol, apply_overrides(config_from_dict(data), overrides)


def preset(name: str, overrides: Iterable[str] = ()) -> tuple[Protocol, Config]:
    """The protocol and base config of a built-in setting (``"quick"`` or ``"paper"``), with
    ``--set section.name=value`` overrides of the base config."""
    if name not in PRESETS:
        raise InvalidInputError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return _split(PRESETS[name], overrides)


def load_protocol(path: str | Path, overrides: Iterable[str] = ()) -> tuple[Protocol, Config]:
    """Read a protocol TOML: a ``[protocol]`` table (fields of :class:`Protocol`) beside the
    tables of a :class:`~s2ssm.config.Config`, which is the base training config."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidInputError(f"protocol file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(f"protocol file {str(path)!r} is not valid TOML: {error}") from None
    return _split(data, overrides)


def model_config(base: Config, protocol: Protocol, model: str, seed: int, out_dir: Path) -> Config:
    """The training config of ``model`` (a :data:`MODEL_VARIANTS` name) and ``seed``: trained on
    the protocol's simple environments into ``OUT/runs/<model>/seed<seed>``. The data seed stays
    the base config's, so the seeds vary the model (initialisation, noise), not the data. With
    ``protocol.shared_vae`` the VAE comes from the seed's pre-training run
    (:func:`vae_config`; ``vae.init_from``, no VAE steps of its own), so every model of a seed
    predicts in the same slot space and the MSEs are comparable."""
    if model not in MODEL_VARIANTS:
        raise InvalidInputError(f"model must be one of {tuple(MODEL_VARIANTS)}, got {model!r}")
    kind, sparse = MODEL_VARIANTS[model]
    vae = base.vae
    if protocol.shared_vae:
        vae = dataclasses.replace(
            vae, init_from=str(out_dir / "runs" / "vae" / f"seed{seed}"), pretrain_steps=0
        )
    return dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run, out_dir=str(out_dir / "runs" / model / f"seed{seed}"), seed=seed
        ),
        data=dataclasses.replace(base.data, envs=protocol.simple_envs),
        vae=vae,
        model=dataclasses.replace(base.model, kind=kind),
        sparsity=dataclasses.replace(base.sparsity, enabled=sparse),
    )


def vae_config(base: Config, protocol: Protocol, seed: int, out_dir: Path) -> Config:
    """The shared VAE pre-training run of ``seed`` (``OUT/runs/vae/seed<seed>``): the base
    config's ``vae.pretrain_steps`` on the simple environments and no dynamics steps."""
    return dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run, out_dir=str(out_dir / "runs" / "vae" / f"seed{seed}"), seed=seed
        ),
        data=dataclasses.replace(base.data, envs=protocol.simple_envs),
        optim=dataclasses.replace(base.optim, steps=0),
    )


# --------------------------------------------------------------------------------------------
# Units of work and the run directory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Unit:
    """One recorded piece of work: ``kind`` is ``"pretrain"`` (the shared VAE, model
    ``"vae"``), ``"train"``, a phase of :data:`PHASES`, ``"occlusion"`` or
    ``"occlusion_finetune"``."""

    seed: int
    model: str
    kind: str
    env: str = ""

    @property
    def id(self) -> str:
        parts = [self.kind, self.model, f"seed{self.seed}"] + ([self.env] if self.env else [])
        return "__".join(parts)


def plan_units(protocol: Protocol) -> list[Unit]:
    """Every unit in execution order: seed by seed (a whole first-seed table comes first), the
    shared VAE (with ``shared_vae``), then model by model: train, evaluate the simple
    environments, zero-shot and fine-tuning on each composite environment, occlusion (and with
    ``occlusion_finetune``, occlusion after fine-tuning on occluded frames)."""
    units: list[Unit] = []
    for seed in protocol.seeds:
        if protocol.shared_vae:
            units.append(Unit(seed, "vae", "pretrain"))
        for model in protocol.models:
            units.append(Unit(seed, model, "train"))
            units += [Unit(seed, model, "simple", env) for env in protocol.simple_envs]
            for env in protocol.composite_envs:
                if protocol.zero_shot:
                    units.append(Unit(seed, model, "zero_shot", env))
                units.append(Unit(seed, model, "finetune", env))
            units += [Unit(seed, model, "occlusion", env) for env in protocol.occlusion_envs]
            if protocol.occlusion_finetune:
                units += [
                    Unit(seed, model, "occlusion_finetune", env) for env in protocol.occlusion_envs
                ]
    return units


class RunDirectory:
    """The resumable state of a reproduction: a record file per finished unit."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.units = self.root / "units"

    def bind(self, protocol: Protocol, base: Config) -> None:
        """Create the directory for ``protocol``/``base``, or check that an existing one was
        made for the same settings (so finished units are valid for this run)."""
        wanted = {"protocol": _protocol_to_dict(protocol), "config": config_to_dict(base)}
        path = self.root / "protocol.json"
        if path.exists():
            found = json.loads(path.read_text(encoding="utf-8"))
            if found != wanted:
                keys = sorted(
                    f"{section}.{k}"
                    for section in ("protocol", "config")
                    for k in set(found.get(section, {})) | set(wanted[section])
                    if found.get(section, {}).get(k) != wanted[section].get(k)
                )
                raise InvalidInputError(
                    f"{self.root} holds a reproduction with other settings (differs in "
                    f"{', '.join(keys)}); use another --out or delete it"
                )
        else:
            write_json(path, wanted)
        self.units.mkdir(parents=True, exist_ok=True)

    def done(self, unit: Unit) -> dict[str, Any] | None:
        """The record of ``unit`` if it finished, else ``None``."""
        path = self.units / f"{unit.id}.json"
        if not path.is_file():
            return None
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return record

    def record(self, unit: Unit, result: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``unit``'s record atomically; returns it."""
        record = {**dataclasses.asdict(unit), "unit": unit.id, **result}
        write_json(self.units / f"{unit.id}.json", record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every finished unit's record, sorted by unit id."""
        if not self.units.is_dir():
            return []
        return [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.units.glob("*.json"))
        ]


# --------------------------------------------------------------------------------------------
# Evaluation and fine-tuning (thin adapters over s2ssm.model)
# --------------------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> Iterable[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


@torch.no_grad()
def encode_all(
    model: S2SSM, data: SequenceSet, device: torch.device, batch_size: int = 64
) -> torch.Tensor:
    """Slots (N, T, K, D) of every sequence (the VAE's posterior means), float32."""
    model.vae.eval()
    parts = []
    for idx in _chunks(len(data), batch_size):
        t = data.take(idx).torch(device)
        parts.append(model.encode_slots(t["frames"], t["masks"]).float())
    return torch.cat(parts)


def _single_env(data: SequenceSet) -> str:
    from s2ssm.experiment_data import env_name

    ids = np.unique(data.env_ids)
    if ids.size != 1:
        raise InvalidInputError(f"data must hold one environment, got ids {ids.tolist()}")
    return env_name(int(ids[0]))


def set_env_code(model: S2SSM, env: str, code: torch.Tensor) -> None:
    """Write ``code`` (d_model,) into environment ``env``'s codebook row."""
    index = env_id(env)
    codebook = model.dynamics.env_slot.codebook
    if index >= codebook.num_embeddings:
        raise InvalidInputError(
            f"environment {env!r} (id {index}) has no codebook row (model.num_env_codes = "
            f"{codebook.num_embeddings})"
        )
    with torch.no_grad():
        codebook.weight[index] = code.to(codebook.weight)


def evaluate_model(
    model: S2SSM, eval_cfg: EvalConfig, env: str, *, code: torch.Tensor | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of ``model`` on ``env`` with :func:`s2ssm.evaluate.evaluate_env` (its metrics:
    ``mse_1step``, ``shd_local``, ``shd_global``, ``mse_rollout``, F1, ...) under ``eval_cfg``,
    always with the environment's own codebook row (never a code fitted on the test
    sequences): ``code`` is written into that row first (zero-shot: the mean trained code).
    Returns the scores (a JSON-able dict) and the raw arrays for :mod:`s2ssm.plot`."""
    from s2ssm.evaluate import evaluate_env

    if code is not None:
        set_env_code(model, env, code)
    cfg = model.config
    envs = tuple(dict.fromkeys((*cfg.data.envs, env)))  # "trained": use the row
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, envs=envs), eval=eval_cfg)
    result, raw = evaluate_env(model, cfg, env, next(model.parameters()).device)
    return result.as_dict(), raw


def trained_code(model: S2SSM, envs: Sequence[str]) -> torch.Tensor:
    """The mean environment code of the training environments ``envs`` (d_model,)."""
    rows = torch.tensor([env_id(e) for e in envs], device=next(model.parameters()).device)
    return model.dynamics.env_slot.codebook.weight.detach()[rows].mean(0).clone()


def finetune_dynamics(
    model: S2SSM,
    data: SequenceSet,
    *,
    init_code: torch.Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    sparsity: SparsityConfig,
    lambda_state: Mapping[str, Any] | None,
    seed: int,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    inputs: SequenceSet | None = None,
) -> list[dict[str, float]]:
    """Fine-tune the dynamics (VAE frozen) on sequences of one new environment.

    The environment's codebook row is set to ``init_code`` first (a new environment code), then
    ``steps`` AdamW steps at a constant ``lr`` minimise next-slot MSE + λ x path penalty, λ
    continuing from the trained run's schedule (``lambda_state``; λ = 0 for the dense model).
    Batches are drawn as in training (:func:`~s2ssm.experiment_data.batch_indices`). Returns the
    metrics of every step. (Adapter: ``s2ssm.train.train`` starts from fresh weights only.)

    ``inputs``: the same sequences rendered another way (e.g. with the occluder,
    :func:`s2ssm.occlusion.occlusion_pair`): the model reads their slots and is scored on
    ``data``'s.
    """
    device = next(model.parameters()).device
    if inputs is not None and (
        inputs.frames.shape != data.frames.shape
        or not np.array_equal(inputs.env_ids, data.env_ids)
        or not np.array_equal(inputs.interventions, data.interventions)
    ):
        raise InvalidInputError(
            "inputs must be the sequences of data rendered another way: same frame shape, "
            f"environments and interventions (frames {inputs.frames.shape} vs "
            f"{data.frames.shape})"
        )
    set_env_code(model, _single_env(data), init_code)
    slots = encode_all(model, data, device)
    seen = slots if inputs is None else encode_all(model, inputs, device)
    tensors = data.torch(device)
    for p in model.vae.parameters():
        p.requires_grad_(False)
    dyn = model.dynamics
    params = [p for p in dyn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = LambdaSchedule(sparsity)
    if lambda_state is not None and sparsity.enabled:
        schedule.load_state_dict(dict(lambda_state))
    torch.manual_seed(seed)
    use_inter = model.config.model.use_interventions
    history = []
    dyn.train()
    for step in range(steps):
        idx = torch.from_numpy(
            batch_indices(len(data), batch_size, seed=seed, step=step, rank=0)
        ).to(device)
        inter = tensors["interventions"][idx] if use_inter else None
        out = dyn(seen[idx], tensors["env_ids"][idx], inter)
        loss, metrics = dynamics_loss(out, slots[idx], schedule.value)
        if not torch.isfinite(loss):
            from s2ssm.train import TrainingDivergedError

            raise TrainingDivergedError(
                f"the fine-tuning loss became {loss.item()} at step {step}; lower "
                "protocol.finetune_lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        metrics["lambda"] = schedule.value
        schedule.update(metrics["mse"])
        history.append(metrics)
    dyn.eval()
    return history


# --------------------------------------------------------------------------------------------
# Aggregation and tables
# --------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof = 1``; 0 for a single value) of ``values``;
    ``nan`` entries are an error (a failed metric must not vanish into an average)."""
    vals = [float(v) for v in values]
    if not vals:
        raise InvalidInputError("mean_std needs at least one value")
    if any(math.isnan(v) for v in vals):
        raise InvalidInputError(f"mean_std got a nan among {vals}")
    mean = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def _with_floor_ratio(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``rec`` plus ``mse_over_floor`` = mse_1step / mse_floor where both are there: each seed
    has its own VAE, so raw MSEs of different seeds live in different slot scales and only
    their ratio to the seed's floor averages meaningfully."""
    if "mse_1step" not in rec or "mse_floor" not in rec:
        return rec
    floor = float(rec["mse_floor"])
    ratio = float(rec["mse_1step"]) / floor if floor > 0 else math.nan
    return {**rec, "mse_over_floor": ratio}


def aggregate(
    records: Iterable[Mapping[str, Any]],
    phases: Sequence[str] = PHASES,
    metrics: Sequence[str] = METRICS,
) -> list[dict[str, Any]]:
    """Rows ``{phase, env, model, n, seeds, <metric>_mean, <metric>_std}`` over the seeds of
    every (phase, env, model) among the records of ``phases`` (others, e.g. training, are
    ignored). A metric missing or ``nan`` in any seed gives ``nan``: a failure must not vanish
    into an average."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("kind") in phases:
            groups.setdefault((rec["kind"], rec["env"], rec["model"]), []).append(
                _with_floor_ratio(rec)
            )
    order = {p: i for i, p in enumerate(phases)}
    rows = []
    for (phase, env, model), recs in sorted(
        groups.items(), key=lambda item: (order[item[0][0]], item[0][1], item[0][2])
    ):
        row: dict[str, Any] = {
            "phase": phase,
            "env": env,
            "model": model,
            "n": len(recs),
            "seeds": sorted(int(r["seed"]) for r in recs),
        }
        for metric in metrics:
            vals = [float(r[metric]) for r in recs if metric in r]
            finite = [v for v in vals if not math.isnan(v)]
            if not finite or len(finite) != len(recs):
                row[f"{metric}_mean"], row[f"{metric}_std"] = math.nan, math.nan
            else:
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(finite)
        rows.append(row)
    return rows


def format_mean_std(mean: float, std: float, n: int, digits: int = 3, sci: bool = False) -> str:
    """``"mean ± std"`` (just ``mean`` for one seed, ``"n/a"`` for nan)."""
    if math.isnan(mean):
        return "n/a"
    fmt = f"{{:.{digits - 1}e}}" if sci else f"{{:.{digits}f}}"
    return fmt.format(mean) if n <= 1 else f"{fmt.format(mean)} ± {fmt.format(std)}"


def markdown_tables(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    envs_by_phase: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One markdown table per phase: a row per environment, MSE, MSE / floor and SHD columns per
    model."""
    out = []
    for phase in PHASES:
        phase_rows = [r for r in rows if r["phase"] == phase]
        if not phase_rows:
            continue
        envs = list(envs_by_phase.get(phase, ())) if envs_by_phase else []
        envs += sorted({r["env"] for r in phase_rows} - set(envs))
        by_key = {(r["env"], r["model"]): r for r in phase_rows}
        header = ["env"] + [
            f"{m} {metric}" for m in models for metric in ("MSE", "MSE / floor", "SHD")
        ]
        lines = [
            f"### {PHASE_TITLES[phase]}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for env in envs:
            cells = [env]
            for m in models:
                r = by_key.get((env, m))
                if r is None:
                    cells += ["—", "—", "—"]
                else:
                    mse = (r["mse_1step_mean"], r["mse_1step_std"], r["n"])
                    ratio = (r["mse_over_floor_mean"], r["mse_over_floor_std"], r["n"])
                    shd = (r["shd_local_mean"], r["shd_local_std"], r["n"])
                    cells.append(format_mean_std(*mse, sci=True))
                    cells.append(format_mean_std(*ratio, digits=2))
                    cells.append(format_mean_std(*shd, digits=2))
            lines.append("| " + " | ".join(cells) + " |")
        seeds = sorted({s for r in phase_rows for s in r["seeds"]})
        lines += ["", f"Seeds: {seeds}; mean ± sample std (ddof = 1) over seeds.", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def occlusion_table(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    title: str = "Occlusion (the ball behind the occluder band; models trained without it)",
) -> str:
    """The occlusion rows as markdown under ``### title`` (empty string without rows)."""
    if not rows:
        return ""
    columns = (
        ("mse_visible", "MSE visible", True),
        ("mse_hidden", "MSE hidden", True),
        ("mse_hidden_clean", "MSE hidden, clean input", True),
        ("mse_hidden_copy", "MSE hidden, copy baseline", True),
        ("shd_visible", "SHD visible", False),
        ("shd_hidden", "SHD hidden", False),
        ("graph_change_hidden", "graph change when hidden", False),
    )
    head = ["env", "model", *(name for _, name, _ in columns)]
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rank = {m: i for i, m in enumerate(models)}
    for r in sorted(rows, key=lambda r: (r["env"], rank.get(r["model"], len(rank)))):
        cells = [r["env"], r["model"]]
        for key, _, sci in columns:
            mean, std = r[f"{key}_mean"], r[f"{key}_std"]
            cells.append(format_mean_std(mean, std, r["n"], digits=3 if sci else 2, sci=sci))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Hidden: more than half of the object's pixels covered at the input step; targets are "
        "the slots of the unoccluded frames. Graph change: SHD between the graphs learned from "
        "occluded and from clean frames on the same transitions.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Running the protocol
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What the units of one invocation share (settings and the loaded model)."""

    protocol: Protocol
    base: Config
    root: Path
    loaded: tuple[tuple[str, int], S2SSM] | None = None

    def device(self) -> torch.device:
        from s2ssm.train import select_device

        return select_device(self.base.run.device)

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
    from s2ssm.occlusion import occlusion_metrics, occlusion_pair

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
    )
    result = occlusion_metrics(model, clean, occluded, batch_size=ev.batch_size)
    for bucket, value in result.pop("mse_hidden_run").items():
        result[f"mse_hidden_run_{bucket}"] = value
    result.update(extra)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def _run_train(ctx: _Context, unit: Unit) -> dict[str, Any]:
    from s2ssm.train import train

    if unit.kind == "pretrain":
        cfg = vae_config(ctx.base, ctx.protocol, unit.seed, ctx.root)
    else:
        cfg = model_config(ctx.base, ctx.protocol, unit.model, unit.seed, ctx.root)
    t0 = time.perf_counter()
    result = train(cfg, resume=True)
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
    code = None
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
        )
        mean_code = trained_code(model, ctx.protocol.simple_envs)
        extra = _finetune(ctx, model, unit, ft_data, mean_code)
    result, raw = evaluate_model(model, ctx.base.eval, unit.env, code=code)
    if ctx.protocol.figures and unit.seed == ctx.protocol.seeds[0]:
        _unit_figures(ctx, model, unit, raw)
    result.update(extra)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def _unit_figures(ctx: _Context, model: S2SSM, unit: Unit, raw: dict[str, Any]) -> None:
    """Graph heatmaps and the rollout strip of one evaluation (:mod:`s2ssm.plot`)."""
    from s2ssm import plot

    stem = f"{unit.kind}__{unit.model}__{unit.env}"
    try:
        plot.plot_graphs(raw, unit.env, ctx.root / "figures" / f"graphs__{stem}.png")
        plot.plot_rollout(
            model,
            raw,
            ctx.base.eval.context,
            unit.env,
            ctx.root / "figures" / f"rollout__{stem}.png",
        )
    except S2ssmError as error:  # matplotlib missing
        log.warning("no figures: %s", error)


def hardware() -> dict[str, Any]:
    """A description of the machine the reproduction runs on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


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
    rundir.bind(protocol, base)
    if base.run.num_threads > 0:  # also for evaluations of a resumed run that trains nothing
        torch.set_num_threads(base.run.num_threads)
    ctx = _Context(protocol, base, root)
    units = plan_units(protocol)
    ran: list[str] = []
    skipped: list[str] = []
    t_start = time.perf_counter()
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(units), desc="reproduce", dynamic_ncols=True)
    try:
        for unit in units:
            if rundir.done(unit) is not None:
                skipped.append(unit.id)
            else:
                if bar is not None:
                    bar.set_postfix_str(unit.id)
                log.info("unit %s", unit.id)
                run = {
                    "pretrain": _run_train,
                    "train": _run_train,
                    "occlusion": _run_occlusion,
                    "occlusion_finetune": _run_occlusion,
                }.get(unit.kind, _run_eval)
                result = run(ctx, unit)
                record = rundir.record(unit, result)
                ran.append(unit.id)
                if on_unit is not None:
                    on_unit(unit, record)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return write_results(
        rundir, protocol, base, ran=ran, skipped=skipped, wall_s=time.perf_counter() - t_start
    )


def write_results(
    rundir: RunDirectory,
    protocol: Protocol,
    base: Config,
    *,
    ran: Sequence[str] = (),
    skipped: Sequence[str] = (),
    wall_s: float = 0.0,
) -> dict[str, Any]:
    """Aggregate the recorded units into ``results.json`` / ``results.md`` (and figures)."""
    records = rundir.records()
    rows = aggregate(records)
    occ_rows = aggregate(records, ("occlusion",), OCCLUSION_METRICS)
    occ_ft_rows = aggregate(records, ("occlusion_finetune",), OCCLUSION_METRICS)
    unit_wall = math.fsum(float(r.get("wall_s", 0.0)) for r in records)
    hw = hardware()
    summary: dict[str, Any] = {
        "out": str(rundir.root),
        "protocol": _protocol_to_dict(protocol),
        "config": config_to_dict(base),
        "hardware": hw,
        "wall_s_units_total": round(unit_wall, 3),
        "wall_s_this_call": round(wall_s, 3),
        "ran": list(ran),
        "skipped": list(skipped),
        "complete": len(records) == len(plan_units(protocol)),
        "summary": rows,
        "occlusion": occ_rows,
        "occlusion_finetune": occ_ft_rows,
        "records": [
            {k: v for k, v in r.items() if k not in ("learned_global", "true_global")}
            for r in records
        ],
    }
    write_json(rundir.root / "results.json", summary)
    envs = {
        "simple": protocol.simple_envs,
        "zero_shot": protocol.composite_envs,
        "finetune": protocol.composite_envs,
    }
    text = "\n".join(
        [
            "# s2ssm reproduction of arXiv 2505.02074",
            "",
            f"Hardware: {hw.get('cuda_device') or hw['processor']} ({hw['cpu_count']} CPUs), "
            f"torch {hw['torch']}. Wall time of the recorded units: {unit_wall:.0f} s.",
            f"Complete: {summary['complete']}. MSE: next-slot, VAE slot space (each seed "
            "has its own VAE: compare models within a seed, or MSE / floor, the ratio to the "
            "seed's noise floor, across seeds). SHD: local graphs, mean per transition, env "
            "column included, self-loops ignored.",
            "",
            markdown_tables(rows, protocol.models, envs),
            occlusion_table(occ_rows, protocol.models),
            occlusion_table(
                occ_ft_rows,
                protocol.models,
                "Occlusion after fine-tuning on occluded frames (finetune_fraction of the "
                "training data, inputs occluded, targets clean)",
            ),
        ]
    )
    atomic_write_text(rundir.root / "results.md", text + "\n")
    if protocol.figures:
        try:
            write_figures(rundir.root, records, protocol)
        except ImportError:
            log.warning("matplotlib is not installed: no figures (pip install 's2ssm[plot]')")
    return summary


def write_figures(
    root: Path, records: Sequence[Mapping[str, Any]], protocol: Protocol
) -> list[Path]:
    """Overview heatmaps: per phase and model, the learned global graph (share of local graphs
    with each edge, first seed) of every environment above its true global graph. Needs
    matplotlib. (Per-unit graph and rollout figures come from :mod:`s2ssm.plot`.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s2ssm.sim import OBJECTS

    fig_dir = root / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    seed0 = protocol.seeds[0]
    names = [o.replace("_", " ") for o in OBJECTS]
    for phase in PHASES:
        for model in protocol.models:
            recs = [
                r
                for r in records
                if r.get("kind") == phase and r.get("model") == model and r.get("seed") == seed0
            ]
            if not recs:
                continue
            recs.sort(key=lambda r: r["env"])
            fig, axes = plt.subplots(
                2, len(recs), figsize=(max(5.0, 2.2 * len(recs) + 0.5), 4.8), squeeze=False
            )
            for col, rec in enumerate(recs):
                for row, (key, title) in enumerate(
                    (("learned_global", "learned"), ("true_global", "true"))
                ):
                    ax = axes[row][col]
                    matrix = np.asarray(rec[key], float)
                    np.fill_diagonal(matrix, np.nan)  # self edges are implicit in the model
                    ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
                    ax.set_title(f"{rec['env']}\n{title}" if row == 0 else title, fontsize=7)
                    ax.set_xticks(range(len(names) + 1), [*names, "env"], rotation=90, fontsize=5)
                    ax.set_yticks(range(len(names)), names, fontsize=5)
            fig.suptitle(
                f"{model}: {PHASE_TITLES[phase]}\n(child x parent; learned = share of local "
                f"graphs with the edge; seed {seed0})",
                fontsize=8,
            )
            fig.tight_layout()
            path = fig_dir / f"graphs__{phase}__{model}.png"
            _save_figure(fig, path)
            plt.close(fig)
            written.append(path)
    return written


def _save_figure(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def reproduce_main(
    *,
    quick: bool,
    out: str | Path | None,
    seeds: int | None,
    device: str | None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """What ``s2ssm reproduce`` does: pick the setting (``config`` file, else the ``quick`` or
    ``paper`` preset), apply ``seeds`` (a count: seeds 0..n-1) and ``device``, run."""
    extra = list(overrides) + ([f'run.device="{device}"'] if device else [])
    if config is not None:
        protocol, base = load_protocol(config, extra)
    else:
        protocol, base = preset("quick" if quick else "paper", extra)
    if seeds is not None:
        if seeds <= 0:
            raise InvalidInputError(f"--seeds must be a positive count, got {seeds}")
        protocol = dataclasses.replace(protocol, seeds=tuple(range(seeds)))
    root = Path(out) if out is not None else Path("results") / ("quick" if quick else "full")
    return run_protocol(protocol, base, root, progress=progress)
