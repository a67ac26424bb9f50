"""Experiment configuration: nested frozen dataclasses loaded from TOML, overridable by ``--set``.

A config file is a TOML document whose tables mirror :class:`Config` (``[run]``, ``[data]``,
``[vae]``, ``[model]``, ``[sparsity]``, ``[optim]``, ``[eval]``); every key is optional and
unknown keys are an error. ``--set model.num_layers=3`` parses the value as a TOML literal (so
``3``, ``1e-3``, ``true``, ``["neutral", "no_walls"]`` work) and falls back to a plain string.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from s2ssm.errors import InvalidInputError, InvalidTypeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SparsityConfig",
    "VAEConfig",
    "apply_overrides",
    "config_from_dict",
    "config_from_json",
    "config_to_dict",
    "config_to_json",
    "load_config",
    "parse_override_value",
]


@dataclass(frozen=True)
class RunConfig:
    """Where a run writes, how it is seeded, and on which device it runs."""

    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    deterministic: bool = False  # torch.use_deterministic_algorithms
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    log_every: int = 10
    checkpoint_every: int = 200
    progress: bool = True  # a bar on a terminal, timestamped progress lines elsewhere
    tensorboard: str = ""  # also log the training metrics to this TensorBoard directory
    num_threads: int = 0  # torch intra-op threads and simulator threads, 0 = library default


@dataclass(frozen=True)
class DataConfig:
    """Training data: Interventional Pong sequences from :mod:`s2ssm.sim`."""

    envs: tuple[str, ...] = ("neutral",)
    train_sequences: int = 256  # per environment, split over DDP ranks
    seq_len: int = 16
    resolution: int = 32
    mode: str = "fixed"  # "fixed": one dataset generated up front; "stream": fresh each step
    seed: int = 0
    intervention_prob: float = 0.15  # the simulator's per-step intervention probability
    # the simulator's velocity cue: "none", or "previous" (the previous ball position drawn
    # inside the ball's mask, SPARTAN's cue): makes the ball's direction visible in one frame
    velocity: str = "none"
    shards: tuple[str, ...] = ()  # dataset directories of `s2ssm generate` (replace envs/seed)


@dataclass(frozen=True)
class VAEConfig:
    """The masked-object VAE that turns each object's masked frame into a slot."""

    latent_dim: int = 32  # D, the slot size
    channels: tuple[int, ...] = (32, 64, 64)  # encoder: one stride-2 conv per entry
    decoder_channels: int = 32  # width of the spatial broadcast decoder
    beta: float = 1e-3  # KL weight
    pretrain_steps: int = 500  # VAE-only steps before the dynamics are trained
    lr: float = 1e-3
    batch_size: int = 128  # object images per pre-training step
    freeze: bool = True  # frozen after pre-training (SPARTAN) or fine-tuned with the dynamics
    recon_weight: float = 0.0  # pixel-reconstruction weight during the dynamics phase
    init_from: str = ""  # start from the VAE of this checkpoint (then pretrain_steps may be 0)
    # encode (frame - static background) x mask instead of frame x mask: anti-aliased edges then
    # carry the object's coverage, not a phase-dependent share of background grey (README)
    subtract_background: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The slot dynamics model (S2-SSM or its Transformer twin)."""

    # "ssm" (Mamba over time), "transformer" (causal self-attention over time, S2-SSM's gates)
    # or "spartan" (SPARTAN, arXiv 2411.06890: time attention and hard attention masks from the
    # cross-attention's own query-key scores; s2ssm.models.spartan)
    kind: str = "ssm"
    num_objects: int = 4  # K
    d_model: int = 64
    num_layers: int = 2  # L SlotSSM blocks (layout "time_first": L temporal blocks)
    # "interleaved": each block is a temporal layer, then the interactions, then an MLP (the
    # paper's), so a message at t also reaches later steps through the next block's temporal
    # layer; "time_first": the num_layers temporal blocks first, per slot, then
    # interaction_layers blocks of interactions only, so a message at t reaches the prediction
    # of t + 1 alone and the edges of step t are the whole local graph (blocks docs)
    layout: str = "interleaved"
    interaction_layers: int = 1  # layout "time_first": interaction blocks after the history
    num_heads: int = 1  # heads of the slot cross-attention (and the temporal attention)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    mlp_ratio: int = 2
    max_len: int = 256  # positional table of the Transformer baseline
    num_env_codes: int = 11  # rows of the environment codebook
    use_interventions: bool = False  # feed the simulator's intervention indicators as tokens
    num_interventions: int = 5
    # or "bernoulli" (hard samples, the counterfactual gradient), "straight_through",
    # "relaxed" Gumbel-sigmoid (model docs)
    gate: str = "hard_concrete"
    # gate = "bernoulli": sequences per batch whose edges are re-evaluated open and closed
    # (s2ssm.models.counterfactual); 0 = the whole batch
    counterfactual_sequences: int = 8
    # gate = "bernoulli": training edges are open with probability explore + (1 - explore) p,
    # so that every message keeps being learnt where its gate is closed (model docs)
    gate_explore: float = 0.0
    # gate = "bernoulli": and closed with probability at least explore_closed (open with
    # explore + (1 - explore - explore_closed) p), so that the prediction without each parent,
    # the closed arm of every counterfactual benefit, keeps being learnt where the gate is open
    gate_explore_closed: float = 0.0
    # gate = "bernoulli": "probability" draws each training edge with the gate's probability p;
    # "threshold" with the evaluation's edge (p > edge_threshold) instead of p, the two
    # explorations kept, so that the closed arm is learnt where the gate is shut (model docs)
    gate_draw: str = "probability"
    # gate = "bernoulli": what an edge's benefit compares its parent with. "closed": the
    # prediction without the parent (its information, the exact derivative of the expected
    # error); "resampled": the parent's state drawn at random from the batch, the edge open
    # (its interventional effect; layout "time_first" with one interaction block;
    # s2ssm.models.counterfactual)
    benefit: str = "closed"
    gate_gradient: str = "mask"  # straight-through backward: "mask" or "message" (model docs)
    gate_temperature: float = 0.5
    gate_init_bias: float = 3.0  # initial gate logit: edges start open (p = sigmoid(3) = 0.95)
    # false: the per-edge bias stays at gate_init_bias, so a gate can only close through the
    # state-dependent part of its logit (no static bias to shut an edge on every transition)
    gate_learn_bias: bool = True
    gate_logit_bound: float = 4.0  # > 0: gate logits soft-clipped to +-bound (EdgeGate docs)
    gate_logit_decay: float = 1e-3  # weight of the squared overshoot past the bound (loss term)
    # "bilinear": z = <Wq x_i, Wk y_j> / sqrt(d) + b; "mlp": an MLP over (x_i, y_j, x_i - y_j)
    gate_scorer: str = "bilinear"
    # hard concrete: the clip at 0 / 1 passes the gradient straight through (gates docs)
    gate_clip_gradient: bool = False
    edge_threshold: float = 0.5  # gate probability above which an edge exists at evaluation
    # "logit": an evaluation edge where sigmoid(z) > edge_threshold; "open_probability": where
    # the probability that a training sample is open, sigmoid(z + shift), is (one rule for both)
    edge_rule: str = "logit"
    # false: the environment slot is no parent (no env edges), for a single environment
    # without intervention tokens, where it is a constant and carries no information
    env_parent: bool = True
    attend_self: bool = False  # the own slot in the cross-attention too, ungated (model docs)
    # "attention": softmax attention over the open parents, messages scaled by the gates;
    # "gated_sum": sum over all parents of gate x W_v y_j (no softmax: a closed parent reaches
    # nothing, not even a normaliser, and with gate_clip_gradient a closed sample still learns
    # what opening would do; hard_concrete only, blocks docs)
    message: str = "attention"
    backend: str = ""  # kernels: "" (automatic), "reference" or "triton"


@dataclass(frozen=True)
class SparsityConfig:
    """The path-count penalty and its dual (Lagrangian) schedule; see ``LambdaSchedule``."""

    enabled: bool = True  # False: lambda = 0 throughout (the dense SSM baseline)
    lambda_init: float = 1e-3
    lambda_min: float = 1e-6
    lambda_max: float = 1.0
    target: float = 3e-4  # tau, the prediction error the dual step aims at
    # > 0: tau = target_ratio x the smoothed error at the end of the warm-up (target unused), a
    # target in the units of the model's own error instead of an absolute number
    target_ratio: float = 0.0
    # > 0: the error that target_ratio multiplies is the mean raw batch error of the last
    # target_window warm-up steps (a low-variance estimate) instead of the smoothed error
    target_window: int = 0
    # a finished run (e.g. the dense model's): tau = target_ratio x the mean error of its last
    # target_window dynamics steps (from its metrics.jsonl) instead of this run's warm-up
    target_run: str = ""
    # "steps": lambda *= growth / shrink (below / above tau); "exponential": the paper's
    # multiplicative rule, lambda *= exp(rate x (tau - error) / tau): dual ascent on the log of
    # the multiplier mu = 1 / lambda of the constraint "error <= tau" (see LambdaSchedule)
    rule: str = "steps"
    rate: float = 0.05  # step size of the exponential rule, per unit of relative error
    growth: float = 1.02  # lambda *= growth while the (smoothed) error is below tau
    shrink: float = 0.95  # lambda *= shrink while it is at or above tau
    ema: float = 0.9  # smoothing of the error fed to the rule (0 = raw batch error)
    warmup_steps: int = 200  # dynamics steps with lambda held at lambda_init
    # > 0: stop training (optim.steps is the cap) once the mean edge density of the last
    # plateau_window steps after the warm-up differs from that of the window before by less
    # than plateau_tol: the penalty has converged
    plateau_window: int = 0
    plateau_tol: float = 0.005


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the number of dynamics steps."""

    steps: int = 2000  # dynamics steps (the VAE pre-training steps come on top)
    batch_size: int = 32  # sequences per step and rank
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100  # linear learning-rate warm-up of the dynamics
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # gradient-norm clip of the dynamics phase, 0 = no clipping


