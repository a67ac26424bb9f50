"""Value types for the commands' arguments (argparse ``type=``), with messages naming what
was expected."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

__all__ = [
    "HelpFormatter",
    "non_negative_int",
    "plain_text",
    "positive_int",
    "probability",
    "use_help_formatter",
]

_ROLE = re.compile(r":(?:mod|func|class|data|attr|meth):`~?([^`]+)`")


def plain_text(text: str) -> str:
    """Docstring markup (reST roles, double backquotes) as plain terminal text."""
    return _ROLE.sub(r"\1", text).replace("``", "")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Plain-text help with each option's default shown (unless it has none worth showing)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default in ([], argparse.SUPPRESS)
        if nothing or "%(default)" in help_text:
            return help_text
        return super()._get_help_string(action)

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """Gives ``parser`` and every subcommand parser below it the :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        choices: Any = getattr(action, "choices", None)
        if isinstance(action, argparse._SubParsersAction) and isinstance(choices, dict):
            for sub in choices.values():
                use_help_formatter(sub)


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def probability(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value}")
    return value
