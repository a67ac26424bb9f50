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
from torch.autograd.function import once_differentiable

from s2ssm.errors import InvalidInputError
from s2ssm.triton_kernels.selective_scan_ref import (
    _finish,
    _per_channel,
    _step_sizes,
    check_scan_inputs,
    compute_dtype,
)

__all__ = ["selective_scan_chunked"]


class _Buffers:
    """Work tensors of one chunk, (T, batch, D, N), allocated once per call and reused by every
    chunk: a fresh tensor of this size per operation costs more in page faults than the
    arithmetic."""

    def __init__(self, like: torch.Tensor, shape: tuple[int, ...], count: int) -> None:
        self._all = [like.new_empty(shape) for _ in range(count)]

    def take(self, steps: int) -> list[torch.Tensor]:
        """The buffers cut to a chunk of ``steps`` time steps."""
        return [buf[:steps] for buf in self._all]


def _chunk_states(
    dt: torch.Tensor,
    A: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    h0: torch.Tensor,
    out: list[torch.Tensor],
) -> None:
    """States of one chunk, time-major, written into ``out = [decay, inp, hs]``.

    ``dt, x``: (T, batch, D); ``b``: (T, batch, D|1, N); ``h0``: (batch, D, N), the state before
    the chunk; ``decay = exp(dt A)``, ``inp = x b`` and ``hs[t] = decay[t] hs[t - 1] + inp[t]``
    with ``hs[-1] = h0``, each (T, batch, D, N).
    """
    decay, inp, hs = out
    torch.mul(dt.unsqueeze(-1), A, out=decay).exp_()
    torch.mul(x.unsqueeze(-1), b, out=inp)
    h = h0
    for t in range(decay.shape[0]):
        torch.addcmul(inp[t], decay[t], h, out=hs[t])
        h = hs[t]


def _sum_over_state(
    big: torch.Tensor, factor: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``out = (big * factor).sum(-1)``: ``big`` (T, batch, D, N), ``factor`` broadcast to it."""
    return torch.sum(torch.mul(big, factor, out=scratch), -1, out=out)


def _grad_of_factor(
    big: torch.Tensor, small: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor
) -> None:
    """``out`` = the gradient of a factor (T, batch, D|1, N) of ``big * small[..., None]``
    (``big`` (T, batch, D, N), ``small`` (T, batch, D)): summed over the channels when the
    factor is shared by them."""
    if out.shape[2] == 1:
        torch.sum(torch.mul(big, small.unsqueeze(-1), out=scratch), 2, keepdim=True, out=out)
    else:
        torch.mul(big, small.unsqueeze(-1), out=out)


class _ChunkedScan(torch.autograd.Function):
    """``y[t] = sum_n h[t, n] C[n, t]``, ``h[t] = exp(dt[t] A) h[t-1] + dt[t] u[t] B[:, t]``.

    Inputs (one floating dtype): ``dt, u`` (batch, D, L); ``A`` (D, N); ``b, c`` (batch, D|1, N, L).
    Outputs: ``y`` (batch, D, L) and the last state (batch, D, N). Differentiable once (the
    backward works in place on its buffers).
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
        steps = min(chunk_size, length)
        buffers = _Buffers(u, (steps, batch, dim, A.shape[1]), 3)
        y_t = u.new_empty((length, batch, dim))
        h = u.new_zeros((batch, dim, A.shape[1]))
        starts = []
        for s in range(0, length, chunk_size):
            e = min(s + chunk_size, length)
            starts.append(h)
            decay, inp, hs = buffers.take(e - s)
            _chunk_states(dt_t[s:e], A, b_t[s:e], x_t[s:e], h, [decay, inp, hs])
            _sum_over_state(hs, c_t[s:e], inp, y_t[s:e])
            h = hs[-1].clone()  # the buffers are overwritten by the next chunk
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(dt, A, b, u, c, torch.stack(starts))
        return y_t.permute(1, 2, 0).contiguous(), h

    @staticmethod
    @once_differentiable
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
        d_dt, d_u, d_x = (u.new_empty((length, batch, dim)) for _ in range(3))
        d_b, d_c = b_t.new_empty(b_t.shape), c_t.new_empty(c_t.shape)
        d_A = torch.zeros_like(A)
        buffers = _Buffers(u, (min(chunk, length), batch, dim, A.shape[1]), 5)
        for index in reversed(range(starts.shape[0])):
            s, e = index * chunk, min((index + 1) * chunk, length)
            decay, inp, hs, g, scratch = buffers.take(e - s)
            _chunk_states(dt_t[s:e], A, b_t[s:e], x_t[s:e], starts[index], [decay, inp, hs])
            _grad_of_factor(hs, gy_t[s:e], scratch, d_c[s:e])
            torch.mul(gy_t[s:e].unsqueeze(-1), c_t[s:e], out=g)  # dL/dh[t], direct part
            g[-1] += carry
            for t in reversed(range(e - s - 1)):  # + what flows back from h[t + 1]
                torch.addcmul(g[t], decay[t + 1], g[t + 1], out=g[t])
            carry = decay[0] * g[0]
            # dL/d(dt A) = g * decay[t] * h[t - 1], in the inp buffer (inp is not needed again)
            torch.mul(decay[1:], hs[:-1], out=inp[1:])
            torch.mul(decay[0], starts[index], out=inp[0])
            d_log_decay = inp.mul_(g)
            _sum_over_state(g, b_t[s:e], scratch, d_x[s:e])
            _sum_over_state(d_log_decay, A, scratch, d_dt[s:e]).addcmul_(d_x[s:e], u_t[s:e])
            torch.mul(d_x[s:e], dt_t[s:e], out=d_u[s:e])
            d_A += torch.mul(d_log_decay, dt_t[s:e].unsqueeze(-1), out=scratch).sum((0, 1))
            _grad_of_factor(g, x_t[s:e], scratch, d_b[s:e])
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
    chunk_size: int = 8,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same result and gradients as :func:`selective_scan_ref`, saving one state per chunk of
    ``chunk_size`` steps for backward (see the module docstring).

    The default 8 keeps the work buffers small (they are ``chunk_size`` states each); measured
    on one CPU thread it is within 10 % of the fastest chunk size from 4 to 64 for (batch, D, N,
    L) = (256, 256, 16, 32), (8, 128, 16, 2048) and (64, 64, 16, 16), where 64 took twice as
    long for the first."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise InvalidInputError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    dt = _step_sizes(delta, delta_bias, delta_softplus, dtype)
    dim = u.shape[1]
    b, c = _per_channel(B, dim, dtype), _per_channel(C, dim, dtype)
    y, last = _ChunkedScan.apply(dt, A.to(dtype), b, u.to(dtype), c, chunk_size)
    out = _finish(y, u, D, z, dtype)
    return (out, last) if return_last_state else out
