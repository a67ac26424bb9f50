"""Plain PyTorch masked slot attention: the reference and the CPU path.

``weights = softmax(q @ k^T * scale + mask)`` over the key slots and ``out = (weights x gate) @ v``,
where a boolean mask (True = attend) becomes 0 / -inf and the optional ``gate`` scales each key's
message per query (learned edge gates: the softmax decides how much of each open edge a query
reads, the gate how much of its message passes; gradients flow into it). A query row whose keys
are all masked gets zero weights and a zero output (not NaN), and no NaN gradients. Computed in
float32 (float64 for float64 inputs), returned in ``q``'s dtype.
"""

from __future__ import annotations

import math

import torch

from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = ["check_attention_inputs", "slot_attention_ref"]


def _check_broadcastable(
    name: str, t: torch.Tensor, target: tuple[int, int, int, int], device: torch.device
) -> None:
    if t.device != device:
        raise InvalidInputError(f"{name}: expected a tensor on {device}, got {t.device}")
    try:
        ok = t.dim() <= 4 and torch.broadcast_shapes(t.shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise InvalidInputError(
            f"{name}: expected a shape broadcastable to {target}, got {tuple(t.shape)}"
        )


def check_attention_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    gate: torch.Tensor | None = None,
) -> tuple[int, int, int, int, int, int]:
    """Validate q (B*, H, S_q, d), k (B*, H, S_k, d), v (B*, H, S_k, d_v), the mask and the gate.

    Returns ``(B*, H, S_q, S_k, d, d_v)``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise InvalidTypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise InvalidTypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
        if t.dim() != 4:
            raise InvalidInputError(
                f"{name}: expected a 4-d tensor (B*, H, S, d), got shape {tuple(t.shape)}"
            )
        if 0 in t.shape:
            raise InvalidInputError(
                f"{name}: every dimension must be positive, got {tuple(t.shape)}"
            )
        if t.device != q.device:
            raise InvalidInputError(f"{name}: expected a tensor on {q.device}, got {t.device}")
    bs, h, sq, d = q.shape
    sk = k.shape[2]
    if tuple(k.shape) != (bs, h, sk, d):
        raise InvalidInputError(f"k: expected shape ({bs}, {h}, S_k, {d}), got {tuple(k.shape)}")
    if tuple(v.shape[:3]) != (bs, h, sk):
        raise InvalidInputError(
            f"v: expected shape ({bs}, {h}, {sk}, d_v) to match k, got {tuple(v.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise InvalidTypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise InvalidTypeError(
                f"mask: expected a bool (True = attend) or floating additive mask, got {mask.dtype}"
            )
        _check_broadcastable("mask", mask, (bs, h, sq, sk), q.device)
    if gate is not None:
        if not isinstance(gate, torch.Tensor):
            raise InvalidTypeError(f"gate: expected a torch.Tensor, got {type(gate).__name__}")
        if not gate.is_floating_point():
            raise InvalidTypeError(f"gate: expected a floating-point tensor, got {gate.dtype}")
        _check_broadcastable("gate", gate, (bs, h, sq, sk), q.device)
    return bs, h, sq, sk, d, v.shape[3]


def slot_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
    *,
    scale: float | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Masked attention over slots (see the module docstring); ``scale`` defaults to 1/sqrt(d).
    The returned weights are the softmax's, before the gate."""
    check_attention_inputs(q, k, v, mask, gate)
    dtype = torch.float64 if torch.float64 in (q.dtype, k.dtype, v.dtype) else torch.float32
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(q.to(dtype), k.to(dtype).transpose(-1, -2)) * scale
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, float("-inf"))
        else:
            s = s + mask.to(dtype)
    # the row max only shifts the softmax: no gradient through it; all -inf rows shift by 0
    row_max = s.detach().amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    p = torch.exp(s - row_max)
    denom = p.sum(dim=-1, keepdim=True)
    w = p / torch.where(denom > 0, denom, torch.ones_like(denom))
    message_weights = w if gate is None else w * gate.to(dtype)
    out = torch.matmul(message_weights, v.to(dtype)).to(q.dtype)
    return (out, w.to(q.dtype)) if return_weights else out
