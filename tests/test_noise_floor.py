"""The noise floor of a slot space (s2ssm.evaluation.noise_floor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2ssm import sim
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.noise_floor import slot_noise_floor

RES = 32


def _states(n: int) -> np.ndarray:
    """(n, 2, S): the ball in mid-field flying straight up (no point, no wall, no paddle this
    step), paddles far from the walls and already level with the ball (no tracking move)."""
    s = np.zeros((n, 2, len(sim.STATE_NAMES)))
    y = np.linspace(10.0, 22.0, n)
    s[:, :, 0] = y[:, None]  # paddle_left_y
    s[:, :, 1] = y[:, None]  # paddle_right_y
    s[:, :, 2] = 16.0  # ball_x
    s[:, :, 3] = y[:, None]  # ball_y
    s[:, :, 4] = 0.0  # ball_dir: +y
    s[:, :, 5] = 2.0  # ball_speed
    return s


def _left_paddle_y(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W, 3), (N, 1, H, W) -> (N, 1, 1, 1): the left paddle's height in world units,
    from its background-subtracted intensity (linear in the position)."""
    scene = torch.from_numpy(sim.background(RES)).float()
    diff = (scene - frames.float()).abs().sum(-1) * (masks & 1).float()  # (N, 1, H, W)
    rows = (torch.arange(RES, dtype=torch.float32) + 0.5).flip(0)  # row 0 is the top
    y = (diff * rows[:, None]).sum(dim=(-2, -1)) / diff.sum(dim=(-2, -1))
    return y[..., None, None] * (32.0 / RES)


def test_floor_of_the_paddle_height_is_its_noise_variance() -> None:
    # each paddle moves by its tracking step + N(0, 0.5^2): Var[y_{t+1} | s_t] = 0.25
    floor = slot_noise_floor(
        _left_paddle_y, "neutral", _states(400), resolution=RES, intervention_prob=0.0, draws=32
    )
    assert floor == pytest.approx(0.25, rel=0.12)


def test_floor_scales_with_the_encoder_and_vanishes_for_a_constant() -> None:
    states = _states(64)
    base = slot_noise_floor(
        _left_paddle_y, "neutral", states, resolution=RES, intervention_prob=0.0, draws=4
    )
    doubled = slot_noise_floor(
        lambda f, m: 2.0 * _left_paddle_y(f, m),
        "neutral",
        states,
        resolution=RES,
        intervention_prob=0.0,
        draws=4,
    )
    assert doubled == pytest.approx(4.0 * base, rel=1e-5)
    zero = slot_noise_floor(
        lambda f, m: torch.zeros(f.shape[0], 1, 4, 3),
        "neutral",
        states,
        resolution=RES,
        intervention_prob=0.0,
    )
    assert zero == 0.0


def test_interventions_raise_the_floor() -> None:
    states = _states(200)
    args = {"resolution": RES, "draws": 16}
    calm = slot_noise_floor(_left_paddle_y, "neutral", states, intervention_prob=0.0, **args)
    hit = slot_noise_floor(_left_paddle_y, "neutral", states, intervention_prob=0.5, **args)
    assert hit > 1.5 * calm


def test_known_targets_leave_only_the_intervened_values_random() -> None:
    states = _states(400)
    args = {"resolution": RES, "intervention_prob": 0.5, "draws": 32}
    targets = np.zeros((400, 2, 5), bool)
    calm = slot_noise_floor(_left_paddle_y, "neutral", states, intervention_prob=0.0, draws=32,
                            resolution=RES)  # fmt: skip
    none = slot_noise_floor(_left_paddle_y, "neutral", states, targets=targets, **args)
    assert none == pytest.approx(calm, rel=1e-6)  # known: no intervention this step
    targets[:, 1, sim.TARGETS.index("paddle_left_y")] = True
    # do(p = p +- 1.5 (random sign) + N(0, 0.5^2)): Var = 1.5^2 + 0.25
    hit = slot_noise_floor(_left_paddle_y, "neutral", states, targets=targets, **args)
    assert hit == pytest.approx(2.5, rel=0.15)
    with pytest.raises(InvalidInputError, match="targets"):
        slot_noise_floor(_left_paddle_y, "neutral", states, targets=targets[:, :1], **args)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="states"):
        slot_noise_floor(
            _left_paddle_y, "neutral", np.zeros((3, 1, 8)), resolution=RES, intervention_prob=0.0
        )
    with pytest.raises(InvalidInputError, match="draws"):
        slot_noise_floor(
            _left_paddle_y, "neutral", _states(2), resolution=RES, intervention_prob=0.0, draws=1
        )


def test_outcomes_are_drawn_with_the_velocity_cue_of_the_data() -> None:
    # the encoder sees the re-simulated frames; with the cue the ball of s_t is drawn inside
    # the ball of s_{t+1} (sim.render's "previous"): the same outcomes, other ball pixels only
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"none": [], "previous": []}
    states = _states(16)
    states[:, :, 4] = 0.3  # diagonal flight: the two discs overlap on a wider lens
    states[:, :, 5] = 1.0
    for velocity, frames in seen.items():

        def encode(f: torch.Tensor, m: torch.Tensor, out: list = frames) -> torch.Tensor:  # type: ignore[type-arg]
            out.append((f, m))
            return torch.zeros(f.shape[0], 1, 1, 1)

        slot_noise_floor(
            encode, "neutral", states, resolution=RES, intervention_prob=0.0, draws=2,
            velocity=velocity,
        )  # fmt: skip
    plain = torch.cat([f for f, _ in seen["none"]]).numpy()
    cued = torch.cat([f for f, _ in seen["previous"]]).numpy()
    masks = torch.cat([m for _, m in seen["none"]]).numpy()
    changed = (plain != cued).any(axis=-1)
    ball = (masks & (1 << sim.OBJECTS.index("ball"))) > 0
    assert changed.any(axis=(-2, -1)).all()  # every outcome shows the cue
    assert not (changed & ~ball).any()  # and only inside the ball
