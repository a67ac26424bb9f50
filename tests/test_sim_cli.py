"""``s2ssm generate``: sharded files, manifest, resume after an interruption, bad arguments,
CITRIS export, and the torch datasets over the simulator and over the files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from s2ssm import sim
from s2ssm.cli.generate import main
from s2ssm.errors import InvalidInputError
from s2ssm.sim import io as sim_io


def run_cli(*args: str) -> int:
    return main(["--quiet", *args])


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_writes_shards_and_manifest(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "data"
    args = ["--env", "bounce", "--sequences", "11", "--length", "7", "--out", str(out)]
    assert run_cli(*args, "--shard-size", "4", "--seed", "9", "--format", fmt) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_shards"] == 3
    assert manifest["config"]["env"] == "bounce" and manifest["config"]["seed"] == 9
    assert manifest["format_version"] == sim_io.FORMAT_VERSION
    assert manifest["fields"]["frames"]["shape"] == [11, 7, 32, 32, 3]
    assert manifest["fields"]["local_graphs"] == {"dtype": "|b1", "shape": [11, 7, 4, 5]}
    assert [s["n_sequences"] for s in manifest["shards"]] == [4, 4, 3]
    assert not [name for name in listing(out) if name.endswith(".tmp")]
    data = sim_io.open_dataset(out)
    data.verify()
    assert len(data) == 11
    want = sim.generate("bounce", 11, 7, seed=9)
    for i in (0, 3, 4, 10, -1):
        item = data[i]
        for name, array in want.arrays().items():
            np.testing.assert_array_equal(item[name], array[i])
    assert isinstance(data.shard_arrays(0)["frames"], np.memmap)


def test_resume_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--env", "sine", "--sequences", "10", "--length", "5", "--shard-size", "3"]
    clean = tmp_path / "clean"
    assert run_cli(*args, "--out", str(clean)) == 0

    out = tmp_path / "resumed"
    calls = {"n": 0}
    real_generate = sim_io.generate

    def flaky(*a: object, **kw: object) -> sim.PongBatch:
        calls["n"] += 1
        if calls["n"] == 4:  # 1 validation call, then shards 0 and 1, then Ctrl-C
            raise KeyboardInterrupt
        return real_generate(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sim_io, "generate", flaky)
    assert run_cli(*args, "--out", str(out)) == 130
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    assert listing(out) == ["manifest.json", "shard_00000.npz", "shard_00001.npz"]
    # A half-written shard left by a hard kill is ignored and replaced.
    (out / ".shard_00002.npz.x.tmp").write_bytes(b"partial")
    (out / "shard_00002.npz").write_bytes(b"junk not in the manifest")

    monkeypatch.setattr(sim_io, "generate", real_generate)
    written: list[int | None] = []

    def recording(*a: Any, **kw: Any) -> sim.PongBatch:
        written.append(kw.get("start_index"))
        return real_generate(*a, **kw)

    monkeypatch.setattr(sim_io, "generate", recording)
    assert run_cli(*args, "--out", str(out)) == 0
    assert written == [None, 6, 9]  # validation call, then only the missing shards
    assert listing(out) == listing(clean)
    a = json.loads((clean / "manifest.json").read_text())["shards"]
    b = json.loads((out / "manifest.json").read_text())["shards"]
    assert a == b  # same files, same sha256


def test_rerun_with_other_settings_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = str(tmp_path / "d")
    assert run_cli("--sequences", "2", "--length", "3", "--out", out) == 0
    before = listing(Path(out))
    with pytest.raises(SystemExit) as exit_info:
        run_cli("--sequences", "2", "--length", "4", "--out", out)
    assert exit_info.value.code == 2
    assert "holds a different dataset" in capsys.readouterr().err
    assert listing(Path(out)) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "pong"], "valid names: neutral"),
        (["--sequences", "0"], "positive integer"),
        (["--length", "-2"], "positive integer"),
        (["--resolution", "200"], "16 to 128"),
        (["--resolution", "x"], "positive integer"),
        (["--format", "csv"], "invalid choice"),
        (["--intervention-prob", "1.5"], "--intervention-prob: expected a probability in [0, 1]"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    out = tmp_path / "never"
    base = {"--sequences": "2", "--length": "3", "--out": str(out)}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    argv = [item for pair in base.items() for item in pair]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or listing(out) == []


def test_unwritable_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        run_cli("--sequences", "1", "--length", "2", "--out", str(blocker))
    assert "not a directory" in capsys.readouterr().err
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit):
            run_cli("--sequences", "1", "--length", "2", "--out", str(locked / "sub"))
        assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--sequences", "1", "--length", "2", "--out", str(blocker / "sub"))
    assert "cannot write" in capsys.readouterr().err


def test_citris_export_reads_back_through_citris_loader(tmp_path: Path) -> None:
    from citris_loader import load_datasets

    from s2ssm.sim.citris import CITRIS_FILES, CITRIS_KEYS

    out = tmp_path / "pong"
    assert run_cli("--citris", "--sequences", "2", "--length", "60", "--out", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(CITRIS_FILES)
    train = np.load(out / "train.npz")
    assert train["images"].shape == (120, 32, 32, 4) and train["images"].dtype == np.uint8
    assert train["latents"].shape == (120, 8) and train["latents"].dtype == np.float32
    assert train["targets"].shape == (119, 8) and train["keys"].dtype.kind == "U"
    assert list(train["keys"]) == list(CITRIS_KEYS)
    batch = sim.generate("neutral", 1, 120, seed=0, velocity="next_channel")
    np.testing.assert_array_equal(train["images"][..., :3], batch.frames[0, ..., :3])
    np.testing.assert_array_equal(train["images"][..., 3], 255 - batch.frames[0, ..., 3])
    np.testing.assert_array_equal(train["latents"][:, 2], batch.states[0, :, 2])  # ball_x
    np.testing.assert_array_equal(train["targets"][:, 4], batch.interventions[0, 1:, 3])
    assert not train["targets"][:, [1, 6, 7]].any()

    data = load_datasets(str(out), seq_len=3)
    names = ["ball-vel-dir", "ball-x", "ball-y", "paddle-left-y", "paddle-right-y"]
    assert data["train"].target_names_l == names
    assert list(data["var_info"]) == [  # ball-vel-magn is constant (2) in neutral: dropped
        "ball-vel-dir", "ball-x", "ball-y", "paddle-left-y", "paddle-right-y", "score-left",
        "score-right",
    ]  # fmt: skip
    imgs, targets = data["train"][5]
    assert imgs.shape == (3, 4, 32, 32) and targets.shape == (2, 5)
    assert imgs.min() >= -1.0 and imgs.max() <= 1.0
    for split, size in (("val", 30), ("test", 30)):
        indep = data[split]
        assert len(indep) == size
        img, latents = indep[0]
        assert img.shape == (4, 32, 32) and latents.shape == (7,)
        assert np.abs(indep.latents[:, 1:5]).max() <= 1.0  # positions / 16 - 1
        triplets = data[f"{split}_triplet"]
        assert len(triplets) == 12
        imgs, mask, latents = triplets[0]
        assert imgs.shape == (3, 4, 32, 32) and mask.shape == (5,) and latents.shape == (3, 7)
        raw = np.load(out / f"{split}_triplets.npz")
        source = np.load(out / f"{split}.npz")
        m = raw["targets"].astype(bool)
        assert m.any(axis=1).all(), "at least one variable from frame 2"
        assert not m[:, ~(source["targets"].sum(0) > 0)].any(), "only intervened ones switch"
        first, second, mixed = (raw["latents"][:, k] for k in range(3))
        np.testing.assert_array_equal(mixed, np.where(m, second, first))
        frames, _ = sim.render(
            np.stack([mixed[:, CITRIS_KEYS.index(k)] for k in (
                "paddle_left_y", "paddle_right_y", "ball_x", "ball_y", "ball_vel_dir",
                "ball_vel_magn", "score_left", "score_right",
            )], axis=-1),
            velocity="next_channel",
        )  # fmt: skip
        np.testing.assert_array_equal(raw["images"][:, 2, ..., :3], frames[..., :3])
        pairs_in_source = (raw["images"][:, :2, None] == source["images"][None, None]).all(
            axis=(-1, -2, -3)
        )
        assert pairs_in_source.any(axis=-1).all(), "frames 1 and 2 come from the split's sequence"

    again = tmp_path / "again"
    run_cli("--citris", "--sequences", "2", "--length", "60", "--out", str(again))
    for name in CITRIS_FILES:
        a, b = np.load(out / name), np.load(again / name)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(
    ("option", "value"),
    [("--occlusion", None), ("--velocity", "previous"), ("--format", "npy"), ("--shard-size", "1")],
)
def test_citris_export_refuses_options_it_cannot_carry(
    tmp_path: Path, option: str, value: str | None, capsys: pytest.CaptureFixture
) -> None:
    extra = [option] if value is None else [option, value]
    args = ["--citris", "--sequences", "1", "--length", "40", "--out", str(tmp_path / "c")]
    with pytest.raises(SystemExit):
        run_cli(*args, *extra)
    assert f"cannot carry {option}" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_citris_export_needs_interventions_and_enough_frames(tmp_path: Path) -> None:
    from s2ssm.sim.citris import export_citris

    with pytest.raises(InvalidInputError, match="intervention_prob"):
        export_citris(tmp_path, "neutral", 100, seed=0, intervention_prob=0.0)
    with pytest.raises(InvalidInputError, match="n_frames"):
        export_citris(tmp_path, "neutral", 19, seed=0)


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_torch_datasets(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from s2ssm.sim.torch_data import PongIterableDataset, PongShardDataset

    want = sim.generate("friction", 9, 4, seed=2)
    stream = PongIterableDataset("friction", 9, 4, seed=2, batch_size=4)
    items = list(stream)
    assert len(items) == 9 and isinstance(items[0]["frames"], torch.Tensor)
    np.testing.assert_array_equal(torch.stack([i["frames"] for i in items]).numpy(), want.frames)
    loader = torch.utils.data.DataLoader(stream, batch_size=3, num_workers=2)
    got = torch.cat([b["states"] for b in loader]).numpy()
    order = np.lexsort(got.reshape(9, -1).T)
    np.testing.assert_array_equal(got[order], want.states[np.lexsort(want.states.reshape(9, -1).T)])

    out = tmp_path / "d"
    assert (
        run_cli(
            "--env",
            "friction",
            "--sequences",
            "9",
            "--length",
            "4",
            "--seed",
            "2",
            "--format",
            "npy",
            "--shard-size",
            "5",
            "--out",
            str(out),
        )
        == 0
    )
    files = PongShardDataset(out)
    assert len(files) == 9
    batch = next(iter(torch.utils.data.DataLoader(files, batch_size=9)))
    np.testing.assert_array_equal(batch["masks"].numpy(), want.masks)
    np.testing.assert_array_equal(batch["local_graphs"].numpy(), want.local_graphs)


def test_add_parser_registers_generate(tmp_path: Path) -> None:
    import argparse

    from s2ssm.cli.generate import add_parser

    parser = argparse.ArgumentParser(prog="s2ssm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "d"
    args = parser.parse_args(
        ["generate", "--env", "3", "--sequences", "2", "--length", "3", "--out", str(out)]
    )
    assert args.env == "right_mirror"
    assert args.run(args) == 0
    assert sim_io.open_dataset(out)[1]["env_ids"] == 3


def _flip_a_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def test_a_resume_rewrites_damaged_shards_and_loading_refuses_them(tmp_path: Path) -> None:
    from s2ssm.training.data import load_dataset

    args = ["--env", "sine", "--sequences", "10", "--length", "5", "--shard-size", "3"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert run_cli(*args, "--out", str(clean)) == 0
    assert run_cli(*args, "--out", str(out)) == 0
    _flip_a_byte(out / "shard_00001.npz")
    with pytest.raises(sim_io.DatasetError, match=r"shard_00001\.npz: sha256 mismatch"):
        load_dataset(str(out))
    # a tampered start_index, and a truncated shard
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][2]["start_index"] = 5
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "shard_00003.npz").write_bytes((out / "shard_00003.npz").read_bytes()[:100])
    assert run_cli(*args, "--out", str(out)) == 0  # resumes: the damaged shards again
    assert listing(out) == listing(clean)
    a = json.loads((clean / "manifest.json").read_text())["shards"]
    b = json.loads((out / "manifest.json").read_text())["shards"]
    assert a == b
    np.testing.assert_array_equal(load_dataset(str(out)).frames, load_dataset(str(clean)).frames)


def test_a_manifest_that_lost_a_shard_entry_is_refused(tmp_path: Path) -> None:
    args = ["--env", "neutral", "--sequences", "7", "--length", "3", "--shard-size", "3"]
    out = tmp_path / "data"
    assert run_cli(*args, "--out", str(out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["shards"][1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(sim_io.DatasetError, match="a shard entry is missing or moved"):
        sim_io.open_dataset(out)
    del manifest["shards"][-1]  # now the first shards tile, but too few sequences
    manifest["shards"] = manifest["shards"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(sim_io.DatasetError, match="hold 3 sequences in 1 shards"):
        sim_io.open_dataset(out)
