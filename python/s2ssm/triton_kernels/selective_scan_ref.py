"""Plain PyTorch selective scan (Mamba's S6): the obviously correct reference and the CPU path.

Math, per batch ``b``, channel ``d``, state ``n`` and step ``t`` (``dt`` after bias and softplus)::

    h[t, n] = exp(dt[t] * A[d, n]) * h[t-1, n] + dt[t] * B[n, t] * u[t]      (h[-1] = 0)
    y[t]    = sum_n h[t, n] * C[n, t] + D[d] * u[t]
    out[t]  = y[t] * silu(z[t])                                               (when z is given)

:func:`selective_scan_ref` is the literal sequential loop, differentiable by autograd: the
reference every fast path is tested against. The ``"reference"`` backend runs
:func:`~s2ssm.triton_kernels.selective_scan_chunked.selective_scan_chunked`, the same recurrence
with a hand-written backward that recomputes states chunk by chunk. Everything is computed in
float32 (float64 when any input is float64) and ``y`` is returned in ``u``'s dtype; the last
state is returned in the compute dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "ScanShapes",
    "check_scan_inputs",
    "check_state_update_inputs",
    "selective_scan_ref",
    "selective_state_update_ref",
]


@dataclass(frozen=True)
class ScanShapes:
    """Sizes of a selective scan call: batch, channels ``D``, length ``L``, state ``N``, groups."""

    batch: int
    dim: int
    length: int
    dstate: int
    groups_b: int
    groups_c: int


def _check_float(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InvalidTypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise InvalidTypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    return t


def _check_device(device: torch.device, **tensors: torch.Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise InvalidInputError(f"{name}: expected a tensor on {device}, got one on {t.device}")


def _check_groups(
    name: str, t: torch.Tensor, batch: int, dim: int, n: int, tail: tuple[int, ...]
) -> int:
    """Validate ``B``/``C``: (batch, N, *tail) or grouped (batch, G, N, *tail); return G."""
    nd = 2 + len(tail)
    if t.dim() == nd:
        expected: tuple[int, ...] = (batch, n, *tail)
        groups = 1
    elif t.dim() == nd + 1:
        groups = t.shape[1]
        expected = (batch, groups, n, *tail)
        if groups == 0 or dim % groups != 0:
            raise InvalidInputError(
                f"{name}: the group count {groups} must be positive and divide D={dim}"
            )
    else:
        raise InvalidInputError(
            f"{name}: expected shape (batch, N{', L' if tail else ''}) or grouped "
            f"(batch, G, N{', L' if tail else ''}), got {tuple(t.shape)}"
        )
    if tuple(t.shape) != expected:
        raise InvalidInputError(f"{name}: expected shape {expected}, got {tuple(t.shape)}")
    return groups


def _check_vector(name: str, t: torch.Tensor | None, dim: int) -> None:
    if t is None:
        return
    _check_float(name, t)
    if tuple(t.shape) != (dim,):
        raise InvalidInputError(f"{name}: expected shape ({dim},), got {tuple(t.shape)}")


def check_scan_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
) -> ScanShapes:
    """Validate the arguments of a selective scan; raise a clear error naming the bad one."""
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        _check_float(name, t)
    if u.dim() != 3:
        raise InvalidInputError(f"u: expected shape (batch, D, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if batch == 0 or dim == 0 or length == 0:
        raise InvalidInputError(
            f"u: batch, D and L must all be positive, got shape {tuple(u.shape)}"
        )
    if delta.shape != u.shape:
        raise InvalidInputError(
            f"delta: expected the shape of u {tuple(u.shape)}, got {tuple(delta.shape)}"
        )
    if A.dim() != 2 or A.shape[0] != dim or A.shape[1] == 0:
        raise InvalidInputError(f"A: expected shape ({dim}, N) with N > 0, got {tuple(A.shape)}")
    if A.is_complex():
        raise InvalidTypeError("A: complex A is not supported, expected a real tensor")
    n = A.shape[1]
    gb = _check_groups("B", B, batch, dim, n, (length,))
    gc = _check_groups("C", C, batch, dim, n, (length,))
    _check_vector("D", D, dim)
    _check_vector("delta_bias", delta_bias, dim)
    if z is not None:
        _check_float("z", z)
        if z.shape != u.shape:
            raise InvalidInputError(
                f"z: expected the shape of u {tuple(u.shape)}, got {tuple(z.shape)}"
            )
    _check_device(u.device, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    return ScanShapes(batch, dim, length, n, gb, gc)


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when any input is float64, else float32 (fp16/bf16 accumulate in float32)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _repeat_groups(t: torch.Tensor, times: int) -> torch.Tensor:
    """Repeat every entry of dim 1 ``times`` times (like ``repeat_interleave``, but its backward
    is a plain sum, deterministic on CUDA under ``torch.use_deterministic_algorithms``)."""
    if times == 1:
        return t
    shape = list(t.shape)
    out = t.unsqueeze(2).expand(shape[0], shape[1], times, *shape[2:])
    return out.reshape(shape[0], shape[1] * times, *shape[2:])


def _per_channel(t: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """B or C as (batch, D or 1, N, L) in ``dtype``, repeating groups over their channels."""
    t = t.to(dtype)
    if t.dim() == 3:
        return t.unsqueeze(1)
    return _repeat_groups(t, dim // t.shape[1])


def _step_sizes(
    delta: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``dt`` (batch, D, L) in ``dtype``: ``delta`` plus its per-channel bias, then softplus."""
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    return dt


