"""The gymnasium environments: gymnasium's own checker, replay of ``generate``, do() actions
against an explicit schedule, seeding, autoreset and bad actions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from s2ssm import sim
from s2ssm.errors import InvalidInputError

gymnasium = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env  # noqa: E402

from s2ssm.sim.gym import (  # noqa: E402
    ENV_ID,
    VALUE_HIGH,
    VALUE_LOW,
    InterventionalPongEnv,
    InterventionalPongVectorEnv,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"env": "gravity_right_away", "velocity": "next_channel", "intervention_prob": 0.3},
        {"env": 5, "occlusion": True, "resolution": 20, "intervention_mode": "multi"},
    ],
    ids=["default", "next-channel", "occlusion"],
)
def test_gymnasium_check_env_passes(kwargs: dict) -> None:
    env = gymnasium.make(ENV_ID, render_mode="rgb_array", **kwargs)
    check_env(env.unwrapped)
    with warnings.catch_warnings():
        # gymnasium recommends checking the unwrapped env; the wrapped one must pass too.
        warnings.filterwarnings("ignore", ".*is different from the unwrapped")
        check_env(env)
    assert env.spec is not None and env.spec.max_episode_steps == 1000


def test_env_replays_generate_and_reset_starts_the_next_game() -> None:
    env = InterventionalPongEnv("sine_left_away", intervention_prob=0.15, velocity="previous")
    frames, states, graphs = [], [], []
    obs, info = env.reset(seed=31)
    for _ in range(12):
        frames.append(obs)
        states.append(info["state"])
        graphs.append(info["local_graph"])
        obs, reward, terminated, truncated, info = env.step(None)
        assert reward == 0.0 and not terminated and not truncated
    want = sim.generate("sine_left_away", 2, 12, seed=31, velocity="previous")
    np.testing.assert_array_equal(np.array(frames), want.frames[0])
    np.testing.assert_array_equal(np.array(states, np.float32), want.states[0])
    np.testing.assert_array_equal(np.array(graphs), want.local_graphs[0])
    assert info["game"] == (31, 0)
    obs, info = env.reset()  # no seed: the next game of the same seed
    np.testing.assert_array_equal(obs, want.frames[1, 0])
    assert info["game"] == (31, 1)


def test_unseeded_environments_differ() -> None:
    a, b = InterventionalPongEnv(), InterventionalPongEnv()
    assert a.reset()[1]["game"][0] != b.reset()[1]["game"][0]


def test_actions_are_do_interventions_as_in_a_schedule() -> None:
    rng = np.random.default_rng(0)
    n, t = 3, 15
    venv = InterventionalPongVectorEnv(n, "bounce", velocity="next_channel")
    obs, info = venv.reset(seed=4)
    frames, schedule = [obs], sim.InterventionSchedule.empty(n, t)
    for step in range(1, t):
        targets = (rng.random((n, 5)) < 0.2).astype(np.int8)
        values = rng.random((n, 5))
        obs, *_, info = venv.step({"targets": targets, "values": values})
        frames.append(obs)
        for i, k in zip(*np.nonzero(targets), strict=True):
            value = VALUE_LOW[k] + values[i, k] * (VALUE_HIGH[k] - VALUE_LOW[k])
            schedule.do(int(i), step, sim.TARGETS[k], float(value))
        np.testing.assert_array_equal(info["interventions"], targets.astype(bool))
    want = sim.generate("bounce", n, t, seed=4, velocity="next_channel", schedule=schedule)
    np.testing.assert_array_equal(np.stack(frames, axis=1), want.frames)
    # do(paddle_left_y = top of the field), on the single env.
    env = InterventionalPongEnv()
    env.reset(seed=1)
    _, _, _, _, info = env.step({"targets": [0, 0, 0, 1, 0], "values": [0, 0, 0, 1.0, 0]})
    assert info["state"][0] == VALUE_HIGH[3] and info["interventions"].tolist() == [0, 0, 0, 1, 0]
    np.testing.assert_array_equal(info["local_graph"][0], [0, 0, 0, 0, 1])


def test_vector_env_replays_generate_and_autoresets() -> None:
    venv = gymnasium.make_vec(
        ENV_ID, num_envs=4, env="friction", intervention_prob=0.2, max_episode_steps=5
    )
    assert isinstance(venv.unwrapped, InterventionalPongVectorEnv)
    obs, _ = venv.reset(seed=3)
    frames = [obs]
    for step in range(4):
        obs, rewards, terminated, truncated, infos = venv.step(
            venv.action_space.sample() | {"targets": np.zeros((4, 5), np.int8)}
        )
        frames.append(obs)
        assert truncated.all() == (step == 3) and not terminated.any() and not rewards.any()
    want = sim.generate("friction", 8, 5, seed=3, intervention_prob=0.2)
    np.testing.assert_array_equal(np.stack(frames, axis=1), want.frames[:4])
    # Next step: every game restarts as the next sequence (4..7), its action ignored.
    obs, _, _, truncated, infos = venv.step(venv.action_space.sample())
    np.testing.assert_array_equal(obs, want.frames[4:, 0])
    np.testing.assert_array_equal(infos["game"][:, 1], [4, 5, 6, 7])
    assert not truncated.any() and infos["_state"].all()


def test_bad_actions_and_options_are_refused() -> None:
    env = InterventionalPongEnv()
    with pytest.raises(InvalidInputError, match="call reset"):
        env.step(None)
    env.reset(seed=0)
    for action, match in [
        ({"targets": [1, 0, 0, 0, 0]}, "keys 'targets' and 'values'"),
        ({"targets": [2, 0, 0, 0, 0], "values": [0.5] * 5}, "0 or 1"),
        ({"targets": [1, 0, 0, 0, 0], "values": [np.nan] + [0.5] * 4}, "finite"),
        ({"targets": [1, 0, 0], "values": [0.5] * 3}, "5 entries"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            env.step(action)
    with pytest.raises(InvalidInputError, match="velocity"):
        InterventionalPongEnv(velocity="fast")
    with pytest.raises(InvalidInputError, match="render_mode"):
        InterventionalPongEnv(render_mode="human")
    with pytest.raises(InvalidInputError, match="num_envs"):
        InterventionalPongVectorEnv(0)
