"""Interventional Pong simulator: API, determinism, golden hashes, invariants, bad input."""

from __future__ import annotations

import _thread
import hashlib
import math
import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm import sim
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.sim import reference as ref

K = len(sim.OBJECTS)
LEFT, RIGHT, BALL, SCORE, ENV = 0, 1, 2, 3, 4
T_DIR, T_X, T_Y, T_LEFT, T_RIGHT = range(5)
BACKGROUND = np.array([230, 230, 230], np.uint8)


def digest(batch: sim.PongBatch) -> str:
    h = hashlib.sha256()
    for name, array in batch.arrays().items():
        h.update(name.encode())
        h.update(array.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ API and contract
def test_contract_names() -> None:
    assert sim.ENVIRONMENTS == (
        "neutral",
        "sine",
        "left_away",
        "right_mirror",
        "friction",
        "bounce",
        "gravity",
        "gravity_bounce",
        "friction_bounce",
        "sine_left_away",
        "gravity_right_away",
    )
    assert sim.OBJECTS == ("left_paddle", "right_paddle", "ball", "score")
    assert sim.TARGETS == ("ball_dir", "ball_x", "ball_y", "paddle_left_y", "paddle_right_y")
    assert len(sim.STATE_NAMES) == 8
    assert sim.env_id("neutral") == 0
    assert sim.env_id(10) == 10
    assert sim.env_id(np.int64(3)) == 3
    assert sim.env_name(7) == "gravity_bounce"
    assert sim.env_mechanisms("gravity_bounce") == ("bounce", "gravity")


@pytest.mark.parametrize(
    ("n", "t", "kwargs", "channels", "res"),
    [
        (3, 5, {}, 3, 32),
        (2, 4, {"resolution": 17, "velocity": "next_channel"}, 4, 17),
        (1, 1, {"resolution": 128}, 3, 128),
        (2, 3, {"render": False}, 3, 0),
    ],
)
def test_shapes_and_dtypes(n: int, t: int, kwargs: dict, channels: int, res: int) -> None:
    b = sim.generate("bounce", n, t, seed=1, **kwargs)
    assert b.frames.shape == (n, t, res, res, channels) and b.frames.dtype == np.uint8
    assert b.masks.shape == (n, t, res, res) and b.masks.dtype == np.uint8
    assert b.states.shape == (n, t, 8) and b.states.dtype == np.float32
    assert b.interventions.shape == (n, t, 5) and b.interventions.dtype == np.bool_
    assert b.local_graphs.shape == (n, t, K, K + 1) and b.local_graphs.dtype == np.bool_
    assert b.env_ids.dtype == np.int64 and (b.env_ids == 5).all()
    assert len(b) == n


def test_out_arrays_are_filled_in_place() -> None:
    fresh = sim.generate("sine", 3, 6, seed=4)
    out = {name: np.zeros_like(a) for name, a in fresh.arrays().items()}
    b = sim.generate("sine", 3, 6, seed=4, out=out)
    for name, array in b.arrays().items():
        assert array is out[name]
        np.testing.assert_array_equal(array, fresh.arrays()[name])
    again = sim.generate("sine", 3, 6, seed=4, out=b)
    assert again.frames is b.frames


def test_registry_user_environment() -> None:
    new_id = sim.register_environment("test_sine_gravity", ["sine", "gravity"])
    assert new_id >= len(sim.ENVIRONMENTS)
    assert sim.register_environment("test_sine_gravity", ["gravity", "sine"]) == new_id
    assert sim.env_id("test_sine_gravity") == new_id
    assert "test_sine_gravity" in sim.environments()
    assert "test_sine_gravity" not in sim.ENVIRONMENTS
    b = sim.generate("test_sine_gravity", 2, 5, seed=0)
    assert (b.env_ids == new_id).all()
    r = ref.generate("test_sine_gravity", 2, 5, seed=0)
    np.testing.assert_array_equal(b.frames, r.frames)
    with pytest.raises(InvalidInputError, match="other mechanisms"):
        sim.register_environment("test_sine_gravity", ["sine"])
    with pytest.raises(InvalidInputError, match="unknown mechanism 'wind'"):
        sim.register_environment("test_wind", ["wind"])
    with pytest.raises(InvalidTypeError):
        sim.register_environment("test_str", "sine")


def test_global_graphs() -> None:
    base = np.array(
        [
            [1, 0, 1, 0, 0],
            [0, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 1, 1, 0],
        ],
        bool,
    )
    env_edges = {
        0: [],
        1: [BALL],
        2: [LEFT],
        3: [RIGHT],
        4: [BALL],
        5: [BALL],
        6: [BALL],
        7: [BALL],
        8: [BALL],
        9: [BALL, LEFT],
        10: [BALL, RIGHT],
    }
    for env, rows in env_edges.items():
        want = base.copy()
        want[rows, ENV] = True
        np.testing.assert_array_equal(sim.global_graph(env), want)
        with_iv = sim.global_graph(env, interventions=True)
        assert with_iv[[LEFT, RIGHT, BALL], ENV].all() and not with_iv[SCORE, ENV]


def test_unpack_masks() -> None:
    masks = np.array([[0b0000, 0b0101], [0b1010, 0b1111]], np.uint8)
    unpacked = sim.unpack_masks(masks)
    assert unpacked.shape == (K, 2, 2) and unpacked.dtype == np.bool_
    np.testing.assert_array_equal(unpacked[:, 0, 1], [1, 0, 1, 0])
    np.testing.assert_array_equal(unpacked[:, 1, 0], [0, 1, 0, 1])
    b = sim.generate(0, 2, 3, seed=0)
    assert sim.unpack_masks(b.masks).shape == (2, 3, K, 32, 32)
    with pytest.raises(InvalidTypeError):
        sim.unpack_masks(masks.astype(np.int32))


# ------------------------------------------------------------------ determinism
def test_same_bytes_whatever_threads_and_splits() -> None:
    whole = sim.generate("gravity_bounce", 37, 9, seed=123, num_threads=1)
    two = sim.generate("gravity_bounce", 37, 9, seed=123, num_threads=2)
    assert digest(whole) == digest(two)
    parts = [
        sim.generate("gravity_bounce", m, 9, seed=123, start_index=s)
        for s, m in ((0, 5), (5, 1), (6, 31))
    ]
    for name, array in whole.arrays().items():
        np.testing.assert_array_equal(array, np.concatenate([p.arrays()[name] for p in parts]))
    streamed = list(
        b.slice(0, len(b))
        for b in sim.iterate("gravity_bounce", 37, 9, seed=123, batch_size=8, reuse_buffers=False)
    )
    np.testing.assert_array_equal(whole.frames, np.concatenate([b.frames for b in streamed]))


def test_iterate_reuses_buffers() -> None:
    batches = []
    for b in sim.iterate("neutral", 10, 4, seed=9, batch_size=4):
        batches.append((b.frames, b.frames.copy(), b.states.copy()))
    assert [f.shape[0] for f, _, _ in batches] == [4, 4, 2]
    # One buffer serves every batch.
    assert np.shares_memory(batches[0][0], batches[1][0])
    assert np.shares_memory(batches[0][0], batches[2][0])
    whole = sim.generate("neutral", 10, 4, seed=9)
    np.testing.assert_array_equal(whole.frames, np.concatenate([c for _, c, _ in batches]))


def test_seed_changes_output() -> None:
    a = sim.generate(0, 2, 5, seed=0)
    b = sim.generate(0, 2, 5, seed=1)
    assert not np.array_equal(a.states, b.states)
    high = sim.generate(0, 2, 5, seed=2**64 - 1, start_index=2**64 - 3)
    assert np.isfinite(high.states).all()


GOLDEN = [
    (
        ("neutral", 4, 16),
        {"seed": 0},
        "ef7dbe7554007d52b4f9476aa4362eaec19cec0b45a284a36d329da29eae0a73",
    ),
    (
        ("gravity_bounce", 3, 12),
        {"seed": 2**40 + 7, "start_index": 1000, "resolution": 48},
        "abfd64e7675e53b145e7d1ca80982c4ccc4fcee1f1a22ae5a070adc0b2b0b40a",
    ),
    (
        ("sine_left_away", 2, 10),
        {"seed": 11, "velocity": "previous", "occlusion": True, "intervention_mode": "multi"},
        "8e284f3ec309db47e3f9db7436fbadf88a0d7b0846349378792b7a636587378c",
    ),
    (
        ("friction", 2, 10),
        {"seed": 5, "velocity": "next_channel", "resolution": 16},
        "6902bd47767e8da8778219f29629a498d277be70d5b0b4471af67d3a0eefe248",
    ),
]


@pytest.mark.parametrize(("args", "kwargs", "want"), GOLDEN, ids=[g[0][0] for g in GOLDEN])
def test_golden_hashes(args: tuple, kwargs: dict, want: str) -> None:
    assert digest(sim.generate(*args, **kwargs)) == want


# ------------------------------------------------------------------ invariants
@pytest.fixture(scope="module")
def runs() -> dict[int, sim.PongBatch]:
    return {env: sim.generate(env, 24, 60, seed=77) for env in range(len(sim.ENVIRONMENTS))}


def test_objects_stay_in_field(runs: dict[int, sim.PongBatch]) -> None:
    for b in runs.values():
        s = b.states
        assert ((s[..., 0] >= 2) & (s[..., 0] <= 30) & (s[..., 1] >= 2) & (s[..., 1] <= 30)).all()
        assert ((s[..., 2] >= 2) & (s[..., 2] <= 30)).all()
        assert ((s[..., 3] >= 3.2 - 1e-6) & (s[..., 3] <= 28.8 + 1e-6)).all()
        assert ((s[..., 4] >= 0) & (s[..., 4] <= np.float32(2 * math.pi))).all()
        assert ((s[..., 5] >= 0.5) & (s[..., 5] <= 4)).all()
        assert np.isin(s[..., 6:], np.arange(5)).all()


def test_neutral_speed_constant(runs: dict[int, sim.PongBatch]) -> None:
    assert (runs[0].states[..., 5] == 2.0).all()


def interior(res: int) -> np.ndarray:
    """Pixels whose subsamples all lie inside the borders."""
    xs, _ = ref.subsample_grid(res)
    inside = np.all(((xs >= 2.0) & (xs < 30.0)).reshape(res, ref.SUB), axis=1)
    return inside[:, None] & inside[None, :]


@pytest.mark.parametrize("res", [32, 21])
def test_masks_cover_exactly_the_rendered_shapes(res: int) -> None:
    b = sim.generate("gravity_bounce", 16, 40, seed=3, resolution=res)
    region = interior(res)
    drawn = (b.frames != BACKGROUND).any(axis=-1)
    np.testing.assert_array_equal((b.masks != 0)[..., region], drawn[..., region])
    # A pixel with a single object's bit carries that object's colour.
    f = b.frames.astype(int)
    only = {k: (b.masks == 1 << k) & region for k in range(K)}
    assert (f[..., 0] > f[..., 1])[only[BALL]].all()
    assert (f[..., 2] > f[..., 0])[only[LEFT]].all()
    assert (f[..., 1] < 230)[only[RIGHT]].all() and (f[..., 0] < f[..., 1])[only[RIGHT]].all()
    assert (f[..., 0] == f[..., 2])[only[SCORE]].all()


def test_occlusion_hides_but_masks_report() -> None:
    plain = sim.generate("neutral", 20, 30, seed=8)
    hidden = sim.generate("neutral", 20, 30, seed=8, occlusion=True)
    np.testing.assert_array_equal(plain.masks, hidden.masks)
    ball = sim.unpack_masks(hidden.masks)[:, :, BALL]
    xs, ys = ref.subsample_grid(32)
    x = xs.reshape(32, 4)
    y = ys.reshape(32, 4)
    inside_col = np.all((x >= 13) & (x < 19), axis=1)
    inside_row = np.all((y >= 2) & (y < 22), axis=1)
    band = inside_row[:, None] & inside_col[None, :]
    behind = ball & band
    assert behind.any(), "the ball never passed behind the occluder"
    assert (hidden.frames[behind] == 64).all()


def test_velocity_cue_previous_stays_in_mask() -> None:
    plain = sim.generate("neutral", 8, 20, seed=2)
    cue = sim.generate("neutral", 8, 20, seed=2, velocity="previous")
    np.testing.assert_array_equal(plain.masks, cue.masks)
    changed = (plain.frames != cue.frames).any(axis=-1)
    assert changed.any()
    assert (sim.unpack_masks(cue.masks)[:, :, BALL][changed]).all()


def test_next_channel_shows_projected_ball() -> None:
    b = sim.generate("neutral", 8, 20, seed=2, velocity="next_channel")
    s = b.states.astype(np.float64)
    nx = s[..., 2] + np.sin(s[..., 4]) * s[..., 5]
    ny = s[..., 3] + np.cos(s[..., 4]) * s[..., 5]
    col = np.clip((nx * 32 / 32).astype(int), 0, 31)
    row = np.clip(((32 - ny) * 32 / 32).astype(int), 0, 31)
    n, t = np.indices(nx.shape)
    assert (b.frames[n, t, row, col, 3] > 0).mean() > 0.95
    np.testing.assert_array_equal(b.frames[..., :3], sim.generate("neutral", 8, 20, seed=2).frames)


def test_local_graphs_match_events(runs: dict[int, sim.PongBatch]) -> None:
    for env, b in runs.items():
        g, iv, s = b.local_graphs, b.interventions, b.states
        # Self-loops of ball and score always; the score's only other parent is the ball.
        assert g[..., BALL, BALL].all() and g[..., SCORE, SCORE].all()
        assert not g[..., SCORE, [LEFT, RIGHT, ENV]].any()
        # A point step changes the scores and has ball -> score.
        scored = (s[:, 1:, 6:] != s[:, :-1, 6:]).any(axis=-1)
        np.testing.assert_array_equal(g[:, 1:, SCORE, BALL], scored)
        # An intervened paddle moves from its own past (p +- 1.5 + noise, CITRIS's rule): env
        # edge and self-loop, no ball; on a point step (a fresh U[4, 28]) the env edge alone.
        point = g[..., SCORE, BALL]
        for target, obj in ((T_LEFT, LEFT), (T_RIGHT, RIGHT)):
            self_row = np.array([0, 0, 0, 0, 1], bool)
            self_row[obj] = True
            rows = g[..., obj, :][iv[..., target] & ~point]
            assert len(rows) > 0
            np.testing.assert_array_equal(rows, np.tile(self_row, (len(rows), 1)))
            rows = g[..., obj, :][iv[..., target] & point]
            np.testing.assert_array_equal(rows, np.tile([0, 0, 0, 0, 1], (len(rows), 1)) == 1)
        # An intervened ball variable gives env -> ball.
        assert g[..., BALL, ENV][iv[..., :3].any(axis=-1)].all()
        # A paddle that tracks has ball -> paddle and its self-loop.
        tracking = ~iv[..., T_LEFT] & g[..., LEFT, LEFT]
        assert g[..., LEFT, BALL][tracking].all()
        # Paddles never cause each other; the env edge appears only where the env acts.
        assert not g[..., LEFT, RIGHT].any() and not g[..., RIGHT, LEFT].any()
        glob = sim.global_graph(env, interventions=True)
        assert not (g & ~glob).any()
        if env == 0:
            assert not g[..., ENV][~iv.any(axis=-1)].any()


def test_collision_steps_have_paddle_to_ball(runs: dict[int, sim.PongBatch]) -> None:
    b = runs[0]
    g, s, iv = b.local_graphs, b.states.astype(np.float64), b.interventions
    hit_l = g[:, 1:, BALL, LEFT]
    hit_r = g[:, 1:, BALL, RIGHT]
    assert hit_l.any() and hit_r.any()
    assert not (hit_l & hit_r).any()
    clean = ~iv[:, 1:].any(axis=-1)
    prev, new = s[:, :-1], s[:, 1:]
    # After a left hit the ball is right of the paddle and moves right (dir noise 0.1 aside).
    sel = hit_l & clean
    assert (np.abs(prev[..., 3] - prev[..., 0])[sel] < 3 + 2 + 1e-6).all()
    assert (np.sin(new[..., 4][sel]) > -0.3).all() and (new[..., 2][sel] > 4).all()
    sel = hit_r & clean
    assert (np.sin(new[..., 4][sel]) < 0.3).all() and (new[..., 2][sel] < 28).all()
    # Without a hit the paddles are not parents of the ball.
    none = ~g[:, :, BALL, LEFT] & ~g[:, :, BALL, RIGHT]
    assert none.mean() > 0.5


def test_intervention_frequencies() -> None:
    b = sim.generate(0, 400, 50, seed=1, render=False)
    freq = b.interventions.reshape(-1, 5).mean(axis=0)
    # CITRIS's single-target rule: none with probability 0.85^5, else one uniform target.
    none = 0.85**5
    np.testing.assert_allclose(freq, (1 - none) / 5, atol=0.012)
    assert abs((~b.interventions.any(axis=-1)).mean() - none) < 0.015
    assert b.interventions.sum(axis=-1).max() == 1
    multi = sim.generate(0, 400, 50, seed=1, render=False, intervention_mode="multi")
    np.testing.assert_allclose(multi.interventions.reshape(-1, 5).mean(axis=0), 0.15, atol=0.015)
    assert multi.interventions.sum(axis=-1).max() > 1
    off = sim.generate(0, 10, 50, seed=1, render=False, intervention_prob=0.0)
    assert not off.interventions.any()


@pytest.mark.parametrize("env", range(1, 11), ids=lambda e: sim.ENVIRONMENTS[e])
def test_every_environment_changes_its_mechanism(env: int) -> None:
    kw: dict[str, Any] = {"seed": 21, "render": False, "intervention_prob": 0.0}
    base = sim.generate(0, 40, 30, **kw)
    changed = sim.generate(env, 40, 30, **kw)
    mech = sim.env_mechanisms(env)
    # Without interventions every local graph lies inside the environment's global graph, and
    # each env edge of the global graph shows up locally.
    glob = sim.global_graph(env)
    assert not (changed.local_graphs & ~glob).any()
    np.testing.assert_array_equal(changed.local_graphs[..., ENV].any(axis=(0, 1)), glob[:, ENV])
    ball = [2, 3, 4]
    if any(m in mech for m in ("sine", "friction", "bounce", "gravity")):
        assert np.abs(changed.states[..., ball] - base.states[..., ball]).max() > 1.0
        assert changed.local_graphs[..., BALL, ENV].any()
    if "left_away" in mech:
        assert np.abs(changed.states[..., 0] - base.states[..., 0]).mean() > 2.0
    if "right_mirror" in mech or "right_away" in mech:
        assert np.abs(changed.states[..., 1] - base.states[..., 1]).mean() > 2.0
    if "gravity" in mech and "bounce" not in mech:
        s = changed.states
        left = s[:, :-1, 2] < 16
        dy = s[:, 1:, 3] - s[:, :-1, 3]
        still = (s[:, 1:, 6:] == s[:, :-1, 6:]).all(axis=-1)
        assert dy[left & still].mean() < 0
    if "friction" in mech:
        s = changed.states
        assert s[..., 5].min() < 1.0


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"env": "pong"}, InvalidInputError, "valid names: neutral, sine"),
        ({"env": 10_000}, InvalidInputError, "env"),
        ({"env": 1.5}, InvalidTypeError, "env"),
        ({"n_sequences": 0}, InvalidInputError, "n_sequences"),
        ({"n_sequences": -3}, InvalidInputError, "n_sequences"),
        ({"n_sequences": 2.0}, InvalidTypeError, "n_sequences"),
        ({"seq_len": 0}, InvalidInputError, "seq_len"),
        ({"seq_len": True}, InvalidTypeError, "seq_len"),
        ({"resolution": 15}, InvalidInputError, "resolution"),
        ({"resolution": 129}, InvalidInputError, "resolution"),
        ({"seed": -1}, InvalidInputError, "seed"),
        ({"seed": 2**64}, InvalidInputError, "seed"),
        ({"num_threads": 0}, InvalidInputError, "num_threads"),
        ({"velocity": "arrow"}, InvalidInputError, "velocity"),
        ({"intervention_prob": 1.5}, InvalidInputError, "intervention_prob"),
        ({"intervention_prob": float("nan")}, InvalidInputError, "intervention_prob"),
        ({"intervention_prob": -0.1}, InvalidInputError, "intervention_prob"),
        ({"intervention_mode": "some"}, InvalidInputError, "intervention_mode"),
        ({"start_index": -1}, InvalidInputError, "start_index"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args: dict[str, Any] = {"env": "neutral", "n_sequences": 2, "seq_len": 3, "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sim.generate(args.pop("env"), args.pop("n_sequences"), args.pop("seq_len"), **args)


def test_bad_out_arrays() -> None:
    good = sim.generate(0, 2, 3, seed=0)
    arrays = good.arrays()
    with pytest.raises(InvalidInputError, match=r"out.frames: expected shape"):
        sim.generate(0, 2, 4, seed=0, out=arrays)
    wrong_dtype = dict(arrays, states=arrays["states"].astype(np.float64))
    with pytest.raises(InvalidTypeError, match=r"out.states: expected dtype float32"):
        sim.generate(0, 2, 3, seed=0, out=wrong_dtype)
    strided = dict(arrays, masks=np.zeros((2, 3, 32, 64), np.uint8)[..., ::2])
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        sim.generate(0, 2, 3, seed=0, out=strided)
    readonly = {k: v.copy() for k, v in arrays.items()}
    readonly["frames"].flags.writeable = False
    with pytest.raises(InvalidInputError, match="writeable"):
        sim.generate(0, 2, 3, seed=0, out=readonly)
    with pytest.raises(InvalidTypeError, match="out"):
        sim.generate(0, 2, 3, seed=0, out=[1, 2])  # type: ignore[arg-type]
    missing = {k: v for k, v in arrays.items() if k != "env_ids"}
    with pytest.raises(InvalidTypeError, match="env_ids"):
        sim.generate(0, 2, 3, seed=0, out=missing)


def _interrupt_main_once_inside(code: Any, stop: threading.Event) -> threading.Thread:
    """A thread that calls ``_thread.interrupt_main`` as soon as the main thread's innermost
    Python frame runs ``code`` (a wrapper whose Rust call releases the GIL), unless ``stop``
    is set first (or a minute passes)."""
    main = threading.main_thread().ident
    deadline = time.monotonic() + 60

    def watch() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code is code:
                _thread.interrupt_main()
                return
            stop.wait(1e-4)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_a_long_call_between_chunks() -> None:
    # Ctrl-C must stop the Rust work, not only surface once it is done. No timer races the
    # call: the interrupt is sent once the main thread is inside it, and the call must stop
    # after some chunks (65 sequences of 1000 steps each) with the later sequences never
    # written. An attempt whose interrupt lands just before the Rust call (nothing written)
    # or after it (everything written) is retried; without the check between chunks every
    # attempt would write everything.
    # A shell that starts pytest in the background (no job control) ignores SIGINT, and then
    # interrupt_main does nothing: install Python's own handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _stop_between_chunks()
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_between_chunks() -> None:
    n, steps = 1000, 1000
    out = sim.generate(0, n, steps, seed=0, render=False)  # buffers of the right shapes
    written = []
    for _ in range(5):
        out.env_ids.fill(-1)
        stop = threading.Event()
        watcher = _interrupt_main_once_inside(sim.generate.__code__, stop)
        try:
            try:
                sim.generate(0, n, steps, seed=0, render=False, out=out)
            finally:
                stop.set()
                watcher.join()
        except KeyboardInterrupt:
            pass
        written.append(int((out.env_ids == 0).sum()))
        if 0 < written[-1] < n:
            return
    pytest.fail(f"Ctrl-C did not stop the call between chunks; sequences written: {written}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_generate_works_in_a_forked_child() -> None:
    # A DataLoader worker is a fork of a process whose rayon pool threads did not survive.
    parent = sim.generate(0, 64, 8, seed=0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child = sim.generate(0, 64, 8, seed=0)
        os._exit(0 if np.array_equal(child.frames, parent.frames) else 3)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("generate hung in a forked child")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


@settings(max_examples=25, deadline=None)
@given(
    env=st.integers(0, 10),
    seed=st.integers(0, 2**64 - 1),
    prob=st.floats(0.0, 1.0),
    multi=st.booleans(),
)
def test_invariants_on_random_settings(env: int, seed: int, prob: float, multi: bool) -> None:
    mode = "multi" if multi else "single"
    b = sim.generate(
        env, 6, 40, seed=seed, intervention_prob=prob, intervention_mode=mode, render=False
    )
    s, g, iv = b.states, b.local_graphs, b.interventions
    assert np.isfinite(s).all()
    assert ((s[..., :2] >= 2) & (s[..., :2] <= 30)).all()
    assert ((s[..., 3] >= np.float32(3.2)) & (s[..., 3] <= np.float32(28.8))).all()
    assert not (g & ~sim.global_graph(env, interventions=True)).any()
    scored = (s[:, 1:, 6:] != s[:, :-1, 6:]).any(axis=-1)
    np.testing.assert_array_equal(g[:, 1:, SCORE, BALL], scored)
    for target, obj in ((T_LEFT, LEFT), (T_RIGHT, RIGHT)):
        want = np.array([0, 0, 0, 0, 1], bool)[None].repeat(len(g[iv[..., target]]), 0)
        want[:, obj] = ~g[..., SCORE, BALL][iv[..., target]]  # self-loop unless a point
        np.testing.assert_array_equal(g[..., obj, :][iv[..., target]], want)
    if not multi:
        assert iv.sum(axis=-1).max(initial=0) <= 1


@pytest.mark.parametrize("res", [16, 17, 32, 45, 128])
def test_background_is_what_frames_show_outside_every_mask(res: int) -> None:
    scene = sim.background(res)
    assert scene.shape == (res, res, 3) and scene.dtype == np.uint8
    assert (scene[res // 2, res // 2] == BACKGROUND).all()  # field
    assert (scene[0, 0] < 64).all()  # border
    batch = sim.generate("gravity_bounce", 8, 6, seed=3, resolution=res, velocity="previous")
    frames = np.asarray(batch.frames)
    free = np.asarray(batch.masks) == 0
    assert free.any()
    np.testing.assert_array_equal(frames[free], np.broadcast_to(scene, frames.shape)[free])


def test_background_rejects_bad_resolution() -> None:
    with pytest.raises(InvalidInputError, match="resolution"):
        sim.background(8)
    with pytest.raises(InvalidTypeError):
        sim.background(32.5)  # type: ignore[arg-type]


def test_bad_flags_and_values_raise_errors_naming_them() -> None:
    with pytest.raises(InvalidTypeError, match="occlusion: expected True or False"):
        sim.generate("neutral", 1, 2, seed=0, occlusion="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="render: expected True or False"):
        sim.generate("neutral", 1, 2, seed=0, render=1)  # type: ignore[arg-type]
    states = np.full((1, len(sim.STATE_NAMES)), 10.0)
    with pytest.raises(InvalidTypeError, match="previous: expected an array of numbers"):
        sim.render(states, previous=[["1", "2"]], velocity="previous")
    with pytest.raises(InvalidInputError, match="previous: expected finite values"):
        sim.render(states, previous=[[np.nan, 1.0]], velocity="previous")
    with pytest.raises(InvalidTypeError, match="mechanisms: expected an iterable"):
        sim.register_environment("bad_mechanisms", 5)  # type: ignore[arg-type]
    # an impossible size names the argument instead of a bare MemoryError
    with pytest.raises(InvalidInputError, match=r"n_sequences: .* more than can be allocated"):
        sim.generate("neutral", 2**40, 2, seed=0)
    batch = sim.generate("neutral", 1, 2, seed=0, occlusion=np.bool_(True))
    assert np.asarray(batch.frames).shape == (1, 2, 32, 32, 3)


def test_the_core_refuses_fortran_order_render_buffers() -> None:
    from s2ssm import _core

    states = np.full((2, len(sim.STATE_NAMES)), 10.0)
    frames = np.asfortranarray(np.zeros((2, 32, 32, 3), np.uint8))
    masks = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(InvalidInputError, match="frames: expected a C-contiguous array"):
        _core.sim_render_into(states, None, 32, "none", False, frames, masks)
    with pytest.raises(InvalidInputError, match="states: expected a C-contiguous array"):
        _core.sim_render_into(
            np.asfortranarray(states), None, 32, "none", False, np.zeros_like(frames), masks
        )
