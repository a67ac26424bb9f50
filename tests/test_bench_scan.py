"""benchmarks/bench_scan_cpu.py runs end to end on tiny shapes (no timing assertions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scan_cpu_tiny(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_scan_cpu", ROOT / "benchmarks" / "bench_scan_cpu.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "SHAPES", ((2, 3, 4, 9), (1, 2, 2, 40)))
    assert bench.main(["--repeats", "1", "--max-ref-length", "16"]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 1") or line.startswith("| 2")
    ]
    assert len(rows) == 2
    assert "x**" in rows[0]  # timed against the loop reference (after comparing results)
    assert "skipped" in rows[1]  # longer than --max-ref-length
