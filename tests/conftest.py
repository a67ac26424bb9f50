"""Shared pytest setup: hypothesis profiles (``HYPOTHESIS_PROFILE=dev|ci``) and the gpu marker."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

try:
    import torch
except ImportError:  # the graph and simulator tests run without torch
    torch = None  # type: ignore[assignment]

if torch is not None and not torch.cuda.is_available():
    # Triton kernels run under the interpreter on the CPU; this must be set before the first
    # kernel launch (the kernels are decorated lazily, at first use).
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def exact_fp32_matmul():
    """Full fp32 matmuls on the GPU (no TF32) for reference computations, restored after."""
    if torch is None or not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is available."""
    if torch is not None and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
