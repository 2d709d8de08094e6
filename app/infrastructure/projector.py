"""The projector: applies committed events to the Redis views, in position order.

Only one projector is active per database (a PostgreSQL advisory lock, held on its own
connection for as long as it runs); others wait and take over when that connection
drops. It wakes on NOTIFY from the events table and polls as a fallback. Each batch
goes to Redis through one atomic script per partition, guarded by the expected
checkpoint, so a projector that lost its lock without knowing it cannot write.
A batch that fails is retried with back-off and logged; it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import asyncpg

from app.infrastructure import event_log
from app.infrastructure.event_log import GapGuard, StoredEvent
from app.infrastructure.projection import ItemState, ProjectionError, apply_event, diff
from app.infrastructure.projection_store import BaseMoved, Fenced, ProjectionStore, Target

log = logging.getLogger("items.projector")

LOCK_KEY = 0x17E45  # advisory lock id: one active projector per database
CHANNEL = "item_events"  # NOTIFY channel, fired by a trigger on the events table
MAX_BACKOFF = 5.0
HOLE_WAIT = 0.02
MAX_ATTEMPTS = 3  # tries of an event that fails to apply before it becomes a dead letter


class Projector:
    def __init__(
        self,
        dsn: str,
        store: ProjectionStore,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._store = store
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._targets: dict[int, Target] = {}
        self._checkpoints: dict[int, int] = {}
        self._guard = GapGuard()
        self._stopping = False
        self._failures: dict[int, int] = {}
        self.dead_letters: event_log.DeadLetterLog = event_log.PgDeadLetters(lambda: self._conn)
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
                log.error("projector lost PostgreSQL (%s); reconnecting", exc)
                await self._sleep(1.0)
            finally:
                await self._disconnect()

    def stop(self) -> None:
        """Finish the batch in hand, release the lock and return from run().

        Cooperative on purpose: a cancellation can be swallowed inside client
        libraries (and by asyncio.wait_for on Python 3.11), a flag cannot."""
        self._stopping = True
        self._wake.set()

    async def _lead(self) -> None:
        self._conn = conn = await asyncpg.connect(self._dsn, timeout=5)
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            await self._sleep(self._poll_interval)
            if self._stopping:
                return
        log.info("projector holds the lock; projecting")
        self.is_leader = True
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(lambda _: self._wake.set())
        self._targets.clear()
        self._guard = GapGuard()
        backoff = 0.05
        while not conn.is_closed():
            if self._stopping:
                return
            self._wake.clear()
            try:
                pause = await self.step()
                backoff = 0.05
            except Exception:
                if conn.is_closed():
                    raise
                # Redis down, a corrupt event, a bug: nothing is skipped; the same batch
                # is read again after the pause, from the checkpoint Redis holds.
                log.exception("projection batch failed; retrying in %.2fs", backoff)
                self._targets.clear()
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if pause == 0:
                continue
            await self._sleep(pause or self._poll_interval)
        raise ConnectionError("lost the connection that holds the projector lock")

    async def _disconnect(self) -> None:
        self.is_leader = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            if not conn.is_closed():
                conn.terminate()

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

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    # -- one batch -----------------------------------------------------------------------

    async def step(self) -> float | None:
        """Project one batch. Returns how long to wait before the next one: 0 when there
        is more to read, a short pause while a hole in the positions may still fill,
        None to sleep until NOTIFY (or the poll interval)."""
        assert self._conn is not None
        if not self._targets:
            for p in range(self._store.layout.partitions):
                self._targets[p], self._checkpoints[p] = await self._store.resolve(p)
        after = min(self._checkpoints.values())
        snapshot, read = await event_log.read_after(self._conn, after, self._batch_size)
        batch = read[: self._guard.safe_count(after, [e.position for e in read], snapshot)]
        if self._guard.needs_bound:
            self._guard.set_bound(await event_log.next_xid(self._conn))
        if batch:
            try:
                await self._apply(batch)
            except Fenced as exc:
                log.warning("projection target moved (%s); reloading from Redis", exc)
                self._targets.clear()
                return 0
        if len(batch) < len(read):
            return HOLE_WAIT  # a transaction that took an earlier position is still open
        if len(read) == self._batch_size:
            return 0
        await self._finish_restores()
        # Idle: make sure Redis still holds what we think (it may have restarted empty);
        # if not, the next step resolves again and restores from the log. After a batch
        # there is no need: its script checked the generation and checkpoint itself
        # (Fenced), and this round trip would only add to the projection lag.
        if batch:
            return None
        if not await self._store.still_current(list(self._targets.values())):
            log.warning("the read model in Redis is gone or moved; restoring from the log")
            self._targets.clear()
            return 0
        return None

    async def _apply(self, batch: list[StoredEvent]) -> None:
        layout = self._store.layout
        by_partition: dict[int, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_partition[layout.partition_of(stored.item_id)].append(stored)
        last = batch[-1].position
        for p, target in self._targets.items():
            # Events at or below this partition's checkpoint were applied before a crash
            # between two partitions' scripts; the checkpoint guard skips them.
            mine = [e for e in by_partition.get(p, []) if e.position > self._checkpoints[p]]
            if last <= self._checkpoints[p]:
                continue
            await self._apply_partition(target, mine, last)
            self._checkpoints[p] = last

    async def _apply_partition(self, target: Target, batch: list[StoredEvent], last: int) -> None:
        by_item: dict[str, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_item[str(stored.item_id)].append(stored)
        held = {item_id for item_id, events in by_item.items() if any(e.held for e in events)}
        # An item whose first event here is its creation had no view before it: no need
        # to ask Redis (one round trip less per batch of new items, which counts under
        # load). The script's version check still refuses the batch if one exists. Not
        # while any event is failing: a dead letter is only ever decided on Redis's state.
        new = set() if self._failures else {i for i, e in by_item.items() if e[0].version == 1}
        for attempt in range(3):
            known = {i: ItemState() for i in new} if attempt == 0 else {}
            states = known | await self._store.load(target, [i for i in by_item if i not in known])
            ops, dead = [], []
            for item_id, item_events in by_item.items():
                after, failed = self._fold(states[item_id], item_events, item_id in held)
                dead += failed
                op = diff(item_id, states[item_id], after)
                if op is not None:
                    ops.append(op)
            if dead:
                # Durable before the checkpoint passes them: nothing is ever dropped.
                await self.dead_letters.record(dead)
                for stored, error in dead:
                    log.error("dead letter at position %d: %s", stored.position, error)
            try:
                await self._store.apply(target, self._checkpoints[target.partition], last, ops)
                return
            except BaseMoved:
                # Someone (a repair) wrote a view between our load and our apply: the
                # version guard refused the batch whole; fold again from what is there.
                if attempt == 2:
                    raise

    def _fold(
        self, state: ItemState, events: list[StoredEvent], held: bool
    ) -> tuple[ItemState, list[tuple[StoredEvent, str]]]:
        """Fold one item's events; an event that cannot be applied (after a few tries of
        the whole batch) becomes a dead letter, and every later event of that item is
        held back behind it so the view never goes out of order. Other items flow on."""
        if held:
            return state, [(e, "held back behind an earlier dead letter") for e in events]
        for i, stored in enumerate(events):
            try:
                state = apply_event(state, stored.decode())
            except (ProjectionError, KeyError, TypeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                self._failures[stored.position] = self._failures.get(stored.position, 0) + 1
                if self._failures[stored.position] < MAX_ATTEMPTS:
                    raise  # retried with back-off; a transient cause gets its chance
                self._failures.pop(stored.position, None)
                rest = [
                    (e, f"held back behind position {stored.position}") for e in events[i + 1 :]
                ]
                return state, [(stored, error), *rest]
        return state, []

    async def _finish_restores(self) -> None:
        """A generation being restored goes live once it has caught up with the log."""
        for p, target in list(self._targets.items()):
            if target.building:
                old = await self._store.activate(target)
                self._targets[p] = Target(p, target.generation, building=False)
                log.info("partition %d: restored generation %s is live", p, target.generation)
                if old:
                    await self._store.drop_generation(p, old)
