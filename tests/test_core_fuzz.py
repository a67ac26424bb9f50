"""A bounded fuzz of the compiled core ``s2ssm._core`` and the public wrappers: malformed shapes,
dtypes, memory orders, sizes and thread counts. Every call must return or raise a Python
exception; it runs in a child process, so a crash (an abort, a segfault) or a hang fails this
test instead of killing pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # no run-away allocation
    import numpy as np
    from s2ssm import _core, graph, sim

    rng = np.random.default_rng(SEED)
    DTYPES = [np.uint8, np.uint64, np.float64, np.float32, np.int32, np.bool_]
    THREADS = [None, None, 1, 2, 0, 1025, -1, True]
    ALLOWED = (ValueError, TypeError, MemoryError, OverflowError)

    def array(ndim):
        shape = tuple(int(rng.choice([0, 1, 2, 3, 5, 65])) for _ in range(ndim))
        if rng.random() < 0.05 and ndim:
            shape = (2**40,) + (0,) * (ndim - 1)  # huge but empty
        dtype = DTYPES[rng.integers(len(DTYPES))]
        a = np.zeros(shape, dtype) if 0 in shape else (rng.random(shape) * 3).astype(dtype)
        kind = rng.integers(3)
        if kind == 1:
            a = np.asfortranarray(a)
        elif kind == 2 and a.ndim and a.shape[-1] > 1:
            a = a[..., ::2]  # a strided view
        return a

    def word(choices):
        return choices[rng.integers(len(choices))]

    calls = {
        "shd": lambda: _core.shd(array(3), array(3), word(["double", "single", "x"]),
                                 word(["ignore", "count"]), word(THREADS)),
        "edge_counts": lambda: _core.edge_counts(array(3), array(3), word(["ignore", "y"]),
                                                 word(THREADS)),
        "path_counts_u64": lambda: _core.path_counts_u64(
            array(4), word(["child_parent", "parent_child", "z"]), word(THREADS),
            array(3) if rng.random() < 0.3 else None),
        "path_counts_f64": lambda: _core.path_counts_f64(array(4), "child_parent", word(THREADS)),
        "reachability": lambda: _core.reachability(array(4), "parent_child", word(THREADS)),
        "reachability_dense": lambda: _core.reachability_dense(array(4), "child_parent",
                                                               word(THREADS)),
        "sim_render_into": lambda: _core.sim_render_into(
            array(2), array(2) if rng.random() < 0.5 else None, word([8, 16, 32, 7, 0]),
            word(["none", "previous", "next_channel", "q"]), bool(rng.random() < 0.5),
            array(4), array(3), word(THREADS)),
        "graph.shd": lambda: graph.shd(array(3), array(3), threshold=word([None, 0.5, "0.5"]),
                                       num_threads=word(THREADS)),
        "graph.path_counts": lambda: graph.path_counts(array(4), num_threads=word(THREADS)),
        "graph.pack_rows": lambda: graph.pack_rows(array(3)),
        "sim.render": lambda: sim.render(array(2), previous=array(2), resolution=word([8, 32]),
                                         velocity=word(["none", "previous"])),
        "sim.generate": lambda: sim.generate(
            word(["neutral", "bounce", "nope", 3, -1]), word([1, 2, 0, -3]), word([1, 3, 0]),
            seed=word([0, 1, -1]), resolution=word([8, 16, 5]),
            num_threads=word([None, 1, 0, 2000]), intervention_prob=word([0.0, 0.15, 2.0])),
        "sim_generate_into": lambda: _core.sim_generate_into(
            word([0, 1, 2**31]), 0, word([0, 2**64 - 1]), word([0, 2**64 - 1]), word([1, 2, 0]),
            word([16, 8]), "none", False, word([0.15, 2.0]), False, bool(rng.random() < 0.5),
            array(5), array(4), array(3), array(3), array(4), array(1), word(THREADS),
            *([array(3), array(3)] if rng.random() < 0.5 else [None, array(3)])),
        "SimGames": lambda: games_call(),
        "sim.InterventionSchedule": lambda: sim.generate(
            "neutral", 2, 3, seed=0, schedule=sim.InterventionSchedule(array(3), array(3))),
    }

    def games_call():
        g = _core.SimGames(word([0, 1, 2**31]), word([0, 1, 3]), word([16, 8]),
                           word(["none", "next_channel", "q"]), False, word([0.0, 0.5, -1.0]),
                           bool(rng.random() < 0.5), bool(rng.random() < 0.5))
        g.reset(word([0, 1, 5]), word([0, 2**64 - 1]), word([0, 2**64 - 1]))
        forced = [array(1), array(2), array(2)] if rng.random() < 0.5 else [None, None, None]
        g.step(array(4), array(3), array(2), array(2), array(3), *forced, word(THREADS))
        g.states(), g.steps(), len(g)
    counts = {name: 0 for name in calls}
    for i in range(ROUNDS):
        for name, call in calls.items():
            try:
                call()
            except ALLOWED:
                counts[name] += 1
    print("ok", sum(counts.values()))
    """
)


def test_core_and_wrappers_never_crash_on_malformed_input() -> None:
    for seed in (0, 1, 2):
        script = SCRIPT.replace("SEED", str(seed)).replace("ROUNDS", "60")
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"seed {seed}: rc {done.returncode}\n{done.stderr[-3000:]}"
        assert done.stdout.startswith("ok "), done.stdout
