"""A resumable run directory: one JSON record per finished unit of work, written atomically.

Generic: a unit is any frozen dataclass with an ``id`` (its record file's name); the
directory is bound to the JSON settings it was made for, so a rerun with other settings is
refused instead of mixing results. :func:`run_units` runs the units without a record and
skips the others, so an interrupted run continues where it stopped.

Layout::

    ROOT/protocol.json        the settings the directory was made for
    ROOT/units/<id>.json      one record per finished unit: its fields, ``unit`` = id, results
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from s2ssm.errors import InvalidInputError
from s2ssm.files import write_json
from s2ssm.progress import Progress

__all__ = ["RunDirectory", "WorkUnit", "run_units"]

log = logging.getLogger(__name__)


class WorkUnit(Protocol):
    """What the run directory needs of a unit: a dataclass with a file-name-safe ``id``."""

    @property
    def id(self) -> str: ...


U = TypeVar("U", bound=WorkUnit)


class RunDirectory:
    """The resumable state of a run: a record file per finished unit."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.units = self.root / "units"

    def bind(self, settings: Mapping[str, Mapping[str, Any]]) -> None:
        """Create the directory for ``settings`` (JSON-able sections of key -> value), or check
        that an existing one was made for the same settings (so finished units are valid for
        this run)."""
        wanted = {section: dict(values) for section, values in settings.items()}
        path = self.root / "protocol.json"
        if path.exists():
            found = json.loads(path.read_text(encoding="utf-8"))
            if found != wanted:
                keys = sorted(
                    f"{section}.{k}"
                    for section in set(found) | set(wanted)
                    for k in set(found.get(section, {})) | set(wanted.get(section, {}))
                    if found.get(section, {}).get(k) != wanted.get(section, {}).get(k)
                )
                raise InvalidInputError(
                    f"{self.root} holds a run with other settings (differs in "
                    f"{', '.join(keys)}); use another --out or delete it"
                )
        else:
            write_json(path, wanted)
        self.units.mkdir(parents=True, exist_ok=True)

    def done(self, unit: WorkUnit) -> dict[str, Any] | None:
        """The record of ``unit`` if it finished, else ``None``."""
        path = self.units / f"{unit.id}.json"
        if not path.is_file():
            return None
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return record

    def record(self, unit: WorkUnit, result: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``unit``'s record (its fields, ``unit`` = its id, then ``result``) atomically;
        returns it."""
        record = {**dataclasses.asdict(unit), "unit": unit.id, **result}  # type: ignore[call-overload]
        write_json(self.units / f"{unit.id}.json", record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every finished unit's record, sorted by unit id."""
        if not self.units.is_dir():
            return []
        return [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.units.glob("*.json"))
        ]


def run_units(
    rundir: RunDirectory,
    units: Iterable[U],
    run: Callable[[U], Mapping[str, Any]],
    *,
    progress: bool = True,
    desc: str = "run",
    on_unit: Callable[[U, dict[str, Any]], None] | None = None,
) -> tuple[list[str], list[str]]:
    """Run ``run(unit)`` for every unit without a record in ``rundir`` and record its result;
    returns the ids of the units run and of those skipped. With ``progress``, a bar on a
    terminal and timestamped progress lines elsewhere (:class:`s2ssm.progress.Progress`);
    ``on_unit`` is called after each unit is recorded."""
    units = list(units)
    ran: list[str] = []
    skipped: list[str] = []
    with Progress(len(units), desc, unit="unit", enabled=progress) as bar:
        for unit in units:
            if rundir.done(unit) is not None:
                skipped.append(unit.id)
            else:
                bar.set_postfix(f"last: {unit.id}")
                log.debug("unit %s", unit.id)
                record = rundir.record(unit, run(unit))
                ran.append(unit.id)
                if on_unit is not None:
                    on_unit(unit, record)
            bar.update(1)
    return ran, skipped
