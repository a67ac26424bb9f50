"""A trained model meets a new environment: its environment code (:func:`trained_code`, the
mean of the trained codes, is the zero-shot code; :func:`set_env_code` writes a codebook row)
and fine-tuning of the dynamics on a few sequences of it (:func:`finetune_dynamics`), the
adapter the composite and occlusion phases use (:func:`s2ssm.training.trainer.train` starts
from fresh weights only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from s2ssm.config import SparsityConfig
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.metrics import encode_sequences
from s2ssm.models import S2SSM, LambdaSchedule, dynamics_loss
from s2ssm.training.data import SequenceSet, batch_indices, env_id, env_name
from s2ssm.training.trainer import TrainingDivergedError

__all__ = ["finetune_dynamics", "set_env_code", "trained_code"]


def _single_env(data: SequenceSet) -> str:
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
    Batches are drawn as in training (:func:`~s2ssm.training.data.batch_indices`). Returns the
    metrics of every step. (Adapter: :func:`s2ssm.training.trainer.train` starts from fresh
    weights only.)

    ``inputs``: the same sequences rendered another way (e.g. with the occluder,
    :func:`s2ssm.evaluation.occlusion.occlusion_pair`): the model reads their slots and is scored on
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
    slots = encode_sequences(model, data, device)
    seen = slots if inputs is None else encode_sequences(model, inputs, device)
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
