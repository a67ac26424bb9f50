"""s2ssm.evaluation.occlusion: paired renderings, hidden-object detection and the occlusion
metrics against plain loops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2ssm import sim
from s2ssm.config import config_from_dict
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.occlusion import (
    hidden_objects,
    hidden_run_lengths,
    occlusion_markdown,
    occlusion_metrics,
    occlusion_pair,
    run_occlusion,
)
from s2ssm.models import S2SSM

TINY: dict[str, Any] = {
    "run": {"num_threads": 1, "progress": False, "checkpoint_every": 5},
    "data": {"resolution": 32, "train_sequences": 4, "seq_len": 6, "envs": ["neutral"]},
    "vae": {"latent_dim": 4, "channels": [4, 8], "decoder_channels": 4, "pretrain_steps": 1},
    "model": {"d_model": 8, "num_layers": 1, "d_state": 2, "expand": 1, "backend": "reference"},
    "optim": {"steps": 1, "batch_size": 2, "warmup_steps": 1},
    "eval": {"sequences": 4, "seq_len": 8, "batch_size": 3, "context": 2, "horizon": 3},
}


@pytest.fixture(scope="module")
def pair() -> tuple[object, object]:
    return occlusion_pair("neutral", 8, 12, seed=3, resolution=32)


def test_pair_differs_only_in_frames(pair: tuple) -> None:
    clean, occluded = pair
    for name in ("masks", "interventions", "local_graphs", "env_ids"):
        np.testing.assert_array_equal(getattr(clean, name), getattr(occluded, name))
    assert (clean.frames != occluded.frames).any()
    # what the pairing rests on: the simulator's occluder changes the rendering only
    plain = sim.generate("sine", 4, 10, seed=9, resolution=32)
    hidden = sim.generate("sine", 4, 10, seed=9, resolution=32, occlusion=True)
    for name in ("states", "masks", "interventions", "local_graphs", "env_ids"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(hidden, name))
    assert (plain.frames != hidden.frames).any()
    with pytest.raises(InvalidInputError, match="unknown environment"):
        occlusion_pair("nowhere", 1, 4, seed=0)


def test_hidden_objects_matches_a_loop(pair: tuple) -> None:
    clean, occluded = pair
    hidden = hidden_objects(clean, occluded, 4, 0.5)
    n, t = clean.frames.shape[:2]
    expected = np.zeros((n, t, 4), bool)
    for i in range(n):
        for s in range(t):
            covered = (clean.frames[i, s] != occluded.frames[i, s]).any(-1)
            for k in range(4):
                inside = ((clean.masks[i, s] >> k) & 1).astype(bool)
                if inside.sum() and covered[inside].sum() > 0.5 * inside.sum():
                    expected[i, s, k] = True
    np.testing.assert_array_equal(hidden, expected)
    assert hidden[..., 2].any()  # the ball crosses the band
    assert not hidden[..., [0, 1, 3]].any()  # paddles and score never do
    assert not hidden_objects(clean, clean).any()
    with pytest.raises(InvalidInputError, match="threshold"):
        hidden_objects(clean, occluded, threshold=1.0)
    other = occlusion_pair("neutral", 8, 12, seed=4, resolution=32)[1]
    with pytest.raises(InvalidInputError, match="differ in masks"):
        hidden_objects(clean, other)


@given(hnp.arrays(bool, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 3))))
def test_hidden_run_lengths_matches_a_loop(hidden: np.ndarray) -> None:
    runs = hidden_run_lengths(hidden)
    n, t, k = hidden.shape
    for i in range(n):
        for j in range(k):
            count = 0
            for s in range(t):
                count = count + 1 if hidden[i, s, j] else 0
                assert runs[i, s, j] == count


def test_occlusion_metrics_match_plain_computations(pair: tuple) -> None:
    clean, occluded = pair
    torch.manual_seed(0)
    model = S2SSM(config_from_dict(TINY)).eval()
    res = occlusion_metrics(model, clean, occluded, batch_size=3)
    hidden = hidden_objects(clean, occluded)
    with torch.no_grad():
        tc, to = clean.torch("cpu"), occluded.torch("cpu")
        s_clean = model.encode_slots(tc["frames"], tc["masks"])
        s_occ = model.encode_slots(to["frames"], to["masks"])
        out_occ = model.dynamics(s_occ, tc["env_ids"])
        out_clean = model.dynamics(s_clean, tc["env_ids"])
    err = ((out_occ.pred[:, :-1] - s_clean[:, 1:]) ** 2).mean(-1).numpy()
    err_clean = ((out_clean.pred[:, :-1] - s_clean[:, 1:]) ** 2).mean(-1).numpy()
    err_copy = ((s_occ[:, :-1] - s_clean[:, 1:]) ** 2).mean(-1).numpy()
    h_in, h_out = hidden[:, :-1], hidden[:, 1:]
    np.testing.assert_allclose(res["mse_hidden"], err[h_in].mean(), rtol=1e-5)
    np.testing.assert_allclose(res["mse_hidden_clean"], err_clean[h_in].mean(), rtol=1e-5)
    np.testing.assert_allclose(res["mse_hidden_copy"], err_copy[h_in].mean(), rtol=1e-5)
    np.testing.assert_allclose(res["mse_visible"], err[~h_in & ~h_out].mean(), rtol=1e-5)
    first = np.zeros_like(h_in)
    first[:, 0] = h_in[:, 0]
    first[:, 1:] = h_in[:, 1:] & ~h_in[:, :-1]
    np.testing.assert_allclose(res["mse_hidden_run"]["1"], err[first].mean(), rtol=1e-5)
    learned = out_occ.local_graphs()[:, :-1].numpy()
    learned_clean = out_clean.local_graphs()[:, :-1].numpy()
    truth = clean.local_graphs[:, 1:]
    off = ~np.eye(4, 5, dtype=bool)
    rows = h_in.any(-1)
    shd = (learned != truth)[..., off].sum(-1)
    change = (learned != learned_clean)[..., off].sum(-1)
    np.testing.assert_allclose(res["shd_hidden"], shd[rows].mean())
    np.testing.assert_allclose(res["shd_visible"], shd[~rows].mean())
    np.testing.assert_allclose(res["graph_change_hidden"], change[rows].mean())
    assert res["hidden_transitions"] == rows.sum() and res["transitions"] == rows.size
    assert res["hidden_steps_per_object"] == hidden.sum((0, 1)).tolist()
    # nothing hidden: the hidden metrics are nan, not zero
    none = occlusion_metrics(model, clean, clean)
    assert math.isnan(none["mse_hidden"]) and math.isnan(none["graph_change_hidden"])
    assert none["hidden_transitions"] == 0
    assert "| m |" in occlusion_markdown([("m", res), ("none", none)])
    assert "n/a" in occlusion_markdown([("none", none)])


def test_run_occlusion_on_checkpoints(tmp_path: Path) -> None:
    from s2ssm.training.trainer import train

    cfg = config_from_dict({**TINY, "run": {**TINY["run"], "out_dir": str(tmp_path / "run")}})
    train(cfg)
    results = run_occlusion(
        {"a": tmp_path / "run", "b": tmp_path / "run"}, sequences=3, device="cpu"
    )
    assert set(results) == {"a", "b"}
    assert results["a"] == results["b"]  # same checkpoint, same sequences: same numbers
    assert results["a"]["transitions"] == 3 * (TINY["eval"]["seq_len"] - 1)
