"""``generate``: batched Interventional Pong sequences from the Rust core, without copies."""

from __future__ import annotations

import dataclasses
import numbers
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from s2ssm import _core
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.graph import MAX_THREADS
from s2ssm.sim._envs import OBJECTS, STATE_NAMES, TARGETS, _env_bits
from s2ssm.sim.schedule import InterventionSchedule

__all__ = [
    "MAX_RESOLUTION",
    "MIN_RESOLUTION",
    "PongBatch",
    "background",
    "generate",
    "iterate",
    "render",
    "unpack_masks",
]

MIN_RESOLUTION = 16
MAX_RESOLUTION = 128
VELOCITY_CUES = ("none", "previous", "next_channel")
INTERVENTION_MODES = ("single", "multi")
K = len(OBJECTS)


@dataclasses.dataclass(frozen=True, eq=False)
class PongBatch:
    """Generated sequences; ``N`` sequences of ``T`` steps, ``H = W = resolution``.

    - ``frames``: uint8 ``(N, T, H, W, C)``, ``C = 3`` (4 with ``velocity="next_channel"``).
    - ``masks``: uint8 ``(N, T, H, W)``, bit ``k`` = object ``k`` of ``OBJECTS`` (amodal).
    - ``states``: float32 ``(N, T, len(STATE_NAMES))``.
    - ``interventions``: bool ``(N, T, 5)``, targets as ``TARGETS``; entry ``t`` = applied on
      the transition ``t - 1 -> t`` (entry 0: the warm-up step before recording).
    - ``local_graphs``: bool ``(N, T, K, K + 1)``, child x parent, env column last; entry ``t``
      = graph of the transition ``t - 1 -> t``.
    - ``env_ids``: int64 ``(N,)``.

    Without rendering (``render=False``) frames and masks have ``H = W = 0``.
    """

    frames: npt.NDArray[np.uint8]
    masks: npt.NDArray[np.uint8]
    states: npt.NDArray[np.float32]
    interventions: npt.NDArray[np.bool_]
    local_graphs: npt.NDArray[np.bool_]
    env_ids: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.env_ids.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields as a name -> array dict (the order of :func:`dataclasses.fields`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def slice(self, start: int, stop: int) -> PongBatch:
        """Sequences ``start:stop`` as views."""
        return PongBatch(**{k: v[start:stop] for k, v in self.arrays().items()})


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = operator.index(value)
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidInputError(f"{name}: expected an integer {bound}, got {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidTypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def batch_shapes(
    n_sequences: int, seq_len: int, resolution: int, channels: int, render: bool
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every ``PongBatch`` field."""
    r = resolution if render else 0
    return {
        "frames": ((n_sequences, seq_len, r, r, channels), np.dtype(np.uint8)),
        "masks": ((n_sequences, seq_len, r, r), np.dtype(np.uint8)),
        "states": ((n_sequences, seq_len, len(STATE_NAMES)), np.dtype(np.float32)),
        "interventions": ((n_sequences, seq_len, len(TARGETS)), np.dtype(np.bool_)),
        "local_graphs": ((n_sequences, seq_len, K, K + 1), np.dtype(np.bool_)),
        "env_ids": ((n_sequences,), np.dtype(np.int64)),
    }


def _check_out(out: Any, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> PongBatch:
    if isinstance(out, PongBatch):
        arrays = out.arrays()
    elif isinstance(out, dict):
        arrays = dict(out)
    else:
        raise InvalidTypeError(
            f"out: expected a PongBatch or a dict of arrays, got {type(out).__name__}"
        )
    checked = {}
    for name, (shape, dtype) in shapes.items():
        array = arrays.get(name)
        if not isinstance(array, np.ndarray):
            raise InvalidTypeError(
                f"out.{name}: expected a numpy array, got {type(array).__name__}"
            )
        if array.dtype != dtype:
            raise InvalidTypeError(f"out.{name}: expected dtype {dtype}, got {array.dtype}")
        if array.shape != shape:
            raise InvalidInputError(f"out.{name}: expected shape {shape}, got {array.shape}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise InvalidInputError(f"out.{name}: expected a writeable C-contiguous array")
        checked[name] = array
    return PongBatch(**checked)


def allocate(shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> PongBatch:
    """Fresh (uninitialised) arrays for a batch."""
    return PongBatch(**{name: np.empty(shape, dtype) for name, (shape, dtype) in shapes.items()})


def generate(
    env: str | int,
    n_sequences: int,
    seq_len: int,
    *,
    seed: int,
    start_index: int = 0,
    resolution: int = 32,
    out: PongBatch | dict[str, np.ndarray] | None = None,
    num_threads: int | None = None,
    velocity: str = "none",
    occlusion: bool = False,
    intervention_prob: float = 0.15,
    intervention_mode: str = "single",
    render: bool = True,
    schedule: InterventionSchedule | None = None,
) -> PongBatch:
    """Generates sequences ``start_index .. start_index + n_sequences`` of environment ``env``.

    Every random draw is a function of ``(seed, sequence index, step, slot)``, so the bytes do
    not depend on ``num_threads``, batch splits or ``start_index``. The arrays are allocated by
    numpy and filled in place by the Rust core with the GIL released (no copies); with ``out``
    (a :class:`PongBatch` or dict of arrays of the right shapes and dtypes) they are written
    there instead. Ctrl-C interrupts a long call (``KeyboardInterrupt``).

    ``velocity``: ``"none"``, ``"previous"`` (previous ball position drawn inside the ball,
    SPARTAN) or ``"next_channel"`` (a 4th channel with the projected next ball, CITRIS).
    ``occlusion`` draws an occluder band over x in [13, 19), y in [2, 22) (masks stay amodal).
    ``intervention_mode``: ``"single"`` (CITRIS's rule: no intervention with probability
    ``(1 - intervention_prob) ** 5``, else one target uniformly at random; 0.15 gives none 44 %,
    each target 11 %) or ``"multi"`` (each target independently with ``intervention_prob``).
    ``schedule`` (:class:`~s2ssm.sim.InterventionSchedule` of ``(n_sequences, seq_len)``):
    explicit do() interventions instead of random ones (``intervention_prob`` and
    ``intervention_mode`` are then not used); ``interventions`` equals ``schedule.targets``.
    """
    index, bits = _env_bits(env)
    n_sequences = _int("n_sequences", n_sequences, 1)
    seq_len = _int("seq_len", seq_len, 1, 2**32 - 1)
    seed = _int("seed", seed, 0, 2**64 - 1)
    start_index = _int("start_index", start_index, 0, 2**64 - 1 - n_sequences)
    resolution = _int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
    if num_threads is not None:
        num_threads = _int("num_threads", num_threads, 1, MAX_THREADS)
    if velocity not in VELOCITY_CUES:
        raise InvalidInputError(f"velocity: expected one of {VELOCITY_CUES}, got {velocity!r}")
    if intervention_mode not in INTERVENTION_MODES:
        raise InvalidInputError(
            f"intervention_mode: expected one of {INTERVENTION_MODES}, got {intervention_mode!r}"
        )
    if isinstance(intervention_prob, bool) or not isinstance(intervention_prob, numbers.Real):
        raise InvalidTypeError("intervention_prob: expected a float")
    prob = float(intervention_prob)
    if not 0.0 <= prob <= 1.0:
        raise InvalidInputError(f"intervention_prob: expected a probability in [0, 1], got {prob}")
    occlusion, render = _flag("occlusion", occlusion), _flag("render", render)
    if schedule is not None:
        if not isinstance(schedule, InterventionSchedule):
            raise InvalidTypeError(
                f"schedule: expected an InterventionSchedule, got {type(schedule).__name__}"
            )
        if schedule.shape != (n_sequences, seq_len):
            raise InvalidInputError(
                f"schedule: expected {n_sequences} sequences x {seq_len} steps, got "
                f"{schedule.shape[0]} x {schedule.shape[1]}"
            )
    channels = 4 if velocity == "next_channel" else 3
    shapes = batch_shapes(n_sequences, seq_len, resolution, channels, render)
    if out is None:
        try:
            batch = allocate(shapes)
        except MemoryError:
            size = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in shapes.values())
            raise InvalidInputError(
                f"n_sequences: {n_sequences} sequences of seq_len {seq_len} at resolution "
                f"{resolution} need {size:,} bytes, more than can be allocated"
            ) from None
    else:
        batch = _check_out(out, shapes)
    _core.sim_generate_into(
        bits,
        index,
        seed,
        start_index,
        seq_len,
        resolution,
        velocity,
        bool(occlusion),
        prob,
        intervention_mode == "multi",
        bool(render),
        batch.frames,
        batch.masks,
        batch.states,
        batch.interventions,
        batch.local_graphs,
        batch.env_ids,
        num_threads,
        None if schedule is None else schedule.targets,
        None if schedule is None else schedule.values,
    )
    return batch


def iterate(
    env: str | int,
    n_sequences: int,
    seq_len: int,
    *,
    seed: int,
    batch_size: int = 256,
    start_index: int = 0,
    reuse_buffers: bool = True,
    **options: Any,
) -> Iterator[PongBatch]:
    """Yields ``n_sequences`` sequences in batches of ``batch_size`` (the last may be smaller).

    With ``reuse_buffers`` (the default) every batch is written into the same arrays, so a
    yielded batch is only valid until the next one is requested: copy what you keep. The
    concatenation of the batches equals ``generate(env, n_sequences, seq_len, ...)``.
    ``options`` are passed on to :func:`generate`; a ``schedule`` covers all ``n_sequences``
    and is split with the batches.
    """
    n_sequences = _int("n_sequences", n_sequences, 1)
    batch_size = _int("batch_size", batch_size, 1)
    start_index = _int("start_index", start_index, 0)
    schedule = options.pop("schedule", None)
    if schedule is not None and (
        not isinstance(schedule, InterventionSchedule) or schedule.shape != (n_sequences, seq_len)
    ):
        raise InvalidInputError(
            f"schedule: expected an InterventionSchedule of {n_sequences} sequences x "
            f"{seq_len} steps"
        )
    buffers: PongBatch | None = None
    done = 0
    while done < n_sequences:
        m = min(batch_size, n_sequences - done)
        out = None
        if reuse_buffers and buffers is not None:
            out = buffers if m == len(buffers) else _contiguous_head(buffers, m)
        if schedule is not None:
            options["schedule"] = schedule.rows(done, done + m)
        batch = generate(
            env, m, seq_len, seed=seed, start_index=start_index + done, out=out, **options
        )
        if reuse_buffers and buffers is None:
            buffers = batch
        yield batch
        done += m


def _contiguous_head(batch: PongBatch, m: int) -> PongBatch:
    """The first ``m`` sequences of ``batch`` (contiguous views: the leading axis is outermost)."""
    return batch.slice(0, m)


def render(
    states: npt.ArrayLike,
    *,
    previous: npt.ArrayLike | None = None,
    resolution: int = 32,
    velocity: str = "none",
    occlusion: bool = False,
    num_threads: int | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Draws arbitrary states ``(..., len(STATE_NAMES))`` (e.g. a model's predictions).

    Returns frames uint8 ``(..., H, W, C)`` and masks uint8 ``(..., H, W)``, byte for byte what
    :func:`generate` draws for the same states (scores are rounded and clipped to 0..4).
    ``previous``: ``(..., 2)`` previous ball positions for ``velocity="previous"`` (default:
    the current position, i.e. no cue).
    """
    array = np.asarray(states)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InvalidTypeError(f"states: expected a real array, got dtype {array.dtype}")
    if array.ndim < 1 or array.shape[-1] != len(STATE_NAMES):
        raise InvalidInputError(
            f"states: expected shape (..., {len(STATE_NAMES)}), got {array.shape}"
        )
    lead = array.shape[:-1]
    flat = np.ascontiguousarray(array.reshape(-1, len(STATE_NAMES)), dtype=np.float64)
    if not np.isfinite(flat).all():
        raise InvalidInputError("states: expected finite values")
    prev = None
    if previous is not None:
        prev_array = np.asarray(previous)
        if prev_array.dtype.kind not in "biuf":
            raise InvalidTypeError(
                f"previous: expected an array of numbers, got dtype {prev_array.dtype}"
            )
        if prev_array.shape != (*lead, 2):
            raise InvalidInputError(
                f"previous: expected shape {(*lead, 2)}, got {prev_array.shape}"
            )
        prev = np.ascontiguousarray(prev_array.reshape(-1, 2), dtype=np.float64)
        if not np.isfinite(prev).all():
            raise InvalidInputError("previous: expected finite values")
    occlusion = _flag("occlusion", occlusion)
    resolution = _int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
    if num_threads is not None:
        num_threads = _int("num_threads", num_threads, 1, MAX_THREADS)
    if velocity not in VELOCITY_CUES:
        raise InvalidInputError(f"velocity: expected one of {VELOCITY_CUES}, got {velocity!r}")
    channels = 4 if velocity == "next_channel" else 3
    n = flat.shape[0]
    frames = np.empty((n, resolution, resolution, channels), np.uint8)
    masks = np.empty((n, resolution, resolution), np.uint8)
    _core.sim_render_into(
        flat, prev, resolution, velocity, bool(occlusion), frames, masks, num_threads
    )
    return (
        frames.reshape((*lead, resolution, resolution, channels)),
        masks.reshape((*lead, resolution, resolution)),
    )


def background(resolution: int = 32) -> npt.NDArray[np.uint8]:
    """The static scene every frame is drawn on (grey field, dark borders), uint8 ``(H, W, 3)``.

    Byte for byte the pixels :func:`generate` and :func:`render` draw wherever no object's mask
    is set (the score digits are an object); subtracting it from a frame leaves each object's
    own contribution, anti-aliased edges included, as a continuous function of its position.
    """
    from s2ssm.sim import reference

    resolution = _int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
    xs, ys = reference.subsample_grid(resolution)
    x, y = xs[None, :], ys[:, None]
    border = reference.on_border(x, y)
    colour = np.where(border[..., None], np.array(reference.BORDER), np.array(reference.BACKGROUND))
    sub = reference.SUB
    pooled = colour.reshape(resolution, sub, resolution, sub, 3).sum(axis=(1, 3))
    return ((pooled + sub * sub // 2) // (sub * sub)).astype(np.uint8)


def unpack_masks(masks: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Unpacks uint8 bit masks ``(..., H, W)`` into bool ``(..., K, H, W)``."""
    masks = np.asarray(masks)
    if masks.dtype != np.uint8:
        raise InvalidTypeError(f"masks: expected dtype uint8, got {masks.dtype}")
    if masks.ndim < 2:
        raise InvalidInputError(f"masks: expected at least 2 dimensions (H, W), got {masks.ndim}")
    bits = np.arange(K, dtype=np.uint8).reshape((K, 1, 1))
    return ((masks[..., None, :, :] >> bits) & 1).astype(bool)
