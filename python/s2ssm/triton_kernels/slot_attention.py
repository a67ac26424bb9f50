"""Masked slot attention: Triton forward/backward, autograd wrapper and the dispatching public op.

One program per (batch*time, head) row block holds the whole (S_q x S_k) score tile in registers:
slots are few (a handful to ~32), so the scores, the softmax and both products fit in one tile
(padded to 16 for ``tl.dot``). The forward optionally writes the attention weights; the backward
recomputes them from q, k and the mask instead of reading them back, takes gradients of the
output and of the returned weights, and writes the score gradient so that an additive float mask
that requires grad gets its gradient too. An optional gate multiplies the weights before the
value product (``out = (w x gate) @ v``) and gets its gradient. Fully masked rows produce zero
weights, a zero output and zero gradients. Arithmetic is float32 (IEEE dots) for every input
dtype.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels._dispatch import has_triton, kernel_module, resolve_backend
from s2ssm.triton_kernels.slot_attention_ref import check_attention_inputs, slot_attention_ref

HAS_TRITON = has_triton()

__all__ = ["HAS_TRITON", "slot_attention", "slot_attention_triton"]

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_NO_MASK, _BOOL_MASK, _ADD_MASK = 0, 1, 2


def _block(x: int) -> int:
    """Power of two >= x and >= 16 (the smallest ``tl.dot`` operand)."""
    return max(16, 1 << max(0, (x - 1).bit_length()))


def _pair_view(
    t: torch.Tensor, shape: tuple[int, int, int, int]
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """A kernel-readable view of a tensor broadcast to ``shape`` (zero strides, no copy)."""
    view = t.reshape((1,) * (4 - t.dim()) + tuple(t.shape)).expand(shape)
    if t.dtype == torch.bool:
        view = view.view(torch.uint8)
    strides = tuple(view.stride()[i] if view.shape[i] > 1 else 0 for i in range(4))
    return view, strides  # type: ignore[return-value]


def _mask_args(
    mask: torch.Tensor | None, shape: tuple[int, int, int, int]
) -> tuple[int, torch.Tensor | None, tuple[int, int, int, int]]:
    """Mask mode, a kernel-readable view, its strides."""
    if mask is None:
        return _NO_MASK, None, (0, 0, 0, 0)
    view, strides = _pair_view(mask, shape)
    return (_BOOL_MASK if mask.dtype == torch.bool else _ADD_MASK), view, strides


def _gate_args(
    gate: torch.Tensor | None, shape: tuple[int, int, int, int]
) -> tuple[torch.Tensor | None, tuple[int, int, int, int]]:
    """A kernel-readable view of the gate and its strides (None, zeros without one)."""
    if gate is None:
        return None, (0, 0, 0, 0)
    return _pair_view(gate, shape)


def _warps(block_sq: int, block_sk: int, backward: bool) -> int:
    """Warps per program: enough registers for the (S_q x S_k x d) work without spilling."""
    tile = block_sq * block_sk
    if backward:
        return 4 if tile <= 256 else 16
    return 2 if tile <= 256 else 8


class _SlotAttentionFn(torch.autograd.Function):
    """Triton forward/backward; saves q, k, v, the mask and the gate, recomputes the weights."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        gate: torch.Tensor | None,
        scale: float,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bs, h, sq, d = q.shape
        sk, dv = k.shape[2], v.shape[3]
        qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()
        mode, mview, mstrides = _mask_args(mask, (bs, h, sq, sk))
        gview, gstrides = _gate_args(gate, (bs, h, sq, sk))
        out = torch.empty((bs, h, sq, dv), device=q.device, dtype=q.dtype)
        w = (
            torch.empty((bs, h, sq, sk), device=q.device, dtype=q.dtype)
            if return_weights
            else out.new_empty(0)
        )
        bsq, bsk = _block(sq), _block(sk)
        kern = kernel_module("_slot_attention_kernels", qc)
        kern._attn_fwd_kernel[(bs * h,)](
            qc, kc, vc, mview if mview is not None else qc, gview if gview is not None else qc,
            out, w if return_weights else out,
            h, sq, sk, d, dv, scale, *mstrides, *gstrides,
            MASK_MODE=mode, HAS_GATE=gate is not None, STORE_W=return_weights,
            BLOCK_SQ=bsq, BLOCK_SK=bsk, BLOCK_D=_block(d), BLOCK_DV=_block(dv),
            num_warps=_warps(bsq, bsk, False), enable_fp_fusion=True,
        )  # fmt: skip
        ctx.save_for_backward(qc, kc, vc, mask, gate)
        ctx.scale = scale
        ctx.return_weights = return_weights
        if not return_weights:
            ctx.mark_non_differentiable(w)
        return out, w

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, dout: torch.Tensor | None, dw: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        qc, kc, vc, mask, gate = ctx.saved_tensors
        bs, h, sq, d = qc.shape
        sk, dv = kc.shape[2], vc.shape[3]
        mode, mview, mstrides = _mask_args(mask, (bs, h, sq, sk))
        gview, gstrides = _gate_args(gate, (bs, h, sq, sk))
        need_mask_grad = mask is not None and ctx.needs_input_grad[3]
        need_gate_grad = gate is not None and ctx.needs_input_grad[4]
        dout = torch.zeros((bs, h, sq, dv), device=qc.device) if dout is None else dout
        dout = dout.contiguous()
        has_dw = ctx.return_weights and dw is not None
        dwc = dw.contiguous() if has_dw and dw is not None else dout
        dq, dk, dvv = torch.empty_like(qc), torch.empty_like(kc), torch.empty_like(vc)
        ds = (
            torch.empty((bs, h, sq, sk), device=qc.device, dtype=torch.float32)
            if need_mask_grad
            else dq
        )
        dg = (
            torch.empty((bs, h, sq, sk), device=qc.device, dtype=torch.float32)
            if need_gate_grad
            else dq
        )
        bsq, bsk = _block(sq), _block(sk)
        kern = kernel_module("_slot_attention_kernels", qc)
        kern._attn_bwd_kernel[(bs * h,)](
            qc, kc, vc, mview if mview is not None else qc, gview if gview is not None else qc,
            dout, dwc, dq, dk, dvv, ds, dg,
            h, sq, sk, d, dv, ctx.scale, *mstrides, *gstrides,
            MASK_MODE=mode, HAS_GATE=gate is not None, HAS_DW=has_dw,
            STORE_DS=need_mask_grad, STORE_DG=need_gate_grad,
            BLOCK_SQ=bsq, BLOCK_SK=bsk, BLOCK_D=_block(d), BLOCK_DV=_block(dv),
            num_warps=_warps(bsq, bsk, True), enable_fp_fusion=True,
        )  # fmt: skip
        dmask = ds.sum_to_size(mask.shape).to(mask.dtype) if need_mask_grad else None
        dgate = dg.sum_to_size(gate.shape).to(gate.dtype) if need_gate_grad else None
        return dq, dk, dvv, dmask, dgate, None, None


