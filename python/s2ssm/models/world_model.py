"""6. The world model: :class:`SlotDynamics` (embedding, environment slot, SlotSSM blocks,
next-slot head), :class:`S2SSM` (the VAE and the dynamics), autoregressive :func:`rollout`,
and :func:`fit_env_code` for an unseen environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2ssm.config import Config, ModelConfig
from s2ssm.errors import InvalidInputError
from s2ssm.models.blocks import SlotSSMBlock, TemporalBlock
from s2ssm.models.causal_graph import local_edge_scores, local_graph_from_edges
from s2ssm.models.environment import EnvironmentSlot
from s2ssm.models.gates import open_probability_shift
from s2ssm.models.vae import ObjectVAE, compose_frame, object_images

__all__ = [
    "S2SSM",
    "DynamicsOutput",
    "SlotDynamics",
    "fit_env_code",
    "identify_env_codes",
    "rollout",
]


@dataclass
class DynamicsOutput:
    """What one pass of :class:`SlotDynamics` returns."""

    pred: Tensor  # (B, T, K, D): predicted slot at t + 1 from everything up to t
    gate_logits: Tensor  # (B, T, L, K, K + 1), float32
    edges: Tensor  # (B, T, L, K, K + 1) bool: the edges this pass used (sampled or thresholded)
    open_shift: float = 0.0  # see open_probability_shift
    eval_shift: float = 0.0  # the shift of the evaluation rule (model.edge_rule)
    # gate_logit_decay x the squared overshoot of the gate logits past their bound: keeps the
    # logits where the bound's tanh still passes a gradient (a loss term, see dynamics_loss)
    logit_decay: Tensor | float = 0.0

    @property
    def gate_probs(self) -> Tensor:
        """(B, T, L, K, K + 1): the probability that each edge is open in a training sample."""
        return torch.sigmoid(self.gate_logits + self.open_shift)

    def local_graphs(self) -> Tensor:
        """(B, T, K, K + 1) bool: the learned local graph of each transition t -> t + 1."""
        return local_graph_from_edges(self.edges)

    def local_edge_scores(self) -> Tensor:
        """(B, T, K, K + 1) float64: how likely each local edge is, the expected path count
        from the gate probabilities of the evaluation rule, sigmoid(logit + eval_shift)
        (:func:`~s2ssm.models.causal_graph.local_edge_scores`)."""
        return local_edge_scores(torch.sigmoid(self.gate_logits + self.eval_shift))


class SlotDynamics(nn.Module):
    """The S2-SSM dynamics (or its Transformer twin): slots (B, T, K, D) -> next slots."""

    def __init__(self, cfg: ModelConfig, latent_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim = latent_dim
        self.embed = nn.Linear(latent_dim, cfg.d_model)
        self.object_id = nn.Parameter(torch.randn(cfg.num_objects, cfg.d_model) * 0.02)
        self.env_slot = EnvironmentSlot(cfg)
        # layout "time_first": the history (temporal blocks), then interactions within a step
        time_first = cfg.layout == "time_first"
        self.history = nn.ModuleList(
            TemporalBlock(cfg) for _ in range(cfg.num_layers if time_first else 0)
        )
        self.blocks = nn.ModuleList(
            SlotSSMBlock(cfg, temporal=not time_first)
            for _ in range(cfg.interaction_layers if time_first else cfg.num_layers)
        )
        self.norm_out = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, latent_dim)
        nn.init.zeros_(self.head.weight)  # start from "nothing moves": pred = current slot
        nn.init.zeros_(self.head.bias)

    @property
    def edge_shape(self) -> tuple[int, int]:
        """(K, K + 1): the shape of one layer's edges (child object x parent slot)."""
        return self.cfg.num_objects, self.cfg.num_objects + 1

    def forward(
        self,
        slots: Tensor,
        env_ids: Tensor | None,
        interventions: Tensor | None = None,
        env_code: Tensor | None = None,
        forced_edges: Tensor | None = None,
    ) -> DynamicsOutput:
        """``forced_edges`` (B, T, L, K, K + 1) bool: use these edges instead of the gates' (the
        counterfactual passes of :mod:`s2ssm.models.counterfactual`)."""
        if slots.dim() != 4 or slots.shape[2:] != (self.cfg.num_objects, self.latent_dim):
            raise InvalidInputError(
                f"slots must be (B, T, {self.cfg.num_objects}, {self.latent_dim}), got "
                f"{tuple(slots.shape)}"
            )
        return self.interact(
            self.encode_history(slots), slots, env_ids, interventions, env_code, forced_edges
        )

    def encode_history(self, slots: Tensor) -> Tensor:
        """(B, T, K, D) slots -> (B, T, K, d_model): the embedded slots through the history
        blocks (layout "time_first"; the embedding alone otherwise). Depends on no edge."""
        x = self.embed(slots) + self.object_id
        for block in self.history:
            x = block(x)
        return x  # type: ignore[no-any-return]

    def interact(
        self,
        x: Tensor,
        slots: Tensor,
        env_ids: Tensor | None,
        interventions: Tensor | None = None,
        env_code: Tensor | None = None,
        forced_edges: Tensor | None = None,
    ) -> DynamicsOutput:
        """The blocks and the head on :meth:`encode_history`'s ``x`` of ``slots``: the rest of
        :meth:`forward`."""
        b, t = slots.shape[:2]
        env = self.env_slot(env_ids, b, t, interventions, env_code).to(x.dtype)
        logits, edges = [], []
        drift = slots.new_zeros((), dtype=torch.float32)
        expected = (b, t, len(self.blocks), *self.edge_shape)
        if forced_edges is not None and forced_edges.shape != expected:
            raise InvalidInputError(
                f"forced_edges must be (B, T, L, K, K + 1) = {expected}, got "
                f"{tuple(forced_edges.shape)}"
            )
        for layer, block in enumerate(self.blocks):
            forced = None if forced_edges is None else forced_edges[:, :, layer]
            x, z, e, block_drift = block(x, env, forced)
            logits.append(z)
            edges.append(e)
            drift = drift + block_drift
        pred = slots + self.head(self.norm_out(x)).to(slots.dtype)
        shift = open_probability_shift(self.cfg.gate, self.cfg.gate_temperature)
        return DynamicsOutput(
            pred,
            torch.stack(logits, dim=2),
            torch.stack(edges, dim=2),
            open_shift=shift,
            eval_shift=shift if self.cfg.edge_rule == "open_probability" else 0.0,
            logit_decay=self.cfg.gate_logit_decay * drift,
        )


