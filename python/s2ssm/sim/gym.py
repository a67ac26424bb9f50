"""A gymnasium-style single Interventional Pong game to watch or drive step by step.

It runs the NumPy reference (:mod:`s2ssm.sim.reference`) with the same counter-based draws as
:func:`s2ssm.sim.generate`: ``PongEnv(env).reset(seed=s)`` followed by ``T - 1`` plain
``step()`` calls reproduces sequence 0 of ``generate(env, 1, T, seed=s)``. Gymnasium itself is
not required; the class follows its ``reset`` / ``step`` / ``render`` protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s2ssm.errors import InvalidInputError
from s2ssm.sim import reference as ref
from s2ssm.sim._api import MAX_RESOLUTION, MIN_RESOLUTION, VELOCITY_CUES, _int
from s2ssm.sim._envs import STATE_NAMES, TARGETS, _env_bits

__all__ = ["PongEnv"]

# Where an action's value goes in the reference state, and its clamp range.
_TARGET_FIELDS = {
    "ball_dir": ("ball_dir", 0.0, 2.0 * np.pi),
    "ball_x": ("ball_x", 2.0, 30.0),
    "ball_y": ("ball_y", 3.2, 28.8),
    "paddle_left_y": ("paddle_left", 2.0, 30.0),
    "paddle_right_y": ("paddle_right", 2.0, 30.0),
}


class PongEnv:
    """One game. ``step(action)`` takes ``None`` or a dict ``{target: value}`` of hard
    interventions ``do(target = value)`` for that step (targets as :data:`TARGETS`).

    Observations are uint8 frames ``(H, W, C)``; ``info`` has ``state`` (float64, as
    ``STATE_NAMES``), ``mask``, ``local_graph`` (bool ``(K, K + 1)``) and ``interventions``.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012

    def __init__(
        self,
        env: str | int = "neutral",
        *,
        resolution: int = 32,
        velocity: str = "none",
        occlusion: bool = False,
        intervention_prob: float = 0.0,
        intervention_mode: str = "single",
    ) -> None:
        self.env_id, self._bits = _env_bits(env)
        self.resolution = _int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        if velocity not in VELOCITY_CUES:
            raise InvalidInputError(f"velocity: expected one of {VELOCITY_CUES}, got {velocity!r}")
        self.velocity = velocity
        self.occlusion = bool(occlusion)
        self.intervention_prob = float(intervention_prob)
        self.multi = intervention_mode == "multi"
        self.render_mode = "rgb_array"
        self._seed = 0
        self._t = 0
        self._state: ref.RefState | None = None
        self._frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new game (sequence 0 of ``seed``) and takes the warm-up step."""
        if seed is not None:
            self._seed = _int("seed", seed, 0, 2**64 - 1)
        self._t = 0
        self._state = ref.initial_state(self._seed, np.zeros(1, np.uint64))
        return self._advance(None)

    def step(
        self, action: dict[str, float] | None = None
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advances one step; returns ``(obs, reward=0.0, terminated=False, truncated=False,
        info)``."""
        if self._state is None:
            raise InvalidInputError("step: call reset() first")
        obs, info = self._advance(action)
        return obs, 0.0, False, False, info

    def render(self) -> np.ndarray | None:
        """The current frame (``rgb_array``)."""
        return self._frame

    def _advance(self, action: dict[str, float] | None) -> tuple[np.ndarray, dict[str, Any]]:
        assert self._state is not None
        forced = None
        if action:
            unknown = set(action) - set(TARGETS)
            if unknown:
                raise InvalidInputError(
                    f"action: unknown targets {sorted(unknown)}; valid: {', '.join(TARGETS)}"
                )
            forced = np.array([[name in action for name in TARGETS]])
        seqs = np.zeros(1, np.uint64)
        previous = np.stack([self._state.ball_x, self._state.ball_y], axis=-1)
        nxt, iv, graph = ref.step(
            self._state,
            self._bits,
            self._seed,
            seqs,
            self._t,
            self.intervention_prob,
            self.multi,
            forced=forced,
        )
        for name, value in (action or {}).items():
            field, lo, hi = _TARGET_FIELDS[name]
            v = float(value)
            if not np.isfinite(v):
                raise InvalidInputError(f"action[{name!r}]: expected a finite value, got {v}")
            if name == "ball_dir":
                v = float(np.mod(v, 2.0 * np.pi))
            setattr(nxt, field, np.array([min(max(v, lo), hi)]))
        frames, masks = ref.render(
            nxt,
            self.resolution,
            previous=previous,
            velocity=self.velocity,
            occlusion=self.occlusion,
        )
        self._state = nxt
        self._t += 1
        self._frame = frames[0]
        info = {
            "state": nxt.to_array()[0],
            "state_names": STATE_NAMES,
            "mask": masks[0],
            "local_graph": graph[0],
            "interventions": iv[0],
            "t": self._t - 1,
        }
        return frames[0], info