@dataclass(frozen=True)
class EvalConfig:
    """What ``s2ssm eval`` measures."""

    envs: tuple[str, ...] = ("neutral",)
    sequences: int = 64
    seq_len: int = 16
    seed: int = 1_000_003  # the test split: what tables report
    # the validation split (``s2ssm eval --split validation``): settings are chosen on it
    validation_seed: int = 2_000_029
    intervention_prob: float = 0.15
    batch_size: int = 32
    context: int = 4  # observed steps before a multi-step rollout
    horizon: int = 8  # predicted steps of the rollout
    global_min_fraction: float = 0.01  # share of local graphs an edge needs to be global
    fit_code_steps: int = 100  # steps to fit a new environment code (unseen environments)
    fit_code_lr: float = 1e-2
    # "trained": the environment's codebook row (a code fitted on the first batch for an
    # unseen one); "identified": no environment information, each sequence's code fitted on its
    # first `context` steps only, and only the transitions after them are scored
    env_code: str = "trained"
    floor_draws: int = 8  # re-simulations per transition for the noise floor (0: skip it)


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        validate(self)


_CHOICES = {
    ("data", "mode"): ("fixed", "stream"),
    ("data", "velocity"): ("none", "previous"),
    ("eval", "env_code"): ("trained", "identified"),
    ("sparsity", "rule"): ("steps", "exponential"),
    ("model", "kind"): ("ssm", "transformer", "spartan"),
    ("model", "gate"): ("straight_through", "relaxed", "hard_concrete", "bernoulli"),
    ("model", "gate_gradient"): ("message", "mask"),
    ("model", "gate_scorer"): ("bilinear", "mlp"),
    ("model", "edge_rule"): ("logit", "open_probability"),
    ("model", "message"): ("attention", "gated_sum"),
    ("model", "layout"): ("interleaved", "time_first"),
    ("model", "benefit"): ("closed", "resampled"),
    ("model", "gate_draw"): ("probability", "threshold"),
    ("model", "backend"): ("", "reference", "triton"),
}
_POSITIVE = {
    ("data", "train_sequences"),
    ("data", "seq_len"),
    ("data", "resolution"),
    ("vae", "latent_dim"),
    ("vae", "batch_size"),
    ("vae", "decoder_channels"),
    ("model", "num_objects"),
    ("model", "d_model"),
    ("model", "num_layers"),
    ("model", "interaction_layers"),
    ("model", "num_heads"),
    ("model", "d_state"),
    ("model", "d_conv"),
    ("model", "expand"),
    ("model", "mlp_ratio"),
    ("model", "max_len"),
    ("model", "num_env_codes"),
    ("model", "num_interventions"),
    ("model", "gate_temperature"),
    ("optim", "batch_size"),
    ("optim", "lr"),
    ("vae", "lr"),
    ("run", "log_every"),
    ("run", "checkpoint_every"),
    ("sparsity", "target"),
    ("sparsity", "lambda_min"),
    ("sparsity", "rate"),
    ("sparsity", "plateau_tol"),
    ("eval", "sequences"),
    ("eval", "batch_size"),
    ("eval", "context"),
    ("eval", "horizon"),
}