class S2SSM(nn.Module):
    """The whole world model: the object VAE and the slot dynamics."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.vae = ObjectVAE(config.vae, config.data.resolution)
        self.dynamics = SlotDynamics(config.model, config.vae.latent_dim)
        self.background: Tensor | None
        if config.vae.subtract_background:
            from s2ssm import sim

            scene = torch.from_numpy(sim.background(config.data.resolution))
            self.register_buffer("background", scene, persistent=False)
        else:
            self.background = None

    def object_images(self, frames: Tensor, masks: Tensor) -> Tensor:
        """The VAE's input: (..., H, W, 3) frames and (..., H, W) masks -> (..., K, 3, H, W)."""
        return object_images(frames, masks, self.config.model.num_objects, self.background)

    def encode_slots(self, frames: Tensor, masks: Tensor) -> Tensor:
        """Slots (posterior means) from uint8 frames (B, T, H, W, 3) and masks (B, T, H, W)."""
        return self.vae.encode(self.object_images(frames, masks))[0]

    def decode_frames(self, slots: Tensor) -> Tensor:
        """(..., K, D) slots -> composed frames (..., 3, H, W) in [0, 1]."""
        return compose_frame(self.vae.decode(slots), self.background)


@torch.no_grad()
def rollout(
    dynamics: SlotDynamics,
    context: Tensor,
    horizon: int,
    env_ids: Tensor | None,
    interventions: Tensor | None = None,
    env_code: Tensor | None = None,
) -> Tensor:
    """Autoregressive prediction: (B, C, K, D) observed slots -> (B, horizon, K, D) predicted
    slots, each prediction fed back as the next input. ``interventions`` (B, C + horizon, I) if the
    model uses them. Runs the whole prefix at each step (fine for the short horizons here)."""
    seq = context
    preds = []
    for _ in range(horizon):
        length = seq.shape[1]
        inter = None if interventions is None else interventions[:, : length + 1]
        if inter is not None and inter.shape[1] == length + 1:
            # the last position predicts length -> length + 1; pass its indicators along
            out = dynamics(torch.cat([seq, seq[:, -1:]], dim=1), env_ids, inter, env_code)
            nxt = out.pred[:, length - 1]
        else:
            nxt = dynamics(seq, env_ids, inter, env_code).pred[:, -1]
        preds.append(nxt)
        seq = torch.cat([seq, nxt.unsqueeze(1)], dim=1)
    return torch.stack(preds, dim=1)


