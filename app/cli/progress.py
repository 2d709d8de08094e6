"""How a long command (rebuild, verify) shows where it is: on a terminal a rich bar with
the items done, their rate and the time left, redrawn in place on stderr; on anything
else (a pipe, a log file) a plain line every few seconds, since a redrawn bar there is a
stream of carriage returns nobody reads."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

PLAIN_EVERY = 2.0  # seconds between two plain lines


class Meter:
    """Items done out of a total: a bar on a terminal, a plain `out` line otherwise."""

    def __init__(self, label: str, out: Callable[[str], None], tty: bool | None = None) -> None:
        self.label = label
        self.out = out
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._last = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._moved: list[tuple[logging.StreamHandler[Any], IO[str]]] = []

    def __enter__(self) -> Meter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()  # a failed or interrupted command must not leave the bar drawn

    def waiting(self, what: str) -> None:
        """Something of unknown length is under way: a pulsing bar on a terminal, gone once
        closed (the plain form says nothing: the caller prints its own lines)."""
        if self.tty:
            self._draw(what, 0, None, rate="", eta="", transient=True)

    def show(self, done: int, total: int | None, seconds: float, *, final: bool = False) -> None:
        """`done` of `total` items in `seconds`; the `final` step is always shown, and
        ends the bar."""
        rate = done / max(seconds, 1e-9)
        eta = ((total or 0) - done) / rate if rate and total is not None else None
        if self.tty:
            left = f"ETA {eta:.0f}s" if eta is not None and not final else ""
            self._draw(self.label, done, total, rate=f"{rate:,.0f} items/s", eta=left)
            if final:
                self.close()
            return
        now = time.monotonic()
        if not final and now - self._last < PLAIN_EVERY:
            return
        self._last = now
        of = f"/{total}" if total is not None else ""
        self.out(f"{self.label}: {done}{of} items, {rate:,.0f} items/s, ETA {eta or 0.0:.0f}s")

    def close(self) -> None:
        """Leave the bar as it was last drawn and give the terminal back."""
        if self._bar is None:
            return
        self._bar.stop()
        for handler, stream in self._moved:
            handler.setStream(stream)
        self._moved.clear()
        self._bar = self._task = None

    def _draw(
        self,
        what: str,
        done: int,
        total: int | None,
        *,
        rate: str,
        eta: str,
        transient: bool = False,
    ) -> None:
        if self._bar is None or self._task is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True, force_terminal=True),
                # Results go to stdout, wherever that is; rich would send what is
                # written there while the bar is drawn to the bar's stderr.
                redirect_stdout=False,
                transient=transient,
            )
            self._task = self._bar.add_task(what, total=total, completed=done, rate=rate, eta=eta)
            stderr = sys.stderr
            self._bar.start()
            self._move_logs(stderr)
        self._bar.update(
            self._task, description=what, completed=done, total=total, rate=rate, eta=eta
        )

    def _move_logs(self, stderr: IO[str]) -> None:
        """While the bar is drawn, rich puts whatever is written to sys.stderr above it;
        the log handler holds the stream it was given, so it is pointed at that for the
        time being, or every log line would tear the bar."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is stderr:
                old = handler.setStream(sys.stderr)
                if old is not None:
                    self._moved.append((handler, old))