_UNIT_INTERVAL = {  # [0, 1]
    ("model", "gate_explore"),
    ("model", "gate_explore_closed"),
    ("data", "intervention_prob"),
    ("eval", "intervention_prob"),
    ("optim", "min_lr_ratio"),
}
_NON_NEGATIVE = {
    ("vae", "beta"),
    ("vae", "recon_weight"),
    ("optim", "weight_decay"),
    ("optim", "grad_clip"),
}
_MOMENTUM = {("optim", "beta1"), ("optim", "beta2")}  # [0, 1)
MAX_THREADS = 1024  # s2ssm.graph.MAX_THREADS (config imports no Rust core), the simulator's cap
NUM_OBJECTS = 4  # Pong's objects: left paddle, right paddle, ball, score (s2ssm.sim.OBJECTS)
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_finite(config: Config) -> None:
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInputError(
                    f"{section.name}.{f.name} must be a finite number, got {value!r}"
                )


def _check_ranges(config: Config) -> None:
    for section, name in sorted(_UNIT_INTERVAL | _NON_NEGATIVE | _MOMENTUM):
        value = getattr(getattr(config, section), name)
        if (section, name) in _UNIT_INTERVAL and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{section}.{name} must be in [0, 1], got {value!r}")
        if (section, name) in _NON_NEGATIVE and not value >= 0.0:
            raise InvalidInputError(f"{section}.{name} must be >= 0, got {value!r}")
        if (section, name) in _MOMENTUM and not 0.0 <= value < 1.0:
            raise InvalidInputError(f"{section}.{name} must be in [0, 1), got {value!r}")
    if config.run.num_threads > MAX_THREADS:
        raise InvalidInputError(
            f"run.num_threads must be at most {MAX_THREADS} (0: the library default), got "
            f"{config.run.num_threads}"
        )
    if not _DEVICE.fullmatch(config.run.device):
        raise InvalidInputError(
            f"run.device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:<index>', got "
            f"{config.run.device!r}"
        )
    if config.model.num_objects != NUM_OBJECTS:
        raise InvalidInputError(
            f"model.num_objects must be {NUM_OBJECTS} (Pong's left paddle, right paddle, ball "
            f"and score), got {config.model.num_objects}"
        )


