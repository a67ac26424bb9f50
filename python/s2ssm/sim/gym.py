"""Interventional Pong as gymnasium environments, stepped by the Rust core.

- :class:`InterventionalPongEnv` (``gymnasium.make("s2ssm/InterventionalPong-v0", env=...)``):
  one game. The action is an explicit do() intervention or none.
- :class:`InterventionalPongVectorEnv` (``gymnasium.make_vec("s2ssm/InterventionalPong-v0",
  num_envs=n)``): ``n`` games stepped together in Rust (one call per step for the whole batch,
  GIL released), autoreset after truncation (gymnasium's next-step mode).

Both replay :func:`s2ssm.sim.generate` exactly: after ``reset(seed=s)``, ``T - 1`` steps
without a do() give sequence 0 (sub-environment ``i``: sequence ``i``) of
``generate(env, n, T, seed=s)``, frames byte for byte. A later ``reset()`` without a seed
starts the next game of the same seed (sequence ``+ 1``, or ``+ n`` for the vector env); a
first ``reset()`` without any seed draws one from ``np_random`` (fresh entropy).

The action is a dict ``{"targets": MultiBinary(5), "values": Box(0, 1, (5,))}``: every target
``k`` with ``targets[k] = 1`` is set on the next transition, ``do(TARGETS[k] = VALUE_LOW[k] +
values[k] * (VALUE_HIGH[k] - VALUE_LOW[k]))`` (values are positions in the field, normalised as
RL libraries prefer; outside ``[0, 1]`` they are clamped). An action with no target set, or
``None``, leaves the step to the environment's own random interventions (``intervention_prob``,
default 0: none). Rewards are 0 and games never terminate (Pong has no end); registered ids are
truncated at
``max_episode_steps`` (1000 unless given).

Observations are uint8 frames ``(R, R, C)``; ``info`` has ``state`` (float64, as
:data:`~s2ssm.sim.STATE_NAMES`), ``mask`` (bit ``k`` = object ``k``), ``local_graph`` (bool
``(K, K + 1)``, child x parent, env column last) and ``interventions`` of that transition, and
``game`` (its seed and sequence). Requires the ``gymnasium`` extra.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from s2ssm import _core
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.graph import MAX_THREADS
from s2ssm.sim._api import INTERVENTION_MODES, MAX_RESOLUTION, MIN_RESOLUTION, VELOCITY_CUES, _int
from s2ssm.sim._envs import OBJECTS, STATE_NAMES, TARGETS, _env_bits

__all__ = ["ENV_ID", "InterventionalPongEnv", "InterventionalPongVectorEnv", "action_space"]

#: The id ``import s2ssm`` registers.
ENV_ID = "s2ssm/InterventionalPong-v0"
#: The range of each target's value: an action's ``values`` in ``[0, 1]`` map onto it.
VALUE_LOW = np.array([0.0, 2.0, 3.2, 2.0, 2.0])
VALUE_HIGH = np.array([2.0 * math.pi, 30.0, 28.8, 30.0, 30.0])
K = len(OBJECTS)


def action_space() -> spaces.Dict:
    """The action space of one game: which targets to set, and their values."""
    return spaces.Dict(
        {
            "targets": spaces.MultiBinary(len(TARGETS)),
            "values": spaces.Box(0.0, 1.0, (len(TARGETS),), dtype=np.float64),
        }
    )


class _Games:
    """``n`` Rust games with their output buffers."""

    def __init__(
        self,
        n: int,
        env: str | int,
        resolution: int,
        velocity: str,
        occlusion: bool,
        intervention_prob: float,
        intervention_mode: str,
        num_threads: int | None = 1,
    ) -> None:
        self.env_id, bits = _env_bits(env)
        if num_threads is not None:
            num_threads = _int("num_threads", num_threads, 1, MAX_THREADS)
        self.num_threads = num_threads
        self.resolution = _int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        if velocity not in VELOCITY_CUES:
            raise InvalidInputError(f"velocity: expected one of {VELOCITY_CUES}, got {velocity!r}")
        if intervention_mode not in INTERVENTION_MODES:
            raise InvalidInputError(
                f"intervention_mode: expected one of {INTERVENTION_MODES}, "
                f"got {intervention_mode!r}"
            )
        if not isinstance(occlusion, bool | np.bool_):
            raise InvalidTypeError(f"occlusion: expected a bool, got {type(occlusion).__name__}")
        if isinstance(intervention_prob, bool) or not isinstance(
            intervention_prob, int | float | np.number
        ):
            raise InvalidTypeError("intervention_prob: expected a float")
        self.channels = 4 if velocity == "next_channel" else 3
        self.core = _core.SimGames(
            bits,
            n,
            self.resolution,
            velocity,
            bool(occlusion),
            float(intervention_prob),
            intervention_mode == "multi",
        )
        r = self.resolution
        self.frames = np.zeros((n, r, r, self.channels), np.uint8)
        self.masks = np.zeros((n, r, r), np.uint8)
        self.states = np.zeros((n, len(STATE_NAMES)))
        self.interventions = np.zeros((n, len(TARGETS)), bool)
        self.graphs = np.zeros((n, K, K + 1), bool)
        self.keys = np.zeros((n, 2), np.uint64)

    def reset(self, index: int, seed: int, sequence: int) -> None:
        self.keys[index] = (seed, sequence)
        self.core.reset(index, seed, sequence)

    def step(self, forced: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        rows, targets, values = (None, None, None) if forced is None else forced
        self.core.step(
            self.frames,
            self.masks,
            self.states,
            self.interventions,
            self.graphs,
            rows,
            targets,
            values,
            self.num_threads,
        )

    def info(self, i: int) -> dict[str, Any]:
        return {
            "state": self.states[i].copy(),
            "mask": self.masks[i].copy(),
            "local_graph": self.graphs[i].copy(),
            "interventions": self.interventions[i].copy(),
            "game": (int(self.keys[i, 0]), int(self.keys[i, 1])),
        }


def _forced(action: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(rows, targets, values)`` of a batch of ``n`` actions, or None when none sets a target."""
    if action is None:
        return None
    if not isinstance(action, dict) or set(action) != {"targets", "values"}:
        raise InvalidInputError(
            f"action: expected None or a dict with keys 'targets' and 'values', got {action!r:.80}"
        )
    targets = np.asarray(action["targets"])
    values = np.asarray(action["values"], dtype=np.float64)
    if targets.shape != (n, len(TARGETS)) and n == 1:
        targets, values = targets.reshape(1, -1), values.reshape(1, -1)
    if targets.shape != (n, len(TARGETS)) or values.shape != (n, len(TARGETS)):
        raise InvalidInputError(
            f"action: expected targets and values of {len(TARGETS)} entries per game, got "
            f"{targets.shape} and {values.shape}"
        )
    if not np.isin(targets, (0, 1)).all():
        raise InvalidInputError("action['targets']: expected 0 or 1 per target")
    on = targets.astype(bool)
    if not np.isfinite(values[on]).all():
        raise InvalidInputError("action['values']: expected finite values for the set targets")
    rows = on.any(axis=1)
    if not rows.any():
        return None
    physical = VALUE_LOW + np.clip(values, 0.0, 1.0) * (VALUE_HIGH - VALUE_LOW)
    return rows, np.ascontiguousarray(on), np.ascontiguousarray(np.where(on, physical, np.nan))


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise InvalidInputError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")


