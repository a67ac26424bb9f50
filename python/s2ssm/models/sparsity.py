"""7. The loss and the λ schedule: next-slot MSE + λ x the expected number of causal paths
(:func:`~s2ssm.models.causal_graph.path_penalty`) + the gate logits' decay past their bound,
with λ from the dual schedule :class:`LambdaSchedule`. The dense SSM baseline is λ = 0."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from s2ssm.config import SparsityConfig
from s2ssm.models.causal_graph import path_penalty
from s2ssm.models.world_model import DynamicsOutput

__all__ = ["LambdaSchedule", "dynamics_loss"]


def dynamics_loss(
    out: DynamicsOutput, slots: Tensor, lam: float, benefit: Tensor | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Next-slot MSE over the transitions 0..T-2 (targets detached) + lam x path penalty of the
    same positions + the gate logits' decay past their bound (``out.logit_decay``). Returns
    (loss, float metrics: mse, paths, loss, edge_density = mean open gates, gate_decay).

    ``benefit`` (B', T - 1, K, K + 1), for the first B' sequences
    (:func:`~s2ssm.models.counterfactual.edge_benefits`), ``model.gate = "bernoulli"``: the
    gates learn from the benefits instead (:func:`_gate_surrogate`, no gradient through the
    penalty); the loss keeps its value, and ``gate_gain`` is the error the open gates save."""
    mse = F.mse_loss(out.pred[:, :-1].float(), slots[:, 1:].detach().float())
    paths = path_penalty(out.gate_probs[:, :-1])
    gain = torch.zeros(())
    if benefit is None:
        loss = (mse + lam * paths if lam > 0 else mse) + out.logit_decay
    else:  # the value of the objective, the gradient of the counterfactual estimator
        surrogate, gain = _gate_surrogate(out, benefit, lam)
        loss = mse + lam * paths.detach() + surrogate + out.logit_decay
    k = out.edges.shape[-2]
    off_diag = ~torch.eye(k, k + 1, dtype=torch.bool, device=out.edges.device)
    density = out.edges[..., off_diag].float().mean()
    return loss, {
        "mse": float(mse.detach()),
        "paths": float(paths.detach()),
        "loss": float(loss.detach()),
        "edge_density": float(density),
        "gate_decay": float(torch.as_tensor(out.logit_decay).detach()),
        **({"gate_gain": float(gain.detach())} if benefit is not None else {}),
    }


