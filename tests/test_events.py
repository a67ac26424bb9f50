"""Transition events and the errors split by them (s2ssm.evaluation.events)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm import sim
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.events import EVENTS, event_errors, event_table, transition_events

OBJ, NAMES = sim.OBJECTS, sim.STATE_NAMES


def _events(batch: sim.PongBatch) -> np.ndarray:
    return transition_events(batch.states, batch.local_graphs, OBJ, NAMES)


def test_events_follow_the_true_graphs_and_the_ball_position() -> None:
    batch = sim.generate("neutral", 64, 16, seed=3, intervention_prob=0.0, render=False)
    events = _events(batch)
    truth = np.asarray(batch.local_graphs)[:, 1:]
    ball, score = OBJ.index("ball"), OBJ.index("score")
    point = truth[..., score, ball]
    hit = truth[..., ball, OBJ.index("left_paddle")] | truth[..., ball, OBJ.index("right_paddle")]
    assert events.shape == (64, 15)
    np.testing.assert_array_equal(events == EVENTS.index("point"), point)
    np.testing.assert_array_equal(events == EVENTS.index("collision"), hit & ~point)
    x = np.asarray(batch.states)[:, :-1, NAMES.index("ball_x")]
    near = events == EVENTS.index("near_paddle")
    other = events == EVENTS.index("other")
    assert near.any() and other.any() and point.any() and hit.any()
    # near a paddle: within one move (speed 2) of a collision band; other: mid-field
    assert ((x[near] < 9.2) | (x[near] > 22.8)).all()
    assert ((x[other] >= 9.2) & (x[other] <= 22.8)).all()
    # every collision happens near a paddle
    assert ((x[hit & ~point] < 9.2) | (x[hit & ~point] > 22.8)).all()


def test_events_reject_mismatched_shapes() -> None:
    batch = sim.generate("neutral", 2, 4, seed=0, render=False)
    with pytest.raises(InvalidInputError, match="must share N and T"):
        transition_events(np.asarray(batch.states)[:, :3], batch.local_graphs, OBJ, NAMES)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 4),
    t=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_event_errors_are_per_event_means(n: int, t: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = rng.integers(0, len(EVENTS), size=(n, t))
    errors = rng.random((n, t, len(OBJ)))
    report = event_errors(errors, events, OBJ)
    for index, name in enumerate(EVENTS):
        rows = [errors[i, j] for i in range(n) for j in range(t) if events[i, j] == index]
        assert report[name]["n"] == len(rows)
        for k, obj in enumerate(OBJ):
            got = report[name]["mse"][obj]
            if rows:
                assert got == pytest.approx(sum(r[k] for r in rows) / len(rows))
            else:
                assert math.isnan(got)


def test_event_errors_and_table_format() -> None:
    events = np.array([[0, 1, 3]])
    errors = np.full((1, 3, len(OBJ)), 2e-3)
    report = event_errors(errors, events, OBJ)
    table = event_table([("run", "neutral", report)])
    lines = table.splitlines()
    assert lines[0].startswith("| run | env | collision n |") and len(lines) == 3
    assert "| run | neutral | 1 | 2.00 | 2.00 | 1 | 2.00 | 2.00 | 0 | n/a | n/a | 1 |" in table
    with pytest.raises(InvalidInputError, match="like the events"):
        event_errors(errors[..., :2], events, OBJ)