def fit_env_code(
    dynamics: SlotDynamics,
    slots: Tensor,
    interventions: Tensor | None = None,
    *,
    steps: int = 100,
    lr: float = 1e-2,
) -> Tensor:
    """Fit an environment code for sequences of an unseen environment: start from the codebook
    mean and minimise the next-slot MSE over the code alone (everything else frozen, gates
    deterministic). Returns the code (d_model,); ``dynamics.env_slot.extend_codebook`` adds it."""
    code = dynamics.env_slot.codebook.weight.detach().mean(0).clone()

    def loss(c: Tensor) -> Tensor:
        out = dynamics(slots, None, interventions, env_code=c.unsqueeze(0))
        return F.mse_loss(out.pred[:, :-1], slots[:, 1:])

    return _fit_code(dynamics, code, loss, steps=steps, lr=lr)


def _fit_code(
    dynamics: SlotDynamics,
    start: Tensor,
    loss: Callable[[Tensor], Tensor],
    *,
    steps: int,
    lr: float,
) -> Tensor:
    """Adam on ``loss(code)`` over the code alone from ``start``, the dynamics in eval mode
    (deterministic gates) and frozen; restores the mode and clears the dynamics' gradients."""
    was_training = dynamics.training
    dynamics.eval()
    code = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    for _ in range(steps):
        value = loss(code)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    dynamics.zero_grad(set_to_none=True)
    dynamics.train(was_training)
    return code.detach()


def identify_env_codes(
    dynamics: SlotDynamics,
    slots: Tensor,
    context: int,
    interventions: Tensor | None = None,
    *,
    init: Tensor,
    steps: int = 100,
    lr: float = 1e-2,
) -> Tensor:
    """Identify each sequence's environment from its first ``context`` steps alone: one code
    per sequence, started at ``init`` (d_model,) and fitted by Adam on the next-slot MSE of the
    transitions inside the context (everything else frozen, gates deterministic).

    ``slots`` (B, T, K, D) and ``interventions`` (B, T, I) may hold the whole sequences: only
    ``[:, :context]`` is read, so the steps after the context, the ones a caller then scores,
    never reach the fit. Returns (B, d_model) codes for ``env_code``. Each code's gradient
    comes from its own sequence only, so a sequence's code does not depend on the others'."""
    if not 2 <= context <= slots.shape[1]:
        raise InvalidInputError(
            f"context must be in [2, T = {slots.shape[1]}] (one transition at least), got {context}"
        )
    seen = slots[:, :context].detach()
    inter = None if interventions is None else interventions[:, :context]
    codes = init.detach().to(seen.dtype).expand(seen.shape[0], -1)

    def loss(c: Tensor) -> Tensor:
        out = dynamics(seen, None, inter, env_code=c)
        # summed over sequences: each code gets its own sequence's gradient, unscaled by B
        return (out.pred[:, :-1] - seen[:, 1:]).pow(2).mean(dim=(1, 2, 3)).sum()

    return _fit_code(dynamics, codes, loss, steps=steps, lr=lr)
