"""Offline compilation of Triton kernels for sm_90 (an H100) without a GPU, for the kernel tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMPILE_SCRIPT = """
import importlib, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

def compile_sm90(module, name, consts, num_warps, ptr_types=None, floats=()):
    fn = getattr(importlib.import_module(module), name)
    assert not importlib.import_module(module).INTERPRETED
    sig = {}
    for arg in fn.arg_names:
        if arg in consts:
            sig[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            sig[arg] = (ptr_types or {}).get(arg, "*fp32")
        else:
            sig[arg] = "fp32" if arg in floats else "i32"
    src = ASTSource(fn, sig, constexprs=consts)
    opts = {"num_warps": num_warps, "enable_fp_fusion": True}
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
    assert kernel.asm["cubin"], name
    print("compiled", name)
"""


def compile_kernels_offline(calls: str) -> list[str]:
    """Compile kernels for sm_90 in a subprocess with the real (non-interpreted) Triton compiler;
    needs no GPU, only triton's bundled ptxas. Returns the names compiled."""
    pytest.importorskip("triton")
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("triton has no CUDA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT + calls], capture_output=True, text=True, env=env
    )
    if "ptxas" in res.stderr and "not found" in res.stderr.lower():
        pytest.skip("ptxas is not available")
    assert res.returncode == 0, res.stderr[-3000:]
    return [line.split()[1] for line in res.stdout.splitlines() if line.startswith("compiled")]
