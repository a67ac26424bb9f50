"""Plain NumPy reference of the Interventional Pong simulator (dynamics and rendering).

It mirrors ``rust/core/src/sim`` operation by operation in float64, with the same
Philox4x32-10 draws, so it agrees with the Rust core on states to float tolerance (the only
differences come from the last bit of NumPy's versus libm's sin/cos/log) and, in practice,
reproduces frames and masks byte for byte. Rendering evaluates the whole scene at every
subsample (no shortcuts): slow but obviously correct. Used by the tests and the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from s2ssm.sim._envs import MECHANISMS, OBJECTS, STATE_NAMES, TARGETS, _env_bits

__all__ = ["RefState", "generate", "initial_state", "philox4x32_10", "render", "step"]

TAU = 2.0 * math.pi
K = len(OBJECTS)
LEFT, RIGHT, BALL, SCORE, ENV = 0, 1, 2, 3, 4
T_DIR, T_X, T_Y, T_LEFT, T_RIGHT = range(5)

# Mechanism constants (rust/core/src/sim/env.rs).
SINE_AMPLITUDE, SINE_PERIOD = 0.35, 8.0
FRICTION_HALF_WIDTH, FRICTION_SPEED, SPEED_RELAXATION = 5.0, 0.8, 0.5
BOUNCE_FACTOR, BOUNCE_MAX_SPEED, BOUNCE_SPIN = 1.5, 3.5, 0.5
GRAVITY = 0.4

# Draw slots (rust/core/src/sim/dynamics.rs, module `slot`).
S_CHOOSE, S_MULTI = 0, (1, 2, 3)
S_VALUE_DIR_X, S_VALUE_Y_SIGN_L, S_VALUE_PADDLE_NOISE, S_VALUE_SIGN_R = 4, 5, 6, 7
S_PADDLE_NOISE, S_BALL_NOISE, S_DIR_NOISE, S_POINT_DIR, S_POINT_PADDLES = 8, 9, 10, 11, 12
S_VALUE_POINT_PADDLES = 13
S_INIT_BALL, S_INIT_DIR_LEFT, S_INIT_RIGHT_SCORE, S_INIT_SCORE = 32, 33, 34, 35

_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr: list[np.ndarray], key: tuple[int, int]) -> list[np.ndarray]:
    """Philox4x32-10 of counters ``ctr`` (four uint64 arrays holding 32-bit words)."""
    c = [np.asarray(w, dtype=np.uint64) & _MASK32 for w in ctr]
    k0, k1 = key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        p0 = np.uint64(_M0) * c[0]
        p1 = np.uint64(_M1) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return c


def _uniform(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a >> np.uint64(5)).astype(np.float64) * 67108864.0 + (b >> np.uint64(6))) * (
        1.0 / 9007199254740992.0
    )


class _Draws:
    """Draws of sequences ``seqs`` (uint64 array) at step ``t``."""

    def __init__(self, seed: int, seqs: np.ndarray, t: int) -> None:
        self.key = (seed & 0xFFFFFFFF, seed >> 32)
        self.t = t
        self.lo = seqs & _MASK32
        self.hi = seqs >> np.uint64(32)

    def uniforms(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        shape = self.lo.shape
        w = philox4x32_10(
            [np.full(shape, slot, np.uint64), np.full(shape, self.t, np.uint64), self.lo, self.hi],
            self.key,
        )
        return _uniform(w[0], w[1]), _uniform(w[2], w[3])

    def normals(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        u1, u2 = self.uniforms(slot)
        r = np.sqrt(-2.0 * np.log(1.0 - u1))
        theta = TAU * u2
        return r * np.cos(theta), r * np.sin(theta)


@dataclass(eq=False)
class RefState:
    """States of a batch of games (float64 arrays, scores int64)."""

    paddle_left: np.ndarray
    paddle_right: np.ndarray
    ball_x: np.ndarray
    ball_y: np.ndarray
    ball_dir: np.ndarray
    ball_speed: np.ndarray
    score_left: np.ndarray
    score_right: np.ndarray

    def to_array(self) -> np.ndarray:
        """``(N, len(STATE_NAMES))`` float64 in ``STATE_NAMES`` order."""
        return np.stack([np.asarray(getattr(self, f), dtype=np.float64) for f in _FIELDS], axis=-1)

    def copy(self) -> RefState:
        return RefState(*(np.array(getattr(self, f)) for f in _FIELDS))


_FIELDS = (
    "paddle_left",
    "paddle_right",
    "ball_x",
    "ball_y",
    "ball_dir",
    "ball_speed",
    "score_left",
    "score_right",
)
assert len(_FIELDS) == len(STATE_NAMES)


def initial_state(seed: int, seqs: np.ndarray) -> RefState:
    """Initial states (before the warm-up step) of sequences ``seqs``."""
    d = _Draws(seed, np.asarray(seqs, dtype=np.uint64), 0)
    ux, uy = d.uniforms(S_INIT_BALL)
    ud, ul = d.uniforms(S_INIT_DIR_LEFT)
    ur, usl = d.uniforms(S_INIT_RIGHT_SCORE)
    usr, _ = d.uniforms(S_INIT_SCORE)
    return RefState(
        paddle_left=2.0 + (30.0 - 2.0) * ul,
        paddle_right=2.0 + (30.0 - 2.0) * ur,
        ball_x=7.2 + (24.8 - 7.2) * ux,
        ball_y=3.2 + (28.8 - 3.2) * uy,
        ball_dir=TAU * ud,
        ball_speed=np.full(ux.shape, 2.0),
        score_left=np.minimum(np.floor(usl * 5.0), 4).astype(np.int64),
        score_right=np.minimum(np.floor(usr * 5.0), 4).astype(np.int64),
    )


def _track(p: np.ndarray, target: np.ndarray, away: bool) -> np.ndarray:
    d = target - p
    size = np.minimum(np.abs(d), 1.5)
    sign = np.where(d >= 0.0, 1.0, -1.0)
    return p - sign * size if away else p + sign * size


def _clamp(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.minimum(np.maximum(v, lo), hi)


def _wrap(d: np.ndarray) -> np.ndarray:
    r = np.fmod(d, TAU)
    r = np.where(r < 0.0, r + TAU, r)
    return np.where(r >= TAU, 0.0, r)


def step(
    s: RefState,
    mechanisms: int,
    seed: int,
    seqs: np.ndarray,
    t: int,
    intervention_prob: float = 0.15,
    multi: bool = False,
    forced: np.ndarray | None = None,
    values: np.ndarray | None = None,
) -> tuple[RefState, np.ndarray, np.ndarray]:
    """One transition; returns ``(next state, interventions (N, 5), local graphs (N, K, K+1))``.

    ``forced`` (bool ``(N, 5)``), when given, replaces the random choice of targets; ``values``
    (float ``(N, 5)``, NaN: the drawn value) are the forced targets' do() values.
    """
    has = {name: bool(mechanisms & bit) for name, bit in MECHANISMS.items()}
    d = _Draws(seed, np.asarray(seqs, dtype=np.uint64), t)
    n_seq = s.ball_x.shape[0]
    iv = np.zeros((n_seq, len(TARGETS)), bool)
    if forced is not None:
        iv = np.asarray(forced, dtype=bool).reshape(n_seq, len(TARGETS)).copy()
    elif intervention_prob > 0.0:
        if multi:
            a, b = d.uniforms(S_MULTI[0])
            c, e = d.uniforms(S_MULTI[1])
            f, _ = d.uniforms(S_MULTI[2])
            iv = np.stack([a, b, c, e, f], axis=-1) < intervention_prob
        else:
            u, _ = d.uniforms(S_CHOOSE)
            q = 1.0 - intervention_prob
            none = q * q * q * q * q
            with np.errstate(divide="ignore", invalid="ignore"):
                scaled = np.minimum(((u - none) / (1.0 - none) * 5.0), 4.0)
            pick = np.where(np.isfinite(scaled), scaled, 0.0).astype(np.int64)
            chosen = u >= none
            iv[chosen, pick[chosen]] = True

    n = s.copy()
    noise_l, noise_r = d.normals(S_PADDLE_NOISE)
    target_r = 32.0 - s.ball_y if has["right_mirror"] else s.ball_y
    n.paddle_left = _track(s.paddle_left, s.ball_y, has["left_away"]) + 0.5 * noise_l
    n.paddle_right = _track(s.paddle_right, target_r, has["right_away"]) + 0.5 * noise_r

    in_band = np.abs(s.ball_x - 16.0) < FRICTION_HALF_WIDTH
    friction = in_band & has["friction"]
    target_speed = np.where(friction, FRICTION_SPEED, 2.0)
    speed = s.ball_speed + SPEED_RELAXATION * (target_speed - s.ball_speed)
    sine = has["sine"]
    if sine:
        direction = s.ball_dir + SINE_AMPLITUDE * np.sin(TAU * s.ball_x / SINE_PERIOD)
    else:
        direction = s.ball_dir.copy()
    vx = np.sin(direction) * speed
    vy = np.cos(direction) * speed
    gravity = (s.ball_x < 16.0) & has["gravity"]
    vy_g = vy - GRAVITY
    direction = np.where(gravity, np.arctan2(vx, vy_g), direction)
    speed = np.where(gravity, np.hypot(vx, vy_g), speed)
    vy = np.where(gravity, vy_g, vy)

    x = s.ball_x + vx
    point = np.where(x < 3.2, 2, np.where(x > 28.8, 1, 0))
    is_point = point != 0
    y = s.ball_y + vy
    top, bottom = y > 28.8, y < 3.2
    y = np.where(top, 2.0 * 28.8 - y, np.where(bottom, 2.0 * 3.2 - y, y))
    direction = np.where(top | bottom, math.pi - direction, direction)
    hit_l = (np.abs(y - s.paddle_left) <= 3.0) & (x > 4.0) & (x - 1.2 < 6.0)
    hit_r = ~hit_l & (np.abs(y - s.paddle_right) <= 3.0) & (x < 28.0) & (x + 1.2 > 26.0)
    hit_l &= ~is_point
    hit_r &= ~is_point
    x = np.where(hit_l, 14.4 - x, np.where(hit_r, 49.6 - x, x))
    direction = np.where(hit_l | hit_r, -direction, direction)
    bounce = (hit_l | hit_r) & has["bounce"]
    speed = np.where(bounce, np.minimum(speed * BOUNCE_FACTOR, BOUNCE_MAX_SPEED), speed)
    direction = np.where(
        bounce & hit_l,
        direction - BOUNCE_SPIN * (y - s.paddle_left) / 3.0,
        np.where(bounce & hit_r, direction + BOUNCE_SPIN * (y - s.paddle_right) / 3.0, direction),
    )
    nx, ny = d.normals(S_BALL_NOISE)
    nd, _ = d.normals(S_DIR_NOISE)
    ud, _ = d.uniforms(S_POINT_DIR)
    ul, ur = d.uniforms(S_POINT_PADDLES)
    n.ball_x = np.where(is_point, 16.0, x + 0.2 * nx)
    n.ball_y = np.where(is_point, 16.0, y + 0.2 * ny)
    n.ball_dir = np.where(is_point, TAU * ud, direction + 0.1 * nd)
    n.ball_speed = np.where(is_point, 2.0, speed)
    n.paddle_left = np.where(is_point, 4.0 + 24.0 * ul, n.paddle_left)
    n.paddle_right = np.where(is_point, 4.0 + 24.0 * ur, n.paddle_right)

    n.score_left = s.score_left + (point == 1)
    n.score_right = s.score_right + (point == 2)
    reset = (n.score_left >= 5) | (n.score_right >= 5)
    n.score_left = np.where(reset, 0, n.score_left)
    n.score_right = np.where(reset, 0, n.score_right)

    u_dir, u_x = d.uniforms(S_VALUE_DIR_X)
    u_y, u_sign_l = d.uniforms(S_VALUE_Y_SIGN_L)
    z_l, z_r = d.normals(S_VALUE_PADDLE_NOISE)
    u_sign_r, _ = d.uniforms(S_VALUE_SIGN_R)
    u_pl, u_pr = d.uniforms(S_VALUE_POINT_PADDLES)
    sign_l = np.where(u_sign_l < 0.5, -1.0, 1.0)
    sign_r = np.where(u_sign_r < 0.5, -1.0, 1.0)
    n.ball_dir = np.where(iv[:, T_DIR], TAU * u_dir, n.ball_dir)
    n.ball_x = np.where(iv[:, T_X], 7.2 + (24.8 - 7.2) * u_x, n.ball_x)
    n.ball_y = np.where(iv[:, T_Y], 3.2 + (28.8 - 3.2) * u_y, n.ball_y)
    value_l = np.where(is_point, 4.0 + 24.0 * u_pl, s.paddle_left + sign_l * 1.5 + 0.5 * z_l)
    value_r = np.where(is_point, 4.0 + 24.0 * u_pr, s.paddle_right + sign_r * 1.5 + 0.5 * z_r)
    n.paddle_left = np.where(iv[:, T_LEFT], value_l, n.paddle_left)
    n.paddle_right = np.where(iv[:, T_RIGHT], value_r, n.paddle_right)
    if forced is not None and values is not None:
        v = np.asarray(values, dtype=np.float64).reshape(n_seq, len(TARGETS))
        set_v = iv & ~np.isnan(v)
        for k, field in enumerate(("ball_dir", "ball_x", "ball_y", "paddle_left", "paddle_right")):
            setattr(n, field, np.where(set_v[:, k], v[:, k], getattr(n, field)))

    n.ball_dir = _wrap(n.ball_dir)
    n.ball_x = _clamp(n.ball_x, 2.0, 30.0)
    n.ball_y = _clamp(n.ball_y, 3.2, 28.8)
    n.ball_speed = _clamp(n.ball_speed, 0.5, 4.0)
    n.paddle_left = _clamp(n.paddle_left, 2.0, 30.0)
    n.paddle_right = _clamp(n.paddle_right, 2.0, 30.0)

    g = np.zeros((n_seq, K, K + 1), bool)
    changes_left = has["left_away"]
    changes_right = has["right_mirror"] or has["right_away"]
    set_values = np.zeros_like(iv)
    if forced is not None and values is not None:
        set_values = iv & ~np.isnan(np.asarray(values, dtype=np.float64).reshape(iv.shape))
    for k, target, env_changes in ((LEFT, T_LEFT, changes_left), (RIGHT, T_RIGHT, changes_right)):
        on = iv[:, target]
        tracking = ~on & ~is_point
        g[:, k, ENV] = on | (tracking & env_changes)
        g[:, k, BALL] = ~on
        # an intervened paddle moves from its own past (+- 1.5 + noise), except after a point
        # (a fresh U[4, 28]) or with a value set by a schedule
        g[:, k, k] = tracking | (on & ~is_point & ~set_values[:, target])
    g[:, BALL, BALL] = True
    g[:, BALL, LEFT] = hit_l
    g[:, BALL, RIGHT] = hit_r
    g[:, BALL, ENV] = sine | friction | gravity | bounce | iv[:, T_DIR] | iv[:, T_X] | iv[:, T_Y]
    g[:, SCORE, SCORE] = True
    g[:, SCORE, BALL] = is_point
    return n, iv, g


# ---------------------------------------------------------------- rendering
SUB = 4
BACKGROUND, DIGIT, BORDER = (230, 230, 230), (128, 128, 128), (26, 26, 26)
LEFT_PADDLE, RIGHT_PADDLE = (0, 0, 255), (0, 128, 0)
BALL_COLOUR, BALL_PREVIOUS, OCCLUDER = (255, 0, 0), (140, 0, 0), (64, 64, 64)
OCCLUDER_BAND = (13.0, 19.0, 2.0, 22.0)
GLYPHS = (
    (0b111, 0b101, 0b101, 0b101, 0b111),
    (0b010, 0b010, 0b010, 0b010, 0b010),
    (0b111, 0b001, 0b111, 0b100, 0b111),
    (0b111, 0b001, 0b111, 0b001, 0b111),
    (0b101, 0b101, 0b111, 0b001, 0b001),
)
_GLYPH_TABLE = np.array(GLYPHS, dtype=np.int64)


def subsample_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the subsamples: ``xs`` and ``ys``, each ``(resolution * SUB,)``."""
    unit = 32.0 / resolution
    offsets = (np.arange(SUB, dtype=np.float64) + 0.5) / float(SUB)
    c = np.arange(resolution, dtype=np.float64)[:, None]
    scaled = ((c + offsets[None, :]) * unit).reshape(-1)
    return scaled, 32.0 - scaled


