"""Files written atomically: a temporary name in the target's directory, then a rename, so a
crash never leaves a half-written file; new files get the mode the umask allows (0644 under
the usual 022), not ``mkstemp``'s 0600."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write", "atomic_write_stream", "atomic_write_text", "umask", "write_json"]


def umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: Path, write: Callable[[str], object], temp_suffix: str | None = None
) -> None:
    """Create ``path`` by ``write(tmp)`` on a temporary file beside it, flushed to disk, then
    renamed into place. The temporary name is ``.<stem>.<random><temp_suffix>``; the default
    suffix is the target's, so writers that infer a format from the name work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if temp_suffix is None else temp_suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as written:  # on disk before the rename makes it visible
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_stream(
    path: Path, write: Callable[[BinaryIO], object], temp_suffix: str | None = None
) -> None:
    """:func:`atomic_write` through ``write(file)`` on the temporary file opened for binary
    writing (for writers that take a file object)."""

    def through_file(tmp: str) -> None:
        with open(tmp, "wb") as file:
            write(file)

    atomic_write(path, through_file, temp_suffix)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
