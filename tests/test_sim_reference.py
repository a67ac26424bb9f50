"""The Rust simulator against the plain NumPy reference (states to float32 rounding, frames,
masks, interventions and local graphs byte for byte)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm import sim
from s2ssm.errors import InvalidInputError, InvalidTypeError
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


@settings(max_examples=25, deadline=None)
@given(
    env=st.integers(0, 10),
    n=st.integers(1, 4),
    t=st.integers(1, 12),
    seed=st.integers(0, 2**64 - 1),
    data=st.data(),
)
def test_schedules_match_reference(env: int, n: int, t: int, seed: int, data: Any) -> None:
    """Random do() schedules (drawn values, set values inside and outside the field)."""
    targets = np.array(data.draw(st.lists(st.booleans(), min_size=n * t * 5, max_size=n * t * 5)))
    value = st.one_of(st.just(np.nan), st.floats(-50, 50))
    values = np.array(data.draw(st.lists(value, min_size=n * t * 5, max_size=n * t * 5)))
    schedule = sim.InterventionSchedule(targets.reshape(n, t, 5), values.reshape(n, t, 5))
    got = sim.generate(env, n, t, seed=seed, resolution=16, schedule=schedule)
    want = ref.generate(
        env, n, t, seed=seed, resolution=16, schedule=(schedule.targets, schedule.values)
    )
    assert_agree(got, want)
    np.testing.assert_array_equal(got.interventions, schedule.targets)


def test_a_schedule_repeating_the_random_draws_changes_nothing() -> None:
    batch = sim.generate("bounce", 5, 20, seed=8, intervention_prob=0.4)
    again = sim.generate(
        "bounce", 5, 20, seed=8, schedule=sim.InterventionSchedule(batch.interventions)
    )
    assert_agree(again, ref.generate("bounce", 5, 20, seed=8, intervention_prob=0.4))


def test_iterate_splits_a_schedule() -> None:
    s = sim.InterventionSchedule.from_records(
        7, 6, [(0, 1, "ball_y", 5.0), (4, 2, "paddle_right_y", None), (6, 5, "ball_dir", 1.0)]
    )
    whole = sim.generate("neutral", 7, 6, seed=2, schedule=s)
    parts = list(
        sim.iterate("neutral", 7, 6, seed=2, batch_size=3, reuse_buffers=False, schedule=s)
    )
    np.testing.assert_array_equal(np.concatenate([p.frames for p in parts]), whole.frames)
    np.testing.assert_array_equal(np.concatenate([p.interventions for p in parts]), s.targets)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="schedule: expected 2 sequences x 4 steps"):
        sim.generate("neutral", 2, 4, seed=0, schedule=sim.InterventionSchedule.empty(2, 5))
    with pytest.raises(InvalidTypeError, match="schedule"):
        sim.generate("neutral", 2, 4, seed=0, schedule=np.zeros((2, 4, 5), bool))
    with pytest.raises(InvalidInputError, match="values: expected finite"):
        sim.InterventionSchedule(np.ones((1, 1, 5), bool), np.full((1, 1, 5), np.inf))
    with pytest.raises(InvalidTypeError, match="targets: expected a bool array"):
        sim.InterventionSchedule(np.ones((1, 1, 5)))
    with pytest.raises(InvalidInputError, match="targets: expected shape"):
        sim.InterventionSchedule(np.ones((1, 5), bool))
    s = sim.InterventionSchedule.empty(2, 3)
    with pytest.raises(InvalidInputError, match="target: expected one of"):
        s.do(0, 0, "paddle")
    with pytest.raises(InvalidInputError, match="step: expected 0 to 2"):
        s.do(0, 3, "ball_x")
    with pytest.raises(InvalidInputError, match="value: expected a finite"):
        s.do(0, 0, "ball_x", float("nan"))
    with pytest.raises(InvalidTypeError, match="sequence: expected an integer"):
        s.do(0.5, 0, "ball_x")  # type: ignore[arg-type]
    assert not s.targets.any(), "a refused do() changes nothing"


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


def test_an_intervened_paddle_keeps_its_past_unless_its_value_is_set() -> None:
    s = sim.InterventionSchedule.empty(1, 8).do(0, 3, "paddle_left_y").do(0, 6, "paddle_left_y", 20)
    batch = sim.generate("neutral", 1, 8, seed=3, schedule=s)
    g, states = batch.local_graphs[0], batch.states[0]
    assert not g[:, 3, 2].any(), "no point in this game"  # score <- ball
    np.testing.assert_array_equal(g[3, 0], [1, 0, 0, 0, 1])  # drawn: p(t-1) +- 1.5 + noise
    assert abs(states[3, 0] - states[2, 0]) < 4.0
    np.testing.assert_array_equal(g[6, 0], [0, 0, 0, 0, 1])  # set: do(paddle_left_y = 20)
    assert states[6, 0] == 20.0
    assert_agree(batch, ref.generate("neutral", 1, 8, seed=3, schedule=(s.targets, s.values)))
