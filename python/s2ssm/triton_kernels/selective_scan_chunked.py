"""Selective scan in PyTorch with a hand-written backward: the CPU path of :func:`selective_scan`.

Same math as :func:`~s2ssm.triton_kernels.selective_scan_ref.selective_scan_ref` (the literal loop,
kept as the obviously correct reference). Autograd through that loop is slow (every step's
slicing and stacking becomes a graph node) and keeps every step's ``(D, N)`` state. Here the
recurrence is an :class:`torch.autograd.Function` that, like the Triton kernel, saves only the
state at the start of each chunk of ``chunk_size`` steps; the backward pass walks the chunks in
reverse, recomputes a chunk's states from its saved start and runs the adjoint recurrence::

    g[t] = gy[t] * C[:, t] + exp(dt[t + 1] * A) * g[t + 1]        (g[L-1] += grad of last state)

from which every input gradient is a vectorised product over the chunk. Memory that grows with
``L`` is the inputs plus ``L / chunk_size`` states; time is one ``(batch, D, N)`` update per step in
each direction. Everything is computed in the reference's compute dtype (float32, or float64
when any input is float64).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from s2ssm.errors import InvalidInputError
from s2ssm.triton_kernels.selective_scan_ref import (
    _finish,
    _per_channel,
    check_scan_inputs,
    compute_dtype,
)

__all__ = ["selective_scan_chunked"]


def _chunk_states(
    dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, x: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """States of one chunk, time-major.

    ``dt, x``: (T, batch, D); ``b``: (T, batch, D|1, N); ``h0``: (batch, D, N), the state before
    the chunk. Returns ``(decay, inp, hs)``, each (T, batch, D, N), with
    ``hs[t] = decay[t] * hs[t - 1] + inp[t]`` and ``hs[-1] = h0``.
    """
    decay = torch.exp(dt.unsqueeze(-1) * A)
    inp = (x.unsqueeze(-1) * b).expand_as(decay).contiguous()
    hs = torch.empty_like(decay)
    h = h0
    for t in range(decay.shape[0]):
        torch.addcmul(inp[t], decay[t], h, out=hs[t])
        h = hs[t]
    return decay, inp, hs


def _sum_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum the channel axis (2) of a time-major (T, batch, D, N) gradient when ``like`` has a
    single, broadcast channel."""
    return t.sum(2, keepdim=True) if like.shape[2] == 1 and t.shape[2] != 1 else t


class _ChunkedScan(torch.autograd.Function):
    """``y[t] = sum_n h[t, n] C[n, t]``, ``h[t] = exp(dt[t] A) h[t-1] + dt[t] u[t] B[:, t]``.

    Inputs (one floating dtype): ``dt, u`` (batch, D, L); ``A`` (D, N); ``b, c`` (batch, D|1, N, L).
    Outputs: ``y`` (batch, D, L) and the last state (batch, D, N).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        dt: torch.Tensor,
        A: torch.Tensor,
        b: torch.Tensor,
        u: torch.Tensor,
        c: torch.Tensor,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, dim, length = u.shape
        dt_t, x_t = dt.permute(2, 0, 1), (dt * u).permute(2, 0, 1)  # (L, batch, D)
        b_t, c_t = b.permute(3, 0, 1, 2), c.permute(3, 0, 1, 2)  # (L, batch, D|1, N)
        h = u.new_zeros((batch, dim, A.shape[1]))
        starts, ys = [], []
        for s in range(0, length, chunk_size):
            e = min(s + chunk_size, length)
            starts.append(h)
            _, _, hs = _chunk_states(dt_t[s:e], A, b_t[s:e], x_t[s:e], h)
            ys.append((hs * c_t[s:e]).sum(-1))
            h = hs[-1].clone()
        y = torch.cat(ys).permute(1, 2, 0).contiguous()
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(dt, A, b, u, c, torch.stack(starts))
        return y, h

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, gy: torch.Tensor | None, g_last: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        dt, A, b, u, c, starts = ctx.saved_tensors
        batch, dim, length = u.shape
        chunk = ctx.chunk_size
        dt_t, u_t = dt.permute(2, 0, 1), u.permute(2, 0, 1)
        x_t = dt_t * u_t
        b_t, c_t = b.permute(3, 0, 1, 2), c.permute(3, 0, 1, 2)
        gy_t = (gy.permute(2, 0, 1) if gy is not None else u.new_zeros((length, batch, dim))).to(
            u.dtype
        )
        carry = g_last.to(u.dtype) if g_last is not None else starts.new_zeros(starts.shape[1:])
        d_dt, d_u = torch.empty_like(dt_t), torch.empty_like(u_t)
        d_b, d_c = torch.empty_like(b_t), torch.empty_like(c_t)
        d_A = torch.zeros_like(A)
        for index in reversed(range(starts.shape[0])):
            s, e = index * chunk, min((index + 1) * chunk, length)
            decay, _, hs = _chunk_states(dt_t[s:e], A, b_t[s:e], x_t[s:e], starts[index])
            g = gy_t[s:e].unsqueeze(-1) * c_t[s:e]  # direct part of dL/dh[t]
            g[-1] += carry
            for t in reversed(range(e - s - 1)):
                torch.addcmul(g[t], decay[t + 1], g[t + 1], out=g[t])
            carry = decay[0] * g[0]
            h_prev = torch.cat([starts[index].unsqueeze(0), hs[:-1]])
            d_log_decay = g * h_prev * decay  # dL/d(dt * A), (T, batch, D, N)
            d_x = (g * b_t[s:e]).sum(-1)
            d_dt[s:e] = (d_log_decay * A).sum(-1) + d_x * u_t[s:e]
            d_u[s:e] = d_x * dt_t[s:e]
            d_A += (d_log_decay * dt_t[s:e].unsqueeze(-1)).sum((0, 1))
            d_b[s:e] = _sum_to(g * x_t[s:e].unsqueeze(-1), b_t)
            d_c[s:e] = _sum_to(gy_t[s:e].unsqueeze(-1) * hs, c_t)
        return (
            d_dt.permute(1, 2, 0),
            d_A,
            d_b.permute(1, 2, 3, 0),
            d_u.permute(1, 2, 0),
            d_c.permute(1, 2, 3, 0),
            None,
        )


def selective_scan_chunked(
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
    chunk_size: int = 64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same result and gradients as :func:`selective_scan_ref`, saving one state per chunk of
    ``chunk_size`` steps for backward (see the module docstring)."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise InvalidInputError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    dim = u.shape[1]
    b, c = _per_channel(B, dim, dtype), _per_channel(C, dim, dtype)
    y, last = _ChunkedScan.apply(dt, A.to(dtype), b, u.to(dtype), c, chunk_size)
    out = _finish(y, u, D, z, dtype)
    return (out, last) if return_last_state else out
