"""7. The loss and the λ schedule: next-slot MSE + λ x the expected number of causal paths
(:func:`~s2ssm.models.causal_graph.path_penalty`) + the gate logits' decay past their bound,
with λ from the dual schedule :class:`LambdaSchedule`. The dense SSM baseline is λ = 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from s2ssm.config import SparsityConfig
from s2ssm.models.causal_graph import path_penalty
from s2ssm.models.world_model import DynamicsOutput

__all__ = ["LambdaSchedule", "dynamics_loss"]


def dynamics_loss(
    out: DynamicsOutput, slots: Tensor, lam: float
) -> tuple[Tensor, dict[str, float]]:
    """Next-slot MSE over the transitions 0..T-2 (targets detached) + lam x path penalty of the
    same positions + the gate logits' decay past their bound (``out.logit_decay``). Returns
    (loss, float metrics: mse, paths, loss, edge_density = mean open gates, gate_decay)."""
    mse = F.mse_loss(out.pred[:, :-1].float(), slots[:, 1:].detach().float())
    paths = path_penalty(out.gate_probs[:, :-1])
    loss = (mse + lam * paths if lam > 0 else mse) + out.logit_decay
    k = out.edges.shape[-2]
    off_diag = ~torch.eye(k, k + 1, dtype=torch.bool, device=out.edges.device)
    density = out.edges[..., off_diag].float().mean()
    return loss, {
        "mse": float(mse.detach()),
        "paths": float(paths.detach()),
        "loss": float(loss.detach()),
        "edge_density": float(density),
        "gate_decay": float(torch.as_tensor(out.logit_decay).detach()),
    }


class LambdaSchedule:
    """The dual step on λ, the weight of the path penalty.

    With e_k the prediction MSE of dynamics step k (k = 0, 1, ...), the smoothed error is
    ``ē_k = e_0`` if k = 0 else ``ema x ē_{k-1} + (1 - ema) x e_k``, the target is
    ``τ = target``, or ``τ = target_ratio x ē_{W-1}`` (W = warmup_steps) when target_ratio > 0,
    or, when also ``target_window = n > 0``, ``τ = target_ratio x mean(e_{W-m}, ..., e_{W-1})``
    with m = min(n, W) (batch errors of several environments scatter by +-20 %, so one smoothed
    value at step W-1 sets a noisy τ), and the λ used by step k is

        λ_k = 0                                     for k < W    (learn to predict first)
        λ_k = lambda_init                           for k = W
        λ_{k+1} = min(λ_k x growth, lambda_max)     if ē_k < τ   (prediction is good enough:
                                                                  buy more sparsity)
        λ_{k+1} = max(λ_k x shrink, lambda_min)     otherwise    (too sparse: back off)

    λ = 0 throughout when ``enabled`` is false (the dense baseline). This is a multiplicative
    (log-space) ascent on the Lagrange multiplier of the constraint "error <= τ". The warm-up
    matters with Adam: its updates ignore the gradient scale, so any λ > 0 on a model that
    cannot predict yet shuts every gate. A relative target (``target_ratio``) reads "do not
    predict worse than the dense model did at the end of the warm-up", which carries across
    slot spaces and data sets where an absolute MSE does not. All constants are fields of
    :class:`SparsityConfig`.
    """

    def __init__(self, cfg: SparsityConfig) -> None:
        self.cfg = cfg
        self.smoothed: float | None = None
        self.steps = 0
        self.target = cfg.target
        self.window_sum = 0.0  # sum of the errors of the warm-up's last target_window steps
        self.value = self._start()

    def _start(self) -> float:
        cfg = self.cfg
        if not cfg.enabled or self.steps < cfg.warmup_steps:
            return 0.0
        return cfg.lambda_init

    def update(self, error: float) -> float:
        """Feed the MSE of the step just taken; returns the λ for the next step."""
        cfg = self.cfg
        self.smoothed = (
            error if self.smoothed is None else cfg.ema * self.smoothed + (1 - cfg.ema) * error
        )
        if cfg.warmup_steps - cfg.target_window <= self.steps < cfg.warmup_steps:
            self.window_sum += error
        if cfg.enabled and self.steps >= cfg.warmup_steps:
            if self.smoothed < self.target:
                self.value = min(self.value * cfg.growth, cfg.lambda_max)
            else:
                self.value = max(self.value * cfg.shrink, cfg.lambda_min)
        self.steps += 1
        if self.steps == cfg.warmup_steps:
            self.value = self._start()
            if cfg.target_ratio > 0 and cfg.target_window > 0:
                count = min(cfg.target_window, cfg.warmup_steps)
                self.target = cfg.target_ratio * self.window_sum / count
            elif cfg.target_ratio > 0:
                self.target = cfg.target_ratio * self.smoothed
        return self.value

    def state_dict(self) -> dict[str, float | int | None]:
        return {
            "value": self.value,
            "smoothed": self.smoothed,
            "steps": self.steps,
            "target": self.target,
            "window_sum": self.window_sum,
        }

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.value = float(state["value"])  # type: ignore[arg-type]
        smoothed = state["smoothed"]
        self.smoothed = None if smoothed is None else float(smoothed)
        self.steps = int(state["steps"])  # type: ignore[arg-type]
        target = state.get("target")  # absent in checkpoints written before target_ratio
        self.target = self.cfg.target if target is None else float(target)
        self.window_sum = float(state.get("window_sum") or 0.0)  # type: ignore[arg-type]
