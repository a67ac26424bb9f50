"""Mamba block (Gu & Dao, 2023) over :func:`s2ssm.triton_kernels.selective_scan`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels import selective_scan, selective_state_update

__all__ = ["Mamba"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value <= 0:
        raise InvalidInputError(f"{name}: expected a positive int, got {value}")
    return value


class Mamba(nn.Module):
    """Mamba block: in-projection, causal depthwise conv1d, selective scan, SiLU gate, out-proj.

    ``forward(x)`` maps (batch, length, d_model) to the same shape; the output at step ``t``
    depends only on inputs at steps ``<= t``. :meth:`step` advances one step from a cache made by
    :meth:`allocate_inference_cache` (for autoregressive rollout) with the same math.

    Args:
        d_model: input/output width.
        d_state: SSM state size N per channel.
        d_conv: width of the causal depthwise convolution.
        expand: inner width is ``expand * d_model``.
        dt_rank: rank of the step-size projection, ``"auto"`` = ceil(d_model / 16).
        backend: kernel backend passed to the scan (None = auto).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        backend: str | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
    ) -> None:
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.d_state = _positive_int("d_state", d_state)
        self.d_conv = _positive_int("d_conv", d_conv)
        self.expand = _positive_int("expand", expand)
        self.d_inner = self.expand * self.d_model
        if dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        else:
            self.dt_rank = _positive_int("dt_rank", dt_rank)
        if not 0 < dt_min <= dt_max:
            raise InvalidInputError(
                f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}"
            )
        self.backend = backend

        self.in_proj = nn.Linear(self.d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=self.d_conv,
            groups=self.d_inner,
            padding=self.d_conv - 1,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # Mamba's initialisation: dt log-uniform in [dt_min, dt_max] through softplus
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=False)

    def _check_input(self, x: torch.Tensor, ndim: int) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InvalidTypeError("x: expected a floating-point torch.Tensor")
        if x.dim() != ndim or x.shape[-1] != self.d_model:
            shape = "(batch, length, d_model)" if ndim == 3 else "(batch, d_model)"
            raise InvalidInputError(
                f"x: expected shape {shape} with d_model={self.d_model}, got {tuple(x.shape)}"
            )

    def _ssm_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step size (before bias), B and C from the conv output ``x`` (..., d_inner)."""
        x_dbl = self.x_proj(x)
        dt, b, c = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the bias is added inside the scan
        return dt, b, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, d_model) -> (batch, length, d_model)."""
        self._check_input(x, 3)
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # (batch, 2*d_inner, length)
        xs, z = xz.chunk(2, dim=1)
        xs = F.silu(self.conv1d(xs)[..., :length])  # causal: drop the right padding
        dt, b, c = self._ssm_params(xs.transpose(1, 2))
        y = selective_scan(
            xs,
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            b.transpose(1, 2),
            c.transpose(1, 2),
            D=self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.backend,
        )
        assert isinstance(y, torch.Tensor)
        return self.out_proj(y.transpose(1, 2))

    def allocate_inference_cache(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(conv_state (batch, d_inner, d_conv), ssm_state (batch, d_inner, d_state))``."""
        batch_size = _positive_int("batch_size", batch_size)
        device = device if device is not None else self.D.device
        conv_state = torch.zeros(
            batch_size, self.d_inner, self.d_conv, device=device, dtype=dtype or self.D.dtype
        )
        ssm_state = torch.zeros(
            batch_size, self.d_inner, self.d_state, device=device, dtype=torch.float32
        )
        return conv_state, ssm_state

    def step(
        self, x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``x`` (batch, d_model) -> ``(y (batch, d_model), conv_state, ssm_state)``.

        Returns new cache tensors (the inputs are not modified), so gradients can flow through
        an imagined rollout.
        """
        self._check_input(x, 2)
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)  # (batch, d_inner)
        conv_state = torch.cat([conv_state[..., 1:], xs.unsqueeze(-1).to(conv_state.dtype)], -1)
        xs = (conv_state * self.conv1d.weight.squeeze(1)).sum(-1)
        if self.conv1d.bias is not None:
            xs = xs + self.conv1d.bias
        xs = F.silu(xs).to(x.dtype)
        dt, b, c = self._ssm_params(xs)
        ssm_state = ssm_state.clone()
        y = selective_state_update(
            ssm_state,
            xs,
            dt,
            -torch.exp(self.A_log.float()),
            b,
            c,
            D=self.D.float(),
            z=z,
            dt_bias=self.dt_proj.bias.float(),
            dt_softplus=True,
            # the step kernel has no backward: auto-dispatch picks it only without autograd
            backend="reference" if self.backend == "reference" else None,
        )
        return self.out_proj(y), conv_state, ssm_state
