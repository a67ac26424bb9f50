"""The paper's protocol (arXiv 2505.02074) as data: which models, environments and seeds, the
built-in presets, the training config of every run, and the plan of units of work.

0. **Shared VAE.** Per seed, the object VAE is pre-trained once on the simple environments;
   every model of the seed starts from it (frozen), so all predict in the same slot space.
1. **Simple environments.** For every model of ``protocol.models`` (:data:`MODEL_VARIANTS`;
   by default S2-SSM, SPARTAN, the Transformer ablation, the dense SSM with λ = 0) and seed,
   train one world model on the 7 simple environments together (each with its own environment
   code), then evaluate next-slot MSE and SHD on held-out sequences of each simple environment.
   The presets tell no model the intervention targets (``model.use_interventions = false``,
   the environment codes are SPARTAN-style tokens that must explain them) and, at test time,
   not the environment either (``eval.env_code = "identified"``: each test sequence's code is
   fitted on its first ``eval.context`` steps, and only the following steps are scored).
2. **Composite environments.** For each of the 4 composite environments: *zero-shot* (no
   parameter changes; the environment code is the mean of the trained codes, or with
   ``"identified"`` fitted per sequence from there) and *fine-tuned* (the composite
   environment's codebook row is initialised to that mean, then the dynamics are fine-tuned,
   VAE frozen, on ``finetune_fraction`` = 10% of the per-environment training data,
   :mod:`s2ssm.experiments.finetune`; with ``"identified"`` the fine-tuned row is where each
   test sequence's fit starts).
3. **Occlusion** (beyond the paper, :mod:`s2ssm.evaluation.occlusion`): the trained models on
   ``occlusion_envs`` rendered with the simulator's occluder; with ``occlusion_finetune``, again
   after fine-tuning a copy (the ``finetune_*`` settings) on occluded frames of the environment,
   the model reading occluded slots and scored on the clean ones.
4. Mean ± sample standard deviation (``ddof = 1``) over the seeds; markdown and JSON tables,
   graph heatmaps and rollout strips (:mod:`s2ssm.experiments.report`).

Each step is one or more :class:`Unit` (:func:`plan_units`); :mod:`s2ssm.experiments.phases`
runs them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2ssm.config import (
    Config,
    apply_overrides,
    config_from_dict,
    parse_override_value,
    resolve_config_path,
)
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.training.data import env_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "COMPOSITE_ENVS",
    "DEFAULT_MODELS",
    "MODEL_VARIANTS",
    "PHASES",
    "PRESETS",
    "SIMPLE_ENVS",
    "Protocol",
    "Unit",
    "load_protocol",
    "model_config",
    "plan_units",
    "preset",
    "protocol_to_dict",
    "vae_config",
]

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
#: Model variant -> the fields it sets in the base config, per section. The first four are the
#: comparison (``protocol.models``' default): S2-SSM, SPARTAN (:mod:`s2ssm.models.spartan`, its
#: own masks and the dual-ascent λ rule), the Transformer ablation (S2-SSM's block and gates
#: with time attention instead of Mamba) and the dense SSM (λ = 0). ``s2ssm_oracle`` is S2-SSM
#: told the true intervention targets of every transition (an upper bound, not a result) and
#: ``s2ssm_joint`` S2-SSM with the object VAE trained jointly with the dynamics, as in the
#: paper (the dynamics loss flows into the encoder, the reconstruction kept).
MODEL_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "s2ssm": {"model": {"kind": "ssm"}, "sparsity": {"enabled": True}},
    "spartan": {
        "model": {"kind": "spartan", "gate": "straight_through"},
        "sparsity": {"enabled": True, "rule": "exponential"},
    },
    "transformer": {"model": {"kind": "transformer"}, "sparsity": {"enabled": True}},
    "dense_ssm": {"model": {"kind": "ssm"}, "sparsity": {"enabled": False}},
    "s2ssm_oracle": {
        "model": {"kind": "ssm", "use_interventions": True},
        "sparsity": {"enabled": True},
    },
    "s2ssm_joint": {
        "model": {"kind": "ssm"},
        "sparsity": {"enabled": True},
        "vae": {"freeze": False, "recon_weight": 1.0},
    },
}
#: The models a protocol compares unless it names others.
DEFAULT_MODELS: tuple[str, ...] = ("s2ssm", "spartan", "transformer", "dense_ssm")
#: The evaluation phases of a trained model: the simple environments, then the composites.
PHASES: tuple[str, ...] = ("simple", "zero_shot", "finetune")


@dataclass(frozen=True)
class Protocol:
    """What ``s2ssm reproduce`` runs; the training config of every model is the base
    :class:`~s2ssm.config.Config` with ``data.envs = simple_envs`` and the variant's fields
    (:data:`MODEL_VARIANTS`)."""

    models: tuple[str, ...] = DEFAULT_MODELS
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


def protocol_to_dict(protocol: Protocol) -> dict[str, Any]:
    return {
        f.name: list(v) if isinstance(v := getattr(protocol, f.name), tuple) else v
        for f in dataclasses.fields(protocol)
    }


#: The two built-in settings, the same as ``configs/reproduce_quick.toml`` and
#: ``configs/reproduce_paper.toml`` (a test keeps them equal). ``quick`` is sized for a 2-core
#: CPU in under 40 minutes (38 min 9 s measured beside other jobs); ``paper`` is the full
#: protocol (3 seeds, GPU). The paper does not publish every hyperparameter; where it does not,
#: the values are ours.
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
            "use_interventions": False,
        },
        "sparsity": {**_LAMBDA_SCHEDULE, "target_window": 100, "warmup_steps": 1000},
        "optim": {"steps": 2000, "batch_size": 32, "lr": 2e-3, "warmup_steps": 50},
        "eval": {
            "sequences": 32,
            "seq_len": 16,
            "intervention_prob": 0.15,
            "batch_size": 32,
            "context": 8,
            "horizon": 6,
            "env_code": "identified",
            "fit_code_lr": 1e-3,
        },
    },
    "paper": {
        "protocol": {
            "seeds": [0, 1, 2],
            "models": list(MODEL_VARIANTS),
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
            "use_interventions": False,
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
            "env_code": "identified",
            "fit_code_lr": 1e-3,
        },
    },
}


def _split(data: Mapping[str, Any], overrides: Iterable[str]) -> tuple[Protocol, Config]:
    """The protocol and the base config of a setting, each ``protocol.name=value`` of
    ``overrides`` applied to the ``[protocol]`` table (``protocol.composite_envs=[]``), the
    others to the base config."""
    data = dict(data)
    table = dict(data.pop("protocol", {}))
    rest = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep and key.strip().startswith("protocol."):
            name = key.strip().removeprefix("protocol.")
            if not name or "." in name:
                raise InvalidInputError(
                    f"--set key must look like protocol.name (e.g. protocol.seeds), got {key!r}"
                )
            table[name] = parse_override_value(raw.strip())
        else:
            rest.append(item)
    return _protocol_from_dict(table), apply_overrides(config_from_dict(data), rest)


def preset(name: str, overrides: Iterable[str] = ()) -> tuple[Protocol, Config]:
    """The protocol and base config of a built-in setting (``"quick"`` or ``"paper"``), with
    ``--set section.name=value`` overrides of the base config."""
    if name not in PRESETS:
        raise InvalidInputError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return _split(PRESETS[name], overrides)


def load_protocol(path: str | Path, overrides: Iterable[str] = ()) -> tuple[Protocol, Config]:
    """Read a protocol TOML: a ``[protocol]`` table (fields of :class:`Protocol`) beside the
    tables of a :class:`~s2ssm.config.Config`, which is the base training config. ``path``
    may name a shipped preset (``reproduce_quick``)."""
    path = resolve_config_path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidInputError(f"protocol file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(f"protocol file {str(path)!r} is not valid TOML: {error}") from None
    return _split(data, overrides)


def model_config(base: Config, protocol: Protocol, model: str, seed: int, out_dir: Path) -> Config:
    """The training config of ``model`` (a :data:`MODEL_VARIANTS` name: the base config with the
    variant's fields) and ``seed``: trained on the protocol's simple environments into
    ``OUT/runs/<model>/seed<seed>``. The data seed stays
    the base config's, so the seeds vary the model (initialisation, noise), not the data. With
    ``protocol.shared_vae`` the VAE comes from the seed's pre-training run
    (:func:`vae_config`; ``vae.init_from``, no VAE steps of its own), so every model of a seed
    predicts in the same slot space and the MSEs are comparable."""
    if model not in MODEL_VARIANTS:
        raise InvalidInputError(f"model must be one of {tuple(MODEL_VARIANTS)}, got {model!r}")
    variant = MODEL_VARIANTS[model]
    vae = dataclasses.replace(base.vae, **variant.get("vae", {}))
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
        model=dataclasses.replace(base.model, **variant["model"]),
        sparsity=dataclasses.replace(base.sparsity, **variant["sparsity"]),
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
