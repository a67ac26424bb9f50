"""s2ssm.experiments: protocol settings, aggregation math, tables, the resumable runner, the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from s2ssm import sim
from s2ssm.config import Config, config_from_dict
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.evaluation import metrics
from s2ssm.experiments import phases
from s2ssm.experiments.finetune import finetune_dynamics, set_env_code, trained_code
from s2ssm.experiments.phases import evaluate_model, run_protocol
from s2ssm.experiments.protocol import (
    COMPOSITE_ENVS,
    DEFAULT_MODELS,
    MODEL_VARIANTS,
    PRESETS,
    SIMPLE_ENVS,
    Protocol,
    Unit,
    load_protocol,
    model_config,
    plan_units,
    preset,
    vae_config,
)
from s2ssm.experiments.report import (
    aggregate,
    edge_table,
    format_mean_std,
    markdown_tables,
    mean_std,
)
from s2ssm.experiments.rundir import RunDirectory
from s2ssm.models import S2SSM
from s2ssm.training.data import generate_sequences

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "run": {"num_threads": 1, "log_every": 1, "checkpoint_every": 2, "progress": False},
    "data": {"train_sequences": 4, "seq_len": 6, "resolution": 16},
    "vae": {
        "latent_dim": 4,
        "channels": [4, 8],
        "decoder_channels": 4,
        "pretrain_steps": 2,
        "batch_size": 8,
    },
    "model": {
        "d_model": 8,
        "num_layers": 1,
        "d_state": 2,
        "expand": 1,
        "backend": "reference",
        "max_len": 8,
    },
    "sparsity": {"warmup_steps": 1},
    "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 1},
    "eval": {"sequences": 2, "seq_len": 6, "batch_size": 2, "context": 2, "horizon": 3},
}


def tiny_base(**sections: dict[str, Any]) -> Config:
    data = {k: dict(v) for k, v in TINY.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


def tiny_protocol(**kw: Any) -> Protocol:
    base: dict[str, Any] = {
        "simple_envs": ("neutral", "sine"),
        "composite_envs": ("gravity_bounce",),
        "seeds": (0,),
        "finetune_steps": 2,
        "finetune_batch_size": 2,
        "figures": False,
    }
    base.update(kw)
    return Protocol(**base)


# -- settings ----------------------------------------------------------------------------------


def test_environment_split_matches_the_simulator() -> None:
    assert SIMPLE_ENVS == sim.ENVIRONMENTS[:7]
    assert COMPOSITE_ENVS == sim.ENVIRONMENTS[7:11]
    assert set(MODEL_VARIANTS) == {
        "s2ssm",
        "spartan",
        "transformer",
        "dense_ssm",
        "s2ssm_oracle",
        "s2ssm_joint",
    }
    assert set(DEFAULT_MODELS) <= set(MODEL_VARIANTS) and "s2ssm_oracle" not in DEFAULT_MODELS


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"models": ("s2ssm", "rnn")}, InvalidInputError, "protocol.models"),
        ({"models": ()}, InvalidInputError, "protocol.models"),
        ({"models": ["s2ssm"]}, InvalidTypeError, "must be a tuple"),
        ({"simple_envs": ()}, InvalidInputError, "at least one"),
        ({"simple_envs": ("neutral", "nope")}, InvalidInputError, "unknown environment"),
        ({"composite_envs": ("neutral",)}, InvalidInputError, "both training"),
        ({"seeds": ()}, InvalidInputError, "seeds"),
        ({"seeds": (0, 0)}, InvalidInputError, "duplicates"),
        ({"seeds": (-1,)}, InvalidInputError, "non-negative"),
        ({"finetune_fraction": 0.0}, InvalidInputError, "finetune_fraction"),
        ({"finetune_fraction": 1.5}, InvalidInputError, "finetune_fraction"),
        ({"finetune_steps": -1}, InvalidInputError, "finetune_steps"),
        ({"occlusion_envs": ("gravity_bounce",)}, InvalidInputError, "occlusion_envs"),
    ],
)
def test_protocol_rejects_bad_settings(kw: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        Protocol(**kw)


def test_protocol_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[protocol]\nseeds = [3, 4]\nmodels = ["s2ssm"]\nfinetune_fraction = 0.2\n'
        "[optim]\nsteps = 7\n",
        encoding="utf-8",
    )
    protocol, base = load_protocol(path, ["optim.lr=0.01"])
    assert protocol.seeds == (3, 4) and protocol.models == ("s2ssm",)
    assert protocol.finetune_fraction == 0.2
    assert base.optim.steps == 7 and base.optim.lr == 0.01
    path.write_text("[protocol]\nsteps = 3\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"unknown config key\(s\) protocol.steps"):
        load_protocol(path)
    path.write_text('[protocol]\nseeds = "0"\n', encoding="utf-8")
    with pytest.raises(InvalidTypeError, match="must be a list"):
        load_protocol(path)
    path.write_text("[protocol]\nzero_shot = 1\n", encoding="utf-8")
    with pytest.raises(InvalidTypeError, match="true or false"):
        load_protocol(path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_protocol(tmp_path / "missing.toml")
    with pytest.raises(InvalidInputError, match="preset"):
        preset("huge")


def test_set_overrides_protocol_fields_and_config_values(tmp_path: Path) -> None:
    protocol, base = preset(
        "quick",
        [
            "protocol.composite_envs=[]",
            "protocol.zero_shot=false",
            'protocol.models=["s2ssm_oracle"]',
            "optim.steps=7",
        ],
    )
    assert protocol.composite_envs == () and protocol.zero_shot is False
    assert protocol.models == ("s2ssm_oracle",) and base.optim.steps == 7
    assert protocol.seeds == preset("quick")[0].seeds  # the others as the preset has them
    units = plan_units(protocol)
    assert {u.model for u in units} == {"vae", "s2ssm_oracle"}
    assert not [u for u in units if u.kind in ("zero_shot", "finetune")]
    with pytest.raises(InvalidInputError, match=r"unknown config key\(s\) protocol.steps"):
        preset("quick", ["protocol.steps=3"])
    with pytest.raises(InvalidInputError, match=r"protocol\.name"):
        preset("quick", ["protocol.a.b=3"])
    with pytest.raises(InvalidTypeError, match="true or false"):
        preset("quick", ["protocol.zero_shot=1"])


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_presets_equal_the_config_files(name: str) -> None:
    with (ROOT / "configs" / f"reproduce_{name}.toml").open("rb") as handle:
        from_file = tomllib.load(handle)
    assert from_file == PRESETS[name]
    protocol, base = preset(name)
    assert load_protocol(ROOT / "configs" / f"reproduce_{name}.toml") == (
        protocol,
        base,
    )
    assert protocol.models == (DEFAULT_MODELS if name == "quick" else tuple(MODEL_VARIANTS))
    # the main results: no model told the intervention targets, no environment at test time
    assert not base.model.use_interventions and base.eval.env_code == "identified"
    assert protocol.simple_envs == SIMPLE_ENVS and protocol.composite_envs == COMPOSITE_ENVS
    assert protocol.finetune_fraction == 0.1
    assert len(protocol.seeds) == (1 if name == "quick" else 3)


def test_model_config_variants(tmp_path: Path) -> None:
    base = tiny_base()
    protocol = tiny_protocol(shared_vae=False)
    seen = {}
    for model in MODEL_VARIANTS:
        cfg = model_config(base, protocol, model, 5, tmp_path)
        seen[model] = (cfg.model.kind, cfg.sparsity.enabled)
        assert cfg.model.use_interventions == (model == "s2ssm_oracle")
        assert cfg.vae.freeze == (model != "s2ssm_joint")
        assert cfg.run.seed == 5
        assert cfg.data.envs == protocol.simple_envs
        assert Path(cfg.run.out_dir) == tmp_path / "runs" / model / "seed5"
        assert cfg.data.seed == base.data.seed  # seeds vary the model, not the data
        assert dataclasses.replace(cfg.vae, freeze=True, recon_weight=0.0) == base.vae
    assert seen == {
        "s2ssm": ("ssm", True),
        "spartan": ("spartan", True),
        "transformer": ("transformer", True),
        "dense_ssm": ("ssm", False),
        "s2ssm_oracle": ("ssm", True),
        "s2ssm_joint": ("ssm", True),
    }
    spartan = model_config(base, protocol, "spartan", 5, tmp_path)
    assert spartan.model.gate == "straight_through" and spartan.sparsity.rule == "exponential"
    with pytest.raises(InvalidInputError, match="model must be"):
        model_config(base, protocol, "rnn", 0, tmp_path)
    shared = model_config(base, tiny_protocol(), "s2ssm", 2, tmp_path)
    assert shared.vae.init_from == str(tmp_path / "runs" / "vae" / "seed2")
    assert shared.vae.pretrain_steps == 0
    vae = vae_config(base, tiny_protocol(), 2, tmp_path)
    assert vae.run.out_dir == shared.vae.init_from and vae.run.seed == 2
    assert vae.optim.steps == 0 and vae.vae == base.vae


def test_plan_units_order_and_count() -> None:
    protocol = Protocol(seeds=(0, 1, 2))
    units = plan_units(protocol)
    per = 1 + len(SIMPLE_ENVS) + 2 * len(COMPOSITE_ENVS) + 2  # + occlusion on neutral, twice
    assert len(units) == 3 * (1 + len(DEFAULT_MODELS) * per)  # + the shared VAE of each seed
    assert len({u.id for u in units}) == len(units)
    assert units[:2] == [Unit(0, "vae", "pretrain"), Unit(0, "s2ssm", "train")]
    # every evaluation comes after its model's training, and seed 0 finishes first
    trained: set[tuple[str, int]] = set()
    for u in units:
        if u.kind in ("pretrain", "train"):
            assert u.kind == "train" or u.model == "vae"
            assert u.kind == "pretrain" or ("vae", u.seed) in trained
            trained.add((u.model, u.seed))
        else:
            assert (u.model, u.seed) in trained
    assert [u.seed for u in units] == sorted(u.seed for u in units)
    no_zero = plan_units(
        dataclasses.replace(protocol, zero_shot=False, shared_vae=False, seeds=(0,))
    )
    assert not any(u.kind in ("zero_shot", "pretrain") for u in no_zero)


# -- aggregation -------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=8))
def test_mean_std_matches_numpy(values: list[float]) -> None:
    mean, std = mean_std(values)
    np.testing.assert_allclose(mean, np.mean(values), rtol=1e-9, atol=1e-6)
    expected = np.std(values, ddof=1) if len(values) > 1 else 0.0
    np.testing.assert_allclose(std, expected, rtol=1e-7, atol=1e-6)


def test_mean_std_known_values_and_errors() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)
    with pytest.raises(InvalidInputError, match="at least one"):
        mean_std([])
    with pytest.raises(InvalidInputError, match="nan"):
        mean_std([1.0, math.nan])


def _rec(kind: str, model: str, seed: int, env: str, mse: float, shd: float) -> dict[str, Any]:
    return {
        "kind": kind,
        "model": model,
        "seed": seed,
        "env": env,
        "mse_1step": mse,
        "shd_local": shd,
        "shd_global": 1.0,
        "mse_rollout": math.nan,
    }


def test_aggregate_groups_over_seeds() -> None:
    records = [
        {"kind": "train", "model": "s2ssm", "seed": 0, "env": "", "wall_s": 3.0},
        _rec("simple", "s2ssm", 0, "neutral", 1.0, 2.0),
        _rec("simple", "s2ssm", 1, "neutral", 3.0, 4.0),
        _rec("simple", "s2ssm", 2, "neutral", 5.0, 9.0),
        _rec("simple", "transformer", 0, "neutral", 7.0, 1.0),
        _rec("finetune", "s2ssm", 0, "gravity_bounce", 0.5, 0.0),
        _rec("zero_shot", "s2ssm", 0, "gravity_bounce", 0.25, 3.0),
    ]
    rows = aggregate(records)
    assert [(r["phase"], r["env"], r["model"]) for r in rows] == [
        ("simple", "neutral", "s2ssm"),
        ("simple", "neutral", "transformer"),
        ("zero_shot", "gravity_bounce", "s2ssm"),
        ("finetune", "gravity_bounce", "s2ssm"),
    ]
    first = rows[0]
    assert first["n"] == 3 and first["seeds"] == [0, 1, 2]
    assert first["mse_1step_mean"] == 3.0 and first["mse_1step_std"] == 2.0
    np.testing.assert_allclose(first["shd_local_mean"], 5.0)
    np.testing.assert_allclose(first["shd_local_std"], np.std([2.0, 4.0, 9.0], ddof=1))
    assert first["shd_global_mean"] == 1.0 and first["shd_global_std"] == 0.0
    assert math.isnan(first["mse_rollout_mean"])  # nan in every seed stays nan
    assert math.isnan(first["f1_mean"])  # missing metric
    assert rows[1]["n"] == 1 and rows[1]["mse_1step_std"] == 0.0
    # a nan in only some seeds is not silently dropped either
    mixed = aggregate(
        [
            _rec("simple", "s2ssm", 0, "sine", 1.0, 1.0),
            _rec("simple", "s2ssm", 1, "sine", math.nan, 1.0),
        ]
    )
    assert math.isnan(mixed[0]["mse_1step_mean"]) and mixed[0]["shd_local_mean"] == 1.0


def test_mse_over_floor_is_averaged_per_seed() -> None:
    # seed 1's slot space is twice seed 0's scale: its MSE and floor are both larger
    records = [
        {**_rec("simple", "s2ssm", 0, "neutral", 2e-3, 1.0), "mse_floor": 1e-3},
        {**_rec("simple", "s2ssm", 1, "neutral", 1.2e-2, 1.0), "mse_floor": 4e-3},
    ]
    (row,) = aggregate(records)
    np.testing.assert_allclose(row["mse_over_floor_mean"], 2.5)  # mean of 2 and 3
    np.testing.assert_allclose(row["mse_over_floor_std"], np.std([2.0, 3.0], ddof=1))
    zero_floor = aggregate([{**records[0], "mse_floor": 0.0}])[0]
    assert math.isnan(zero_floor["mse_over_floor_mean"])
    assert "| neutral | 7.00e-03 ± 7.07e-03 | 2.50 ± 0.71 | 1.00 ± 0.00 |" in markdown_tables(
        [row], ["s2ssm"]
    )


def test_edge_aurocs_and_baselines_are_aggregated_and_tabled() -> None:
    def rec(seed: int, auroc: float | None, constant: float) -> dict[str, Any]:
        edges = {"score": {"ball": {"auroc": auroc}}, "ball": {"env": {"auroc": 0.5}}}
        return {
            **_rec("simple", "s2ssm", seed, "neutral", 1e-3, 1.0),
            "edges": edges,
            "shd_local_empty": 2.0,
            "shd_best_constant": constant,
        }

    (row,) = aggregate([rec(0, 0.9, 0.1), rec(1, 0.7, 0.3)])
    np.testing.assert_allclose(row["auroc__ball__score_mean"], 0.8)
    np.testing.assert_allclose(row["auroc__ball__score_std"], np.std([0.9, 0.7], ddof=1))
    assert row["auroc__env__ball_mean"] == 0.5
    assert math.isnan(row["auroc__ball__left_paddle_mean"])  # not in the records
    np.testing.assert_allclose(row["shd_best_constant_mean"], 0.2)
    table = edge_table([row], ["s2ssm"])
    assert "ball -> score" in table and "| simple | neutral | s2ssm |" in table
    assert "0.80 ± 0.14" in table
    # the graphs that need no model follow the models' columns
    line = next(li for li in markdown_tables([row], ["s2ssm"]).splitlines() if "| neutral" in li)
    assert line.endswith("| 2.00 ± 0.00 | 0.20 ± 0.14 | n/a |")
    # an undefined AUROC in one seed makes the mean undefined, not the other seed's value
    (undefined,) = aggregate([rec(0, None, 0.1), rec(1, 0.7, 0.3)])
    assert math.isnan(undefined["auroc__ball__score_mean"])


def test_format_and_markdown_tables() -> None:
    assert format_mean_std(1.23456, 0.5, 3) == "1.235 ± 0.500"
    assert format_mean_std(1.23456, 0.0, 1) == "1.235"
    assert format_mean_std(0.000123, 0.00002, 2, sci=True) == "1.23e-04 ± 2.00e-05"
    assert format_mean_std(math.nan, math.nan, 3) == "n/a"
    rows = aggregate(
        [
            _rec("simple", "s2ssm", 0, "neutral", 1e-3, 2.0),
            _rec("simple", "s2ssm", 1, "neutral", 3e-3, 4.0),
            _rec("finetune", "dense_ssm", 0, "gravity_bounce", 2e-3, 5.0),
        ]
    )
    text = markdown_tables(rows, ["s2ssm", "dense_ssm"], {"simple": ["neutral", "sine"]})
    assert (
        "| env | s2ssm MSE | s2ssm MSE / floor | s2ssm SHD | dense_ssm MSE | "
        "dense_ssm MSE / floor | dense_ssm SHD |"
    ) in text
    # no floor in these records: the ratio is n/a, never a made-up number
    assert "| neutral | 2.00e-03 ± 1.41e-03 | n/a | 3.00 ± 1.41 | — | — | — |" in text
    assert "| sine | — | — | — | — | — | — |" in text
    assert "| gravity_bounce | — | — | — | 2.00e-03 | n/a | 5.00 |" in text
    assert "zero-shot" not in text  # no rows, no table


# -- evaluation and fine-tuning against plain references -----------------------------------------


def _tiny_model(seed: int = 0, **model: Any) -> S2SSM:
    torch.manual_seed(seed)
    return S2SSM(tiny_base(model=model)).eval()


def test_evaluate_model_uses_the_environment_row_with_the_given_code() -> None:
    model = _tiny_model(gate_init_bias=0.0)
    eval_cfg = tiny_base(eval={"sequences": 3, "intervention_prob": 0.3}).eval
    code = trained_code(model, ["neutral", "sine"])
    w = model.dynamics.env_slot.codebook.weight.detach().clone()
    torch.testing.assert_close(code, (w[0] + w[1]) / 2)
    result, raw = evaluate_model(model, eval_cfg, "gravity_bounce", code=code)
    assert result["code"] == "trained"  # its own row, never a code fitted on test sequences
    torch.testing.assert_close(model.dynamics.env_slot.codebook.weight[7], code)
    torch.testing.assert_close(model.dynamics.env_slot.codebook.weight[:7], w[:7])
    # plain reference: the same sequences through the dynamics with the code given directly
    data = generate_sequences(
        ("gravity_bounce",),
        3,
        eval_cfg.seq_len,
        seed=eval_cfg.seed,
        resolution=16,
        intervention_prob=0.3,
    )
    with torch.no_grad():
        t = data.torch("cpu")
        slots = model.encode_slots(t["frames"], t["masks"])
        out = model.dynamics(slots, None, env_code=code.unsqueeze(0))
        mse = float(((out.pred[:, :-1] - slots[:, 1:]) ** 2).mean())
        learned = out.local_graphs()[:, :-1].numpy()
    truth = data.local_graphs[:, 1:]
    off = ~np.eye(4, 5, dtype=bool)
    shd = np.mean([(learned[n, s] != truth[n, s])[off].sum() for n in range(3) for s in range(5)])
    np.testing.assert_allclose(result["mse_1step"], mse, rtol=1e-5)
    np.testing.assert_allclose(result["shd_local"], shd)
    assert raw["data"].frames.shape[0] == 3
    with pytest.raises(InvalidInputError, match="no codebook row"):
        set_env_code(_tiny_model(num_env_codes=7), "gravity_bounce", code)


@pytest.mark.parametrize("sparse", [True, False])
def test_finetune_dynamics(sparse: bool) -> None:
    base = tiny_base(sparsity={"enabled": sparse})
    data = generate_sequences(("gravity_bounce",), 3, 6, seed=5, resolution=16)

    def run() -> tuple[S2SSM, list[dict[str, float]]]:
        torch.manual_seed(0)
        model = S2SSM(base).eval()
        code = trained_code(model, ["neutral"])
        history = finetune_dynamics(
            model,
            data,
            init_code=code,
            steps=3,
            lr=1e-2,
            batch_size=2,
            sparsity=base.sparsity,
            lambda_state={"value": 1e-3, "smoothed": 0.1, "steps": 10},
            seed=4,
        )
        return model, history

    torch.manual_seed(0)
    before = S2SSM(base)
    model, history = run()
    _, history2 = run()
    assert history == history2  # deterministic
    assert len(history) == 3
    assert all(h["lambda"] == (1e-3 if sparse else 0.0) for h in history[:1])
    for (name, p0), p1 in zip(
        before.vae.state_dict().items(), model.vae.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p0, p1, msg=name)  # the VAE stays frozen
    changed = [
        not torch.equal(p0, p1)
        for p0, p1 in zip(before.dynamics.parameters(), model.dynamics.parameters(), strict=True)
    ]
    assert any(changed)
    assert not model.dynamics.training
    with pytest.raises(InvalidInputError, match="one environment"):
        finetune_dynamics(
            model,
            generate_sequences(("sine", "neutral"), 1, 6, seed=1, resolution=16),
            init_code=torch.zeros(8),
            steps=1,
            lr=1e-3,
            batch_size=1,
            sparsity=base.sparsity,
            lambda_state=None,
            seed=0,
        )


def test_finetune_dynamics_on_other_inputs() -> None:
    """With ``inputs`` the model reads their slots and is scored against ``data``'s: the same
    sequences as inputs give the plain fine-tuning, occluded ones another; mismatched sequences
    are refused."""
    from s2ssm.evaluation.occlusion import occlusion_pair

    base = tiny_base()
    clean, occluded = occlusion_pair("neutral", 3, 6, seed=5, resolution=16)

    def run(inputs: Any) -> list[dict[str, float]]:
        torch.manual_seed(0)
        model = S2SSM(base).eval()
        return finetune_dynamics(
            model,
            clean,
            init_code=trained_code(model, ["neutral"]),
            steps=2,
            lr=1e-2,
            batch_size=2,
            sparsity=base.sparsity,
            lambda_state=None,
            seed=4,
            inputs=inputs,
        )

    plain = run(None)
    assert run(clean) == plain
    assert run(occluded) != plain
    other = generate_sequences(("neutral",), 2, 6, seed=5, resolution=16)
    with pytest.raises(InvalidInputError, match="rendered another way"):
        run(other)


# -- the runner --------------------------------------------------------------------------------


def test_run_protocol_end_to_end_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every variant, no environment information at test time (the presets' setting)
    protocol = tiny_protocol(models=tuple(MODEL_VARIANTS))
    base = tiny_base(eval={"env_code": "identified"})
    out = tmp_path / "out"
    starts: list[torch.Tensor] = []
    identify = metrics.identify_env_codes

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        starts.append(kwargs["init"])
        return identify(*args, **kwargs)

    monkeypatch.setattr(metrics, "identify_env_codes", spy)
    summary = run_protocol(protocol, base, out, progress=False)
    monkeypatch.undo()
    units = plan_units(protocol)
    # one fit per evaluation of simple, zero-shot and fine-tuned units
    assert len(starts) == len(MODEL_VARIANTS) * (2 + 1 + 1)
    assert summary["complete"] and summary["skipped"] == []
    assert summary["ran"] == [u.id for u in units]
    for u in units:
        assert (out / "units" / f"{u.id}.json").is_file()
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = {(r["phase"], r["env"], r["model"]): r for r in results["summary"]}
    assert len(rows) == len(MODEL_VARIANTS) * (2 + 1 + 1)
    codes = {
        json.loads((out / "units" / f"{u.id}.json").read_text(encoding="utf-8"))["code"]
        for u in units
        if u.kind in ("simple", "zero_shot", "finetune")
    }
    assert codes == {"identified"}
    occ = {r["model"]: r for r in results["occlusion"]}
    assert set(occ) == set(MODEL_VARIANTS)
    for r in occ.values():
        assert r["env"] == "neutral" and r["n"] == 1 and math.isfinite(r["mse_visible_mean"])
    occ_ft = {r["model"]: r for r in results["occlusion_finetune"]}
    assert set(occ_ft) == set(MODEL_VARIANTS)
    for model_name, r in occ_ft.items():
        assert r["phase"] == "occlusion_finetune" and math.isfinite(r["mse_visible_mean"])
        # a fine-tuned copy: the trained model's own occlusion scores change
        assert r["mse_visible_mean"] != occ[model_name]["mse_visible_mean"]
    occ_ft_rec = json.loads(
        (out / "units" / "occlusion_finetune__s2ssm__seed0__neutral.json").read_text("utf-8")
    )
    assert occ_ft_rec["finetune_sequences"] == 1
    for r in rows.values():
        assert r["n"] == 1 and math.isfinite(r["mse_1step_mean"])
        assert 0 <= r["shd_local_mean"] <= 16
    assert results["hardware"]["cpu_count"] >= 1
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| neutral |" in table and "| gravity_bounce |" in table
    assert "fine-tuned" in table and "zero-shot" in table and "### Occlusion (" in table
    assert "### Occlusion after fine-tuning on occluded frames" in table
    assert not (out / "figures").exists()
    train_rec = json.loads((out / "units" / "train__s2ssm__seed0.json").read_text("utf-8"))
    assert train_rec["steps"] == base.optim.steps  # the VAE comes from the shared run
    vae_rec = json.loads((out / "units" / "pretrain__vae__seed0.json").read_text("utf-8"))
    assert vae_rec["steps"] == base.vae.pretrain_steps and "vae_recon" in vae_rec["final"]
    # every model of the seed encodes with the very same VAE
    from s2ssm.training.checkpoint import read_checkpoint

    vae_weights = read_checkpoint(out / "runs" / "vae" / "seed0")[1]
    for model in MODEL_VARIANTS:
        weights = read_checkpoint(out / "runs" / model / "seed0")[1]
        same = [
            torch.equal(weights[key], value)
            for key, value in vae_weights.items()
            if key.startswith("vae.")
        ]
        # the joint model starts from the shared VAE and trains it with the dynamics
        assert all(same) if model != "s2ssm_joint" else not all(same), model
    ft_rec = json.loads(
        (out / "units" / "finetune__s2ssm__seed0__gravity_bounce.json").read_text("utf-8")
    )
    assert ft_rec["finetune_sequences"] == 1  # max(1, round(0.1 * 4))

    # second invocation: nothing is trained or evaluated again
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr("s2ssm.training.trainer.train", boom)
    monkeypatch.setattr(phases, "evaluate_model", boom)
    again = run_protocol(protocol, base, out, progress=False)
    assert again["ran"] == [] and again["skipped"] == [u.id for u in units]
    # as JSON text: undefined metrics are nan, and nan != nan
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(
        results["summary"], sort_keys=True
    )

    # other settings in the same directory are refused
    with pytest.raises(InvalidInputError, match="other settings"):
        run_protocol(dataclasses.replace(protocol, finetune_steps=5), base, out)


def test_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    protocol = tiny_protocol(
        models=("s2ssm",),
        simple_envs=("sine",),
        zero_shot=False,
        occlusion_envs=(),
        seeds=(1, 0),
        figures=True,
    )
    out = tmp_path / "out"
    run_protocol(protocol, tiny_base(), out, progress=False)
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == [
        "graphs__finetune__models.png",
        "graphs__finetune__s2ssm.png",
        "graphs__finetune__s2ssm__gravity_bounce.png",
        "graphs__simple__models.png",
        "graphs__simple__s2ssm.png",
        "graphs__simple__s2ssm__sine.png",
        "rollout__finetune__s2ssm__gravity_bounce.png",
        "rollout__simple__s2ssm__sine.png",
    ]
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_run_continues_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = tiny_protocol(models=("s2ssm",))
    base = tiny_base()
    out = tmp_path / "out"
    real = phases.evaluate_model
    calls = []

    def interrupt_third(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "evaluate_model", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(protocol, base, out, progress=False)
    units = plan_units(protocol)
    done = [u.id for u in units if RunDirectory(out).done(u) is not None]
    assert done == [u.id for u in units[:4]]  # VAE, train + 2 simple evaluations
    before = {i: (out / "units" / f"{i}.json").read_bytes() for i in done}
    monkeypatch.setattr(phases, "evaluate_model", real)
    summary = run_protocol(protocol, base, out, progress=False)
    assert summary["skipped"] == done
    assert summary["ran"] == [u.id for u in units[4:]]
    assert summary["complete"]
    for i, text in before.items():
        assert (out / "units" / f"{i}.json").read_bytes() == text


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from s2ssm.training.trainer import train

    protocol = tiny_protocol(models=("transformer",), composite_envs=(), shared_vae=False)
    base = tiny_base()
    out = tmp_path / "out"
    cfg = model_config(base, protocol, "transformer", 0, out)
    train(cfg, max_steps=2)  # interrupted after the VAE pre-training (checkpoint at step 2)
    summary = run_protocol(protocol, base, out, progress=False)
    assert summary["complete"]
    rec = RunDirectory(out).done(Unit(0, "transformer", "train"))
    assert rec is not None
    total = base.vae.pretrain_steps + base.optim.steps
    assert rec["steps"] == total and rec["steps_this_call"] == total - 2


# -- CLI ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from s2ssm.cli import reproduce as reproduce_cli

    parser = argparse.ArgumentParser(prog="s2ssm")
    sub = parser.add_subparsers(dest="command", required=True)
    reproduce_cli.add_parser(sub)
    return parser


def test_cli_runs_a_protocol_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['[protocol]\nsimple_envs = ["neutral"]\ncomposite_envs = []\nmodels = ["dense_ssm"]']
    lines.append("figures = false")
    for section, values in TINY.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "p.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = _parser().parse_args(
        ["reproduce", "--config", str(path), "--out", str(out), "--seeds", "2", "--device", "cpu"]
    )
    assert args.run(args) == 0
    text = capsys.readouterr()
    assert "| neutral |" in text.out
    assert '"complete": true' in text.err
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["protocol"]["seeds"] == [0, 1]
    assert results["config"]["run"]["device"] == "cpu"
    (row,) = results["summary"]
    assert row["n"] == 2 and row["seeds"] == [0, 1]
    assert " ± " in text.out  # two seeds: mean ± std


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["reproduce", "--seeds", "0"])
    assert "positive integer" in capsys.readouterr().err
    args = _parser().parse_args(["reproduce", "--quick"])
    assert args.quick and args.out is None and args.seeds is None


def test_the_variants_protocol_is_the_quick_preset_with_the_oracle() -> None:
    protocol, base = load_protocol(ROOT / "configs" / "reproduce_quick_variants.toml")
    quick, quick_base = preset("quick")
    assert base == quick_base
    assert protocol == dataclasses.replace(quick, models=("s2ssm_oracle",))
