"""4. SlotSSM blocks: a temporal layer per slot (Mamba, or causal attention over time for the
Transformer baseline), then gated cross-attention from the object slots to the object slots +
the environment slot, then an MLP.

An object's own slot is not a parent in the attention: it reaches the object's next slot through
the residual stream and the temporal layer, always (the ``+ I`` of the path product, so A_i has a
zero diagonal). The attention reads only the open parents (other objects, the environment), and
an object with no open parent gets only ``message_bias``, a learned constant per object (so that
no edge is kept open as a source of a constant). ``model.attend_self = true`` puts
the own slot back into the attention, ungated: the softmax then mixes it with the parents, a
data-dependent gate through which a model can shut a parent out without closing its edge.

``model.message = "gated_sum"`` replaces the attention by a gated sum, ``out_i = W_o sum_j
g_ij W_v y_j`` (g the hard-concrete sample in training, the 0/1 edge at evaluation). The
softmax renormalises over the open parents, so the loss only sees a gate through the message of
an open edge: a closed sample passes no gradient, and once the penalty has shut an edge only
the few samples still drawn open can say what it was worth. In the sum a closed parent's term
is exactly 0 in value, yet with ``model.gate_clip_gradient`` its gate still gets the gradient
of opening, ``<dL/d out_i, W_o W_v y_j>``, on every transition; and no closed parent reaches a
child through a normaliser either.

``model.kind = "spartan"`` keeps the block's shape (time attention, interactions, MLP) but its
interactions are SPARTAN's (:mod:`s2ssm.models.spartan`): the mask logits are the attention's
own query-key scores (no separate gate, no static bias), sampled with the straight-through
Gumbel-sigmoid, and the own slot is always attended to. It reads ``gate_temperature``,
``edge_threshold`` and ``env_parent``; the other gate options are S2-SSM's and unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2ssm.config import ModelConfig
from s2ssm.errors import InvalidInputError
from s2ssm.models.gates import (
    NEG_MASK,
    EdgeGate,
    MLPEdgeGate,
    open_probability_shift,
    sample_edges,
)
from s2ssm.models.spartan import HardMaskAttention

__all__ = ["CausalTimeAttention", "SlotSSMBlock", "TemporalBlock"]


class CausalTimeAttention(nn.Module):
    """Causal self-attention over time with learned positions (the Transformer baseline's
    replacement for the Mamba layer): (batch, length, d) -> same shape."""

    def __init__(self, d_model: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.position = nn.Parameter(torch.zeros(max_len, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        if t > self.position.shape[0]:
            raise InvalidInputError(
                f"sequence length {t} exceeds model.max_len {self.position.shape[0]}"
            )
        q, k, v = self.qkv(x + self.position[:t]).chunk(3, dim=-1)
        q, k, v = (
            z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


def _kernel_modules():  # type: ignore[no-untyped-def]
    from s2ssm import nn as s2nn

    return s2nn


def _temporal_layer(cfg: ModelConfig) -> nn.Module:
    """The layer that mixes one slot's sequence over time: Mamba, or causal time attention."""
    if cfg.kind == "ssm":
        return _kernel_modules().Mamba(  # type: ignore[no-any-return]
            cfg.d_model,
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            backend=cfg.backend or None,
        )
    return CausalTimeAttention(cfg.d_model, cfg.num_heads, cfg.max_len)


def _mlp(cfg: ModelConfig) -> nn.Sequential:
    d = cfg.d_model
    return nn.Sequential(
        nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d)
    )


def _over_time(temporal: nn.Module, norm: nn.Module, x: Tensor) -> Tensor:
    """Every slot's sequence of (B, T, K, d) through ``temporal``, independently (residual)."""
    b, t, k, d = x.shape
    seq = x.transpose(1, 2).reshape(b * k, t, d)
    seq = seq + temporal(norm(seq))
    return seq.view(b, k, t, d).transpose(1, 2)


