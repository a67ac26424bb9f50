"""Environment registry, object / state / target names and global graphs of Interventional Pong."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from s2ssm import _core
from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "ENVIRONMENTS",
    "MECHANISMS",
    "OBJECTS",
    "STATE_NAMES",
    "TARGETS",
    "env_id",
    "env_mechanisms",
    "env_name",
    "environments",
    "global_graph",
    "register_environment",
]

#: Objects of the model, in graph row / column order; the env token is column ``len(OBJECTS)``.
OBJECTS: tuple[str, ...] = ("left_paddle", "right_paddle", "ball", "score")
#: Variables of ``PongBatch.states`` in order (scores as floats 0..4; ``ball_dir`` from +y in
#: radians, ``[0, 2 pi)``; ``ball_speed`` is 2 in the neutral environment).
STATE_NAMES: tuple[str, ...] = (
    "paddle_left_y",
    "paddle_right_y",
    "ball_x",
    "ball_y",
    "ball_dir",
    "ball_speed",
    "score_left",
    "score_right",
)
#: Intervention targets in the order of ``PongBatch.interventions``.
TARGETS: tuple[str, ...] = ("ball_dir", "ball_x", "ball_y", "paddle_left_y", "paddle_right_y")

_BUILTIN: list[tuple[str, int]] = list(_core.sim_environments())
#: Mechanism name -> bit.
MECHANISMS: dict[str, int] = dict(_core.sim_mechanisms())
#: The 11 built-in environments of SPARTAN / S2-SSM, in id order (id 0 = ``"neutral"``).
ENVIRONMENTS: tuple[str, ...] = tuple(name for name, _ in _BUILTIN)

_lock = threading.Lock()
_registry: list[tuple[str, int]] = list(_BUILTIN)


def environments() -> tuple[str, ...]:
    """Every environment name in id order: the built-in ones, then user-registered ones."""
    with _lock:
        return tuple(name for name, _ in _registry)


def register_environment(name: str, mechanisms: Iterable[str]) -> int:
    """Registers ``name`` as the combination of ``mechanisms`` (names of :data:`MECHANISMS`).

    Returns the new environment id. Registering an existing name with the same mechanisms returns
    its id; with different mechanisms it is an error.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidInputError(f"name: expected an identifier-like string, got {name!r}")
    if isinstance(mechanisms, str):
        raise InvalidTypeError("mechanisms: expected an iterable of mechanism names, not a str")
    try:
        names = list(mechanisms)
    except TypeError:
        raise InvalidTypeError(
            f"mechanisms: expected an iterable of mechanism names, got {type(mechanisms).__name__}"
        ) from None
    bits = 0
    for mechanism in names:
        if mechanism not in MECHANISMS:
            raise InvalidInputError(
                f"mechanisms: unknown mechanism {mechanism!r}; valid: {', '.join(MECHANISMS)}"
            )
        bits |= MECHANISMS[mechanism]
    with _lock:
        for index, (existing, existing_bits) in enumerate(_registry):
            if existing == name:
                if existing_bits != bits:
                    raise InvalidInputError(
                        f"name: environment {name!r} is already registered with other mechanisms"
                    )
                return index
        _registry.append((name, bits))
        return len(_registry) - 1


def env_id(env: str | int) -> int:
    """The id of an environment given by name or id."""
    with _lock:
        registry = list(_registry)
    if isinstance(env, bool) or not isinstance(env, (str, int, np.integer)):
        raise InvalidTypeError(f"env: expected a name or an integer id, got {type(env).__name__}")
    if isinstance(env, str):
        for index, (name, _) in enumerate(registry):
            if name == env:
                return index
        names = ", ".join(name for name, _ in registry)
        raise InvalidInputError(f"env: unknown environment {env!r}; valid names: {names}")
    index = int(env)
    if not 0 <= index < len(registry):
        raise InvalidInputError(f"env: expected an id in [0, {len(registry)}), got {index}")
    return index


def env_name(env: str | int) -> str:
    """The name of an environment given by name or id."""
    index = env_id(env)
    with _lock:
        return _registry[index][0]


def env_mechanisms(env: str | int) -> tuple[str, ...]:
    """The mechanism names of an environment."""
    index = env_id(env)
    with _lock:
        bits = _registry[index][1]
    return tuple(name for name, bit in MECHANISMS.items() if bits & bit)


def _env_bits(env: str | int) -> tuple[int, int]:
    index = env_id(env)
    with _lock:
        return index, _registry[index][1]


def global_graph(env: str | int, *, interventions: bool = False) -> npt.NDArray[np.bool_]:
    """The environment's global graph, bool ``(K, K + 1)``, child x parent, env column last.

    Row ``i`` = object ``i`` at ``t``, column ``j`` = its parent object ``j`` at ``t - 1``; the
    diagonal holds self-loops (always present). The union of the environment's possible local
    graphs; ``interventions=True`` adds the env edges that interventions create.
    """
    _, bits = _env_bits(env)
    return _core.sim_global_graph(bits, bool(interventions))