def _gate_surrogate(out: DynamicsOutput, benefit: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """(surrogate, saving) for the first B' sequences. The surrogate is 0 in value and its
    gradient in each gate logit z is ``-(benefit - lam x price)`` per transition, ``price`` =
    d (causal paths) / d p at the current gate probabilities p = sigmoid(z): the gradient of
    the expected error + lam x paths divided by p (1 - p), the natural gradient of a Bernoulli
    gate (a closed gate at p = 0.02 learns as fast as an undecided one). ``saving`` = mean
    over transitions of sum p x benefit, the error the open gates save."""
    n = benefit.shape[0]
    logits = out.gate_logits[:n, :-1]  # (B', T - 1, L, K, K + 1)
    probs = torch.sigmoid(logits.detach() + out.open_shift).requires_grad_(True)
    with torch.enable_grad():
        (price,) = torch.autograd.grad(path_penalty(probs), probs)
    price = price * (probs.shape[0] * probs.shape[1])  # per transition, not per batch
    advantage = benefit.detach().unsqueeze(2) - lam * price
    surrogate = -((logits - logits.detach()) * advantage).sum(dim=(-3, -2, -1)).mean()
    saving = (probs.detach() * benefit.detach().unsqueeze(2)).sum(dim=(-3, -2, -1)).mean()
    return surrogate, saving


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

    ``reference_error`` (``sparsity.target_run``, read by the trainer): ``τ = target_ratio x
    reference_error`` from the start, e.g. the converged error of the dense model on the same
    data ("predict as well as the model with every edge"); the warm-up then sets nothing.

    ``rule = "exponential"`` replaces the two fixed factors by the paper's multiplicative rule,

        λ_{k+1} = clip(λ_k x exp(rate x (τ - ē_k) / τ), lambda_min, lambda_max)   (k >= W)

    a step proportional to how far the error is from τ (relative, so ``rate`` carries across
    slot spaces). The sign: the paper's summary writes λ <- λ e^(MSE - τ), the update of the
    multiplier of the *error* constraint "MSE <= τ" in the Lagrangian paths + μ (MSE - τ); our
    λ weighs the paths instead (λ = 1 / μ), which flips the exponent. Taken literally on our λ
    it would raise the penalty while the error is too high, and every gate shuts.

    ``plateau_window = n > 0``: after the warm-up the edge density (the share of open gates in
    the training samples, ``update``'s ``density``) is averaged over consecutive windows of n
    steps; :attr:`converged` turns true once two successive windows' means differ by less than
    ``plateau_tol``, and the trainer stops there. A run without the penalty (``enabled``
    false) never converges this way: its density has nothing to settle.
    """

    def __init__(self, cfg: SparsityConfig, reference_error: float | None = None) -> None:
        self.cfg = cfg
        self.smoothed: float | None = None
        self.steps = 0
        self.target = cfg.target
        # sparsity.target_run: tau from another run's converged error, fixed from the start
        self.fixed_target = reference_error is not None
        if reference_error is not None:
            self.target = cfg.target_ratio * reference_error
        self.window_sum = 0.0  # sum of the errors of the warm-up's last target_window steps
        self.value = self._start()
        self.density_sum = 0.0  # edge densities of the current plateau window
        self.last_density: float | None = None  # mean density of the previous full window
        self.converged = False

    def _start(self) -> float:
        cfg = self.cfg
        if not cfg.enabled or self.steps < cfg.warmup_steps:
            return 0.0
        return cfg.lambda_init

    def update(self, error: float, density: float | None = None) -> float:
        """Feed the MSE of the step just taken (and its edge density, for the plateau rule);
        returns the λ for the next step."""
        cfg = self.cfg
        self.smoothed = (
            error if self.smoothed is None else cfg.ema * self.smoothed + (1 - cfg.ema) * error
        )
        if cfg.warmup_steps - cfg.target_window <= self.steps < cfg.warmup_steps:
            self.window_sum += error
        if cfg.enabled and self.steps >= cfg.warmup_steps:
            self.value = self._step(self.value, self.smoothed)
        tracking = cfg.enabled and cfg.plateau_window > 0 and self.steps >= cfg.warmup_steps
        if tracking and density is not None:
            self._track_density(density)
        self.steps += 1
        if self.steps == cfg.warmup_steps:
            self.value = self._start()
            if self.fixed_target:  # tau came from another run
                return self.value
            if cfg.target_ratio > 0 and cfg.target_window > 0:
                count = min(cfg.target_window, cfg.warmup_steps)
                self.target = cfg.target_ratio * self.window_sum / count
            elif cfg.target_ratio > 0:
                self.target = cfg.target_ratio * self.smoothed
        return self.value

    def _step(self, value: float, smoothed: float) -> float:
        cfg = self.cfg
        if cfg.rule == "exponential":
            tau = max(self.target, 1e-12)  # a window of exactly-zero errors gives tau = 0
            factor = math.exp(cfg.rate * (tau - smoothed) / tau)
            return min(max(value * factor, cfg.lambda_min), cfg.lambda_max)
        if smoothed < self.target:
            return min(value * cfg.growth, cfg.lambda_max)
        return max(value * cfg.shrink, cfg.lambda_min)

    def _track_density(self, density: float) -> None:
        cfg = self.cfg
        self.density_sum += density
        if (self.steps - cfg.warmup_steps + 1) % cfg.plateau_window:
            return
        mean = self.density_sum / cfg.plateau_window
        self.density_sum = 0.0
        if self.last_density is not None and abs(mean - self.last_density) < cfg.plateau_tol:
            self.converged = True
        self.last_density = mean

    def state_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "value": self.value,
            "smoothed": self.smoothed,
            "steps": self.steps,
            "target": self.target,
            "window_sum": self.window_sum,
            "density_sum": self.density_sum,
            "last_density": self.last_density,
            "converged": self.converged,
        }

    def load_state_dict(self, state: dict[str, float | int | bool | None]) -> None:
        self.value = float(state["value"])  # type: ignore[arg-type]
        smoothed = state["smoothed"]
        self.smoothed = None if smoothed is None else float(smoothed)
        self.steps = int(state["steps"])  # type: ignore[arg-type]
        target = state.get("target")  # absent in checkpoints written before target_ratio
        self.target = self.cfg.target if target is None else float(target)
        self.window_sum = float(state.get("window_sum") or 0.0)  # type: ignore[arg-type]
        self.density_sum = float(state.get("density_sum") or 0.0)  # type: ignore[arg-type]
        last = state.get("last_density")
        self.last_density = None if last is None else float(last)
        self.converged = bool(state.get("converged", False))
