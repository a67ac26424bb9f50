"""Backend selection shared by the ops: Triton for CUDA tensors when triton imports, else PyTorch.

The choice, in order of precedence:

1. the ``backend`` argument of the op (``"triton"`` or ``"reference"``; ``None``: no opinion);
2. the environment variable ``S2SSM_KERNEL_BACKEND`` (``triton``, ``reference`` or ``auto``);
3. auto: ``"triton"`` when every tensor is on a CUDA device and triton is importable, otherwise
   ``"reference"``.

Forcing ``"triton"`` on CPU tensors works only under the Triton interpreter (``TRITON_INTERPRET=1``
set before the first Triton kernel is used); otherwise a clear error is raised.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType
from typing import Literal

import torch

from s2ssm.errors import InvalidInputError

__all__ = [
    "BACKEND_ENV_VAR",
    "Backend",
    "cdiv",
    "has_triton",
    "kernel_module",
    "resolve_backend",
    "triton_interpret",
]

BACKEND_ENV_VAR = "S2SSM_KERNEL_BACKEND"
Backend = Literal["triton", "reference"]
_VALID = ("triton", "reference")


@functools.cache
def has_triton() -> bool:
    """Whether the ``triton`` package can be imported (checked once, without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["triton"] = None
        return False


def triton_interpret() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to run kernels on the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def resolve_backend(
    backend: str | None, *tensors: torch.Tensor | None, kernel_ok: bool = True
) -> Backend:
    """Pick the backend for an op called on ``tensors`` (``None`` entries are ignored).

    ``kernel_ok=False`` (e.g. float64 inputs, which the kernels do not take) makes the automatic
    choice fall back to the reference; a forced ``"triton"`` is returned anyway and then fails
    with the op's own clear error.
    """
    choice = backend
    if choice is None:
        env = os.environ.get(BACKEND_ENV_VAR, "").strip().lower()
        if env not in ("", "auto", *_VALID):
            raise InvalidInputError(
                f"environment variable {BACKEND_ENV_VAR}={env!r}: expected one of "
                f"'auto', 'triton', 'reference'"
            )
        choice = None if env in ("", "auto") else env
    if choice is not None and choice not in _VALID:
        raise InvalidInputError(f"backend={choice!r}: expected None, 'triton' or 'reference'")
    present = [t for t in tensors if t is not None]
    if choice is None:
        on_cuda = bool(present) and all(t.is_cuda for t in present)
        return "triton" if on_cuda and kernel_ok and has_triton() else "reference"
    if choice == "triton":
        if not has_triton():
            raise InvalidInputError("backend='triton' requested but the triton package is missing")
        if not all(t.is_cuda for t in present) and not triton_interpret():
            raise InvalidInputError(
                "backend='triton' on CPU tensors needs the Triton interpreter: set "
                "TRITON_INTERPRET=1 before the first Triton kernel is used"
            )
    return choice  # type: ignore[return-value]


def cdiv(a: int, b: int) -> int:
    """Ceiling division of positive ints."""
    return -(-a // b)


def kernel_module(name: str, *tensors: torch.Tensor) -> ModuleType:
    """Import the Triton kernel module ``s2ssm.triton_kernels.<name>`` on first use.

    Kernels are decorated when that module is first imported, so ``TRITON_INTERPRET`` must be
    set before the first launch; CPU tensors with compiled (non-interpreted) kernels raise.
    """
    mod = importlib.import_module(f"s2ssm.triton_kernels.{name}")
    if not mod.INTERPRETED and not all(t.is_cuda for t in tensors):
        raise InvalidInputError(
            "Triton kernels were loaded in compiled mode (TRITON_INTERPRET was not set at their "
            "first use) and cannot run on CPU tensors; set TRITON_INTERPRET=1 before the first "
            "launch or move the tensors to a CUDA device"
        )
    return mod
