"""Multi-head masked cross-attention over slots (:func:`s2ssm.triton_kernels.slot_attention`)."""

from __future__ import annotations

import torch
from torch import nn

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels import slot_attention

__all__ = ["SlotAttention"]


class SlotAttention(nn.Module):
    """Queries from slots attend to key slots; the (masked) weights are returned as a causal graph.

    ``forward(queries (B*, S_q, dim), keys (B*, S_k, kdim), mask=None, return_weights=False,
    gate=None)`` returns ``(out (B*, S_q, dim), weights (B*, num_heads, S_q, S_k) or None)``.
    ``mask`` is bool (True = attend) or an additive float mask (0 / -inf / log-gates, gradients
    flow into it), broadcastable to (B*, S_q, S_k) or (B*, num_heads, S_q, S_k); ``gate``, of
    the same shapes, scales each key's message per query after the softmax (gradients flow
    into it). Fully masked query rows give zero weights and a zero attention output (the output
    projection's bias still applies).
    """

    def __init__(
        self, dim: int, num_heads: int = 1, kdim: int | None = None, backend: str | None = None
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_heads", num_heads), ("kdim", kdim)):
            if value is None and name == "kdim":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name}: expected a positive int, got {value!r}")
        if dim % num_heads != 0:
            raise InvalidInputError(f"num_heads: {num_heads} must divide dim={dim}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kdim = kdim if kdim is not None else dim
        self.backend = backend
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(self.kdim, dim)
        self.v_proj = nn.Linear(self.kdim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B*, S, dim) -> (B*, heads, S, head_dim)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        gate: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``queries`` to ``keys``; see the class docstring."""
        for name, t, width in (("queries", queries, self.dim), ("keys", keys, self.kdim)):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise InvalidTypeError(f"{name}: expected a floating-point torch.Tensor")
            if t.dim() != 3 or t.shape[-1] != width:
                raise InvalidInputError(
                    f"{name}: expected shape (B*, S, {width}), got {tuple(t.shape)}"
                )
        if keys.shape[0] != queries.shape[0]:
            raise InvalidInputError(
                f"keys: batch {keys.shape[0]} does not match queries' {queries.shape[0]}"
            )
        if isinstance(mask, torch.Tensor) and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B*, S_q, S_k) -> (B*, 1, S_q, S_k)
        if isinstance(gate, torch.Tensor) and gate.dim() == 3:
            gate = gate.unsqueeze(1)
        q = self._heads(self.q_proj(queries))
        k = self._heads(self.k_proj(keys))
        v = self._heads(self.v_proj(keys))
        res = slot_attention(
            q, k, v, mask, return_weights=return_weights, backend=self.backend, gate=gate
        )
        out, weights = res if isinstance(res, tuple) else (res, None)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        return out, weights
