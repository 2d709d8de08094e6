"""The relay: reads the event log in position order and publishes each event to the
broker, one at a time, advancing its checkpoint only after the broker acknowledged.

- **In order, never past a hole too early.** The log is read the projector's way (every
  read returns its snapshot; app/projection/gap_guard.py says when a hole in the
  positions can no longer fill), and each event is published only once the one before it
  was acknowledged, so the stream holds every item's events in version order.
- **At least once.** The checkpoint moves after the acknowledgements of a batch (Debezium's
  DBZ-2550: offsets committed before the broker has the message lose it in a crash); a
  relay that dies mid-batch starts again from the checkpoint. Each message carries its
  event id as Nats-Msg-Id, so the stream drops a second copy within its duplicate window;
  and whenever the relay does not know what the stream holds (after a start, after a
  failed publish) it asks the stream for the last message of the item's subject first,
  and skips an event already there, so even a relay down for longer than that window
  stores no second copy of what the broker had acknowledged.
- **One at a time.** The relay publishes only while it holds its lease in PostgreSQL
  (renewed at least every third of RELAY_LEASE_SECONDS, and between retries); a standby
  takes over a lease that lapsed, or at once one whose holder on this host is gone.
- **Retry horizon.** A publish that is not acknowledged is retried with the same
  Nats-Msg-Id for RELAY_RETRY_HORIZON seconds at most (each try waits a sixth of the
  lease at most, a second by default);
  then this run ends and the relay starts over on fresh connections, from its checkpoint.
  The stream's duplicate window is at least that horizon (Settings refuses less, and the
  broker adapter refuses a stream whose window is shorter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app import metrics
from app.projection.gap_guard import GapGuard
from app.projection.ports import LeaderSession, LogConnector
from app.quiet import Quiet
from app.relay.message import message
from app.relay.ports import (
    Broker,
    BrokerConnector,
    Checkpoint,
    CheckpointConnector,
    Held,
    Message,
)
from app.waker import Waker

log = logging.getLogger("items.relay")

HOLE_WAIT = 0.02  # seconds before reading again while a hole in the positions may fill
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 5.0
MAX_RETRY_DELAY = 2.0

Transient = Callable[[BaseException], str | None]


class LeaseLost(Exception):
    """Another relay holds the lease now: this one publishes nothing more."""


class RetriesExhausted(Exception):
    """The broker did not acknowledge one event within the retry horizon."""


class Relay:
    def __init__(
        self,
        log_connector: LogConnector,
        checkpoints: CheckpointConnector,
        broker: BrokerConnector,
        *,
        prefix: str,
        batch_size: int = 200,
        lease: float = 5.0,
        retry_horizon: float = 30.0,
        poll_interval: float = 1.0,
        transient: Transient = lambda exc: None,
    ) -> None:
        self._log = log_connector
        self._checkpoints = checkpoints
        self._broker = broker
        self._prefix = prefix
        self._batch = batch_size
        self._lease = lease
        self._horizon = retry_horizon
        self._poll = min(poll_interval, lease / 3)
        # A try (a lookup and a publish) ends within a third of the lease, so a lease
        # renewed a third of a lease ago is still held when it ends.
        self._timeout = min(1.0, lease / 6)
        self._transient = transient
        self._waiting = Quiet(log, "relay waiting")
        self._wake = Waker()
        self._stopping = False
        self._renew_by = 0.0  # monotonic time by which the lease must be renewed again
        self._since = ""  # when this relay took the lease it holds (Held.since)
        self.position: int | None = None  # the last acknowledged position (None: standby)
        self.published = 0  # messages the broker acknowledged, in this process

    def stop(self) -> None:
        """Finish the event in hand, save the checkpoint, give the lease up, return."""
        self._stopping = True
        self._wake.wake()

    async def run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping:
            try:
                await self._session()
                backoff = FIRST_BACKOFF
            except Exception as exc:
                reason = self._transient(exc) or f"{type(exc).__name__}: {exc}"
                self._waiting.say(f"{reason}; starting over from the checkpoint")
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _session(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            session = await self._log.connect()
            stack.push_async_callback(session.close)
            await session.listen(self._wake.wake)
            store = await self._checkpoints.connect()
            stack.push_async_callback(store.close)
            broker = await self._broker.connect()
            stack.push_async_callback(broker.close)
            await broker.prepare()
            try:
                await self._relay(session, store, broker)
            finally:
                self.position = None
                with contextlib.suppress(Exception):
                    await store.release()

    async def _relay(self, session: LeaderSession, store: Checkpoint, broker: Broker) -> None:
        position: int | None = None
        guard = GapGuard()
        unsure = True  # whether the stream may hold events past the checkpoint already
        while not self._stopping:
            held = await self._renew(store)
            if held is None:
                if position is not None:
                    log.warning("relay lease lost; standing by")
                position = self.position = None
                await self._sleep(self._poll)
                continue
            if position is None or held.since != self._since:
                # (Re)acquired: what another relay did meanwhile is unknown.
                position, guard, unsure = held.position, GapGuard(), True
                self._since = held.since
                self.position = position
                log.info("relay active from position %d", position)
            snapshot, events = await session.read_after(position, self._batch)
            count = guard.safe_count(position, [e.position for e in events], snapshot)
            if guard.needs_bound:
                guard.set_bound(await session.next_xid())
            done = position
            try:
                for event in events[:count]:
                    if self._stopping:
                        break
                    unsure = await self._deliver(
                        broker, store, message(event, self._prefix), unsure
                    )
                    done = event.position
            finally:
                if done != position and await store.save(done):
                    self._renew_by = time.monotonic() + self._lease / 3
                    position = self.position = done
            self._waiting.over()
            if count < len(events):
                await self._sleep(HOLE_WAIT)
            elif len(events) < self._batch:
                await self._sleep(self._poll)

    async def _renew(self, store: Checkpoint) -> Held | None:
        started = time.monotonic()
        held = await store.acquire()
        # Renewed well before it could lapse: a third of the lease, from before the call.
        self._renew_by = started + self._lease / 3 if held is not None else 0.0
        return held

    async def _deliver(self, broker: Broker, store: Checkpoint, msg: Message, unsure: bool) -> bool:
        """Publish one message until acknowledged (or found stored); returns whether the
        stream's content is still unknown past it (False once it is acknowledged)."""
        first = time.monotonic()
        delay = FIRST_BACKOFF
        while True:
            if time.monotonic() >= self._renew_by:
                held = await self._renew(store)
                if held is None or held.since != self._since:
                    raise LeaseLost()  # another relay may have published meanwhile
            try:
                if unsure:
                    stored = await broker.stored_version(msg.subject, self._timeout)
                    if stored is not None and stored >= msg.version:
                        return True  # published before, acknowledged or not: not again
                await broker.publish(msg, self._timeout)
                self.published += 1
                metrics.instance().events_relayed.inc()
                return False
            except Exception as exc:
                unsure = True  # a lost acknowledgement may hide a stored message
                if time.monotonic() - first + delay > self._horizon:
                    raise RetriesExhausted(
                        f"no acknowledgement of event {msg.msg_id} within "
                        f"{self._horizon:g}s (RELAY_RETRY_HORIZON): {exc}"
                    ) from exc
                self._waiting.say(f"publish of {msg.subject} not acknowledged ({exc}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _sleep(self, delay: float) -> None:
        """A NOTIFY, a stop or `delay`, whichever comes first."""
        if not self._stopping:
            await self._wake.sleep(delay)
