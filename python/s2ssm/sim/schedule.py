"""Explicit do() interventions: which target, at which step of which sequence, with which value.

``generate(..., schedule=s)`` replaces the random interventions by ``s``, with the same
determinism guarantees as the rest (every other draw is still a function of the seed, the
sequence and the step, so a schedule that repeats the random choice reproduces the random run).

>>> from s2ssm import sim
>>> s = sim.InterventionSchedule.empty(2, 10).do(0, 5, "ball_x", 8.0).do(1, 3, "paddle_left_y")
>>> batch = sim.generate("neutral", 2, 10, seed=0, schedule=s)
>>> bool(batch.interventions[0, 5, 1]), float(batch.states[0, 5, 2])
(True, 8.0)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.sim._envs import TARGETS

__all__ = ["InterventionSchedule"]


class InterventionSchedule:
    """do() interventions for ``n_sequences`` sequences of ``seq_len`` steps.

    - ``targets``: bool ``(N, T, 5)``; ``[i, t, k]``: target ``TARGETS[k]`` is intervened on
      the transition to frame ``t`` of sequence ``i`` (entry 0: the warm-up step), the same
      meaning as :attr:`PongBatch.interventions`.
    - ``values``: float64 ``(N, T, 5)``; the value set, or NaN for the value a random
      intervention would draw. Values are clamped to the field (the angle wrapped) like every
      state; infinities are refused.
    """

    def __init__(self, targets: npt.ArrayLike, values: npt.ArrayLike | None = None) -> None:
        t = np.asarray(targets)
        if t.dtype != np.bool_:
            raise InvalidTypeError(f"targets: expected a bool array, got dtype {t.dtype}")
        if t.ndim != 3 or t.shape[2] != len(TARGETS):
            raise InvalidInputError(
                f"targets: expected shape (n_sequences, seq_len, {len(TARGETS)}), got {t.shape}"
            )
        if values is None:
            v = np.full(t.shape, np.nan)
        else:
            v = np.asarray(values)
            if not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
                raise InvalidTypeError(f"values: expected a float array, got dtype {v.dtype}")
            v = v.astype(np.float64)
            if v.shape != t.shape:
                raise InvalidInputError(f"values: expected shape {t.shape}, got {v.shape}")
            if np.isinf(v).any():
                raise InvalidInputError("values: expected finite values (or NaN), got infinity")
        self.targets: npt.NDArray[np.bool_] = np.ascontiguousarray(t).copy()
        self.values: npt.NDArray[np.float64] = np.ascontiguousarray(v).copy()

    @classmethod
    def empty(cls, n_sequences: int, seq_len: int) -> InterventionSchedule:
        """No intervention anywhere (add some with :meth:`do`)."""
        for name, value in (("n_sequences", n_sequences), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidTypeError(f"{name}: expected an integer, got {type(value).__name__}")
            if value < 1:
                raise InvalidInputError(f"{name}: expected at least 1, got {value}")
        return cls(np.zeros((int(n_sequences), int(seq_len), len(TARGETS)), bool))

    @classmethod
    def from_records(
        cls,
        n_sequences: int,
        seq_len: int,
        records: Iterable[tuple[int, int, str, float | None]],
    ) -> InterventionSchedule:
        """From ``(sequence, step, target, value or None)`` records."""
        schedule = cls.empty(n_sequences, seq_len)
        for sequence, step, target, value in records:
            schedule.do(sequence, step, target, value)
        return schedule

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_sequences, seq_len)``."""
        n, t, _ = self.targets.shape
        return n, t

    def do(
        self, sequence: int, step: int, target: str, value: float | None = None
    ) -> InterventionSchedule:
        """Adds ``do(target = value)`` (``None``: the drawn value) at ``step`` of ``sequence``;
        returns the schedule, so calls chain."""
        if target not in TARGETS:
            raise InvalidInputError(f"target: expected one of {TARGETS}, got {target!r}")
        n, t = self.shape
        for name, index, size in (("sequence", sequence, n), ("step", step, t)):
            if isinstance(index, bool) or not isinstance(index, int | np.integer):
                raise InvalidTypeError(f"{name}: expected an integer, got {type(index).__name__}")
            if not 0 <= index < size:
                raise InvalidInputError(f"{name}: expected 0 to {size - 1}, got {index}")
        v = np.nan
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise InvalidTypeError(f"value: expected a number, got {type(value).__name__}")
            v = float(value)
            if not np.isfinite(v):
                raise InvalidInputError(f"value: expected a finite number, got {v}")
        k = TARGETS.index(target)
        self.targets[sequence, step, k] = True
        self.values[sequence, step, k] = v
        return self

    def rows(self, start: int, stop: int) -> InterventionSchedule:
        """The schedule of sequences ``start .. stop`` (a copy)."""
        return InterventionSchedule(self.targets[start:stop], self.values[start:stop])

    def __repr__(self) -> str:
        n, t = self.shape
        return f"InterventionSchedule({n} sequences x {t} steps, {int(self.targets.sum())} do())"
