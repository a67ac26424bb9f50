"""3. Edge gates: state-dependent logits for every (child object, parent slot) pair, and the
binary edges sampled from them.

Gate choice: edges are **hard-concrete** gates (Louizos et al., 2018, the stretched and
clipped binary concrete) in training: ``y = (z + logistic noise) / temperature``, ``g =
clip(sigmoid(y) x 1.2 - 0.1, 0, 1)``, an edge is open where ``g > 0``. The attention
renormalises over the open edges only (a closed edge passes exactly nothing, as at evaluation)
and multiplies each open edge's message by g, so the gradient of the prediction loss reaches a
gate through the message its edge carries: exact for the sampled relaxation, and non-zero for
an edge that is the only one open in its row. At evaluation an edge exists where ``sigmoid(z)
> edge_threshold``. The sparsity penalty uses the probability that a sample is open,
``sigmoid(z + temperature x log 11)`` (the expected adjacency, an L0 penalty) rather than the
samples: same optimum, far less variance. ``model.gate_logit_bound`` soft-clips z (``bound x
tanh(z / bound)``) so that no gate probability reaches 0 or 1, and ``model.gate_logit_decay``
keeps z from drifting past the bound, where the penalty's gradient would vanish.

``gate = "bernoulli"``: hard Bernoulli(sigmoid(z)) edges and no relaxation at all; the gates
learn from the error each edge saves at each transition, measured by re-running the dynamics
with the edge open and closed (:mod:`s2ssm.models.counterfactual`, why in ``s2ssm.models``).

Why not the straight-through Gumbel-sigmoid (``gate = "straight_through"``, kept as an option):
with the gate as an additive log-mask inside the softmax (``gate_gradient = "mask"``) the
attention weights are ``g x exp(score)`` renormalised, and a row whose open edges all shrink
together does not change, so the loss cannot tell an edge is useful, only which of the open
edges is more useful; an edge alone in its row gets no gradient at all and the penalty shuts it
(measured: the learned graph kept the information-free environment edges and lost ball ->
paddle). The straight-through gradient through the message (``gate_gradient = "message"``) is
the first-order effect of scaling the message at g = 1, which overstates what closing costs
(the loss is convex in g) and shut every gate even with λ = 0. ``gate = "relaxed"`` puts the
relaxed gate inside the softmax in the forward pass too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2ssm.errors import InvalidInputError

__all__ = [
    "HARD_CONCRETE_GAMMA",
    "HARD_CONCRETE_ZETA",
    "NEG_MASK",
    "EdgeGate",
    "MLPEdgeGate",
    "bound_logits",
    "open_probability_shift",
    "sample_edges",
]

# Additive mask value of a closed edge. -inf, not a large finite value: with the object's own slot
# outside the attention a row can have every edge closed, and a finite mask would then fall back
# to the plain softmax over the closed edges (a leak); both attention paths give an all -inf row
# zero weights, a zero output and zero gradients.
NEG_MASK = float("-inf")


def bound_logits(z: Tensor, bound: float) -> tuple[Tensor, Tensor | None]:
    """``(bound x tanh(z / bound), max(|z| - bound, 0))``: the soft-clipped logits and how far
    ``z`` overshoots the bound (:class:`EdgeGate`); ``(z, None)`` when ``bound`` <= 0."""
    if bound <= 0:
        return z, None
    return bound * torch.tanh(z / bound), (z.abs() - bound).clamp(min=0.0)


class EdgeGate(nn.Module):
    """Gate logits z[i, j] = <Wq x_i, Wk y_j> / sqrt(d) + b[i, j] for child object i and parent
    slot j (objects, then the environment): state dependent, so graphs are local.

    ``bound`` > 0 maps the logits through ``bound x tanh(z / bound)``, which keeps every gate
    probability inside [sigmoid(-bound), sigmoid(bound)]: no edge is ever certain, so a closed
    edge is still sampled open now and then (and can come back) and an open one still closed
    now and then (so the loss keeps measuring what it is worth). The prediction keeps pushing a
    useful gate's logit up, past the point where the tanh passes any gradient, and the penalty
    then cannot reach it; ``model.gate_logit_decay`` adds ``decay x max(|z| - bound, 0)^2`` to
    the loss (the overshoot is returned beside the logits), which holds z near the bound.
    """

    def __init__(
        self,
        d_model: int,
        num_children: int,
        num_parents: int,
        init_bias: float,
        bound: float = 0.0,
    ):
        super().__init__()
        self.bound = bound
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        nn.init.normal_(self.query.weight, std=0.02)
        nn.init.normal_(self.key.weight, std=0.02)
        self.bias = nn.Parameter(torch.full((num_children, num_parents), float(init_bias)))
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, children: Tensor, parents: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B*, K, d) and (B*, K + 1, d) -> logits (B*, K, K + 1) in float32, and how far the
        logits before the bound overshoot it, ``max(|z| - bound, 0)`` (None without a bound)."""
        q = self.query(children).float()
        k = self.key(parents).float()
        z = q @ k.transpose(-1, -2) * self.scale + self.bias
        return bound_logits(z, self.bound)