class TemporalBlock(nn.Module):
    """A temporal layer per slot, then an MLP (pre-norm, residual), no interaction: the history
    blocks of ``model.layout = "time_first"``. (B, T, K, d) -> same shape."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm_time = nn.LayerNorm(cfg.d_model)
        self.temporal = _temporal_layer(cfg)
        self.norm_mlp = nn.LayerNorm(cfg.d_model)
        self.mlp = _mlp(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = _over_time(self.temporal, self.norm_time, x)
        return x + self.mlp(self.norm_mlp(x))  # type: ignore[no-any-return]


class SlotSSMBlock(nn.Module):
    """Temporal layer per slot, then gated cross-attention across slots, then an MLP (pre-norm,
    residual). Input (B, T, K, d) object slots and (B, T, d) environment tokens. With
    ``temporal=False`` (the interaction blocks of ``model.layout = "time_first"``) there is no
    temporal layer: each step's slots interact with that step's slots alone."""

    def __init__(self, cfg: ModelConfig, temporal: bool = True) -> None:
        super().__init__()
        s2nn = _kernel_modules()
        d, k = cfg.d_model, cfg.num_objects
        backend = cfg.backend or None
        self.norm_time = nn.LayerNorm(d) if temporal else None
        self.temporal = _temporal_layer(cfg) if temporal else None
        self.norm_query = nn.LayerNorm(d)
        self.norm_key = nn.LayerNorm(d)
        self.gate: EdgeGate | MLPEdgeGate | None
        self.message = cfg.message
        if cfg.kind == "spartan":  # its masks come from its own attention's scores
            self.gate = None
            self.hard_attention = HardMaskAttention(d, cfg.num_heads)
        else:
            if cfg.gate_scorer == "mlp":
                self.gate = MLPEdgeGate(d, k, k + 1, cfg.gate_init_bias, cfg.gate_logit_bound)
            else:
                self.gate = EdgeGate(d, k, k + 1, cfg.gate_init_bias, cfg.gate_logit_bound)
            self.gate.bias.requires_grad_(cfg.gate_learn_bias)
            if cfg.message == "gated_sum":
                self.value = nn.Linear(d, d, bias=False)
                self.message_out = nn.Linear(d, d, bias=False)
            else:
                self.attention = s2nn.SlotAttention(d, num_heads=cfg.num_heads, backend=backend)
        # A constant per child object added to the attention output: the "no parent" message.
        # Without it an always-open edge from a constant slot (the environment token when one
        # environment is trained) is worth keeping as a bias source, and the penalty must
        # fight edges that carry no information.
        self.message_bias = nn.Parameter(torch.zeros(k, d))
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = _mlp(cfg)
        self.gate_mode = cfg.gate
        self.gate_gradient = cfg.gate_gradient
        self.temperature = cfg.gate_temperature
        self.threshold = cfg.edge_threshold
        self.clip_gradient = cfg.gate_clip_gradient
        self.explore = cfg.gate_explore
        self.explore_closed = cfg.gate_explore_closed
        self.draw = cfg.gate_draw
        # "open_probability": an evaluation edge is one open in most training samples
        self.eval_shift = (
            open_probability_shift(cfg.gate, cfg.gate_temperature)
            if cfg.edge_rule == "open_probability"
            else 0.0
        )
        self.register_buffer("self_edges", torch.eye(k, k + 1, dtype=torch.bool), persistent=False)
        self.self_mask = 0.0 if cfg.attend_self else NEG_MASK
        self.env_parent = cfg.env_parent
        env_column = torch.zeros(k, k + 1, dtype=torch.bool)
        env_column[:, k] = True
        self.register_buffer("env_column", env_column, persistent=False)

    def forward(
        self, x: Tensor, env: Tensor, forced_edges: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (new slots, gate logits (B, T, K, K + 1), edges (B, T, K, K + 1) bool, logit
        drift); the diagonal (self) entries of logits and edges are meaningless and zeroed
        later. The drift is the mean over positions of the summed squared overshoot of the
        unbounded logits past ``gate_logit_bound`` (0 without a bound). ``forced_edges`` (B, T,
        K, K + 1) bool, if given, are the edges to use instead of sampling them (the
        counterfactual passes of :mod:`s2ssm.models.counterfactual`)."""
        b, t, k, d = x.shape
        if self.temporal is not None and self.norm_time is not None:  # each slot's history
            x = _over_time(self.temporal, self.norm_time, x)
        # Interactions: at each step, object slots attend to object slots + the environment slot.
        children = self.norm_query(x).reshape(b * t, k, d)
        parents = self.norm_key(torch.cat([x, env.unsqueeze(2)], dim=2)).reshape(b * t, k + 1, d)
        if self.gate is None:  # SPARTAN: the mask logits are the attention's own scores
            scores = self.hard_attention.scores(children, parents)
            logits, overshoot = scores.mean(dim=1), None
        else:
            logits, overshoot = self.gate(children, parents)
        if not self.env_parent:  # the environment slot is no parent: its edges stay closed
            # a finite logit: sigmoid gives exactly 0, and log sigmoid stays finite (no NaN)
            env_column: Tensor = self.env_column  # type: ignore[assignment]
            logits = logits.masked_fill(env_column, -1e4)
        # sampled even when forced: the draws keep every run's random stream the same
        mask, edges, gate = sample_edges(
            logits,
            mode=self.gate_mode,
            temperature=self.temperature,
            training=self.training,
            threshold=self.threshold,
            gradient="message" if self.gate is None else self.gate_gradient,
            clip_gradient=self.clip_gradient,
            eval_shift=self.eval_shift,
            explore=self.explore,
            explore_closed=self.explore_closed,
            draw=self.draw,
        )
        if forced_edges is not None:
            edges = forced_edges.reshape(b * t, k, k + 1)
            mask, gate = torch.where(edges, 0.0, NEG_MASK).to(logits.dtype), None
        self_edges: Tensor = self.self_edges  # type: ignore[assignment]
        if self.gate is None:
            # straight-through "message" gate in training (0/1, gradient of the relaxation);
            # the hard edges at evaluation and in forced passes; the own slot always open
            hard = edges.to(scores.dtype) if gate is None else gate
            out = self.hard_attention(scores, hard.masked_fill(self_edges, 1.0), parents)
        else:
            out = self._gated_messages(children, parents, mask, edges, gate)
        x = x + out.reshape(b, t, k, d) + self.message_bias
        x = x + self.mlp(self.norm_mlp(x))
        drift = x.new_zeros((), dtype=torch.float32)
        if overshoot is not None:
            drift = overshoot.pow(2).sum(dim=(-2, -1)).mean()
        return x, logits.view(b, t, k, k + 1), edges.view(b, t, k, k + 1), drift

    def _gated_messages(
        self, children: Tensor, parents: Tensor, mask: Tensor, edges: Tensor, gate: Tensor | None
    ) -> Tensor:
        """S2-SSM's messages (B*, K, d): the attention over the open parents (or the gated sum),
        each open edge's message scaled by its gate where there is one."""
        self_edges: Tensor = self.self_edges  # type: ignore[assignment]
        mask = mask.masked_fill(self_edges, self.self_mask)  # own slot: the residual path
        if gate is not None:
            # hard concrete: each open edge's message scaled by g (forward and backward);
            # straight-through "message": g is 1 in value and passes its gradient only
            gate = gate.masked_fill(self_edges, 1.0).to(children.dtype)
        if self.message == "gated_sum":
            weight = edges.to(children.dtype) if gate is None else gate
            own = 0.0 if self.self_mask == NEG_MASK else 1.0  # attend_self: the own slot, ungated
            weight = weight.masked_fill(self_edges, own)
            return self.message_out(weight @ self.value(parents))  # type: ignore[no-any-return]
        out, _ = self.attention(children, parents, mask=mask.to(children.dtype), gate=gate)
        return out  # type: ignore[no-any-return]
