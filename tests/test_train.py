"""Training: config loading, checkpoints, exact resume, NaN stop, overfitting, backends agree."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import s2ssm.training.trainer as train_module
from s2ssm.config import Config, load_config
from s2ssm.errors import InvalidInputError
from s2ssm.training.checkpoint import (
    CorruptCheckpointError,
    find_checkpoint,
    load_model,
    load_trainer_state,
    read_checkpoint,
    save_checkpoint,
)
from s2ssm.training.data import batch_indices, generate_sequences, load_dataset, shard_range
from s2ssm.training.trainer import TrainingDivergedError, converged_error, train

TINY = [
    "run.device='cpu'",
    "run.log_every=1",
    "run.checkpoint_every=3",
    "run.progress=false",
    "data.train_sequences=6",
    "data.seq_len=6",
    "data.resolution=16",
    "data.intervention_prob=0.0",
    "vae.latent_dim=6",
    "vae.channels=[4, 8]",
    "vae.decoder_channels=4",
    "vae.pretrain_steps=3",
    "vae.batch_size=8",
    "model.d_model=8",
    "model.d_state=4",
    "model.num_layers=2",
    "optim.steps=5",
    "optim.batch_size=3",
    "optim.warmup_steps=1",
    "sparsity.warmup_steps=1",
    "eval.seq_len=6",
    "eval.context=2",
    "eval.horizon=3",
    "eval.sequences=3",
    "eval.batch_size=2",
]


def tiny_config(out_dir: Path, *extra: str) -> Config:
    return load_config(None, [*TINY, f"run.out_dir={json.dumps(str(out_dir))}", *extra])


@pytest.fixture(scope="module")
def tiny_data():  # type: ignore[no-untyped-def]
    return generate_sequences(("neutral",), 6, 6, seed=0, resolution=16, intervention_prob=0.0)


def losses(history: list[dict[str, object]]) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h["loss"])) for h in history]  # type: ignore[arg-type]


# -- config ----------------------------------------------------------------------------------------


def test_config_loads_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\nnum_layers = 3\nkind = "transformer"\n[data]\nenvs = ["neutral"]\n')
    cfg = load_config(path, ["model.d_model=48", "sparsity.target=1e-4", "run.out_dir=somewhere"])
    assert cfg.model.num_layers == 3 and cfg.model.kind == "transformer"
    assert cfg.model.d_model == 48 and cfg.sparsity.target == 1e-4
    assert cfg.run.out_dir == "somewhere"  # a bare word is a string
    assert cfg.data.envs == ("neutral",)
    assert isinstance(load_config(None, ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        ("model.nope=1", InvalidInputError, "unknown config key"),
        ("nope.x=1", InvalidInputError, "unknown config key"),
        ("model.num_layers=two", TypeError, "model.num_layers must be an integer"),
        ("model.num_layers=0", InvalidInputError, "model.num_layers must be positive"),
        ("model.kind='rnn'", InvalidInputError, "model.kind must be one of"),
        ("model.d_model=30", InvalidInputError, "divisible by model.num_heads"),
        ("run.amp=1", TypeError, "run.amp must be true or false"),
        ("novalue", InvalidInputError, "key=value"),
        ("model=1", InvalidInputError, "section.name"),
        ("data.resolution=20", InvalidInputError, "divisible"),
        ("data.velocity='next_channel'", InvalidInputError, "data.velocity must be one of"),
        ("sparsity.plateau_tol=0", InvalidInputError, "sparsity.plateau_tol must be positive"),
        ("optim.min_lr_ratio=-5", InvalidInputError, r"optim.min_lr_ratio must be in \[0, 1\]"),
        ("vae.beta=-1", InvalidInputError, "vae.beta must be >= 0"),
        ("optim.grad_clip=nan", InvalidInputError, "optim.grad_clip must be a finite number"),
        ("optim.lr=inf", InvalidInputError, "optim.lr must be a finite number"),
        ("vae.lr=0", InvalidInputError, "vae.lr must be positive"),
        ("model.num_objects=3", InvalidInputError, "model.num_objects must be 4"),
        ("optim.weight_decay=-1", InvalidInputError, "optim.weight_decay must be >= 0"),
        ("optim.beta1=5", InvalidInputError, r"optim.beta1 must be in \[0, 1\)"),
        ("run.device='tpu'", InvalidInputError, "run.device must be"),
        ("run.num_threads=100000", InvalidInputError, "run.num_threads must be at most 1024"),
        ("data.intervention_prob=2", InvalidInputError, "data.intervention_prob must be in"),
        ("model.gate_explore=1.5", InvalidInputError, r"model.gate_explore must be in \[0, 1\]"),
        ("model.counterfactual_sequences=-1", InvalidInputError, "must be >= 0"),
        ("model.gate='gumbel'", InvalidInputError, "model.gate must be one of"),
    ],
)
def test_config_rejects_bad_values(override: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_config(None, ["model.num_heads=4", override])


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot be read"):
        load_config(tmp_path, [])  # a directory
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_config(bad)


def test_configs_load_by_preset_name_from_the_installed_package() -> None:
    from s2ssm.config import PRESET_DIR, presets, resolve_config_path

    root = Path(__file__).resolve().parents[1] / "configs"
    assert set(presets()) == {p.stem for p in root.glob("*.toml")}
    assert PRESET_DIR.is_dir()  # the package's own copy (site-packages in CI)
    for name in presets():
        assert (PRESET_DIR / f"{name}.toml").read_bytes() == (root / f"{name}.toml").read_bytes()
    assert load_config("small_cpu") == load_config(root / "small_cpu.toml")
    assert load_config("small_cpu.toml", ["optim.steps=7"]).optim.steps == 7
    with pytest.raises(InvalidInputError, match="neither a file nor a preset; presets: "):
        load_config("small_gpu")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_config("sub/small_cpu.toml")
    assert resolve_config_path("nosuch.toml") == Path("nosuch.toml")


def test_shipped_configs_load() -> None:
    import tomllib

    from s2ssm.config import config_from_dict

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in (
        "small_cpu",
        "paper_s2ssm",
        "paper_dense_ssm",
        "paper_transformer",
        "paper_spartan",
    ):
        load_config(root / f"{name}.toml")
    for path in sorted(root.glob("*.toml")):  # other tools' tables (e.g. [protocol]) aside
        data = tomllib.loads(path.read_text())
        config_from_dict({k: v for k, v in data.items() if k != "protocol"})


# -- data ----------------------------------------------------------------------------------------


def test_batches_and_shards_are_deterministic() -> None:
    a = batch_indices(10, 4, seed=1, step=7, rank=0)
    np.testing.assert_array_equal(a, batch_indices(10, 4, seed=1, step=7, rank=0))
    assert not np.array_equal(a, batch_indices(10, 4, seed=1, step=8, rank=0))
    assert [shard_range(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(InvalidInputError, match="at least the number of ranks"):
        shard_range(1, 0, 2)


def test_training_reads_generated_shards(tmp_path: Path) -> None:
    from s2ssm.sim import io

    io.write_dataset(
        tmp_path / "ds",
        io.DatasetSpec("neutral", 5, 6, seed=4, resolution=16, shard_size=2),
        progress=False,
    )
    expected = generate_sequences(("neutral",), 5, 6, seed=4, resolution=16)
    loaded = load_dataset(str(tmp_path / "ds"))
    np.testing.assert_array_equal(loaded.frames, expected.frames)
    np.testing.assert_array_equal(loaded.local_graphs, expected.local_graphs)
    part = load_dataset(str(tmp_path / "ds"), rank=1, world=2)
    np.testing.assert_array_equal(part.masks, expected.masks[2:])
    cfg = tiny_config(tmp_path / "run", f"data.shards=[{json.dumps(str(tmp_path / 'ds'))}]")
    assert train(cfg, max_steps=4).step == 4


# -- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from s2ssm.models import S2SSM

    cfg = tiny_config(tmp_path)
    model = S2SSM(cfg)
    opt = torch.optim.AdamW(model.parameters())
    model.dynamics.head.weight.data.normal_()
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()  # type: ignore[union-attr]
    opt.step()
    state = {"optimizer": opt.state_dict(), "lambda": {"value": 0.5, "smoothed": None, "steps": 3}}
    path = save_checkpoint(tmp_path, 7, model, cfg, state)
    assert find_checkpoint(tmp_path) == path
    info, tensors = read_checkpoint(tmp_path)
    assert info.step == 7 and info.config == cfg
    for key, value in model.state_dict().items():
        torch.testing.assert_close(tensors[key], value, rtol=0, atol=0)
    loaded, info2 = load_model(path / "model.safetensors")
    assert info2.config == cfg and not loaded.training
    trainer = load_trainer_state(path)
    opt2 = torch.optim.AdamW(loaded.parameters())
    opt2.load_state_dict(trainer["optimizer"])
    assert trainer["lambda"]["value"] == 0.5 and trainer["step"] == 7
    # older checkpoints are pruned, "latest" moves
    for step in (8, 9):
        save_checkpoint(tmp_path, step, model, cfg, state)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_0000008", "step_0000009"]
    assert read_checkpoint(tmp_path)[0].step == 9


def test_checkpoint_errors(tmp_path: Path) -> None:
    assert find_checkpoint(tmp_path) is None
    with pytest.raises(InvalidInputError, match="does not exist"):
        find_checkpoint(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="no checkpoint"):
        read_checkpoint(tmp_path)


# -- training --------------------------------------------------------------------------------------


def test_train_writes_metrics_config_and_checkpoints(tmp_path: Path, tiny_data) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(tmp_path / "run")
    result = train(cfg, data=tiny_data)
    assert result.step == 8
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(8))
    assert [x["phase"] for x in lines] == ["vae"] * 3 + ["dynamics"] * 5
    assert all(np.isfinite(x["loss"]) for x in lines)
    assert lines[3]["lambda"] == 0.0 and lines[4]["lambda"] == cfg.sparsity.lambda_init
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["d_model"] == 8
    assert result.checkpoint is not None
    _model, info = load_model(result.checkpoint)
    assert info.step == 8 and info.config == cfg
    mask = os.umask(0)
    os.umask(mask)
    for file in ("model.safetensors", "trainer.pt"):  # the umask's mode, not mkstemp's 0600
        assert (result.checkpoint / file).stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("stop_at", [2, 5])
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
    stop_at: int,
) -> None:
    full = train(tiny_config(tmp_path / "full"), data=tiny_data)
    cfg = tiny_config(tmp_path / "split")
    first = train(cfg, data=tiny_data, max_steps=stop_at)
    assert first.step == stop_at
    second = train(cfg, data=tiny_data, resume=True)
    assert losses(first.history) + losses(second.history) == losses(full.history)
    a, _ = load_model(full.checkpoint)  # type: ignore[arg-type]
    b, _ = load_model(second.checkpoint)  # type: ignore[arg-type]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    logged = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in logged] == list(range(8))


def test_plateau_stops_the_run_and_a_resume_does_not_train_further(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
) -> None:
    # a tolerance of 2 accepts any two windows: the run stops after 2 windows of 2 steps past
    # the 1-step warm-up, at dynamics step 5 of 20
    extra = ("optim.steps=20", "sparsity.plateau_window=2", "sparsity.plateau_tol=2.0")
    cfg = tiny_config(tmp_path / "run", *extra)
    result = train(cfg, data=tiny_data)
    assert result.step == 3 + 5
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 7 and lines[-1]["converged"] is True
    _model, info = load_model(result.checkpoint)  # type: ignore[arg-type]
    assert info.step == 8
    again = train(cfg, data=tiny_data, resume=True)
    assert again.step == 8 and again.history == []
    # never converging (tolerance 0): all 20 steps
    never = train(tiny_config(tmp_path / "never", *extra[:2], "sparsity.plateau_tol=1e-12"),
                  data=tiny_data)  # fmt: skip
    assert never.step == 23


def test_training_data_carry_the_configured_velocity_cue(tmp_path: Path) -> None:
    # the trainer draws its sequences with data.velocity: the previous ball position shows in
    # the frames (and only there: masks, states and graphs are the cue's own business)
    runs = {}
    for cue in ("none", "previous"):
        cfg = tiny_config(tmp_path / cue, f"data.velocity='{cue}'", "optim.steps=1")
        runs[cue] = train(cfg).model
        assert runs[cue].config.data.velocity == cue
    plain = generate_sequences(("neutral",), 6, 6, seed=0, resolution=16, intervention_prob=0.0)
    cued = generate_sequences(
        ("neutral",), 6, 6, seed=0, resolution=16, intervention_prob=0.0, velocity="previous"
    )
    assert not np.array_equal(plain.frames, cued.frames)
    np.testing.assert_array_equal(plain.masks, cued.masks)
    from s2ssm.training.trainer import _Trainer

    trainer = _Trainer(runs["previous"].config, tmp_path / "x", False, None)
    assert trainer.data is not None
    np.testing.assert_array_equal(trainer.data.frames, cued.frames)


def test_target_run_sets_tau_from_another_runs_converged_error(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
) -> None:
    dense = train(tiny_config(tmp_path / "dense", "sparsity.enabled=false"), data=tiny_data)
    errors = [h["mse"] for h in dense.history if h["phase"] == "dynamics"]
    assert converged_error(tmp_path / "dense", 3) == pytest.approx(sum(errors[-3:]) / 3)
    assert converged_error(tmp_path / "dense", 100) == pytest.approx(sum(errors) / len(errors))
    extra = (
        f"sparsity.target_run={json.dumps(str(tmp_path / 'dense'))}",
        "sparsity.target_ratio=1.5",
        "sparsity.target_window=3",
    )
    cfg = tiny_config(tmp_path / "sparse", *extra)
    sparse = train(cfg, data=tiny_data, max_steps=5)
    want = 1.5 * sum(errors[-3:]) / 3
    state = load_trainer_state(find_checkpoint(tmp_path / "sparse"))  # type: ignore[arg-type]
    assert state["lambda"]["target"] == pytest.approx(want)  # not reset by the warm-up
    resumed = train(cfg, data=tiny_data, resume=True)
    assert resumed.step == 8 and sparse.step == 5
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text('{"step": 0, "phase": "vae"}\n')
    with pytest.raises(InvalidInputError, match="logs no dynamics step"):
        converged_error(tmp_path / "empty", 3)
    with pytest.raises(InvalidInputError, match="does not exist"):
        converged_error(tmp_path / "nowhere", 3)
    with pytest.raises(InvalidInputError, match="target_run needs"):
        tiny_config(tmp_path / "x", extra[0], "sparsity.target_ratio=0")


def test_resume_refuses_a_config_that_computes_another_run(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
) -> None:
    cfg = tiny_config(tmp_path / "run")
    train(cfg, data=tiny_data, max_steps=4)
    config_json = (tmp_path / "run" / "config.json").read_text()
    for change, named in (("optim.lr=0.5", "optim.lr"), ("run.seed=7", "run.seed")):
        with pytest.raises(InvalidInputError, match=rf"other settings \({named}: "):
            train(tiny_config(tmp_path / "run", change), data=tiny_data, resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == config_json  # not overwritten
    with pytest.raises(InvalidInputError, match=r"at step 4, past the 3 steps of this config"):
        train(tiny_config(tmp_path / "run", "optim.steps=0"), data=tiny_data, resume=True)
    # where and how it runs and logs may change
    done = train(tiny_config(tmp_path / "run", "run.log_every=3"), data=tiny_data, resume=True)
    assert done.step == 8


@pytest.mark.parametrize("damage", ["model", "trainer", "latest"])
def test_resume_falls_back_to_the_previous_checkpoint_when_the_newest_is_damaged(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
    damage: str,
) -> None:
    full = train(tiny_config(tmp_path / "full"), data=tiny_data)
    cfg = tiny_config(tmp_path / "run", "run.checkpoint_every=2", "run.log_every=1")
    train(cfg, data=tiny_data, max_steps=6)  # checkpoints at steps 4 and 6 are kept
    newest = tmp_path / "run" / "checkpoints" / "step_0000006"
    if damage == "model":
        file = newest / "model.safetensors"
        file.write_bytes(file.read_bytes()[:200])
    elif damage == "trainer":
        file = newest / "trainer.pt"
        file.write_bytes(file.read_bytes()[:50])
    else:
        shutil.rmtree(newest)
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 6, "pha')  # a line cut short
    resumed = train(cfg, data=tiny_data, resume=True)
    assert resumed.history[0]["step"] == 4 and resumed.step == 8
    assert losses(resumed.history) == losses(full.history)[4:]
    a, _ = load_model(full.checkpoint)  # type: ignore[arg-type]
    b, _ = load_model(resumed.checkpoint)  # type: ignore[arg-type]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == list(range(8))


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path: Path, tiny_data) -> None:  # type: ignore[no-untyped-def]
    result = train(tiny_config(tmp_path / "run"), data=tiny_data)
    assert result.checkpoint is not None
    file = result.checkpoint / "model.safetensors"
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(CorruptCheckpointError, match="cannot be read"):
        load_model(tmp_path / "run")


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = train_module.dynamics_loss
    calls = {"n": 0}

    def poisoned(out, slots, lam, benefit=None):  # type: ignore[no-untyped-def]
        loss, metrics = real(out, slots, lam, benefit)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), metrics

    monkeypatch.setattr(train_module, "dynamics_loss", poisoned)
    cfg = tiny_config(tmp_path / "run")
    with pytest.raises(TrainingDivergedError, match=r"nan at step 5 \(dynamics\).*step_0000003"):
        train(cfg, data=tiny_data)
    assert read_checkpoint(tmp_path / "run")[0].step == 3


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        return grad * float("nan")


def test_nan_gradient_stops_before_the_weights_are_touched(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = train_module.dynamics_loss

    def poisoned(out, slots, lam, benefit=None):  # type: ignore[no-untyped-def]
        loss, metrics = real(out, slots, lam, benefit)
        return _NanGradient.apply(loss), metrics

    monkeypatch.setattr(train_module, "dynamics_loss", poisoned)
    with pytest.raises(
        TrainingDivergedError, match=r"gradient norm became nan at step 3.*step_0000003"
    ):
        train(tiny_config(tmp_path / "run"), data=tiny_data)
    model, info = load_model(tmp_path / "run")
    assert info.step == 3 and all(torch.isfinite(p).all() for p in model.parameters())


def test_a_fresh_start_refuses_to_overwrite_a_run(tmp_path: Path, tiny_data) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(tmp_path / "run", "optim.steps=0")
    train(cfg, data=tiny_data)
    with pytest.raises(InvalidInputError, match="already holds a run"):
        train(cfg, data=tiny_data)
    assert train(cfg, data=tiny_data, resume=True).step == 3  # nothing left to do


def test_tiny_model_overfits_a_tiny_dataset(tmp_path: Path, tiny_data) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        tmp_path / "run",
        "vae.pretrain_steps=20",
        "optim.steps=200",
        "optim.lr=3e-3",
        "optim.weight_decay=0.0",
        "optim.min_lr_ratio=1.0",
        "optim.batch_size=6",
        "model.d_model=32",
        "model.gate_init_bias=10.0",
        "model.gate_logit_bound=0.0",
        "sparsity.enabled=false",
        "run.checkpoint_every=1000",
    )
    result = train(cfg, data=tiny_data)
    mse = [h["mse"] for h in result.history if h["phase"] == "dynamics"]
    # starts at the "nothing moves" error (zero-initialised head), ends far below it
    assert np.mean(mse[-10:]) < 0.2 * np.mean(mse[:3])  # type: ignore[arg-type]


def test_reference_and_triton_interpreter_give_the_same_losses(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
) -> None:
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton on the CPU needs TRITON_INTERPRET=1 from the start")
    extra = ("vae.pretrain_steps=1", "optim.steps=2", "run.checkpoint_every=1000")
    ref = train(tiny_config(tmp_path / "ref", "model.backend='reference'", *extra), data=tiny_data)
    tri = train(tiny_config(tmp_path / "tri", "model.backend='triton'", *extra), data=tiny_data)
    a, b = losses(ref.history), losses(tri.history)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([x for _, x in a], [x for _, x in b], rtol=1e-4, atol=1e-7)


def test_tensorboard_logs_the_metrics_lines(tmp_path: Path, tiny_data) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "tb"
    cfg = tiny_config(tmp_path / "run", f"run.tensorboard={json.dumps(str(board))}")
    train(cfg, data=tiny_data)
    events = EventAccumulator(str(board))
    events.Reload()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [line["step"] for line in lines]
    np.testing.assert_allclose([e.value for e in loss], [line["loss"] for line in lines], rtol=1e-6)
    assert "train/lambda" in events.Tags()["scalars"]


def test_bernoulli_gates_train_from_counterfactual_benefits_and_resume_exactly(
    tmp_path: Path,
    tiny_data,  # type: ignore[no-untyped-def]
) -> None:
    extra = ("model.gate='bernoulli'", "model.gate_explore=0.25", "sparsity.lambda_init=1e-2")
    extra = (*extra, "model.counterfactual_sequences=2")
    full = train(tiny_config(tmp_path / "full", *extra), data=tiny_data)
    logged = [h for h in full.history if h.get("phase") == "dynamics"]
    with_lambda = [h for h in logged if float(h["lambda"]) > 0]  # type: ignore[arg-type]
    assert with_lambda and all("gate_gain" in h for h in with_lambda)
    assert all("gate_gain" not in h for h in logged if float(h["lambda"]) == 0)  # type: ignore[arg-type]
    cfg = tiny_config(tmp_path / "split", *extra)
    first = train(cfg, data=tiny_data, max_steps=6)
    second = train(cfg, data=tiny_data, resume=True)
    assert losses(first.history) + losses(second.history) == losses(full.history)
