"""Selective scan (Mamba S6): fused Triton kernels, autograd wrapper and the dispatching public op.

Forward: one program per (batch, group, block of channels) walks the sequence in chunks of
``BLOCK_L`` steps. Inside a chunk the recurrence ``h <- exp(dt*A)*h + dt*B*u`` over a
(channels x state x steps) register tile is evaluated with ``tl.associative_scan``; the state
is carried from chunk to chunk in registers, all arithmetic is float32 whatever the input dtype.
When gradients are needed the forward also writes the state at the start of every chunk
(``L / BLOCK_L`` states per channel, not one per step).

Backward: walks the chunks in reverse, recomputes the chunk's states from the saved chunk-start
state, runs the adjoint recurrence ``g[t] = exp(dt[t+1]*A)*g[t+1] + dy[t]*C[t]`` with a
reversed associative scan and accumulates every gradient. Sums over channels (for B, C) and
over the batch (for A, D) are written as per-program partial sums and reduced with torch
afterwards, so results are deterministic (no atomics).

Triton is optional: without it this module still imports and :func:`selective_scan` uses the
PyTorch path.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels._dispatch import resolve_backend, triton_interpret
from s2ssm.triton_kernels.selective_scan_ref import (
    check_scan_inputs,
    check_state_update_inputs,
    selective_scan_chunked,
    selective_state_update_ref,
)

try:  # triton is an optional dependency
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only without triton
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "selective_scan", "selective_scan_triton", "selective_state_update"]

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


if HAS_TRITON:

    @triton.jit
    def _linrec_combine(a1, b1, a2, b2):
        # compose h -> a1*h + b1 (earlier) with h -> a2*h + b2 (later)
        return a1 * a2, b1 * a2 + b2

    @triton.jit
    def _load_dt(ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
        raw = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            raw = raw + bias[:, None]
        dt = raw
        if SOFTPLUS:
            dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))), raw)
        dt = tl.where(mask, dt, 0.0)
        return raw, dt

    @triton.jit
    def _scan_fwd_kernel(
        u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
        y_ptr, last_ptr, chunk_ptr,
        DIM, L, N, DPG, N_DBLK, N_CHUNKS, GROUPS,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr, STORE_CHUNKS: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
    ):  # fmt: skip
        pid_b = tl.program_id(0)
        pid_gd = tl.program_id(1)
        grp = pid_gd // N_DBLK
        offs_dg = (pid_gd % N_DBLK) * BLOCK_D + tl.arange(0, BLOCK_D)
        d_mask = offs_dg < DPG
        offs_d = grp * DPG + offs_dg
        offs_n = tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        dn_mask = d_mask[:, None] & n_mask[None, :]
        a_tile = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
        a_tile = a_tile.to(tl.float32)
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
        dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_D:
            dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
        row = (pid_b * DIM + offs_d).to(tl.int64)
        bc_row = ((pid_b * GROUPS + grp) * N + offs_n).to(tl.int64)
        last_col = tl.arange(0, BLOCK_L) == BLOCK_L - 1
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        for chunk in range(0, N_CHUNKS):
            if STORE_CHUNKS:
                cptr = chunk_ptr + ((row[:, None] * N_CHUNKS + chunk) * N + offs_n[None, :])
                tl.store(cptr, h, mask=dn_mask)
            offs_l = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
            l_mask = offs_l < L
            m2 = d_mask[:, None] & l_mask[None, :]
            dl = row[:, None] * L + offs_l[None, :]
            u = tl.load(u_ptr + dl, mask=m2, other=0.0).to(tl.float32)
            _, dt = _load_dt(delta_ptr + dl, m2, bias, HAS_BIAS, SOFTPLUS)
            nl = bc_row[:, None] * L + offs_l[None, :]
            nl_mask = n_mask[:, None] & l_mask[None, :]
            bt = tl.load(b_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
            ct = tl.load(c_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
            decay = tl.exp(dt[:, None, :] * a_tile[:, :, None])
            inp = (dt * u)[:, None, :] * bt[None, :, :]
            prod, acc = tl.associative_scan((decay, inp), 2, _linrec_combine)
            hs = prod * h[:, :, None] + acc
            y = tl.sum(hs * ct[None, :, :], axis=1)
            if HAS_D:
                y += u * dskip[:, None]
            if HAS_Z:
                zt = tl.load(z_ptr + dl, mask=m2, other=0.0).to(tl.float32)
                y = y * zt * tl.sigmoid(zt)
            tl.store(y_ptr + dl, y.to(y_ptr.dtype.element_ty), mask=m2)
            h = tl.sum(tl.where(last_col[None, None, :], hs, 0.0), axis=2)
        tl.store(last_ptr + row[:, None] * N + offs_n[None, :], h, mask=dn_mask)

    @triton.jit
    def _scan_bwd_kernel(
        u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
        chunk_ptr, dout_ptr, dlast_ptr,
        du_ptr, ddelta_ptr, dz_ptr, db_ptr, dc_ptr, da_ptr, dd_ptr,
        DIM, L, N, DPG, N_DBLK, N_CHUNKS, GROUPS,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
    ):  # fmt: skip
        pid_b = tl.program_id(0)
        pid_gd = tl.program_id(1)
        grp = pid_gd // N_DBLK
        dblk = pid_gd % N_DBLK
        offs_dg = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
        d_mask = offs_dg < DPG
        offs_d = grp * DPG + offs_dg
        offs_n = tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        dn_mask = d_mask[:, None] & n_mask[None, :]
        a_tile = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
        a_tile = a_tile.to(tl.float32)
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
        dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_D:
            dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
        row = (pid_b * DIM + offs_d).to(tl.int64)
        bc_row = ((pid_b * GROUPS + grp) * N + offs_n).to(tl.int64)
        # partial sums over this block of channels: (batch, groups, N_DBLK, N, L)
        part_row = (((pid_b * GROUPS + grp) * N_DBLK + dblk) * N + offs_n).to(tl.int64)
        first_col = tl.arange(0, BLOCK_L) == 0
        g = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        if HAS_DLAST:
            g = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
            g = g.to(tl.float32)
        da_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        dd_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        for rev in range(0, N_CHUNKS):
            chunk = N_CHUNKS - 1 - rev
            offs_l = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
            l_mask = offs_l < L
            m2 = d_mask[:, None] & l_mask[None, :]
            dl = row[:, None] * L + offs_l[None, :]
            u = tl.load(u_ptr + dl, mask=m2, other=0.0).to(tl.float32)
            raw, dt = _load_dt(delta_ptr + dl, m2, bias, HAS_BIAS, SOFTPLUS)
            nl = bc_row[:, None] * L + offs_l[None, :]
            nl_mask = n_mask[:, None] & l_mask[None, :]
            bt = tl.load(b_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
            ct = tl.load(c_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
            cptr = chunk_ptr + ((row[:, None] * N_CHUNKS + chunk) * N + offs_n[None, :])
            h0 = tl.load(cptr, mask=dn_mask, other=0.0)
            # recompute the states of this chunk
            decay = tl.exp(dt[:, None, :] * a_tile[:, :, None])
            inp = (dt * u)[:, None, :] * bt[None, :, :]
            prod, acc = tl.associative_scan((decay, inp), 2, _linrec_combine)
            hs = prod * h0[:, :, None] + acc
            dout = tl.load(dout_ptr + dl, mask=m2, other=0.0).to(tl.float32)
            dy = dout
            if HAS_Z:
                y0 = tl.sum(hs * ct[None, :, :], axis=1)
                if HAS_D:
                    y0 += u * dskip[:, None]
                zt = tl.load(z_ptr + dl, mask=m2, other=0.0).to(tl.float32)
                sig = tl.sigmoid(zt)
                dz = dout * y0 * sig * (1.0 + zt * (1.0 - sig))
                tl.store(dz_ptr + dl, dz, mask=m2)
                dy = dout * zt * sig
            dy = tl.where(m2, dy, 0.0)
            du = dy * dskip[:, None]
            if HAS_D:
                dd_acc += tl.sum(dy * u, axis=1)
            # adjoint g[t] = exp(dt[t+1]*A) * g[t+1] + dy[t]*C[t]; exp(0) = 1 past the end
            m2n = d_mask[:, None] & (offs_l + 1 < L)[None, :]
            _, dt_next = _load_dt(delta_ptr + dl + 1, m2n, bias, HAS_BIAS, SOFTPLUS)
            alpha = tl.exp(dt_next[:, None, :] * a_tile[:, :, None])
            cin = dy[:, None, :] * ct[None, :, :]
            gprod, gacc = tl.associative_scan((alpha, cin), 2, _linrec_combine, reverse=True)
            gs = gprod * g[:, :, None] + gacc
            # gradients of this chunk (hs - inp = exp(dt*A) * h[t-1], no division needed)
            prev = hs - inp
            dbu = gs * (dt * u)[:, None, :]
            tl.store(db_ptr + part_row[:, None] * L + offs_l[None, :], tl.sum(dbu, axis=0),
                     mask=nl_mask)  # fmt: skip
            dct = tl.sum(hs * dy[:, None, :], axis=0)
            tl.store(dc_ptr + part_row[:, None] * L + offs_l[None, :], dct, mask=nl_mask)
            du += tl.sum(gs * bt[None, :, :], axis=1) * dt
            ddt = tl.sum(gs * (a_tile[:, :, None] * prev + bt[None, :, :] * u[:, None, :]), axis=1)
            da_acc += tl.sum(gs * prev * dt[:, None, :], axis=2)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            tl.store(du_ptr + dl, du, mask=m2)
            tl.store(ddelta_ptr + dl, ddt, mask=m2)
            g = tl.sum(tl.where(first_col[None, None, :], gs, 0.0), axis=2)
        tl.store(da_ptr + row[:, None] * N + offs_n[None, :], da_acc, mask=dn_mask)
        if HAS_D:
            tl.store(dd_ptr + row, dd_acc, mask=d_mask)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _tiles(dpg: int, n: int, length: int, backward: bool) -> tuple[int, int, int, int]:
    """Tile sizes (BLOCK_D, BLOCK_N, BLOCK_L, num_warps); BLOCK_L must not depend on direction."""
    block_n = max(2, _next_pow2(n))
    if triton_interpret():
        # the interpreter runs numpy per program: tiny chunks keep tests fast and exercise carries
        return min(4, max(2, _next_pow2(dpg))), block_n, min(8, max(2, _next_pow2(length))), 1
    block_l = min(32, max(16, _next_pow2(length)))
    budget = 2048 if backward else 4096  # elements of one (channels x N x steps) register tile
    block_d = max(1, min(_next_pow2(dpg), budget // (block_n * block_l)))
    return block_d, block_n, block_l, 4


def _as_grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """B or C as a contiguous (batch, groups, N, L) tensor (repeating coarser groups)."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.shape[1] != groups:
        t = t.repeat_interleave(groups // t.shape[1], dim=1)
    return t.contiguous()


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
        bc, cc = _as_grouped(B, groups), _as_grouped(C, groups)
        Dc, zc, biasc = _opt(D), _opt(z), _opt(delta_bias)
        dpg = dim // groups
        block_d, block_n, block_l, warps = _tiles(dpg, n, length, backward=False)
        n_dblk = triton.cdiv(dpg, block_d)
        n_chunks = triton.cdiv(length, block_l)
        need_grad = any(ctx.needs_input_grad[:8])
        y = torch.empty_like(uc)
        last = torch.empty((batch, dim, n), device=u.device, dtype=torch.float32)
        chunks = (
            torch.empty((batch, dim, n_chunks, n), device=u.device, dtype=torch.float32)
            if need_grad
            else last
        )
        _scan_fwd_kernel[(batch, groups * n_dblk)](
            uc, dc, ac, bc, cc,
            Dc if Dc is not None else uc, zc if zc is not None else uc,
            biasc if biasc is not None else uc,
            y, last, chunks,
            dim, length, n, dpg, n_dblk, n_chunks, groups,
            HAS_D=Dc is not None, HAS_Z=zc is not None, HAS_BIAS=biasc is not None,
            SOFTPLUS=delta_softplus, STORE_CHUNKS=need_grad,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=warps,
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
        block_d, block_n, block_l, warps = _tiles(dpg, n, length, backward=True)
        n_dblk = triton.cdiv(dpg, block_d)
        n_chunks = chunks.shape[2]
        dy = torch.zeros_like(uc) if dy is None else dy.contiguous()
        f32: dict[str, Any] = {"device": uc.device, "dtype": torch.float32}
        du = torch.empty((batch, dim, length), **f32)
        ddelta = torch.empty((batch, dim, length), **f32)
        dz = torch.empty((batch, dim, length), **f32) if zc is not None else du
        db = torch.empty((batch, groups, n_dblk, n, length), **f32)
        dcc = torch.empty((batch, groups, n_dblk, n, length), **f32)
        da = torch.empty((batch, dim, n), **f32)
        dd = torch.empty((batch, dim), **f32) if Dc is not None else da
        _scan_bwd_kernel[(batch, groups * n_dblk)](
            uc, dc, ac, bc, cc,
            Dc if Dc is not None else uc, zc if zc is not None else uc,
            biasc if biasc is not None else uc,
            chunks, dy, dlast.contiguous() if dlast is not None else uc,
            du, ddelta, dz, db, dcc, da, dd,
            dim, length, n, dpg, n_dblk, n_chunks, groups,
            HAS_D=Dc is not None, HAS_Z=zc is not None, HAS_BIAS=biasc is not None,
            SOFTPLUS=ctx.delta_softplus, HAS_DLAST=dlast is not None,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=warps,
        )  # fmt: skip
        grads: list[torch.Tensor | None] = [
            du.to(uc.dtype),
            ddelta.to(dc.dtype),
            da.sum(0).to(ac.dtype),
            _ungroup(db.sum(2), ctx.b_like),
            _ungroup(dcc.sum(2), ctx.c_like),
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
            "reference" (PyTorch chunked parallel scan); ``S2SSM_KERNEL_BACKEND`` sets the
            default.

    Returns:
        ``y`` (batch, D, L) in ``u``'s dtype, or ``(y, last_state)``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    if resolve_backend(backend, *tensors) == "triton":
        return selective_scan_triton(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )


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
) -> torch.Tensor:
    """One recurrent step with the scan's math, for autoregressive rollout.

    ``state`` (batch, D, N) is updated in place; ``x, dt, z`` are (batch, D); ``B, C`` are
    (batch, N) or grouped (batch, G, N). Returns ``out`` (batch, D) in ``x``'s dtype. Gradients
    flow through the PyTorch implementation (state must not be a leaf that requires grad).
    """
    check_state_update_inputs(state, x, dt, A, B, C, D, z, dt_bias)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
