"""s2ssm: Sparse Slot State Space Models for learning local causal world models.

Modules: :mod:`s2ssm.graph` (batched causal-graph metrics, Rust core), :mod:`s2ssm.testing`
(hypothesis strategies for graph code), :mod:`s2ssm.errors` (the exception hierarchy).
"""

from __future__ import annotations

from s2ssm._core import __version__
from s2ssm.errors import CountOverflowError, InvalidInputError, InvalidTypeError, S2ssmError

__all__ = [
    "CountOverflowError",
    "InvalidInputError",
    "InvalidTypeError",
    "S2ssmError",
    "__version__",
]
