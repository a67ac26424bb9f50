"""Datasets on disk: sharded ``.npz`` / ``.npy`` files with a JSON manifest (CITRIS's layout:
:mod:`s2ssm.sim.citris`).

Layout of a dataset directory::

    manifest.json               # versions, settings, full shapes, per-shard files + sha256
    shard_00000.npz             # format "npz": one archive per shard (fields of PongBatch)
    shard_00000.frames.npy ...  # format "npy": one file per field and shard (memory-mappable)

Every file is written under a temporary name and renamed; the manifest lists a shard only once
all its files are in place, so an interrupted run leaves no half shard and a rerun with the
same settings resumes after the last complete shard. Memory is bounded by one shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from s2ssm import __version__
from s2ssm.errors import InvalidInputError, S2ssmError
from s2ssm.files import atomic_write_stream
from s2ssm.progress import Progress
from s2ssm.sim._api import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PongBatch,
    _int,
    batch_shapes,
    generate,
)
from s2ssm.sim._envs import (
    OBJECTS,
    STATE_NAMES,
    TARGETS,
    env_id,
    env_mechanisms,
    env_name,
)

__all__ = [
    "FIELDS",
    "FORMAT_VERSION",
    "MANIFEST",
    "DatasetSpec",
    "ShardedDataset",
    "open_dataset",
    "write_dataset",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FIELDS = tuple(f.name for f in dataclasses.fields(PongBatch))
FORMATS = ("npz", "npy")
#: Default shard size target in bytes (frames + masks dominate).
SHARD_BYTES = 64 * 2**20


class DatasetError(S2ssmError):
    """A dataset directory is missing, incomplete or corrupt."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines a generated data set (the manifest's ``config``)."""

    env: str
    n_sequences: int
    seq_len: int
    seed: int = 0
    resolution: int = 32
    velocity: str = "none"
    occlusion: bool = False
    intervention_prob: float = 0.15
    intervention_mode: str = "single"
    shard_size: int | None = None
    format: str = "npz"

    def resolved(self) -> DatasetSpec:
        """Checks every field and fills in the default shard size."""
        name = env_name(self.env)
        n = _int("n_sequences", self.n_sequences, 1)
        t = _int("seq_len", self.seq_len, 1, 2**32 - 1)
        _int("seed", self.seed, 0, 2**64 - 1)
        _int("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        if self.format not in FORMATS:
            raise InvalidInputError(f"format: expected one of {FORMATS}, got {self.format!r}")
        # Validates velocity / intervention settings without rendering.
        generate(
            name,
            1,
            1,
            seed=self.seed,
            resolution=self.resolution,
            velocity=self.velocity,
            occlusion=self.occlusion,
            intervention_prob=self.intervention_prob,
            intervention_mode=self.intervention_mode,
            render=False,
        )
        shard = self.shard_size
        if shard is None:
            per_seq = sequence_bytes(t, self.resolution, self.velocity)
            shard = max(1, min(n, SHARD_BYTES // per_seq))
        shard = _int("shard_size", shard, 1)
        return dataclasses.replace(self, env=name, shard_size=min(shard, n))

    def config(self) -> dict[str, Any]:
        """The JSON-able settings a resumed run must match."""
        return dataclasses.asdict(self)


def sequence_bytes(seq_len: int, resolution: int, velocity: str) -> int:
    """Bytes of one sequence in memory."""
    channels = 4 if velocity == "next_channel" else 3
    shapes = batch_shapes(1, seq_len, resolution, channels, True)
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes.values())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Writes ``path`` through ``write(file)`` under a temporary ``.*.tmp`` name (which a
    resumed write clears away), then renames it (:func:`s2ssm.files.atomic_write_stream`)."""
    atomic_write_stream(path, write, temp_suffix=".tmp")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=False).encode()
    _atomic_write(path, lambda f: f.write(text))


def _shard_files(index: int, fmt: str) -> dict[str, str]:
    if fmt == "npz":
        return {"npz": f"shard_{index:05d}.npz"}
    return {field: f"shard_{index:05d}.{field}.npy" for field in FIELDS}


def _prepare_dir(out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"out: {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InvalidInputError(f"out: cannot write to {str(path)!r}: {error}") from error
    return path


def write_dataset(
    out: str | os.PathLike[str],
    spec: DatasetSpec,
    *,
    num_threads: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Writes (or resumes) the data set ``spec`` into directory ``out``; returns the manifest.

    ``progress``: ``None`` or ``True``: a bar on a terminal, timestamped lines elsewhere
    (:class:`s2ssm.progress.Progress`); ``False``: nothing.
    """
    spec = spec.resolved()
    path = _prepare_dir(out)
    manifest_path = path / MANIFEST
    n, shard = spec.n_sequences, int(spec.shard_size or 1)
    n_shards = -(-n // shard)
    channels = 4 if spec.velocity == "next_channel" else 3
    shapes = batch_shapes(n, spec.seq_len, spec.resolution, channels, True)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": "s2ssm.sim",
        "s2ssm_version": __version__,
        "config": spec.config(),
        "env_id": env_id(spec.env),
        "mechanisms": list(env_mechanisms(spec.env)),
        "objects": list(OBJECTS),
        "state_names": list(STATE_NAMES),
        "targets": list(TARGETS),
        "fields": {
            name: {"dtype": dtype.str, "shape": list(shape)}
            for name, (shape, dtype) in shapes.items()
        },
        "n_shards": n_shards,
        "shards": [],
        "complete": False,
    }
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"out: unreadable manifest {manifest_path}: {error}") from error
        if old.get("config") != manifest["config"] or old.get("format_version") != FORMAT_VERSION:
            raise InvalidInputError(
                f"out: {str(path)!r} holds a different dataset ({old.get('config')}); "
                "use another directory or the same settings to resume"
            )
        if old.get("s2ssm_version") != __version__:
            raise InvalidInputError(
                f"out: {str(path)!r} was written by s2ssm {old.get('s2ssm_version')}, this is "
                f"{__version__}; finish it with that version or use another directory"
            )
        manifest["shards"] = []
        for entry in old.get("shards", []):
            problem = _shard_problem(path, entry, shard, n, spec.format)
            if problem is None:
                manifest["shards"].append(entry)
            else:
                log.warning("shard %s will be written again: %s", entry.get("index"), problem)
    for stale in path.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    done = {s["index"] for s in manifest["shards"]}
    _write_json(manifest_path, manifest)
    todo = [i for i in range(n_shards) if i not in done]
    if done:
        log.info("resuming: %d of %d shards already written", len(done), n_shards)
    bar = Progress(n_shards, "generate", initial=len(done), unit="shard", enabled=progress)
    buffers: PongBatch | None = None
    try:
        for index in todo:
            start = index * shard
            m = min(shard, n - start)
            out_arrays = buffers if buffers is not None and len(buffers) == m else None
            batch = generate(
                spec.env,
                m,
                spec.seq_len,
                seed=spec.seed,
                start_index=start,
                resolution=spec.resolution,
                out=out_arrays,
                num_threads=num_threads,
                velocity=spec.velocity,
                occlusion=spec.occlusion,
                intervention_prob=spec.intervention_prob,
                intervention_mode=spec.intervention_mode,
            )
            if buffers is None:
                buffers = batch
            files = _shard_files(index, spec.format)
            arrays = batch.arrays()
            if spec.format == "npz":
                _atomic_write(path / files["npz"], partial(_savez, arrays=arrays))
            else:
                for field, name in files.items():
                    array = arrays[field]
                    _atomic_write(path / name, partial(np.save, arr=array))
            manifest["shards"].append(
                {
                    "index": index,
                    "start_index": start,
                    "n_sequences": m,
                    "files": list(files.values()),
                    "sha256": {name: _sha256(path / name) for name in files.values()},
                }
            )
            manifest["shards"].sort(key=lambda s: s["index"])
            _write_json(manifest_path, manifest)
            bar.update(1)
    finally:
        bar.close()
    manifest["complete"] = True
    _write_json(manifest_path, manifest)
    return manifest


def _shard_problem(path: Path, entry: Any, shard: int, n: int, fmt: str) -> str | None:
    """Why the manifest entry of an already written shard cannot be kept on resume (its place in
    the dataset, its files or their sha256 do not match), or None."""
    try:
        index = int(entry["index"])
        if not 0 <= index < -(-n // shard):
            return f"index {index} out of range"
        if int(entry["start_index"]) != index * shard:
            return f"start_index {entry['start_index']} is not {index * shard}"
        if int(entry["n_sequences"]) != min(shard, n - index * shard):
            return f"n_sequences {entry['n_sequences']} is not {min(shard, n - index * shard)}"
        files = list(_shard_files(index, fmt).values())
        if entry["files"] != files or sorted(entry["sha256"]) != sorted(files):
            return f"files {entry['files']} are not {files}"
        for name in files:
            if not (path / name).is_file():
                return f"{name} is missing"
            if _sha256(path / name) != entry["sha256"][name]:
                return f"{name}: sha256 mismatch (corrupt or modified file)"
    except (KeyError, TypeError, ValueError) as error:
        return f"malformed entry ({error!r})"
    return None


def _savez(f: Any, arrays: dict[str, np.ndarray]) -> None:
    np.savez(f, **arrays)  # type: ignore[arg-type]


class ShardedDataset:
    """Read access to a dataset directory written by :func:`write_dataset`.

    ``len(ds)`` sequences; ``ds[i]`` is a dict of the fields of sequence ``i``. Shards of both
    formats are memory-mapped (the ``.npz`` archives are stored uncompressed, so each member is a
    plain ``.npy`` at an offset of the file).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"path: no readable {MANIFEST} in {str(self.path)!r}") from error
        if not self.manifest.get("complete"):
            raise DatasetError(f"path: dataset in {str(self.path)!r} is incomplete; rerun generate")
        self.config = self.manifest["config"]
        self.shards = sorted(self.manifest["shards"], key=lambda s: s["index"])
        self._starts = np.array([s["start_index"] for s in self.shards], dtype=np.int64)
        self._check_coverage()
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    def _check_coverage(self) -> None:
        """The shards must tile sequences 0 .. n_sequences - 1 in order, without a gap."""
        expected = 0
        for k, entry in enumerate(self.shards):
            if entry["index"] != k or entry["start_index"] != expected:
                raise DatasetError(
                    f"path: {MANIFEST} of {str(self.path)!r} lists shard {entry['index']} at "
                    f"sequence {entry['start_index']}, expected shard {k} at {expected} (a "
                    "shard entry is missing or moved); rerun generate"
                )
            expected += int(entry["n_sequences"])
        if expected != int(self.config["n_sequences"]) or len(self.shards) != self.manifest.get(
            "n_shards"
        ):
            raise DatasetError(
                f"path: the shards of {str(self.path)!r} hold {expected} sequences in "
                f"{len(self.shards)} shards, its {MANIFEST} promises "
                f"{self.config['n_sequences']} in {self.manifest.get('n_shards')}; rerun generate"
            )

    def __len__(self) -> int:
        return int(self.config["n_sequences"])

    def shard_arrays(self, k: int) -> dict[str, np.ndarray]:
        """The arrays of shard ``k``, memory-mapped (read-only)."""
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        shard = self.shards[k]
        if self.config["format"] == "npz":
            arrays = mmap_npz(self.path / shard["files"][0])
        else:
            arrays = {
                field: np.load(self.path / name, mmap_mode="r")
                for field, name in zip(FIELDS, shard["files"], strict=True)
            }
        self._cache = (k, arrays)
        return arrays

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = _int("index", index, -len(self), len(self) - 1)
        if index < 0:
            index += len(self)
        k = int(np.searchsorted(self._starts, index, side="right") - 1)
        arrays = self.shard_arrays(k)
        local = index - int(self._starts[k])
        return {field: arrays[field][local] for field in FIELDS}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]

    def verify(self) -> None:
        """Recomputes every file's sha256; raises :class:`DatasetError` on a mismatch."""
        for shard in self.shards:
            for name, digest in shard["sha256"].items():
                if _sha256(self.path / name) != digest:
                    raise DatasetError(f"{name}: sha256 mismatch (corrupt or modified file)")


def mmap_npz(path: Path) -> dict[str, np.ndarray]:
    """Memory-maps every member of an uncompressed ``.npz`` archive (as written by ``np.savez``)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise DatasetError(f"{path.name}: member {info.filename!r} is not a stored .npy")
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise DatasetError(f"{path.name}: bad zip local header for {info.filename!r}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
            name = info.filename[: -len(".npy")]
            if int(np.prod(shape)) == 0:
                arrays[name] = np.zeros(shape, dtype)
                continue
            arrays[name] = np.memmap(
                path,
                dtype=dtype,
                mode="r",
                offset=offset,
                shape=shape,
                order="F" if fortran else "C",
            )
    return arrays


def open_dataset(path: str | os.PathLike[str]) -> ShardedDataset:
    """Opens a dataset directory written by ``s2ssm generate`` / :func:`write_dataset`."""
    return ShardedDataset(path)
