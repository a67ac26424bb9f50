"""Evaluation, plots and the train / eval / plot command line on a tiny trained checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s2ssm.cli.world_model import add_parser
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.metrics import evaluate, evaluate_env, format_markdown, learned_local_graphs
from s2ssm.models import local_graph_from_edges
from s2ssm.training.checkpoint import load_model

TINY_TOML = """
[run]
device = "cpu"
progress = false
checkpoint_every = 100
[data]
envs = ["neutral"]
train_sequences = 4
seq_len = 6
resolution = 16
[vae]
latent_dim = 6
channels = [4, 8]
decoder_channels = 4
pretrain_steps = 2
batch_size = 8
[model]
d_model = 8
d_state = 4
[optim]
steps = 3
batch_size = 2
[eval]
envs = ["neutral"]
sequences = 3
seq_len = 6
batch_size = 2
context = 2
horizon = 3
fit_code_steps = 2
"""


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="s2ssm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    out = root / "run"
    assert (
        cli(["train", "--config", str(config), "--out-dir", str(out), "--set", "run.seed=3"]) == 0
    )
    return out


def test_learned_local_graphs_match_the_torch_path_product() -> None:
    edges = torch.rand(3, 5, 2, 4, 5) < 0.4
    np.testing.assert_array_equal(
        learned_local_graphs(edges), local_graph_from_edges(edges).numpy()
    )


def cell_shd(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """SHD with double-counted reversals and ignored self-loops = differing off-diagonal cells."""
    k = pred.shape[-2]
    off = ~np.eye(k, k + 1, dtype=bool)
    return ((pred != true) & off).sum(axis=(-2, -1))


def test_eval_scores_are_consistent_with_the_raw_graphs(run_dir: Path) -> None:
    model, info = load_model(run_dir)
    result, raw = evaluate_env(model, info.config, "neutral", torch.device("cpu"))
    learned, truth = raw["learned"], raw["truth"]
    assert learned.shape == truth.shape == (3, 5, 4, 5)
    assert result.shd_local == pytest.approx(cell_shd(learned, truth).mean())
    assert result.shd_local_dense == pytest.approx(cell_shd(np.ones_like(truth), truth).mean())
    assert result.shd_local_empty == pytest.approx(cell_shd(np.zeros_like(truth), truth).mean())
    share = learned.reshape(-1, 4, 5).mean(0)
    np.testing.assert_allclose(result.learned_global, share.round(4))
    glob = share > info.config.eval.global_min_fraction
    assert result.shd_global == cell_shd(glob, np.asarray(result.true_global))
    slots = raw["slots"]
    mse = float(((raw["pred"][:, :-1] - slots[:, 1:]) ** 2).mean())
    assert result.mse_1step == pytest.approx(mse)
    assert len(result.mse_rollout_steps) == 3
    assert result.mse_rollout == pytest.approx(np.mean(result.mse_rollout_steps))
    assert 0.0 <= result.edge_density <= 1.0 and result.code == "trained"


def test_identified_environments_are_scored_after_the_context_only(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2ssm.config import apply_overrides
    from s2ssm.evaluation import metrics

    model, info = load_model(run_dir)
    config = apply_overrides(info.config, ["eval.env_code='identified'", "eval.context=3"])
    seen: list[torch.Tensor] = []
    real = metrics.identify_env_codes

    def spy(dynamics, slots, context, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(slots[:, :context].clone())
        return real(dynamics, slots, context, *args, **kwargs)

    monkeypatch.setattr(metrics, "identify_env_codes", spy)
    result, raw = evaluate_env(model, config, "neutral", torch.device("cpu"))
    assert result.code == "identified" and len(seen) == 1
    slots, pred = raw["slots"], raw["pred"]
    torch.testing.assert_close(seen[0], slots[:, :3])
    # scored: the transitions t -> t + 1 with t >= context - 1, never those inside the fit
    learned, truth = raw["learned"], raw["truth"]
    assert learned.shape == truth.shape == (3, 3, 4, 5)
    assert result.shd_local == pytest.approx(cell_shd(learned, truth).mean())
    mse = float(((pred[:, 2:-1] - slots[:, 3:]) ** 2).mean())
    assert result.mse_1step == pytest.approx(mse)
    assert sum(e["n"] for e in result.events.values()) == 3 * 3
    assert raw["code"].shape == (3, model.dynamics.cfg.d_model)  # one code per sequence
    with pytest.raises(InvalidInputError, match=r"eval\.context"):
        apply_overrides(info.config, ["eval.env_code='identified'", "eval.context=1"])


def test_eval_command_writes_markdown_and_json(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert cli(["eval", str(run_dir), "--out", str(out), "--env", "neutral", "--env", "sine"]) == 0
    report = json.loads((out / "eval.json").read_text())
    envs = [r["env"] for r in report["results"]]
    assert envs == ["neutral", "sine"]
    assert [r["code"] for r in report["results"]] == ["trained", "fitted"]
    table = (out / "eval.md").read_text()
    assert "| neutral | trained |" in table and "| sine | fitted |" in table
    assert "SHD local" in capsys.readouterr().out
    for r in report["results"]:
        assert np.isfinite(r["mse_1step"]) and r["shd_local"] >= 0


def test_eval_json_has_the_baselines_and_edges_under_stable_keys(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "somewhere" / "scores.json"
    args = ["eval", str(run_dir), "--out", str(tmp_path), "--json", str(target)]
    assert cli([*args, "--split", "validation"]) == 0
    report = json.loads(target.read_text())
    assert report["split"] == "validation" and not (tmp_path / "eval.json").exists()
    (r,) = report["results"]
    base = r["baselines"]
    assert base["empty"]["shd_local"] == pytest.approx(r["shd_local_empty"])
    assert base["best_constant"]["shd_local"] == pytest.approx(r["shd_best_constant"])
    assert np.asarray(base["best_constant"]["graph"]).shape == (4, 5)
    # the tiny config is not told the targets: no tokens-only graph
    assert base["tokens_only"] is None and np.isnan(r["shd_tokens_only"])
    # the best constant graph never scores worse than the empty one on its own distribution's
    # majority cells here (neutral: ball -> paddles nearly always), and both are real numbers
    assert 0 <= base["best_constant"]["shd_local"] <= base["empty"]["shd_local"]
    edge = r["edges"]["left_paddle"]["ball"]
    assert set(edge) == {"auroc", "p_open_true", "p_open_false", "n_true", "n"}
    assert edge["n"] == 3 * 5 and 0 <= edge["n_true"] <= edge["n"]
    assert "left_paddle" not in r["edges"]["left_paddle"]  # no self edge
    assert "ball -> left_paddle" in (tmp_path / "eval.md").read_text()
    # the test split is another set of sequences
    assert cli(["eval", str(run_dir), "--out", str(tmp_path)]) == 0
    test = json.loads((tmp_path / "eval.json").read_text())
    assert test["split"] == "test" and test["eval_seed"] != report["eval_seed"]
    # side by side: a row per report, labelled by its directory
    capsys.readouterr()
    assert cli(["eval-table", str(target), str(tmp_path / "eval.json")]) == 0
    rows = [li for li in capsys.readouterr().out.splitlines() if li.startswith("| ")]
    assert rows[1].startswith("| somewhere | validation | neutral |")
    assert rows[2].startswith(f"| {tmp_path.name} | test | neutral |")
    assert f"| {r['shd_local']:.3f} | {r['shd_local_empty']:.3f} |" in rows[1]
    # the errors by transition event: every transition in exactly one event
    events = r["events"]
    assert set(events) == {"collision", "point", "near_paddle", "other"}
    assert sum(e["n"] for e in events.values()) == 3 * 5
    assert set(events["other"]["mse"]) == {"left_paddle", "right_paddle", "ball", "score"}
    assert "1-step error by transition event" in (tmp_path / "eval.md").read_text()
    capsys.readouterr()
    assert cli(["eval-table", "--events", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| run | env | collision n |") and "| somewhere | neutral |" in out
    with pytest.raises(InvalidInputError, match=r"not a readable eval\.json"):
        cli(["eval-table", str(tmp_path / "missing.json")])


def test_eval_rejects_unknown_environments_and_checkpoints(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown environment"):
        evaluate(run_dir, envs=["nowhere"], out_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="no checkpoint"):
        evaluate(tmp_path, out_dir=tmp_path)


def test_format_markdown_has_one_row_per_result(run_dir: Path, tmp_path: Path) -> None:
    results, _ = evaluate(run_dir, out_dir=tmp_path)
    table = format_markdown(results, "title")
    assert table.startswith("### title")
    assert len([line for line in table.splitlines() if line.startswith("| neutral")]) == 1


def test_plot_command_writes_pngs(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    assert cli(["plot", str(run_dir), "--out", str(out)]) == 0
    for name in ("graphs_neutral.png", "rollout_neutral.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_train_command_resumes(run_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--out-dir", str(out), "--set", "run.log_every=1"]
    assert cli([*args, "--set", "optim.steps=1"]) == 0
    assert cli([*args, "--resume"]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]
    _, info = load_model(out)
    assert info.step == 5


@pytest.mark.parametrize("told", [False, True])
def test_the_floor_knows_the_targets_exactly_when_the_model_does(
    told: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s2ssm.evaluation.metrics as ev
    from s2ssm import sim
    from s2ssm.config import apply_overrides, config_from_dict

    seen: dict[str, object] = {}
    monkeypatch.setattr(ev, "slot_noise_floor", lambda *a, **kw: seen.update(kw) or 0.5)
    cfg = apply_overrides(
        config_from_dict({}),
        [f"model.use_interventions={str(told).lower()}", "eval.sequences=3", "eval.seq_len=12"],
    )
    states = ev._eval_states(cfg, "neutral")
    assert ev._noise_floor(None, cfg, "neutral", torch.device("cpu"), states) == 0.5  # type: ignore[arg-type]
    want = sim.generate(
        "neutral", 3, 12, seed=cfg.eval.seed, intervention_prob=cfg.eval.intervention_prob
    ).interventions
    if told:
        np.testing.assert_array_equal(seen["targets"], want)  # type: ignore[arg-type]
    else:
        assert seen["targets"] is None
