"""Small readable modules over the kernels of :mod:`s2ssm.triton_kernels`."""

from __future__ import annotations

from s2ssm.nn.mamba import Mamba
from s2ssm.nn.slot_attention import SlotAttention

__all__ = ["Mamba", "SlotAttention"]
