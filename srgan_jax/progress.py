"""Progress of long commands on stderr: a live bar with ETA on a terminal, plain lines in logs.

`Progress(total, "upscale", unit="images")` shows a rich bar (done/total, rate, elapsed, ETA) when
stderr is a terminal; otherwise it writes one plain line per `log_every` items, e.g. `upscale:
3/10 images, 1.21 images/s, ETA 0:00:05`, so that logs and CI output stay readable. Nothing goes to
stdout, which stays free for results that scripts parse. `Progress.task(total, ...)` adds a nested
bar for the parts of one item (the tiles of a huge image), shown only while it runs.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


def format_duration(seconds: float) -> str:
    """H:MM:SS of a number of seconds."""
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Progress over `total` items of one command; use as a context manager.

    Args:
      total: number of items.
      label: what is progressing, shown first ('upscale', 'evaluate Set5', ...).
      unit: the items' name in plain lines ('images', 'steps').
      stream: where to write (default stderr); a bar only if it is a terminal.
      log_every: without a terminal, a line every this many items (and after the last).
    """

    def __init__(self, total: int, label: str, *, unit: str = "items",
                 stream: TextIO | None = None, log_every: int = 1):
        self.total, self.label, self.unit = total, label, unit
        self.stream = sys.stderr if stream is None else stream
        self.log_every = max(1, log_every)
        self.done = 0
        self.start = time.perf_counter()
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self) -> float:
        """Items per second so far (0 before the first)."""
        return self.done / self.elapsed if self.done and self.elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first item)."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate else None

    def describe(self) -> str:
        """`3/10 images, 1.21 images/s, ETA 0:00:05`."""
        text = f"{self.done}/{self.total} {self.unit}"
        rate, eta = self.rate(), self.eta()
        if rate:
            text += f", {rate:.3g} {self.unit}/s"
        if eta is not None and self.done < self.total:
            text += f", ETA {format_duration(eta)}"
        return text

    def advance(self, count: int = 1) -> None:
        """Marks `count` more items done."""
        self.done += count
        if self._bar is not None:
            rate = self.rate()
            self._bar.update(self._task, completed=self.done,
                             rate=f"{rate:.3g} {self.unit}/s" if rate else "")
        elif self.done % self.log_every == 0 or self.done >= self.total:
            self.message(f"{self.label}: {self.describe()}")

    def message(self, line: str) -> None:
        """Writes `line` on its own line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    @contextlib.contextmanager
    def task(self, total: int, label: str) -> Iterator[Any]:
        """A nested bar over the `total` parts of the current item; yields `advance(count=1)`.

        Shown only on a terminal (in logs the item's own line is enough), and removed when done.
        """
        if self._bar is None or total <= 1:
            yield lambda count=1: None
            return
        sub = self._bar.add_task(f"  {label}", total=total, rate="")
        try:
            yield lambda count=1: self._bar.advance(sub, count)
        finally:
            self._bar.remove_task(sub)
