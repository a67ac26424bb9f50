"""s2ssm: Sparse Slot State Space Models for learning local causal world models.

The package, foundations first (a layer imports only those listed before it; tests/test_layout.py
checks it, and that no import cycle exists):

- foundations: :mod:`s2ssm.errors` (the exception hierarchy), :mod:`s2ssm.progress` (progress
  bars and lines), :mod:`s2ssm.files` (atomic writes), :mod:`s2ssm.config` (every setting,
  from TOML), :mod:`s2ssm.graph` (batched causal-graph metrics, Rust core),
  :mod:`s2ssm.testing` (hypothesis strategies for graph code), :mod:`s2ssm.sim` (the
  Interventional Pong simulator, Rust core),
  :mod:`s2ssm.triton_kernels` (fused kernels beside their PyTorch references) and
  :mod:`s2ssm.nn` (modules over them);
- :mod:`s2ssm.models` -- S2-SSM and its baselines, one file per part;
- :mod:`s2ssm.training` -- data, the trainer, checkpoints;
- :mod:`s2ssm.evaluation` -- metrics against the trivial baselines, noise floor, occlusion,
  plots;
- :mod:`s2ssm.experiments` -- the paper's protocol in a resumable run directory, and its report;
- :mod:`s2ssm.cli` -- the ``s2ssm`` command line.

With gymnasium installed, ``import s2ssm`` registers ``s2ssm/InterventionalPong-v0``
(:mod:`s2ssm.sim.gym`, imported only when made).
"""

from __future__ import annotations

import importlib.util

from s2ssm._core import __version__
from s2ssm.errors import CountOverflowError, InvalidInputError, InvalidTypeError, S2ssmError

__all__ = [
    "CountOverflowError",
    "InvalidInputError",
    "InvalidTypeError",
    "S2ssmError",
    "__version__",
]


def _register_gymnasium_envs() -> None:
    """Registers the gymnasium id (the environment module is imported by ``gymnasium.make``)."""
    if importlib.util.find_spec("gymnasium") is None:
        return
    import gymnasium

    if "s2ssm/InterventionalPong-v0" not in gymnasium.registry:
        gymnasium.register(
            id="s2ssm/InterventionalPong-v0",
            entry_point="s2ssm.sim.gym:InterventionalPongEnv",
            vector_entry_point="s2ssm.sim.gym:InterventionalPongVectorEnv",
            max_episode_steps=1000,
        )


_register_gymnasium_envs()
