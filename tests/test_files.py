"""Atomic writes (s2ssm.files): the target appears whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from s2ssm.files import atomic_write, atomic_write_stream, atomic_write_text, umask, write_json


def test_atomic_write_replaces_the_target_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.npy"
    names: list[str] = []

    def write(tmp: str) -> None:
        names.append(tmp)
        Path(tmp).write_bytes(b"new")

    atomic_write(target, write)
    assert target.read_bytes() == b"new"
    assert Path(names[0]).name.startswith(".out.") and names[0].endswith(".npy")
    assert os.listdir(target.parent) == ["out.npy"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask()
    atomic_write_stream(target, lambda f: f.write(b"stream"), temp_suffix=".tmp")
    assert target.read_bytes() == b"stream"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    def half_written(f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_stream(target, half_written, temp_suffix=".tmp")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_write_json_round_trips(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": [1, 2.5], "a": "x"})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": "x", "b": [1, 2.5]}
