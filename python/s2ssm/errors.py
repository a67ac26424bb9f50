"""Exception hierarchy of s2ssm: everything raised on purpose derives from :class:`S2ssmError`."""

from __future__ import annotations

__all__ = ["CountOverflowError", "InvalidInputError", "InvalidTypeError", "S2ssmError"]


class S2ssmError(Exception):
    """Root of every exception s2ssm raises on purpose."""


class InvalidInputError(S2ssmError, ValueError):
    """An argument has the wrong shape, size or value."""


class InvalidTypeError(S2ssmError, TypeError):
    """An argument has the wrong type or dtype."""


class CountOverflowError(S2ssmError, OverflowError):
    """An exact (integer) count does not fit into 64 bits."""
