"""7. The counterfactual gradient of Bernoulli gates (``model.gate = "bernoulli"``).

The objective is the paper's: E[next-slot error + λ x causal paths] over the sampled edges.
For an edge (child i, parent j) drawn open with probability p = sigmoid(z) at a transition,
independently of the others, the derivative of the expected error with respect to p is exact
and needs no relaxation:

    d E[error] / d p_ij = E[error | ij open] - E[error | ij closed] = - benefit_ij

so :func:`edge_benefits` re-runs the dynamics (no gradient) on a few sequences of the batch
with the edges the training pass sampled, once with edge ij open and once closed (in every
layer), for every edge ij. :func:`~s2ssm.models.sparsity.dynamics_loss` then gives each gate
logit z the gradient ``-(benefit_ij - λ x price_ij)`` per transition, ``price_ij`` = the
causal paths that opening the edge adds (d paths / d p, exact: the path count is multilinear
in the gates): the gradient of the expected error + λ x paths divided by p (1 - p), the
natural gradient of a Bernoulli gate, the closed samples included. An edge ends up open where
its message lowers the error by more than its price *at that transition*, which is what a
local graph is: the relaxed gates only see an edge's worth through the samples drawn open and
through one static bias that the penalty pulls down on every transition (``s2ssm.models``'
docstring).

Units: the benefit is the drop in the error summed over the K objects' D slot dimensions,
divided by K x D (each transition's share of the batch MSE), the unit λ prices a path in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from s2ssm.models.world_model import SlotDynamics

__all__ = ["candidate_edges", "edge_benefits"]


def candidate_edges(num_objects: int, env_parent: bool) -> list[tuple[int, int]]:
    """The (child, parent) edges a gate decides: every other object, and the environment slot
    (index K) when it is a parent."""
    parents = num_objects + 1 if env_parent else num_objects
    return [(i, j) for i in range(num_objects) for j in range(parents) if i != j]


def _repeat(x: Tensor | None, m: int) -> Tensor | None:
    """Each sequence of ``x`` m times in a row (the variants of one sequence side by side)."""
    return None if x is None else x.repeat_interleave(m, dim=0)


@torch.no_grad()
def edge_benefits(
    dynamics: SlotDynamics,
    slots: Tensor,
    env_ids: Tensor | None,
    interventions: Tensor | None,
    edges: Tensor,
) -> Tensor:
    """The error each edge saves at each transition, given the other edges as sampled.

    ``slots`` (B, T, K, D), ``edges`` (B, T, L, K, K + 1) bool (a training pass's
    :attr:`~s2ssm.models.world_model.DynamicsOutput.edges`) -> (B, T - 1, K, K + 1) float32:
    ``benefit[b, t, i, j]`` = error of transition t with edge ij closed in every layer minus
    the error with it open, all other edges as in ``edges``; zero for the edges no gate
    decides (self, and the environment unless ``model.env_parent``). Runs 2 x |edges| passes
    of B sequences in one batch (of the interaction blocks alone with ``model.layout =
    "time_first"``, whose history no edge changes).

    The edge is toggled at every step at once. With ``layout = "time_first"`` transition t's
    error depends on the edges of step t alone, so ``benefit[:, t]`` is exactly that step's;
    with ``"interleaved"`` it also holds what the message of earlier steps carried forward
    through the next block's temporal layer (docs/results.md, "Where the locality is lost").
    """
    b, t, _, k, n = edges.shape
    pairs = candidate_edges(k, dynamics.cfg.env_parent)
    m = 2 * len(pairs)
    if dynamics.cfg.benefit == "resampled":
        return _resampled_benefits(dynamics, slots, env_ids, interventions, edges, pairs)
    variants = edges.unsqueeze(1).repeat(1, m, 1, 1, 1, 1)  # (B, 2E, T, L, K, K + 1)
    for v, (i, j) in enumerate(pairs):
        variants[:, 2 * v, :, :, i, j] = True
        variants[:, 2 * v + 1, :, :, i, j] = False

    many = _repeat(slots, m)
    assert many is not None
    forced = variants.flatten(0, 1)
    if dynamics.cfg.layout == "time_first":  # the history depends on no edge: run it once
        history = _repeat(dynamics.encode_history(slots), m)
        assert history is not None
        out = dynamics.interact(
            history, many, _repeat(env_ids, m), _repeat(interventions, m), None, forced
        )
    else:
        out = dynamics(many, _repeat(env_ids, m), _repeat(interventions, m), forced_edges=forced)
    err = (out.pred[:, :-1].float() - many[:, 1:].float()).pow(2).mean(dim=(-2, -1))
    err = err.view(b, len(pairs), 2, t - 1)
    gain = err[:, :, 1] - err[:, :, 0]  # closed - open: (B, E, T - 1)
    benefit = torch.zeros(b, t - 1, k, n, device=slots.device)
    for v, (i, j) in enumerate(pairs):
        benefit[:, :, i, j] = gain[:, v]
    return benefit


def _resampled_benefits(
    dynamics: SlotDynamics,
    slots: Tensor,
    env_ids: Tensor | None,
    interventions: Tensor | None,
    edges: Tensor,
    pairs: list[tuple[int, int]],
) -> Tensor:
    """``model.benefit = "resampled"`` (layout "time_first", one interaction block): with edge
    ij open in both passes, child i's error when parent j's state is replaced by the state of
    parent j at a random position of the batch (a random permutation of its positions), minus
    its error with j's own state. An environment parent is closed instead (it has no marginal
    to draw from)."""
    b, t, _, k, n = edges.shape
    m = 2 * len(pairs)
    variants = edges.unsqueeze(1).repeat(1, m, 1, 1, 1, 1)  # (B, 2E, T, L, K, K + 1)
    history = dynamics.encode_history(slots)  # (B, T, K, d)
    many = history.unsqueeze(1).repeat(1, m, 1, 1, 1)  # (B, 2E, T, K, d)
    for v, (i, j) in enumerate(pairs):
        variants[:, 2 * v, :, :, i, j] = True
        if j == k:  # the environment: closed
            variants[:, 2 * v + 1, :, :, i, j] = False
            continue
        variants[:, 2 * v + 1, :, :, i, j] = True
        draw = torch.randperm(b * t, device=slots.device)
        many[:, 2 * v + 1, :, j] = history[:, :, j].reshape(b * t, -1)[draw].view(b, t, -1)

    target = _repeat(slots, m)
    assert target is not None
    out = dynamics.interact(
        many.flatten(0, 1), target, _repeat(env_ids, m), _repeat(interventions, m), None,
        variants.flatten(0, 1),
    )  # fmt: skip
    # per child, in the unit of the batch MSE: its squared error summed over D, / (K x D)
    err = (out.pred[:, :-1].float() - target[:, 1:].float()).pow(2).sum(dim=-1) / (
        k * slots.shape[-1]
    )
    err = err.view(b, len(pairs), 2, t - 1, k)
    benefit = torch.zeros(b, t - 1, k, n, device=slots.device)
    for v, (i, j) in enumerate(pairs):
        benefit[:, :, i, j] = err[:, v, 1, :, i] - err[:, v, 0, :, i]
    return benefit
