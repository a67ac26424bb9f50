"""Progress of long commands: a tqdm bar on a terminal; elsewhere (SLURM, CI, ``nohup``, a
pipe) a timestamped line every ``interval`` seconds, with counts, rate and ETA::

    2026-12-02 08:14:05 train: 350/2000 (17.5 %), 11.8 it/s, ETA 0:02:20, loss=0.0312

Only the standard library is needed for the lines; the bar needs tqdm.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import IO, Any

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class Progress:
    """``total`` steps of work named ``desc``; call :meth:`update` as they finish and
    :meth:`close` (or use it as a context manager) at the end.

    ``enabled``: ``False`` prints nothing; ``True`` or ``None`` show a bar when ``stream`` is a
    terminal and lines otherwise (``None`` is the default of the commands). ``interval``:
    seconds between two lines.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        unit: str = "it",
        enabled: bool | None = True,
        interval: float = 10.0,
        stream: IO[str] | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start = initial
        self.interval = interval
        self.stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._t0 = self._last = clock()
        self._postfix = ""
        self._bar: Any = None
        self._lines = False
        if enabled is False:
            return
        if self.stream.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional: lines instead
                self._lines = True
            else:
                self._bar = tqdm(
                    total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True
                )
        else:
            self._lines = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, text: str) -> None:
        """Text shown after the counts (e.g. the current loss or unit)."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def update(self, n: int = 1) -> None:
        """``n`` more steps are done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and self._clock() - self._last >= self.interval:
            self._line()

    def close(self) -> None:
        """Ends the bar, or prints the last line (if any step was done since the last one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines:
            self._line()
            self._lines = False

    def _line(self) -> None:
        now = self._clock()
        self._last = now
        elapsed = now - self._t0
        done = self.n - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.1f} %)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        elif self.n >= self.total:
            parts.append(f"done in {_duration(elapsed)}")
        if self._postfix:
            parts.append(self._postfix)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {self.desc}: {', '.join(parts)}", file=self.stream, flush=True)
