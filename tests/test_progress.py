"""Progress lines when stderr is not a terminal (SLURM, CI, nohup): timestamped, with counts,
rate and ETA, at most one per interval, and a last one at the end."""

from __future__ import annotations

import io
import re

from s2ssm.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_with_counts_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(100, "train", unit="step", interval=10.0, stream=out, clock=clock) as p:
        for _ in range(50):
            clock.now += 0.5  # 2 steps/s
            p.set_postfix("loss=0.5")
            p.update()
    lines = out.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert len(lines) == 3, lines  # at 10 s, 20 s, and the closing line (25 s)
    assert re.fullmatch(stamp + r" train: 20/100 \(20.0 %\), 2 step/s, ETA 0:00:40, loss=0.5",
                        lines[0]), lines[0]  # fmt: skip
    assert "40/100 (40.0 %)" in lines[1] and "ETA 0:00:30" in lines[1]
    assert "50/100 (50.0 %)" in lines[2]


def test_resumed_counts_and_the_done_line() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(10, "generate", initial=6, unit="shard", stream=out, clock=clock)
    for _ in range(4):
        clock.now += 1.0
        p.update()
    p.close()
    (line,) = out.getvalue().splitlines()
    assert "generate: 10/10 (100.0 %), 1 shard/s, done in 0:00:04" in line


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with Progress(5, "x", enabled=False, stream=out, interval=0.0) as p:
        p.update(5)
    assert out.getvalue() == ""
