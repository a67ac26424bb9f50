"""benchmarks/kernel_report.py: its loop finder on hand-written SASS, and the report itself on
the scan kernels compiled for sm_90 offline (no GPU): the design of issue #18 in machine code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_report  # noqa: E402

SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   FMUL R2, R2, R3 ;
        /*0020*/                   SHFL.BFLY PT, R4, R2, 0x1, 0x1f ;
        /*0030*/              @!P0 BRA 0x10 ;
        /*0040*/                   FADD R2, R2, R4 ;
        /*0050*/                   MUFU.EX2 R5, R2 ;
        /*0060*/                   FFMA R6, R5, R2, R6 ;
        /*0070*/               @P1 BRA 0x50 ;
        /*0080*/                   BRA 0x40 ;
        /*0090*/                   EXIT ;
"""


def parse(text: str) -> list[tuple[int, str]]:
    out = []
    for m in kernel_report.INSTR.finditer(text):
        op, rest = m.group(3), m.group(4).strip()
        out.append((int(m.group(1), 16), f"{op} {rest}" if op.startswith("BRA") else op))
    return out


def test_innermost_loops_on_hand_written_sass() -> None:
    sass = parse(SASS)
    assert [op.split()[0] for _, op in sass][:3] == ["MOV", "FMUL", "SHFL.BFLY"]
    loops = kernel_report.innermost_loops(sass)
    # 0x10-0x30 and 0x50-0x70 are loops; 0x40-0x80 contains the second, so it is not innermost
    assert [[op.split()[0] for op in loop] for loop in loops] == [
        ["FMUL", "SHFL.BFLY", "BRA"],
        ["MUFU.EX2", "FFMA", "BRA"],
    ]


def test_report_on_the_compiled_kernels(tmp_path: Path) -> None:
    pytest.importorskip("triton")
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("triton has no CUDA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "report.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kernel_report.py"), "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if "not found" in res.stderr.lower() or "is missing" in res.stderr:
        pytest.skip("triton's bundled CUDA tools are not available")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["kernel"]: r for r in json.loads(out.read_text())}
    fwd, bwd = rows["_scan_fwd_kernel"], rows["_scan_bwd_kernel"]
    # the design: a channel's states in one thread, time walked in registers
    assert fwd["shuffles_per_element"] == 0
    for r in (fwd, bwd):
        assert r["local_bytes"] == 0 and r["spill_instructions"] == 0, r
        assert 0 < r["instructions_per_element"] and r["registers"] <= 255
    assert res.stdout.strip().splitlines()[-1] == "forward shuffles per element: 0.000"