def _rect(x, y, x0, x1, y0, y1):  # type: ignore[no-untyped-def]
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def on_border(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sub-samples covered by the 2-unit border of the field."""
    return (y < 2.0) | (y >= 30.0) | (x < 2.0) | (x >= 30.0)


def _disc(x, y, cx, cy):  # type: ignore[no-untyped-def]
    dx = x - cx
    dy = y - cy
    return dx * dx + dy * dy <= 1.2 * 1.2


def _on_score(x: np.ndarray, y: np.ndarray, sl: np.ndarray, sr: np.ndarray) -> np.ndarray:
    in_rows = (y >= 24.0) & (y < 29.0)
    colon = (x >= 16.0) & (x < 17.0) & (((y >= 25.0) & (y < 26.0)) | ((y >= 27.0) & (y < 28.0)))
    row = 4 - np.minimum(np.floor(y - 24.0), 4.0).clip(0).astype(np.int64)
    out = in_rows & colon
    for x0, score in ((12.0, sl), (18.0, sr)):
        inside = in_rows & (x >= x0) & (x < x0 + 3.0)
        col = np.floor(x - x0).clip(0, 2).astype(np.int64)
        score_b, row_b = np.broadcast_arrays(np.minimum(score, 4), row)
        glyph = _GLYPH_TABLE[score_b, row_b]
        out = out | (inside & (((glyph >> (2 - col)) & 1) == 1))
    return out


def render(
    states: RefState | np.ndarray,
    resolution: int = 32,
    *,
    previous: np.ndarray | None = None,
    velocity: str = "none",
    occlusion: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, R, R, C)`` uint8 and masks ``(N, R, R)`` uint8 of ``N`` states.

    ``states``: a :class:`RefState` or float64 ``(N, 8)`` in ``STATE_NAMES`` order;
    ``previous``: ``(N, 2)`` previous ball positions (for ``velocity="previous"``).
    """
    arr = states.to_array() if isinstance(states, RefState) else np.asarray(states, np.float64)
    n = arr.shape[0]
    pl, pr, bx, by, bdir, bspeed = (arr[:, i, None, None] for i in range(6))
    sl = arr[:, 6, None, None].astype(np.int64)
    sr = arr[:, 7, None, None].astype(np.int64)
    xs, ys = subsample_grid(resolution)
    x = xs[None, None, :]
    y = ys[None, :, None]
    shape = (n, resolution * SUB, resolution * SUB)
    colour = np.empty((*shape, 3), np.int64)
    colour[:] = BACKGROUND
    score = np.broadcast_to(_on_score(x, y, sl, sr), shape)
    colour[score] = DIGIT
    colour[np.broadcast_to(on_border(x, y), shape)] = BORDER
    left = np.broadcast_to(
        _rect(x, y, 4.0, 6.0, np.maximum(pl - 3.0, 2.0), np.minimum(pl + 3.0, 30.0)), shape
    )
    right = np.broadcast_to(
        _rect(x, y, 26.0, 28.0, np.maximum(pr - 3.0, 2.0), np.minimum(pr + 3.0, 30.0)), shape
    )
    colour[left] = LEFT_PADDLE
    colour[right] = RIGHT_PADDLE
    ball = np.broadcast_to(_disc(x, y, bx, by), shape)
    colour[ball] = BALL_COLOUR
    if velocity == "previous":
        if previous is None:
            raise ValueError("previous: needed for velocity='previous'")
        prev = np.asarray(previous, np.float64)
        inside_prev = _disc(x, y, prev[:, 0, None, None], prev[:, 1, None, None])
        colour[ball & inside_prev] = BALL_PREVIOUS
    if occlusion:
        colour[np.broadcast_to(_rect(x, y, *OCCLUDER_BAND), shape)] = OCCLUDER

    def pool(values: np.ndarray) -> np.ndarray:
        r = resolution
        return values.reshape(n, r, SUB, r, SUB, *values.shape[3:]).sum(axis=(2, 4))

    channels = 4 if velocity == "next_channel" else 3
    frames = np.zeros((n, resolution, resolution, channels), np.uint8)
    frames[..., :3] = (pool(colour) + 8) // 16
    if velocity == "next_channel":
        nx = bx + np.sin(bdir) * bspeed
        ny = by + np.cos(bdir) * bspeed
        count = pool(np.broadcast_to(_disc(x, y, nx, ny), shape).astype(np.int64))
        frames[..., 3] = (count * 255 + 8) // 16
    masks = np.zeros((n, resolution, resolution), np.uint8)
    for bit, layer in enumerate((left, right, ball, score)):
        masks |= ((pool(layer.astype(np.int64)) > 0) << bit).astype(np.uint8)
    return frames, masks


@dataclass(eq=False)
class RefBatch:
    """Reference output; fields as ``s2ssm.sim.PongBatch`` (states in float64)."""

    frames: npt.NDArray[np.uint8]
    masks: npt.NDArray[np.uint8]
    states: npt.NDArray[np.float64]
    interventions: npt.NDArray[np.bool_]
    local_graphs: npt.NDArray[np.bool_]
    env_ids: npt.NDArray[np.int64]


def generate(
    env: str | int,
    n_sequences: int,
    seq_len: int,
    *,
    seed: int,
    start_index: int = 0,
    resolution: int = 32,
    velocity: str = "none",
    occlusion: bool = False,
    intervention_prob: float = 0.15,
    intervention_mode: str = "single",
    render_frames: bool = True,
    schedule: tuple[np.ndarray, np.ndarray] | None = None,
) -> RefBatch:
    """The reference of :func:`s2ssm.sim.generate` (same arguments, same draws); ``schedule``:
    ``(targets, values)`` arrays ``(n_sequences, seq_len, 5)``."""
    index, bits = _env_bits(env)
    seqs = np.arange(start_index, start_index + n_sequences, dtype=np.uint64)
    state = initial_state(seed, seqs)
    r = resolution if render_frames else 0
    channels = 4 if velocity == "next_channel" else 3
    frames = np.zeros((n_sequences, seq_len, r, r, channels), np.uint8)
    masks = np.zeros((n_sequences, seq_len, r, r), np.uint8)
    states = np.zeros((n_sequences, seq_len, len(STATE_NAMES)))
    ivs = np.zeros((n_sequences, seq_len, len(TARGETS)), bool)
    graphs = np.zeros((n_sequences, seq_len, K, K + 1), bool)
    for t in range(seq_len):
        nxt, iv, g = step(
            state,
            bits,
            seed,
            seqs,
            t,
            intervention_prob,
            intervention_mode == "multi",
            forced=None if schedule is None else schedule[0][:, t],
            values=None if schedule is None else schedule[1][:, t],
        )
        states[:, t] = nxt.to_array()
        ivs[:, t] = iv
        graphs[:, t] = g
        if render_frames:
            previous = np.stack([state.ball_x, state.ball_y], axis=-1)
            frames[:, t], masks[:, t] = render(
                nxt, resolution, previous=previous, velocity=velocity, occlusion=occlusion
            )
        state = nxt
    return RefBatch(frames, masks, states, ivs, graphs, np.full(n_sequences, index, dtype=np.int64))
