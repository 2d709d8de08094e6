"""The projector: runs the batch step (step.py) on the partitions it owns.

Any number of projectors may run, in any processes on any hosts: they divide the
partitions between them through leases in PostgreSQL (ownership.py), one owner per
partition at a time, fenced in Redis by its epoch. A projector that owns nothing waits,
and takes partitions over when an owner stops or dies. It wakes on NOTIFY from the
events table and polls as a fallback. A batch that fails is retried with back-off and
logged; it is never skipped. The same runner, built in one place (app/bootstrap.py),
serves `items serve` (in a child process, child.py, or on the API's loop), `items
projector`, a rebuild's catch-up (`catch_up`, no ownership) and the dead-letter retry
(`reapply`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app import metrics
from app.projection.ownership import Ownership
from app.projection.ports import EventLog, LeaderSession, LogConnector, StoredEvent
from app.projection.reapply import reapply
from app.projection.step import BatchStep
from app.quiet import Quiet
from app.waker import Waker

log = logging.getLogger("items.projector")

MAX_BACKOFF = 5.0
FIRST_BACKOFF = 0.05
# For a failure that is over in moments (a Redis Cluster slot moving between nodes):
# retried this often at the least, so the projection goes on as soon as the move is done
# (doubling to 5 s would leave it idle for seconds after a reshard of a few).
BRIEF_BACKOFF = 0.25
RECONNECT_AFTER = 1.0
CATCH_UP_RETRIES = 5  # transient failures in a row a catch-up waits out

# Names a failure that is a store not ready yet (unreachable, loading its data, not
# migrated): the reason, in a few words; None for anything else (logged with its
# traceback: a bug, or data the projector cannot read). The adapters know which is
# which; bootstrap hands their verdict in.
Transient = Callable[[BaseException], str | None]


def _nothing_transient(exc: BaseException) -> str | None:
    return None


def _nothing_brief(exc: BaseException) -> bool:
    return False


def _store(exc: BaseException) -> str:
    """Which store a transient failure came from, for items_store_errors_total."""
    return "redis" if type(exc).__module__.startswith("redis") else "postgres"


class Projector:
    def __init__(
        self,
        connector: LogConnector,
        step: BatchStep,
        *,
        poll_interval: float = 1.0,
        transient: Transient = _nothing_transient,
        brief: Callable[[BaseException], bool] = _nothing_brief,
        ownership: Ownership | None = None,
    ) -> None:
        self._connector = connector
        self.step = step
        self._poll_interval = poll_interval
        self._transient = transient
        self._brief = brief  # of the transient failures, those over in moments
        self.ownership = ownership
        self._waiting = Quiet(log, "projector waiting")
        self._wake = Waker()
        if ownership is not None:
            ownership.on_change = self._wake.wake
            ownership.waiting = self._waiting
        self._session: LeaderSession | None = None
        self._stopping = False
        # Called at every round of the loop: a supervisor's proof that it is not stuck
        # (child.py kills a child whose rounds stop).
        self.on_round: Callable[[], None] = lambda: None

    @property
    def owns(self) -> dict[int, int]:
        """The partitions (-> epoch) this projector may write to now."""
        return {} if self.ownership is None else self.ownership.owned()

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop(): keep the leases, project what they give, and start over if
        the connection the log is read on is lost."""
        if self.ownership is None:
            raise ValueError("a projector without ownership only catches up (catch_up)")
        self._stopping = False
        ownership = self.ownership
        keeper = asyncio.create_task(ownership.run(), name="partition-leases")
        try:
            while not self._stopping:
                self.on_round()
                try:
                    await self._project(self.ownership)
                except Exception as exc:
                    reason = self._transient(exc) or f"lost PostgreSQL ({exc}); reconnecting"
                    self._waiting.say(reason)
                    await self._sleep(RECONNECT_AFTER)
                finally:
                    await self._disconnect()
        finally:
            # Given up only now, after the batch in hand: another takes over at once.
            self.ownership.stop()
            await keeper

    def stop(self) -> None:
        """Finish the batch in hand, give the partitions up and return from run().

        Cooperative on purpose: a cancellation can be swallowed inside client
        libraries (and by asyncio.wait_for on Python 3.11), a flag cannot."""
        self._stopping = True
        self._wake.wake()

    async def _project(self, ownership: Ownership) -> None:
        self._session = session = await self._connector.connect()
        await session.listen(self._wake.wake)
        self.step.reset()
        backoff = FIRST_BACKOFF
        while not session.is_closed():
            self.on_round()
            if self._stopping:
                return
            self._wake.clear()
            if not self.step.own(ownership.owned(), ownership.layout):
                await self._sleep(self._poll_interval)  # nothing owned: a standby
                continue
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
                    metrics.instance().store_errors.labels(_store(exc)).inc()
                else:
                    log.exception("projection batch failed; retrying in %.2fs", backoff)
                self.step.forget()
                await self._sleep(backoff)
                backoff = min(backoff * 2, BRIEF_BACKOFF if self._brief(exc) else MAX_BACKOFF)
                continue
            if pause == 0:
                continue
            await self._sleep(pause or self._poll_interval)
        raise ConnectionError("lost the connection the event log is read on")

    async def _disconnect(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _sleep(self, delay: float) -> None:
        """A NOTIFY, a stop, an ownership change or `delay`, whichever comes first."""
        if not self._stopping:
            await self._wake.sleep(delay)

    # -- without ownership ------------------------------------------------------------------

    async def catch_up(self, log_: EventLog) -> None:
        """Run steps on `log_` until the targets have caught up with the log (a rebuild's
        generation, which no live projector writes to): no ownership, no NOTIFY. A store
        that is only slow or briefly away (a Redis timeout under load) is waited out a
        few times, as the live projector would; anything else ends the catch-up."""
        failures = 0
        while True:
            try:
                pause = await self.step.step(log_)
                failures = 0
            except Exception as exc:
                failures += 1
                reason = self._transient(exc)
                if reason is None or failures > CATCH_UP_RETRIES:
                    raise
                self._waiting.say(reason)
                self.step.forget()
                await asyncio.sleep(min(FIRST_BACKOFF * 2**failures, MAX_BACKOFF))
                continue
            if pause is None:
                return
            if pause:
                await self._sleep(pause)

    async def reapply(self, item_id: str, events: list[StoredEvent]) -> None:
        """The dead-letter retry of one item (reapply.py), on this runner's store."""
        await reapply(self.step.store, item_id, events)
