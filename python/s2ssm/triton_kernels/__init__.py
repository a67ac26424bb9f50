"""Custom kernels of S2-SSM with plain PyTorch references: selective scan and masked slot attention.

Each op has a public function that dispatches (see :mod:`s2ssm.triton_kernels._dispatch`): Triton
for CUDA tensors when triton is importable, the PyTorch reference otherwise; the ``backend``
argument or the ``S2SSM_KERNEL_BACKEND`` environment variable forces either path. Triton is an
optional dependency: this package imports without it.
"""

from __future__ import annotations

from s2ssm.triton_kernels._dispatch import BACKEND_ENV_VAR, has_triton, resolve_backend
from s2ssm.triton_kernels.selective_scan import (
    selective_scan,
    selective_scan_triton,
    selective_state_update,
    selective_state_update_triton,
)
from s2ssm.triton_kernels.selective_scan_chunked import selective_scan_chunked
from s2ssm.triton_kernels.selective_scan_ref import (
    selective_scan_ref,
    selective_state_update_ref,
)
from s2ssm.triton_kernels.slot_attention import slot_attention, slot_attention_triton
from s2ssm.triton_kernels.slot_attention_ref import slot_attention_ref

__all__ = [
    "BACKEND_ENV_VAR",
    "has_triton",
    "resolve_backend",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_ref",
    "selective_scan_triton",
    "selective_state_update",
    "selective_state_update_ref",
    "selective_state_update_triton",
    "slot_attention",
    "slot_attention_ref",
    "slot_attention_triton",
]
