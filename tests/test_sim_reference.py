"""The Rust simulator against the plain NumPy reference (states to float32 rounding, frames,
masks, interventions and local graphs byte for byte)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm import sim
from s2ssm.errors import InvalidInputError
from s2ssm.sim import reference as ref


def test_philox_known_answers() -> None:
    zero = [np.zeros(1, np.uint64)] * 4
    out = ref.philox4x32_10(zero, (0, 0))
    assert [int(w[0]) for w in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = [np.full(1, 0xFFFFFFFF, np.uint64)] * 4
    out = ref.philox4x32_10(ones, (0xFFFFFFFF, 0xFFFFFFFF))
    assert [int(w[0]) for w in out] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    ctr = [np.full(1, w, np.uint64) for w in (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)]
    out = ref.philox4x32_10(ctr, (0xA4093822, 0x299F31D0))
    assert [int(w[0]) for w in out] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def assert_agree(batch: sim.PongBatch, want: ref.RefBatch) -> None:
    np.testing.assert_allclose(batch.states, want.states, rtol=0, atol=4e-6)
    np.testing.assert_array_equal(batch.interventions, want.interventions)
    np.testing.assert_array_equal(batch.local_graphs, want.local_graphs)
    np.testing.assert_array_equal(batch.env_ids, want.env_ids)
    np.testing.assert_array_equal(batch.masks, want.masks)
    np.testing.assert_array_equal(batch.frames, want.frames)


@pytest.mark.parametrize("env", range(11), ids=lambda e: sim.ENVIRONMENTS[e])
def test_every_environment_matches_reference(env: int) -> None:
    kw: dict[str, Any] = {"seed": 1000 + env, "start_index": 3}
    assert_agree(sim.generate(env, 6, 40, **kw), ref.generate(env, 6, 40, **kw))


@pytest.mark.parametrize(
    "options",
    [
        {"velocity": "previous"},
        {"velocity": "next_channel", "resolution": 27},
        {"occlusion": True, "resolution": 40},
        {"intervention_mode": "multi", "intervention_prob": 0.4},
        {"intervention_prob": 0.0, "resolution": 16},
        {"intervention_prob": 1.0},
        {"intervention_prob": 1e-17},
        {"resolution": 128},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_reference(options: dict) -> None:
    batch = sim.generate("gravity_bounce", 3, 12, seed=5, **options)
    assert_agree(batch, ref.generate("gravity_bounce", 3, 12, seed=5, **options))


@settings(max_examples=15, deadline=None)
@given(
    env=st.integers(0, 10),
    seed=st.integers(0, 2**64 - 1),
    start=st.integers(0, 2**40),
    resolution=st.integers(16, 64),
    velocity=st.sampled_from(sim._api.VELOCITY_CUES),
    occlusion=st.booleans(),
)
def test_random_settings_match_reference(
    env: int, seed: int, start: int, resolution: int, velocity: str, occlusion: bool
) -> None:
    kw: dict[str, Any] = {
        "seed": seed,
        "start_index": start,
        "resolution": resolution,
        "velocity": velocity,
        "occlusion": occlusion,
    }
    assert_agree(sim.generate(env, 2, 6, **kw), ref.generate(env, 2, 6, **kw))


def test_reference_render_draws_scene_from_state() -> None:
    # A hand-placed state: paddles, ball and score land where the geometry says.
    state = np.array([[16.0, 10.0, 20.5, 8.5, 0.0, 2.0, 3.0, 1.0]])
    frames, masks = ref.render(state, 32)
    frame, mask = frames[0], masks[0]
    # Row r covers y in [32 - r - 1, 32 - r): left paddle x in [4, 6), y in [13, 19).
    np.testing.assert_array_equal(frame[14, 4], [0, 0, 255])
    assert mask[14, 4] == 1 and mask[14, 6] == 0 and mask[12, 4] == 0
    np.testing.assert_array_equal(frame[24, 26], [0, 128, 0])  # right paddle y in [7, 13)
    np.testing.assert_array_equal(frame[23, 20], [255, 0, 0])  # ball centre (20.5, 8.5)
    assert mask[23, 20] == 4
    np.testing.assert_array_equal(frame[0, 10], [26, 26, 26])  # top border
    np.testing.assert_array_equal(frame[10, 0], [26, 26, 26])  # left border
    np.testing.assert_array_equal(frame[10, 10], [230, 230, 230])
    # Colon dots at x = 16, y in [25, 26) and [27, 28) -> rows 6 and 4.
    assert mask[6, 16] == 8 and mask[4, 16] == 8 and mask[5, 16] == 0
    # Digit 3 (left, x in [12, 15)) and digit 1 (right: the middle column x = 19 only).
    assert mask[3:8, 14].all() and not mask[4, 12]
    assert mask[3:8, 19].all() and not mask[3:8, 18].any()


def test_gym_env_reproduces_generate() -> None:
    from s2ssm.sim.gym import PongEnv

    env = PongEnv("sine_left_away", intervention_prob=0.15, velocity="previous")
    obs, info = env.reset(seed=31)
    frames, states, graphs = [obs], [info["state"]], [info["local_graph"]]
    for _ in range(11):
        obs, reward, terminated, truncated, info = env.step()
        frames.append(obs)
        states.append(info["state"])
        graphs.append(info["local_graph"])
        assert reward == 0.0 and not terminated and not truncated
    batch = sim.generate("sine_left_away", 1, 12, seed=31, velocity="previous")
    np.testing.assert_array_equal(np.array(frames), batch.frames[0])
    np.testing.assert_allclose(np.array(states), batch.states[0], atol=4e-6)
    np.testing.assert_array_equal(np.array(graphs), batch.local_graphs[0])
    np.testing.assert_array_equal(env.render(), frames[-1])
    # Driving it: do(paddle_left_y = 10) and do(ball_x = 20).
    obs, _, _, _, info = env.step({"paddle_left_y": 10.0, "ball_x": 20.0})
    assert info["state"][0] == 10.0 and info["state"][2] == 20.0
    np.testing.assert_array_equal(info["local_graph"][0], [0, 0, 0, 0, 1])
    assert info["local_graph"][2, 4] and info["interventions"][[1, 3]].all()
    with pytest.raises(InvalidInputError, match="unknown targets"):
        env.step({"paddle": 1.0})


def test_render_reproduces_generate() -> None:
    want = ref.generate("gravity", 3, 10, seed=4, velocity="previous")
    start = ref.initial_state(4, np.arange(3, dtype=np.uint64)).to_array()[:, None, 2:4]
    previous = np.concatenate([start, want.states[:, :-1, 2:4]], axis=1)
    frames, masks = sim.render(want.states, previous=previous, velocity="previous")
    got = sim.generate("gravity", 3, 10, seed=4, velocity="previous")
    np.testing.assert_array_equal(frames, got.frames)
    np.testing.assert_array_equal(masks, got.masks)


@settings(max_examples=20, deadline=None)
@given(
    data=st.data(),
    resolution=st.integers(16, 48),
    velocity=st.sampled_from(sim._api.VELOCITY_CUES),
    occlusion=st.booleans(),
)
def test_render_matches_reference_on_arbitrary_states(
    data: st.DataObject, resolution: int, velocity: str, occlusion: bool
) -> None:
    # Anywhere in (and a little beyond) the field, scores as floats.
    n = data.draw(st.integers(1, 4))
    coord = st.floats(-2.0, 34.0)
    rows = [
        [
            data.draw(coord),
            data.draw(coord),
            data.draw(coord),
            data.draw(coord),
            data.draw(st.floats(-10.0, 10.0)),
            data.draw(st.floats(0.0, 4.0)),
            float(data.draw(st.integers(0, 4))),
            float(data.draw(st.integers(0, 4))),
        ]
        for _ in range(n)
    ]
    states = np.array(rows)
    previous = states[:, 2:4] + data.draw(st.floats(-2.0, 2.0))
    frames, masks = sim.render(
        states, previous=previous, resolution=resolution, velocity=velocity, occlusion=occlusion
    )
    want_frames, want_masks = ref.render(
        states, resolution, previous=previous, velocity=velocity, occlusion=occlusion
    )
    np.testing.assert_array_equal(frames, want_frames)
    np.testing.assert_array_equal(masks, want_masks)


def test_render_bad_input() -> None:
    with pytest.raises(InvalidInputError, match=r"states: expected shape \(\.\.\., 8\)"):
        sim.render(np.zeros((2, 7)))
    with pytest.raises(InvalidInputError, match="finite"):
        sim.render(np.full((1, 8), np.nan))
    with pytest.raises(InvalidInputError, match="previous"):
        sim.render(np.zeros((2, 8)), previous=np.zeros((3, 2)))
    with pytest.raises(InvalidInputError, match="resolution"):
        sim.render(np.zeros((1, 8)), resolution=8)
    frames, masks = sim.render(np.zeros((0, 8)))
    assert frames.shape == (0, 32, 32, 3) and masks.shape == (0, 32, 32)
