"""Interventional Pong simulator (Rust core): deterministic, batched, all paper environments.

- :func:`generate` -> :class:`PongBatch` (frames, masks, states, interventions, local graphs,
  env ids); :func:`iterate` streams batches from reused buffers.
- :data:`ENVIRONMENTS` (the 11 of SPARTAN / S2-SSM), :func:`env_id`,
  :func:`register_environment` for user combinations of :data:`MECHANISMS`.
- :func:`global_graph`, :func:`unpack_masks`; objects :data:`OBJECTS`, variables
  :data:`STATE_NAMES`, intervention targets :data:`TARGETS`.
- :mod:`s2ssm.sim.reference` (NumPy reference), :mod:`s2ssm.sim.io` (shards on disk),
  :mod:`s2ssm.sim.torch_data` (torch datasets, imports torch), :mod:`s2ssm.sim.gym`
  (step-by-step environment).

Graph convention (same as ``s2ssm.graph``'s ``layout="child_parent"``): a local graph is bool
``(K, K + 1)``; ``g[i, j]`` is an edge from object ``j`` at ``t - 1`` to object ``i`` at
``t`` (row = child, column = parent); the diagonal holds self-loops (kept, an object's own past
is a parent unless it is intervened on or reset); column ``K`` is the env / intervention token.
"""

from __future__ import annotations

from s2ssm.sim._api import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PongBatch,
    generate,
    iterate,
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

__all__ = [
    "ENVIRONMENTS",
    "MAX_RESOLUTION",
    "MECHANISMS",
    "MIN_RESOLUTION",
    "OBJECTS",
    "STATE_NAMES",
    "TARGETS",
    "PongBatch",
    "env_id",
    "env_mechanisms",
    "env_name",
    "environments",
    "generate",
    "global_graph",
    "iterate",
    "register_environment",
    "unpack_masks",
]
