"""4b. SPARTAN's interaction layer (Lei, Schölkopf and Posner, arXiv 2411.06890): hard attention
masks sampled from the attention's own query-key scores, ``model.kind = "spartan"``.

Per layer, child object i and parent slot j (the objects, then the environment token):

* scores ``s_ij = <W_q x_i, W_k y_j> / sqrt(d_head)`` (heads averaged for the mask), and the mask
  logit is the score itself: ``z_ij = s_ij``, no static per-edge bias, so an edge can only be
  open or closed because of the two states;
* the mask ``A_ij`` is sampled in training with the straight-through Gumbel-sigmoid: value
  ``1[(z_ij + n) / temperature > 0]`` (n logistic noise), gradient that of
  ``sigmoid((z_ij + n) / temperature)``; at evaluation ``A_ij = 1[sigmoid(z_ij) > threshold]``;
* the object always attends to itself (``A_ii = 1``: the ``+ I`` of the path matrix), and the
  attention weights are the softmax over the open parents, ``w_ij = A_ij exp(s_ij) / sum_j'
  A_ij' exp(s_ij')``: the mask multiplies the softmax numerator, so the straight-through
  gradient reaches closed edges too (what opening would change).

The local graph is read out, as for S2-SSM, from the path matrix (A_L + I) ... (A_1 + I)
(:mod:`s2ssm.models.causal_graph`), and the sparsity term is the expected path count under
``sigmoid(z)``, with its weight set by dual ascent on the multiplier of the error constraint
(``sparsity.rule = "exponential"``, :class:`~s2ssm.models.sparsity.LambdaSchedule`).
SPARTAN's intervention tokens for unknown targets are the environment slot's learned codes
(:mod:`s2ssm.models.environment`) with ``model.use_interventions = false``: one token per
training environment, a parent like any object, gated by the same scores; a new environment
gets a new token fitted on data (:func:`~s2ssm.models.world_model.fit_env_code`,
:func:`~s2ssm.models.world_model.identify_env_codes`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["HardMaskAttention", "masked_softmax_attention"]


def masked_softmax_attention(scores: Tensor, mask: Tensor, values: Tensor) -> Tensor:
    """``sum_j w_ij v_j`` with ``w_ij = A_ij exp(s_ij) / sum_j' A_ij' exp(s_ij')``.

    ``scores`` (..., H, K, P), ``mask`` (..., K, P) float (0/1 in value, possibly carrying a
    straight-through gradient), ``values`` (..., H, P, d_head) -> (..., H, K, d_head). Every row
    needs one open entry (SPARTAN's self edge), else its weights are 0 / 0."""
    shift = scores.amax(dim=-1, keepdim=True).detach()
    weights = torch.exp(scores - shift) * mask.unsqueeze(-3)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ values


class HardMaskAttention(nn.Module):
    """Cross-attention from K object slots to P parent slots whose mask logits are its own
    query-key scores (module docstring)."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.scale = 1.0 / math.sqrt(d_model // num_heads)

    def _heads(self, x: Tensor) -> Tensor:
        *lead, n, d = x.shape
        return x.view(*lead, n, self.num_heads, d // self.num_heads).transpose(-3, -2)

    def scores(self, children: Tensor, parents: Tensor) -> Tensor:
        """(B*, K, d) and (B*, P, d) -> per-head scores (B*, H, K, P) in float32."""
        q = self._heads(self.query(children)).float()
        k = self._heads(self.key(parents)).float()
        return q @ k.transpose(-1, -2) * self.scale

    def forward(self, scores: Tensor, mask: Tensor, parents: Tensor) -> Tensor:
        """Scores from :meth:`scores`, the (B*, K, P) mask with its diagonal open, the parent
        slots (B*, P, d) -> messages (B*, K, d)."""
        v = self._heads(self.value(parents)).float()
        y = masked_softmax_attention(scores, mask.float(), v)  # (B*, H, K, d_head)
        b, h, k, dh = y.shape
        return self.out(y.transpose(-3, -2).reshape(b, k, h * dh).to(parents.dtype))