class MLPEdgeGate(nn.Module):
    """Gate logits from an MLP over each (child, parent) pair: z[i, j] = w . GELU(A x_i + B y_j
    + C (x_i - y_j) + c) + b[i, j], i.e. a one-hidden-layer MLP over (x_i, y_j, x_i - y_j),
    plus a per-edge bias. With a hidden layer the logit can respond to a conjunction of the
    two states ("the ball is near this paddle and moving towards it"), which the bilinear
    score of :class:`EdgeGate` (one inner product) cannot; its output starts at the scale of a
    unit-variance logit, so the static bias does not dominate it from the start. Same
    ``bound`` and overshoot as :class:`EdgeGate`."""

    def __init__(
        self,
        d_model: int,
        num_children: int,
        num_parents: int,
        init_bias: float,
        bound: float = 0.0,
        hidden: int = 0,
    ):
        super().__init__()
        hidden = hidden or d_model
        self.bound = bound
        self.child = nn.Linear(d_model, hidden)
        self.parent = nn.Linear(d_model, hidden, bias=False)
        self.diff = nn.Linear(d_model, hidden, bias=False)
        self.out = nn.Linear(hidden, 1, bias=False)
        self.bias = nn.Parameter(torch.full((num_children, num_parents), float(init_bias)))

    def forward(self, children: Tensor, parents: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B*, K, d) and (B*, K + 1, d) -> logits (B*, K, K + 1) in float32, and the overshoot
        past the bound (None without a bound), as :meth:`EdgeGate.forward`."""
        c = children.float().unsqueeze(-2)  # (B*, K, 1, d)
        p = parents.float().unsqueeze(-3)  # (B*, 1, K + 1, d)
        hid = F.gelu(self.child(c) + self.parent(p) + self.diff(c - p))  # (B*, K, K + 1, h)
        z = self.out(hid).squeeze(-1) + self.bias
        return bound_logits(z, self.bound)


# Hard concrete (Louizos et al., 2018): the binary concrete sample stretched to (GAMMA, ZETA)
# and clipped to [0, 1], so that a share of the samples is exactly 0 (closed) or 1.
HARD_CONCRETE_GAMMA = -0.1
HARD_CONCRETE_ZETA = 1.1


def open_probability_shift(mode: str, temperature: float) -> float:
    """s such that ``sigmoid(z + s)`` is the probability that a training sample of the gate is
    open (non-zero): 0 for the Gumbel-sigmoid, ``-temperature x log(-GAMMA / ZETA)`` for the
    hard concrete."""
    if mode == "hard_concrete":
        return -temperature * math.log(-HARD_CONCRETE_GAMMA / HARD_CONCRETE_ZETA)
    return 0.0


def sample_edges(
    logits: Tensor,
    *,
    mode: str,
    temperature: float,
    training: bool,
    threshold: float,
    gradient: str = "mask",
    clip_gradient: bool = False,
    eval_shift: float = 0.0,
    explore: float = 0.0,
    explore_closed: float = 0.0,
    draw: str = "probability",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Edges from gate logits: returns (additive log-mask, binary edges, message gate), the first
    two shaped as logits, the gate None unless the attention must scale each edge's message
    by it.

    Training, with logistic noise ``n = log u - log(1 - u)``, ``u ~ U(0, 1)``:

    * ``mode="straight_through"``: ``y = (z + n) / temperature``; edges = ``y > 0``; mask =
      ``0`` on edges and ``NEG_MASK`` elsewhere in the forward pass. Backward:
      ``gradient="mask"`` gives the mask the gradient of ``log sigmoid(y)``;
      ``gradient="message"`` detaches the mask and returns the gate
      ``edges + sigmoid(y) - stop_gradient(sigmoid(y))`` (value 0/1, gradient of
      ``sigmoid(y)``), which scales each edge's message in the backward pass only.
    * ``mode="relaxed"``: mask = ``log sigmoid(y)`` (fractional edges inside the softmax).
    * ``mode="hard_concrete"``: gate ``g = clip(sigmoid(y) x (ZETA - GAMMA) + GAMMA, 0, 1)``,
      edges = ``g > 0``, mask 0 / ``NEG_MASK`` (no gradient): the attention renormalises over
      the open edges and multiplies each open edge's message by g, the gradient flowing
      through g (exact for the sampled relaxation).

      With ``clip_gradient`` the clip passes the gradient straight through (the value is the
      clipped gate, the gradient that of the unclipped one): a gate clipped at 1 still learns
      what its message is worth (a closed gate's message is masked out either way).
    * ``mode="bernoulli"``: edges ~ Bernoulli(explore + (1 - explore - explore_closed)
      sigmoid(z)), mask 0 / ``NEG_MASK``, no gradient at all: the gates learn from
      :mod:`s2ssm.models.counterfactual` instead. ``draw="threshold"`` replaces sigmoid(z)
      by the evaluation's edge, ``sigmoid(z) > threshold``: a training edge is the
      evaluation's, flipped open with probability ``explore`` and closed with
      ``explore_closed``, so that the prediction without a parent is learnt on the
      transitions whose gate is shut.

    Evaluation (``training=False``): edges = ``sigmoid(z + eval_shift) > threshold``,
    deterministic, mask as in the straight-through forward pass, no gate. ``eval_shift`` =
    :func:`open_probability_shift` makes the evaluation edge "open in most training
    samples", the rule training uses; 0 keeps ``sigmoid(z) > threshold``.
    """
    if mode not in ("straight_through", "relaxed", "hard_concrete", "bernoulli"):
        raise InvalidInputError(
            f"mode must be 'straight_through', 'relaxed', 'hard_concrete' or 'bernoulli', got "
            f"{mode!r}"
        )
    if draw not in ("probability", "threshold"):
        raise InvalidInputError(f"draw must be 'probability' or 'threshold', got {draw!r}")
    if gradient not in ("mask", "message"):
        raise InvalidInputError(f"gradient must be 'mask' or 'message', got {gradient!r}")
    if not training:
        edges = torch.sigmoid(logits + eval_shift) > threshold
        mask = torch.where(edges, 0.0, NEG_MASK).to(logits.dtype)
        return mask, edges, None
    if mode == "bernoulli":
        share = 1.0 - explore - explore_closed
        p = torch.sigmoid(logits)
        if draw == "threshold":
            p = (p > threshold).to(p.dtype)
        edges = torch.rand_like(logits) < explore + share * p
        return torch.where(edges, 0.0, NEG_MASK).to(logits.dtype), edges, None
    u = torch.rand_like(logits).clamp(1e-6, 1.0 - 1e-6)
    y = (logits + torch.log(u) - torch.log1p(-u)) / temperature
    if mode == "hard_concrete":
        stretched = torch.sigmoid(y) * (HARD_CONCRETE_ZETA - HARD_CONCRETE_GAMMA)
        raw = stretched + HARD_CONCRETE_GAMMA
        gate = raw.clamp(0.0, 1.0)
        edges = gate > 0
        if clip_gradient:
            gate = raw + (gate - raw).detach()
        return torch.where(edges, 0.0, NEG_MASK).to(logits.dtype), edges, gate
    edges = y > 0
    if mode == "relaxed":
        return F.logsigmoid(y), edges, None
    hard = torch.where(edges, 0.0, NEG_MASK).to(logits.dtype)
    if gradient == "message":
        soft = torch.sigmoid(y)
        return hard, edges, edges.to(soft.dtype) + (soft - soft.detach())
    soft = F.logsigmoid(y)
    return hard + (soft - soft.detach()), edges, None