def _check_kernel_dtypes(**tensors: torch.Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and t.dtype not in _KERNEL_DTYPES:
            raise InvalidTypeError(
                f"{name}: the Triton backend takes float16, bfloat16 or float32, got {t.dtype} "
                "(use backend='reference' for float64)"
            )


def _resolve_scale(scale: float | None, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if not math.isfinite(float(scale)):
        raise InvalidInputError(f"scale: expected a finite number, got {scale!r}")
    return float(scale)


def slot_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
    *,
    scale: float | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Masked slot attention with the Triton kernels (see :func:`slot_attention`)."""
    if not HAS_TRITON:
        raise InvalidInputError("slot_attention_triton needs the triton package")
    check_attention_inputs(q, k, v, mask, gate)
    _check_kernel_dtypes(q=q, k=k, v=v, gate=gate)
    if mask is not None and mask.is_floating_point():
        _check_kernel_dtypes(mask=mask)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise InvalidTypeError(
            f"k, v: expected the dtype of q ({q.dtype}), got {k.dtype}, {v.dtype}"
        )
    s = _resolve_scale(scale, q.shape[-1])
    out, w = _SlotAttentionFn.apply(q, k, v, mask, gate, s, bool(return_weights))
    return (out, w) if return_weights else out


def slot_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
    backend: str | None = None,
    *,
    scale: float | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention over slots with a mask, for every (batch*time, head).

    Args:
        q: (B*, H, S_q, d); k: (B*, H, S_k, d); v: (B*, H, S_k, d_v).
        mask: None, bool broadcastable to (B*, H, S_q, S_k) (True = attend), or a float additive
            mask (0 / -inf / finite log-gates) broadcastable to the same shape; a float mask
            that requires grad receives its gradient (both backends).
        return_weights: also return the attention weights (B*, H, S_q, S_k); gradients flow
            through them.
        backend: None (auto: Triton for CUDA tensors when triton is importable), "triton" or
            "reference"; ``S2SSM_KERNEL_BACKEND`` sets the default.
        scale: score scale, default 1/sqrt(d).
        gate: None or a float tensor broadcastable to (B*, H, S_q, S_k) that scales each key's
            message per query after the softmax: ``out = (weights x gate) @ v`` (learned edge
            gates); it receives its gradient (both backends).

    Returns:
        ``out`` (B*, H, S_q, d_v) in q's dtype, or ``(out, weights)`` (the softmax weights,
        before the gate). Rows with every key masked give zero output and zero weights.
    """
    check_attention_inputs(q, k, v, mask, gate)
    kernel_ok = all(t.dtype in _KERNEL_DTYPES for t in (q, k, v)) and k.dtype == v.dtype == q.dtype
    for extra in (mask, gate):
        if extra is not None and extra.is_floating_point():
            kernel_ok = kernel_ok and extra.dtype in _KERNEL_DTYPES
    if resolve_backend(backend, q, k, v, mask, gate, kernel_ok=kernel_ok) == "triton":
        return slot_attention_triton(q, k, v, mask, return_weights, scale=scale, gate=gate)
    return slot_attention_ref(
        q, k, v, mask, return_weights, scale=_resolve_scale(scale, q.shape[-1]), gate=gate
    )
