"""Interventional Pong simulator (Rust core): deterministic, batched, all paper environments.

- :func:`generate` -> :class:`PongBatch` (frames, masks, states, interventions, local graphs,
  env ids); :func:`iterate` streams batches from reused buffers; :func:`render` draws
  arbitrary states (e.g. a model's predictions) exactly as :func:`generate` does.
- :data:`ENVIRONMENTS` (the 11 of SPARTAN / S2-SSM), :func:`env_id`,
  :func:`register_environment` for user combinations of :data:`MECHANISMS`.
- :class:`InterventionSchedule`: explicit do() interventions for :func:`generate`.
- :func:`global_graph`, :func:`unpack_masks`; objects :data:`OBJECTS`, variables
  :data:`STATE_NAMES`, intervention targets :data:`TARGETS`.
- :mod:`s2ssm.sim.reference` (NumPy reference), :mod:`s2ssm.sim.io` (shards on disk),
  :mod:`s2ssm.sim.citris` (CITRIS's dataset layout),
  :mod:`s2ssm.sim.torch_data` (torch datasets, imports torch), :mod:`s2ssm.sim.gym`
  (gymnasium environments).

Environments (mechanism constants are ours; the papers publish none; ``rust/core/src/sim/env.rs``):

==  ==================  =========================================================  ============
id  name                mechanism change (constants)                               env edge to
==  ==================  =========================================================  ============
0   neutral             none: CITRIS dynamics                                      -
1   sine                dir += 0.35 * sin(2 pi x / 8) before moving                ball
2   left_away           left paddle steps *away* from the ball height (<= 1.5)     left paddle
3   right_mirror        right paddle tracks the mirrored height 32 - y             right paddle
4   friction            speed relaxes (rate 0.5) to 0.8 while abs(x - 16) < 5      ball
5   bounce              paddle hit: speed * 1.5 (<= 3.5), spin 0.5 * offset / 3   ball
6   gravity             v_y -= 0.4 per step while x < 16                           ball
7   gravity_bounce      6 + 5                                                      ball
8   friction_bounce     4 + 5                                                      ball
9   sine_left_away      1 + 2                                                      ball, left
10  gravity_right_away  6 + right paddle steps away from the ball                  ball, right
==  ==================  =========================================================  ============

Outside the friction band the speed relaxes back to 2 at rate 0.5 (in the neutral environment
it stays exactly 2). Local env edges appear only on transitions where the mechanism acts
(sine: always; friction: inside the band; gravity: left half; bounce: on a paddle hit; paddle
mechanisms: while the paddle tracks), plus on every intervened object.

Graph convention (same as ``s2ssm.graph``'s ``layout="child_parent"``): a local graph is bool
``(K, K + 1)``; ``g[i, j]`` is an edge from object ``j`` at ``t - 1`` to object ``i`` at
``t`` (row = child, column = parent); the diagonal holds self-loops (an object's own past is a
parent unless it is reset: a paddle after a point, a do() value set by a schedule); column
``K`` is the env / intervention token. An intervened paddle keeps its self-loop and loses the
ball (CITRIS's intervention moves it from its own past by +- 1.5 plus noise); on a point step
(a fresh U[4, 28]) or with a value set by a schedule it has the env token alone.
"""

from __future__ import annotations

from s2ssm.sim._api import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PongBatch,
    background,
    generate,
    iterate,
    render,
    unpack_masks,
)
from s2ssm.sim._envs import (
    ENVIRONMENTS,
    MECHANISMS,
    OBJECTS,
    STATE_NAMES,
    TARGETS,
    env_id,
    env_mechanisms,
    env_name,
    environments,
    global_graph,
    register_environment,
)
from s2ssm.sim.citris import export_citris
from s2ssm.sim.io import DatasetSpec, open_dataset, write_dataset
from s2ssm.sim.schedule import InterventionSchedule

__all__ = [
    "ENVIRONMENTS",
    "MAX_RESOLUTION",
    "MECHANISMS",
    "MIN_RESOLUTION",
    "OBJECTS",
    "STATE_NAMES",
    "TARGETS",
    "DatasetSpec",
    "InterventionSchedule",
    "PongBatch",
    "background",
    "env_id",
    "env_mechanisms",
    "env_name",
    "environments",
    "export_citris",
    "generate",
    "global_graph",
    "iterate",
    "open_dataset",
    "register_environment",
    "render",
    "unpack_masks",
    "write_dataset",
]