def validate(config: Config) -> None:
    """Raise :class:`InvalidInputError` naming the first field with an impossible value."""
    _check_finite(config)
    _check_ranges(config)
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise InvalidInputError(f"{section}.{name} must be one of {choices}, got {value!r}")
    for section, name in _POSITIVE:
        value = getattr(getattr(config, section), name)
        if not value > 0:
            raise InvalidInputError(f"{section}.{name} must be positive, got {value!r}")
    data, vae, model, sp = config.data, config.vae, config.model, config.sparsity
    if data.seq_len < 2:
        raise InvalidInputError(f"data.seq_len must be at least 2, got {data.seq_len}")
    if not data.envs:
        raise InvalidInputError("data.envs must name at least one environment")
    if data.resolution % (2 ** len(vae.channels)) != 0 or not vae.channels:
        raise InvalidInputError(
            f"data.resolution ({data.resolution}) must be divisible by 2**len(vae.channels) "
            f"= {2 ** len(vae.channels)} (and vae.channels must not be empty)"
        )
    if model.d_model % model.num_heads != 0:
        raise InvalidInputError(
            f"model.d_model ({model.d_model}) must be divisible by model.num_heads "
            f"({model.num_heads})"
        )
    if model.gate_logit_decay < 0:
        raise InvalidInputError(
            f"model.gate_logit_decay must be >= 0, got {model.gate_logit_decay}"
        )
    if model.gate_logit_bound < 0:
        raise InvalidInputError(
            f"model.gate_logit_bound must be >= 0 (0: unbounded), got {model.gate_logit_bound}"
        )
    if 0 < model.gate_logit_bound < abs(model.gate_init_bias):
        raise InvalidInputError(
            f"model.gate_init_bias ({model.gate_init_bias}) must lie inside "
            f"+-model.gate_logit_bound ({model.gate_logit_bound}), or set the bound to 0"
        )
    if model.benefit == "resampled" and (
        model.gate != "bernoulli" or model.layout != "time_first" or model.interaction_layers != 1
    ):
        raise InvalidInputError(
            "model.benefit = 'resampled' needs model.gate = 'bernoulli', model.layout = "
            "'time_first' and model.interaction_layers = 1 (a parent's state at step t then "
            f"reaches its child's prediction of t + 1 alone), got {model.gate!r}, "
            f"{model.layout!r} and {model.interaction_layers}"
        )
    if model.gate_explore + model.gate_explore_closed > 1.0:
        raise InvalidInputError(
            f"model.gate_explore + model.gate_explore_closed must be <= 1, got "
            f"{model.gate_explore} + {model.gate_explore_closed}"
        )
    if model.message == "gated_sum" and model.gate != "hard_concrete":
        raise InvalidInputError(
            f"model.message = 'gated_sum' needs model.gate = 'hard_concrete' (its gate values "
            f"scale the messages), got {model.gate!r}"
        )
    if model.kind == "spartan" and (
        model.gate != "straight_through" or model.gate_scorer != "bilinear"
    ):
        raise InvalidInputError(
            "model.kind = 'spartan' samples its masks with the straight-through Gumbel-sigmoid "
            "from the attention's own query-key scores: it needs model.gate = "
            f"'straight_through' and model.gate_scorer = 'bilinear', got {model.gate!r} and "
            f"{model.gate_scorer!r}"
        )
    if model.kind == "spartan" and model.message != "attention":
        raise InvalidInputError(
            f"model.kind = 'spartan' needs model.message = 'attention', got {model.message!r}"
        )
    if not 0.0 < model.edge_threshold < 1.0:
        raise InvalidInputError(
            f"model.edge_threshold must be in (0, 1), got {model.edge_threshold}"
        )
    if sp.target_ratio < 0 or (sp.target_ratio > 0 and sp.warmup_steps < 1):
        raise InvalidInputError(
            "sparsity.target_ratio must be >= 0, and > 0 needs sparsity.warmup_steps >= 1 (the "
            f"target is set from the warm-up's error), got {sp.target_ratio} and "
            f"{sp.warmup_steps}"
        )
    if sp.target_run and (sp.target_ratio <= 0 or sp.target_window < 1):
        raise InvalidInputError(
            "sparsity.target_run needs sparsity.target_ratio > 0 and sparsity.target_window >= 1 "
            f"(tau = ratio x the run's mean error over the window), got {sp.target_ratio} and "
            f"{sp.target_window}"
        )
    if sp.target_window < 0:
        raise InvalidInputError(
            f"sparsity.target_window must be >= 0 (0: the smoothed error), got {sp.target_window}"
        )
    if not (sp.lambda_min <= sp.lambda_init <= sp.lambda_max):
        raise InvalidInputError(
            "sparsity.lambda_min <= sparsity.lambda_init <= sparsity.lambda_max must hold, got "
            f"{sp.lambda_min}, {sp.lambda_init}, {sp.lambda_max}"
        )
    if not (sp.growth >= 1.0 and 0.0 < sp.shrink <= 1.0):
        raise InvalidInputError(
            f"sparsity.growth must be >= 1 and sparsity.shrink in (0, 1], got {sp.growth}, "
            f"{sp.shrink}"
        )
    if not 0.0 <= sp.ema < 1.0:
        raise InvalidInputError(f"sparsity.ema must be in [0, 1), got {sp.ema}")
    for section, name in (
        ("vae", "pretrain_steps"),
        ("optim", "steps"),
        ("optim", "warmup_steps"),
        ("sparsity", "warmup_steps"),
        ("sparsity", "plateau_window"),
        ("model", "counterfactual_sequences"),
        ("run", "num_threads"),
        ("eval", "fit_code_steps"),
    ):
        value = getattr(getattr(config, section), name)
        if value < 0:
            raise InvalidInputError(f"{section}.{name} must be >= 0, got {value}")
    seeds = {"data.seed": config.data.seed, "eval.seed": config.eval.seed}
    seeds["eval.validation_seed"] = config.eval.validation_seed
    if len(set(seeds.values())) < len(seeds):
        raise InvalidInputError(
            f"data.seed, eval.seed and eval.validation_seed must differ (training, test and "
            f"validation sequences are drawn from them), got {seeds}"
        )
    if config.eval.env_code == "identified" and config.eval.context < 2:
        raise InvalidInputError(
            f"eval.context must be >= 2 with eval.env_code = 'identified' (the code is fitted "
            f"on the transitions inside the context), got {config.eval.context}"
        )
    if config.eval.context + config.eval.horizon > config.eval.seq_len:
        raise InvalidInputError(
            f"eval.context + eval.horizon ({config.eval.context} + {config.eval.horizon}) must "
            f"not exceed eval.seq_len ({config.eval.seq_len})"
        )