class InterventionalPongEnv(gymnasium.Env[np.ndarray, dict[str, np.ndarray]]):
    """One Interventional Pong game (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012

    def __init__(
        self,
        env: str | int = "neutral",
        *,
        resolution: int = 32,
        velocity: str = "none",
        occlusion: bool = False,
        intervention_prob: float = 0.0,
        intervention_mode: str = "single",
        render_mode: str | None = None,
    ) -> None:
        _check_render_mode(render_mode)
        self._games = _Games(
            1, env, resolution, velocity, occlusion, intervention_prob, intervention_mode
        )
        r, c = self._games.resolution, self._games.channels
        self.observation_space = spaces.Box(0, 255, (r, r, c), np.uint8)
        self.action_space = action_space()
        self.render_mode = render_mode
        self._seed: int | None = None
        self._sequence = 0
        self._started = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a game and takes its warm-up step (frame 0 of :func:`s2ssm.sim.generate`)."""
        super().reset(seed=seed)
        if seed is not None:
            self._seed, self._sequence = _int("seed", seed, 0, 2**63 - 1), 0
        elif self._seed is None:
            self._seed, self._sequence = int(self.np_random.integers(2**63)), 0
        else:
            self._sequence += 1
        self._games.reset(0, self._seed, self._sequence)
        self._games.step(None)
        self._started = True
        return self._games.frames[0].copy(), self._games.info(0)

    def step(
        self, action: dict[str, np.ndarray] | None
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One transition with the action's do() interventions (if any)."""
        if not self._started:
            raise InvalidInputError("step: call reset() first")
        self._games.step(_forced(action, 1))
        return self._games.frames[0].copy(), 0.0, False, False, self._games.info(0)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The current frame's RGB channels (``rgb_array``), or None without a render mode."""
        return self._games.frames[0, ..., :3].copy() if self.render_mode == "rgb_array" else None


class InterventionalPongVectorEnv(VectorEnv):
    """``num_envs`` games stepped together in Rust (see the module docstring)."""

    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        env: str | int = "neutral",
        *,
        resolution: int = 32,
        velocity: str = "none",
        occlusion: bool = False,
        intervention_prob: float = 0.0,
        intervention_mode: str = "single",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        num_threads: int | None = None,
    ) -> None:
        """``num_threads``: threads stepping the games (None: all cores)."""
        self.num_envs = _int("num_envs", num_envs, 1, 2**20)
        if max_episode_steps is not None:
            max_episode_steps = _int("max_episode_steps", max_episode_steps, 1)
        _check_render_mode(render_mode)
        self._games = _Games(
            self.num_envs,
            env,
            resolution,
            velocity,
            occlusion,
            intervention_prob,
            intervention_mode,
            num_threads,
        )
        r, c = self._games.resolution, self._games.channels
        self.single_observation_space = spaces.Box(0, 255, (r, r, c), np.uint8)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self._seed: int | None = None
        self._episode = np.zeros(self.num_envs, np.int64)
        self._length = np.zeros(self.num_envs, np.int64)
        self._needs_reset = np.zeros(self.num_envs, bool)
        self._started = False

    def _start(self, i: int) -> None:
        assert self._seed is not None
        self._games.reset(i, self._seed, i + int(self._episode[i]) * self.num_envs)
        self._length[i] = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts every game (sub-environment ``i``: sequence ``i`` of the seed)."""
        if seed is not None:
            self._np_random, _ = gymnasium.utils.seeding.np_random(seed)
            self._seed = _int("seed", seed, 0, 2**63 - 1)
            self._episode[:] = 0
        elif self._seed is None:
            self._seed = int(self.np_random.integers(2**63))
            self._episode[:] = 0
        else:
            self._episode += 1
        for i in range(self.num_envs):
            self._start(i)
        self._games.step(None)
        self._length[:] = 1
        self._needs_reset[:] = False
        self._started = True
        return self._games.frames.copy(), self._infos()

    def step(
        self, actions: dict[str, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One transition of every game; a game truncated on the previous step is reset
        instead (its action ignored)."""
        if not self._started:
            raise InvalidInputError("step: call reset() first")
        forced = _forced(actions, self.num_envs)
        restart = np.flatnonzero(self._needs_reset)
        for i in restart:
            self._episode[i] += 1
            self._start(int(i))
        if forced is not None and restart.size:
            forced[0][restart] = False
        self._games.step(forced)
        self._length += 1
        truncated = np.zeros(self.num_envs, bool)
        if self.max_episode_steps is not None:
            truncated = self._length >= self.max_episode_steps
        self._needs_reset = truncated.copy()
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, bool)
        return self._games.frames.copy(), rewards, terminated, truncated, self._infos()

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The current frames' RGB channels, one per game (``rgb_array``), or None without a
        render mode."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(self._games.frames[..., :3].copy())

    def _infos(self) -> dict[str, Any]:
        g = self._games
        infos: dict[str, Any] = {
            "state": g.states.copy(),
            "mask": g.masks.copy(),
            "local_graph": g.graphs.copy(),
            "interventions": g.interventions.copy(),
            "game": g.keys.copy(),
        }
        everywhere = np.ones(self.num_envs, bool)
        for key in list(infos):
            infos[f"_{key}"] = everywhere
        return infos
