"""Where a prediction fails: the transitions of Pong sorted by what happens to the ball.

A next-slot MSE averages over transitions where nothing happens and the few where the causal
graph changes. :func:`event_errors` splits each object's error by the event of its transition
(:func:`transition_events`): a **collision** (a paddle -> ball edge in the true local graph), a
**point** (ball -> score), **near a paddle** (the ball within one move of a paddle's collision
band, ``x < 7.2 + speed`` or ``x > 24.8 - speed``, without a collision: the paddle decides that
the ball does *not* bounce, the information a model loses with paddle -> ball closed) and
**other**. Beside the dense model's errors this shows which edge a sparse model is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s2ssm.errors import InvalidInputError

__all__ = ["EVENTS", "event_errors", "event_table", "transition_events"]

EVENTS = ("collision", "point", "near_paddle", "other")

# The collision bands of the reference dynamics (shared/pong-reference.md): a collision with the
# left paddle needs the moved ball at 4 < x' < 6 + 1.2, with the right one at 26 - 1.2 < x' < 28.
_LEFT_BAND_END = 7.2
_RIGHT_BAND_START = 24.8


def transition_events(
    states: np.ndarray,
    local_graphs: np.ndarray,
    objects: tuple[str, ...],
    state_names: tuple[str, ...],
) -> np.ndarray:
    """(N, T, S) simulator states and (N, T, K, K + 1) true local graphs (``PongBatch``) ->
    (N, T - 1) int: the index in :data:`EVENTS` of each transition t -> t + 1 (the graph of
    step t + 1, the state of step t). A transition with a point and a collision counts as a
    point."""
    states = np.asarray(states)
    graphs = np.asarray(local_graphs, dtype=bool)
    if states.ndim != 3 or graphs.ndim != 4 or states.shape[:2] != graphs.shape[:2]:
        raise InvalidInputError(
            f"states (N, T, S) and local_graphs (N, T, K, K + 1) must share N and T, got "
            f"{states.shape} and {graphs.shape}"
        )
    ball, score = objects.index("ball"), objects.index("score")
    left, right = objects.index("left_paddle"), objects.index("right_paddle")
    truth = graphs[:, 1:]
    point = truth[..., score, ball]
    collision = ~point & (truth[..., ball, left] | truth[..., ball, right])
    x = states[:, :-1, state_names.index("ball_x")]
    speed = states[:, :-1, state_names.index("ball_speed")]
    near = (x < _LEFT_BAND_END + speed) | (x > _RIGHT_BAND_START - speed)
    near &= ~point & ~collision
    events = np.full(point.shape, EVENTS.index("other"), dtype=np.int64)
    events[near] = EVENTS.index("near_paddle")
    events[collision] = EVENTS.index("collision")
    events[point] = EVENTS.index("point")
    return events


def event_errors(
    errors: np.ndarray, events: np.ndarray, objects: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Per event: ``{"n": transitions, "mse": {object: mean error}}`` from per-transition,
    per-object errors (N, T - 1, K) (e.g. the squared error averaged over slot dimensions) and
    :func:`transition_events`' (N, T - 1); an event that never happens has ``n`` 0 and NaN."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.shape[:-1] != events.shape or errors.shape[-1] != len(objects):
        raise InvalidInputError(
            f"errors must be {(*events.shape, len(objects))} like the events, got {errors.shape}"
        )
    out: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(EVENTS):
        chosen = errors[events == index]
        mean = chosen.mean(axis=0) if len(chosen) else np.full(len(objects), np.nan)
        out[name] = {"n": len(chosen), "mse": dict(zip(objects, map(float, mean), strict=True))}
    return out


def event_table(rows: list[tuple[str, str, dict[str, dict[str, Any]]]]) -> str:
    """Markdown: per (run label, environment, :func:`event_errors` report) a row with each
    event's count and the errors of the ball and the score (x 1e-3)."""
    head = ["run", "env"]
    for event in EVENTS:
        head += [f"{event} n", f"{event}: ball", f"{event}: score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(value: float) -> str:
        return "n/a" if value != value else f"{value * 1e3:.2f}"

    for label, env, report in rows:
        cells = [label, env]
        for event in EVENTS:
            e = report[event]
            cells += [str(e["n"]), cell(e["mse"]["ball"]), cell(e["mse"]["score"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