T = TypeVar("T")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation (str, int, float, bool, tuple[X, ...])."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise InvalidTypeError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(item, item_type, f"{where}[]") for item in value)
    if origin in (typing.Union, types.UnionType):
        raise InvalidTypeError(f"{where}: unsupported annotation {annotation}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise InvalidTypeError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTypeError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidTypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise InvalidTypeError(f"{where} must be a string, got {value!r}")
        return value
    raise InvalidTypeError(f"{where}: unsupported annotation {annotation}")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    if not isinstance(data, Mapping):
        raise InvalidTypeError(f"{where or 'config'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidInputError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{name}")
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A :class:`Config` from nested mappings; missing keys keep their defaults."""
    return _build(Config, data, "")


def config_to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dicts (tuples become lists), the inverse of :func:`config_from_dict`."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return [convert(x) for x in obj]
        return obj

    return convert(config)  # type: ignore[no-any-return]


def config_to_json(config: Config) -> str:
    """Canonical JSON text of a config (sorted keys), stored in checkpoints."""
    return json.dumps(config_to_dict(config), sort_keys=True)


def config_from_json(text: str) -> Config:
    """Inverse of :func:`config_to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"config JSON is not valid: {error}") from None
    return config_from_dict(data)


def parse_override_value(text: str) -> Any:
    """The value of a ``--set key=value``: a TOML value, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _nested_set(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise InvalidInputError(
            f"--set key must look like section.name (e.g. model.num_layers), got {dotted!r}"
        )
    section, name = parts
    table = data.setdefault(section, {})
    if not isinstance(table, dict):
        raise InvalidInputError(f"--set {dotted}: {section} is not a table")
    table[name] = value


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """``config`` with each ``section.name=value`` of ``overrides`` applied, checked again."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--set expects key=value, got {item!r}")
        _nested_set(data, key.strip(), parse_override_value(raw.strip()))
    return config_from_dict(data)


#: Where the shipped presets live (``s2ssm/configs/*.toml``, in the wheel and in a clone).
PRESET_DIR = Path(__file__).resolve().parent / "configs"


def presets() -> tuple[str, ...]:
    """The names of the shipped config presets (``small_cpu``, ``paper_s2ssm``, ...)."""
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself when it exists or names a file (has a folder or a suffix), else the
    shipped preset of that name (``small_cpu`` or ``small_cpu.toml``)."""
    given = Path(path)
    if given.exists() or (given.parent != Path(".") and given.suffix):
        return given
    name = given.stem if given.suffix == ".toml" else given.name
    if given.parent == Path(".") and name in presets():
        return PRESET_DIR / f"{name}.toml"
    if given.parent == Path(".") and not given.suffix:
        raise InvalidInputError(
            f"config {str(path)!r} is neither a file nor a preset; presets: {', '.join(presets())}"
        )
    return given


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config (a path or a preset name, see :func:`presets`; ``None``: the
    defaults) and apply ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise InvalidInputError(f"config file {str(path)!r} does not exist") from None
        except OSError as error:  # a directory, no permission, ...
            raise InvalidInputError(
                f"config file {str(path)!r} cannot be read: {error.strerror or error}"
            ) from None
        except tomllib.TOMLDecodeError as error:
            raise InvalidInputError(
                f"config file {str(path)!r} is not valid TOML: {error}"
            ) from None
    return apply_overrides(config_from_dict(data), overrides)
