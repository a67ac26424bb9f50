"""Selective scan (Mamba S6): fused Triton kernels, autograd wrapper and the dispatching public op.

Forward: one program per (batch, group, block of ``BLOCK_D`` channels) holds the (channels x
states) state in registers and walks the sequence one step at a time: per step and element an
``exp``, two multiply-adds and the sum over the states, all in float32 whatever the input dtype
(issue #18: the earlier design ran ``tl.associative_scan`` along time over a register tile, at
about 15.5 shuffles per element). When gradients are needed it also writes the state at the
start of every chunk of ``CHUNK_L`` steps. On the GPU the block of channels and the warps are
autotuned per shape, except under ``torch.use_deterministic_algorithms(True)``, where a fixed
choice keeps the bytes independent of timing.

Backward: walks the chunks in reverse. For each it recomputes the chunk's states from the saved
chunk-start state, forward, into a per-program workspace of ``CHUNK_L`` states (with dC, dz and
dD, which need only the states), then walks the chunk backward with the adjoint ``g[t] =
exp(dt[t+1] A) g[t+1] + dy[t] C[t]`` in registers. Sums over channels (for B, C) are written
per block of channels, (batch, group, D / BLOCK_D, N, L), and sums over the batch (for A, D)
per batch row, and reduced with torch afterwards: deterministic, no atomics.

Triton is optional: without it this module still imports and :func:`selective_scan` uses the
PyTorch path.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels._dispatch import (
    cdiv,
    has_triton,
    kernel_module,
    resolve_backend,
    triton_interpret,
)
from s2ssm.triton_kernels.selective_scan_chunked import selective_scan_chunked
from s2ssm.triton_kernels.selective_scan_ref import (
    _repeat_groups,
    check_scan_inputs,
    check_state_update_inputs,
    selective_state_update_ref,
)

HAS_TRITON = has_triton()

__all__ = [
    "HAS_TRITON",
    "selective_scan",
    "selective_scan_triton",
    "selective_state_update",
    "selective_state_update_triton",
]

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _chunk_len() -> int:
    """Steps per saved state (the same in the forward and the backward)."""
    return 4 if triton_interpret() else 32  # the interpreter: short chunks exercise the carries


def _bwd_tiles(dpg: int, n: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, num_warps) of the backward: a fixed choice (its dB/dC partials are
    per block of channels, so the block must not depend on timing)."""
    block_n = max(2, _next_pow2(n))
    if triton_interpret():
        return min(4, max(2, _next_pow2(dpg))), block_n, 1
    # one warp, at most 512 states: 16 per thread at N = 16 (four more tiles of that size
    # live in registers: the adjoint, A, the dA sums, the recomputed state)
    return max(2, min(_next_pow2(dpg), max(1, 512 // block_n))), block_n, 1


def _fwd_tiles(dpg: int, kern: ModuleType) -> dict[str, int] | None:
    """The forward's fixed tiles {BLOCK_D, num_warps}, or None to autotune them (on the GPU,
    unless torch's deterministic mode is on: the autotuner's choice depends on timing)."""
    if triton_interpret():
        return {"BLOCK_D": min(4, max(2, _next_pow2(dpg))), "num_warps": 1}
    if torch.are_deterministic_algorithms_enabled():
        return dict(kern.DETERMINISTIC_FWD)
    return None


def _as_grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """B or C as a contiguous (batch, groups, N, L) tensor (repeating coarser groups)."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.shape[1] != groups:
        t = _repeat_groups(t, groups // t.shape[1])
    return t.contiguous()


def _steps_by_state(t: torch.Tensor, groups: int, steps: int, block_n: int) -> torch.Tensor:
    """B or C as the kernels read it: (batch, groups, steps, block_n) float-contiguous, a
    step's states side by side, zero-padded past L and N (small: N / D of u's size)."""
    grouped = _as_grouped(t, groups)  # (batch, groups, N, L)
    b, g, n, length = grouped.shape
    out = grouped.new_zeros((b, g, steps, block_n))
    out[:, :, :length, :n] = grouped.transpose(-1, -2)
    return out


def _opt(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.contiguous() if t is not None else None


class _SelectiveScanFn(torch.autograd.Function):
    """Triton forward/backward; saves inputs plus one state per chunk, recomputes the rest."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor | None,
        z: torch.Tensor | None,
        delta_bias: torch.Tensor | None,
        delta_softplus: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, dim, length = u.shape
        n = A.shape[1]
        gb = 1 if B.dim() == 3 else B.shape[1]
        gc = 1 if C.dim() == 3 else C.shape[1]
        groups = gb * gc // math.gcd(gb, gc)
        uc, dc, ac = u.contiguous(), delta.contiguous(), A.contiguous()
        Dc, zc, biasc = _opt(D), _opt(z), _opt(delta_bias)
        dpg = dim // groups
        block_n = max(2, _next_pow2(n))
        chunk_l = _chunk_len()
        n_chunks = cdiv(length, chunk_l)
        bc = _steps_by_state(B, groups, n_chunks * chunk_l, block_n)
        cc = _steps_by_state(C, groups, n_chunks * chunk_l, block_n)
        need_grad = any(ctx.needs_input_grad[:8])
        y = torch.empty_like(uc)
        last = torch.empty((batch, dim, n), device=u.device, dtype=torch.float32)
        chunks = (
            torch.empty((batch, dim, n_chunks, n), device=u.device, dtype=torch.float32)
            if need_grad
            else last
        )
        kern = kernel_module("_selective_scan_kernels", uc)
        fixed = _fwd_tiles(dpg, kern)
        launch = kern._scan_fwd_kernel if fixed is not None else kern._scan_fwd_autotuned

        def grid(meta: dict[str, Any]) -> tuple[int, int]:
            return batch, groups * cdiv(dpg, meta["BLOCK_D"])

        launch[grid](
            uc, dc, ac, bc, cc,
            Dc if Dc is not None else uc, zc if zc is not None else uc,
            biasc if biasc is not None else uc,
            y, last, chunks,
            dim, length, n, dpg, n_chunks, groups,
            HAS_D=Dc is not None, HAS_Z=zc is not None, HAS_BIAS=biasc is not None,
            SOFTPLUS=delta_softplus, STORE_CHUNKS=need_grad,
            BLOCK_N=block_n, CHUNK_L=chunk_l, enable_fp_fusion=True, **(fixed or {}),
        )  # fmt: skip
        if need_grad:
            ctx.save_for_backward(uc, dc, ac, bc, cc, Dc, zc, biasc, chunks)
            ctx.b_like = (B.dim(), B.shape[1], B.dtype)
            ctx.c_like = (C.dim(), C.shape[1], C.dtype)
            ctx.delta_softplus = delta_softplus
            ctx.groups = groups
        return y, last

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, dy: torch.Tensor | None, dlast: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        uc, dc, ac, bc, cc, Dc, zc, biasc, chunks = ctx.saved_tensors
        groups = ctx.groups
        batch, dim, length = uc.shape
        n = ac.shape[1]
        dpg = dim // groups
        block_d, block_n, warps = _bwd_tiles(dpg, n)
        chunk_l = _chunk_len()
        n_dblk = cdiv(dpg, block_d)
        n_chunks = chunks.shape[2]
        dy = torch.zeros_like(uc) if dy is None else dy.contiguous()
        f32: dict[str, Any] = {"device": uc.device, "dtype": torch.float32}
        du = torch.empty((batch, dim, length), **f32)
        ddelta = torch.empty((batch, dim, length), **f32)
        dz = torch.empty((batch, dim, length), **f32) if zc is not None else du
        padded = (batch, groups, n_dblk, bc.shape[2], bc.shape[3])  # laid out as bc
        db = torch.empty(padded, **f32)
        dcc = torch.empty(padded, **f32)
        da = torch.empty((batch, dim, n), **f32)
        dd = torch.empty((batch, dim), **f32) if Dc is not None else da
        # each program's states of one chunk, recomputed and read back in reverse
        work = torch.empty((batch * groups * n_dblk, chunk_l, block_d, block_n), **f32)
        kern = kernel_module("_selective_scan_kernels", uc)
        kern._scan_bwd_kernel[(batch, groups * n_dblk)](
            uc, dc, ac, bc, cc,
            Dc if Dc is not None else uc, zc if zc is not None else uc,
            biasc if biasc is not None else uc,
            chunks, dy, dlast.contiguous() if dlast is not None else uc, work,
            du, ddelta, dz, db, dcc, da, dd,
            dim, length, n, dpg, n_chunks, groups,
            HAS_D=Dc is not None, HAS_Z=zc is not None, HAS_BIAS=biasc is not None,
            SOFTPLUS=ctx.delta_softplus, HAS_DLAST=dlast is not None,
            BLOCK_D=block_d, BLOCK_N=block_n, CHUNK_L=chunk_l,
            num_warps=warps, enable_fp_fusion=True,
        )  # fmt: skip
        grads: list[torch.Tensor | None] = [
            du.to(uc.dtype),
            ddelta.to(dc.dtype),
            da.sum(0).to(ac.dtype),
            _ungroup(db.sum(2)[:, :, :length, :n].transpose(-1, -2), ctx.b_like),
            _ungroup(dcc.sum(2)[:, :, :length, :n].transpose(-1, -2), ctx.c_like),
            dd.sum(0).to(Dc.dtype) if Dc is not None else None,
            dz.to(zc.dtype) if zc is not None else None,
            ddelta.sum((0, 2)).to(biasc.dtype) if biasc is not None else None,
            None,
        ]
        return tuple(
            g if need else None for g, need in zip(grads, ctx.needs_input_grad, strict=True)
        )


def _ungroup(grad: torch.Tensor, like: tuple[int, int, torch.dtype]) -> torch.Tensor:
    """Sum a (batch, groups, N, L) gradient back to the layout of the original B or C."""
    ndim, g_like, dtype = like
    if ndim == 3:
        g_like = 1
    if grad.shape[1] != g_like:
        b, g, n, length = grad.shape
        grad = grad.view(b, g_like, g // g_like, n, length).sum(2)
    if ndim == 3:
        grad = grad.squeeze(1)
    return grad.to(dtype)


def _check_kernel_dtypes(**tensors: torch.Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and t.dtype not in _KERNEL_DTYPES:
            raise InvalidTypeError(
                f"{name}: the Triton backend takes float16, bfloat16 or float32, got {t.dtype} "
                "(use backend='reference' for float64)"
            )


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with the Triton kernels (inputs validated; see :func:`selective_scan`)."""
    if not HAS_TRITON:
        raise InvalidInputError("selective_scan_triton needs the triton package")
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    _check_kernel_dtypes(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    y, last = _SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return (y, last) if return_last_state else y


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba's S6 selective scan.

    Args:
        u, delta: (batch, D, L) input and step size.
        A: (D, N) real state matrix (negative entries give a decaying state).
        B, C: (batch, N, L) or grouped (batch, G, N, L) with G dividing D.
        D: optional (D,) skip; z: optional (batch, D, L) gate, ``y * silu(z)``.
        delta_bias: optional (D,) added to delta; delta_softplus: apply softplus to delta.
        return_last_state: also return the final state (batch, D, N) in float32 (float64
            for float64 inputs); gradients flow through it.
        backend: None (auto: Triton for CUDA tensors when triton is importable), "triton" or
            "reference" (PyTorch, :func:`selective_scan_chunked`); ``S2SSM_KERNEL_BACKEND`` sets the
            default.

    Returns:
        ``y`` (batch, D, L) in ``u``'s dtype, or ``(y, last_state)``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    kernel_ok = all(t is None or t.dtype in _KERNEL_DTYPES for t in tensors)
    if resolve_backend(backend, *tensors, kernel_ok=kernel_ok) == "triton":
        return selective_scan_triton(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )


def selective_state_update_triton(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One recurrent step with a Triton kernel (no autograd; see :func:`selective_state_update`)."""
    if not HAS_TRITON:
        raise InvalidInputError("selective_state_update_triton needs the triton package")
    check_state_update_inputs(state, x, dt, A, B, C, D, z, dt_bias)
    _check_kernel_dtypes(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    batch, dim, n = state.shape
    gb = 1 if B.dim() == 2 else B.shape[1]
    gc = 1 if C.dim() == 2 else C.shape[1]
    groups = gb * gc // math.gcd(gb, gc)
    bc = _as_grouped(B.unsqueeze(-1), groups)  # (batch, groups, N, 1): the layout of (b, g, N)
    cc = _as_grouped(C.unsqueeze(-1), groups)
    sc = state if state.is_contiguous() else state.contiguous()
    xc, dtc, ac = x.contiguous(), dt.contiguous(), A.contiguous()
    Dc, zc, biasc = _opt(D), _opt(z), _opt(dt_bias)
    dpg = dim // groups
    block_n = max(2, _next_pow2(n))
    block_d = max(2, min(_next_pow2(dpg), max(1, 2048 // block_n)))
    if triton_interpret():
        block_d = min(block_d, 4)
    n_dblk = cdiv(dpg, block_d)
    out = torch.empty_like(xc)
    kern = kernel_module("_selective_scan_kernels", sc)
    kern._state_update_kernel[(batch, groups * n_dblk)](
        sc, xc, dtc, ac, bc, cc,
        Dc if Dc is not None else xc, zc if zc is not None else xc,
        biasc if biasc is not None else xc, out,
        dim, n, dpg, n_dblk, groups,
        HAS_D=Dc is not None, HAS_Z=zc is not None, HAS_BIAS=biasc is not None,
        SOFTPLUS=bool(dt_softplus), BLOCK_D=block_d, BLOCK_N=block_n,
        num_warps=4, enable_fp_fusion=True,
    )  # fmt: skip
    if sc is not state:
        state.copy_(sc)
    return out


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """One recurrent step with the scan's math, for autoregressive rollout.

    ``state`` (batch, D, N) is updated in place; ``x, dt, z`` are (batch, D); ``B, C`` are
    (batch, N) or grouped (batch, G, N). Returns ``out`` (batch, D) in ``x``'s dtype.

    The Triton kernel has no backward: when autograd is recording and an input requires grad,
    the automatic choice takes the PyTorch path, through which gradients flow (``state`` must
    then not be a leaf that requires grad). Forcing ``backend="triton"`` in that case raises.
    """
    check_state_update_inputs(state, x, dt, A, B, C, D, z, dt_bias)
    tensors = (state, x, dt, A, B, C, D, z, dt_bias)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    kernel_ok = not needs_grad and all(t is None or t.dtype in _KERNEL_DTYPES for t in tensors)
    if resolve_backend(backend, *tensors, kernel_ok=kernel_ok) == "triton":
        if needs_grad:
            raise InvalidInputError(
                "selective_state_update: the Triton kernel has no backward; use "
                "backend='reference' (or torch.no_grad()) when inputs require grad"
            )
        return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