def _discretize(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decay ``exp(dt*A)`` and input ``dt*B*u``, both (batch, D, L, N)."""
    dt = _step_sizes(delta, delta_bias, delta_softplus, dtype)
    decay = torch.exp(dt.unsqueeze(-1) * A.to(dtype)[:, None, :])
    b = _per_channel(B, u.shape[1], dtype).transpose(-1, -2)  # (batch, D|1, L, N)
    inp = (dt * u.to(dtype)).unsqueeze(-1) * b
    return decay, inp


def _finish(
    y: torch.Tensor,
    u: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def selective_scan_ref(
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
    """Selective scan as a literal loop over time steps (see the module docstring)."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    decay, inp = _discretize(u, delta, A, B, delta_bias, delta_softplus, dtype)
    c = _per_channel(C, u.shape[1], dtype)  # (batch, D|1, N, L)
    h = u.new_zeros((u.shape[0], u.shape[1], A.shape[1]), dtype=dtype)
    ys = []
    for t in range(u.shape[2]):
        h = decay[:, :, t] * h + inp[:, :, t]
        ys.append((h * c[..., t]).sum(-1))
    out = _finish(torch.stack(ys, dim=-1), u, D, z, dtype)
    return (out, h) if return_last_state else out


def check_state_update_inputs(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
) -> ScanShapes:
    """Validate the arguments of one recurrent step (length 1 in the returned shapes)."""
    for name, t in (("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        _check_float(name, t)
    if state.dim() != 3 or 0 in state.shape:
        raise InvalidInputError(
            f"state: expected a non-empty (batch, D, N) tensor, got {tuple(state.shape)}"
        )
    batch, dim, n = state.shape
    for name, vec in (("x", x), ("dt", dt), ("z", z)):
        if vec is not None and tuple(vec.shape) != (batch, dim):
            raise InvalidInputError(
                f"{name}: expected shape ({batch}, {dim}), got {tuple(vec.shape)}"
            )
    if z is not None:
        _check_float("z", z)
    if tuple(A.shape) != (dim, n):
        raise InvalidInputError(f"A: expected shape ({dim}, {n}), got {tuple(A.shape)}")
    gb = _check_groups("B", B, batch, dim, n, ())
    gc = _check_groups("C", C, batch, dim, n, ())
    _check_vector("D", D, dim)
    _check_vector("dt_bias", dt_bias, dim)
    _check_device(state.device, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    return ScanShapes(batch, dim, 1, n, gb, gc)


def selective_state_update_ref(
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
    """One step of the scan: update ``state`` (batch, D, N) in place and return ``out`` (batch, D).

    ``x, dt, z`` are (batch, D); ``B, C`` are (batch, N) or grouped (batch, G, N).
    """
    check_state_update_inputs(state, x, dt, A, B, C, D, z, dt_bias)
    dtype = compute_dtype(state, x, dt, A, B, C, D, z, dt_bias)
    dim = state.shape[1]
    step = dt.to(dtype)
    if dt_bias is not None:
        step = step + dt_bias.to(dtype)
    if dt_softplus:
        step = F.softplus(step)
    decay = torch.exp(step.unsqueeze(-1) * A.to(dtype))
    b = _per_channel(B.unsqueeze(-1), dim, dtype).squeeze(-1)  # (batch, D|1, N)
    c = _per_channel(C.unsqueeze(-1), dim, dtype).squeeze(-1)
    # clone: autograd saves the previous state, which the in-place update below overwrites
    prev = state.to(dtype).clone()
    new_state = decay * prev + (step * x.to(dtype)).unsqueeze(-1) * b
    state.copy_(new_state)
    out = (new_state * c).sum(-1)
    if D is not None:
        out = out + x.to(dtype) * D.to(dtype)
    if z is not None:
        out = out * F.silu(z.to(dtype))
    return out.to(x.dtype)
