"""benchmarks/bench_train.py: argument parsing, the growth exponent, the saved-bytes counter and
a tiny end-to-end run (no timing assertions)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_train", ROOT / "benchmarks" / "bench_train.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_lengths(bench: ModuleType) -> None:
    assert bench.parse_lengths("32,64, 128") == [32, 64, 128]
    for bad in ("", "x", "64,32", "32,32", "1,4"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_lengths(bad)


def test_growth_exponents(bench: ModuleType) -> None:
    rows: list[dict[str, Any]] = []
    for length in (32, 64, 256):
        rows.append({"kind": "ssm", "length": length, "step_ms": 3.0 * length})
        rows.append({"kind": "transformer", "length": length, "step_ms": 0.5 * length**2})
    bench.growth(rows, "step_ms")
    ssm = [r for r in rows if r["kind"] == "ssm"]
    att = [r for r in rows if r["kind"] == "transformer"]
    assert "step_ms_exp" not in ssm[0]
    for r in ssm[1:]:
        assert math.isclose(r["step_ms_exp"], 1.0)
    for r in att[1:]:
        assert math.isclose(r["step_ms_exp"], 2.0)


def test_saved_bytes_counts_each_storage_once(bench: ModuleType) -> None:
    x = torch.randn(10, 7, requires_grad=True)
    with bench.SavedBytes() as saved:
        y = (x * x).sum()  # saves x twice: one storage
    assert saved.total == x.untyped_storage().nbytes()
    y.backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())
    with bench.SavedBytes() as none:
        with torch.no_grad():
            (x * x).sum()
    assert none.total == 0


def test_tiny_run_writes_json_and_plot(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    argv = ["--lengths", "4,8", "--repeats", "1", "--batch", "1", "--d-model", "16"]
    argv += ["--device", "cpu", "--json", str(out_json), "--plot", str(out_png)]
    assert bench.main(argv) == 0
    rows = json.loads(out_json.read_text(encoding="utf-8"))["rows"]
    assert [(r["kind"], r["length"]) for r in rows] == [
        ("ssm", 4),
        ("transformer", 4),
        ("ssm", 8),
        ("transformer", 8),
    ]
    assert all(r["step_ms"] > 0 and r["saved_mib"] > 0 for r in rows)
    assert "step_ms_exp" in rows[2] and "saved_mib_exp" in rows[3]
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "| 8 | transformer |" in capsys.readouterr().out
