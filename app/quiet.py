"""One log line per thing a process waits for, not one per attempt.

An outage (a store unreachable, Redis loading its data after a restart, a database not
migrated yet) makes every retry and every request fail the same way; logging each
would bury the one line that says what is awaited. `Quiet` says a reason when it is new
or when `every` seconds have passed since it last said it, and says once when the wait
is over.
"""

from __future__ import annotations

import logging
import time

EVERY = 5.0  # seconds between two lines about the same reason


class Quiet:
    def __init__(self, log: logging.Logger, what: str, every: float = EVERY) -> None:
        self._log = log
        self._what = what
        self._every = every
        self._reason: str | None = None
        self._said_at = 0.0

    def say(self, reason: str) -> None:
        now = time.monotonic()
        if reason != self._reason or now - self._said_at >= self._every:
            self._log.warning("%s: %s", self._what, reason)
            self._reason, self._said_at = reason, now

    def over(self) -> None:
        if self._reason is not None:
            self._log.info("%s: over (%s)", self._what, self._reason)
            self._reason = None
