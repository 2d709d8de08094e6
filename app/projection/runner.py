"""The projector: runs the batch step (step.py) for as long as it holds the lock.

Only one projector is active per database (a PostgreSQL advisory lock, held on its own
connection for as long as it runs); others wait and take over when that connection
drops. It wakes on NOTIFY from the events table and polls as a fallback. A batch that
fails is retried with back-off and logged; it is never skipped. The same runner, built
in one place (app/bootstrap.py), serves `items serve` (in a child process, child.py, or
on the API's loop), `items projector`, a rebuild's catch-up (`catch_up`, no lock) and
the dead-letter retry (`reapply`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.projection.ports import EventLog, LeaderSession, LogConnector, StoredEvent
from app.projection.step import BatchStep
from app.quiet import Quiet

log = logging.getLogger("items.projector")

MAX_BACKOFF = 5.0
FIRST_BACKOFF = 0.05
RECONNECT_AFTER = 1.0

# Names a failure that is a store not ready yet (unreachable, loading its data, not
# migrated): the reason, in a few words; None for anything else (logged with its
# traceback: a bug, or data the projector cannot read). The adapters know which is
# which; bootstrap hands their verdict in.
Transient = Callable[[BaseException], str | None]


def _nothing_transient(exc: BaseException) -> str | None:
    return None


class Projector:
    def __init__(
        self,
        connector: LogConnector,
        step: BatchStep,
        *,
        poll_interval: float = 1.0,
        transient: Transient = _nothing_transient,
    ) -> None:
        self._connector = connector
        self.step = step
        self._poll_interval = poll_interval
        self._transient = transient
        self._waiting = Quiet(log, "projector waiting")
        self._wake = asyncio.Event()
        self._session: LeaderSession | None = None
        self._stopping = False
        self.is_leader = False

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop(): win the lock, project, and start over if the connection
        that holds the lock is lost."""
        self._stopping = False
        while not self._stopping:
            try:
                await self._lead()
            except Exception as exc:
                self._waiting.say(self._transient(exc) or f"lost PostgreSQL ({exc}); reconnecting")
                await self._sleep(RECONNECT_AFTER)
            finally:
                await self._disconnect()

    def stop(self) -> None:
        """Finish the batch in hand, release the lock and return from run().

        Cooperative on purpose: a cancellation can be swallowed inside client
        libraries (and by asyncio.wait_for on Python 3.11), a flag cannot."""
        self._stopping = True
        self._wake.set()

    async def _lead(self) -> None:
        self._session = session = await self._connector.connect()
        while not await session.try_lock():
            await self._sleep(self._poll_interval)
            if self._stopping:
                return
        log.info("projector holds the lock; projecting")
        self.is_leader = True
        await session.listen(self._wake.set)
        self.step.reset()
        backoff = FIRST_BACKOFF
        while not session.is_closed():
            if self._stopping:
                return
            self._wake.clear()
            try:
                pause = await self.step.step(session)
                backoff = FIRST_BACKOFF
                self._waiting.over()
            except Exception as exc:
                if session.is_closed():
                    raise
                # Redis down, a corrupt event, a bug: nothing is skipped; the same batch
                # is read again after the pause, from the checkpoint Redis holds.
                reason = self._transient(exc)
                if reason is not None:
                    self._waiting.say(reason)
                else:
                    log.exception("projection batch failed; retrying in %.2fs", backoff)
                self.step.forget()
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if pause == 0:
                continue
            await self._sleep(pause or self._poll_interval)
        raise ConnectionError("lost the connection that holds the projector lock")

    async def _disconnect(self) -> None:
        self.is_leader = False
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _sleep(self, delay: float) -> None:
        """Wait for a NOTIFY or `delay`, whichever comes first.

        A timer sets the event rather than asyncio.wait_for/timeout: on Python 3.11 both
        can swallow a cancellation that lands just as the timeout fires, and then the
        projector would never stop."""
        if self._stopping:
            return
        handle = asyncio.get_running_loop().call_later(delay, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            handle.cancel()
            self._wake.clear()

    # -- without the lock ------------------------------------------------------------------

    async def catch_up(self, log_: EventLog) -> None:
        """Run steps on `log_` until the targets have caught up with the log (a rebuild's
        generation, which no live projector writes to): no lock, no NOTIFY."""
        while True:
            pause = await self.step.step(log_)
            if pause is None:
                return
            if pause:
                await self._sleep(pause)

    async def reapply(self, item_id: str, events: list[StoredEvent]) -> None:
        """The dead-letter retry of one item (BatchStep.reapply)."""
        await self.step.reapply(item_id, events)
