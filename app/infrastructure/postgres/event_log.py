"""The event log (the outbox the unit of work appends to), read in position order.

Every read of the log also returns the PostgreSQL snapshot it ran in, so the projector
can tell a hole that a still-open transaction will fill from one a rolled-back
transaction left for good (app/projection/gap_guard.py). Also here: the projector's
wake-ups (NOTIFY from a trigger on the events table), the dead letters kept beside the
log, and what operators ask of it (head, lag). Who projects which partition is
leases.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from app.projection.gap_guard import Snapshot
from app.projection.ports import StoredEvent

CHANNEL = "item_events"  # NOTIFY channel, fired by a trigger on the events table
CONNECT_TIMEOUT = 5.0

# `held`: the item has an unresolved dead letter, so this event must wait behind it.
# Asked here rather than in a query of its own: under load every round trip of a
# projector step adds to the projection lag.
READ_AFTER = """
SELECT s.snap::text AS snap, e.position, e.event_id, e.item_id, e.item_version,
       e.type, e.payload::text AS payload, e.occurred_at, e.trace_context,
       EXISTS (SELECT 1 FROM dead_letters d WHERE d.item_id = e.item_id) AS held
FROM (SELECT pg_current_snapshot() AS snap) AS s
LEFT JOIN LATERAL (
    SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2
) AS e ON true
ORDER BY e.position
"""
EVENTS_AT = """
SELECT position, event_id, item_id, item_version, type, payload::text AS payload, occurred_at
FROM events WHERE position = ANY($1::bigint[]) ORDER BY position
"""
HEAD = "SELECT coalesce(max(position), 0) FROM events"
NEXT_XID = "SELECT pg_current_xact_id()::text"
# The age of the oldest event past a checkpoint, by the database's clock at its INSERT.
LAG_SECONDS = """
SELECT greatest(0, extract(epoch FROM clock_timestamp()
                             - coalesce(recorded_at, occurred_at)))::float8
FROM events WHERE position > $1 ORDER BY position LIMIT 1
"""
RECORD_DEAD_LETTERS = """
INSERT INTO dead_letters (position, item_id, event_type, error)
VALUES ($1, $2, $3, $4) ON CONFLICT (position) DO NOTHING
"""
DEAD_LETTERS = """
SELECT position, item_id, event_type, error, failed_at FROM dead_letters ORDER BY position
"""
RESOLVE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE position = ANY($1::bigint[])"
# A database not yet migrated has no dead_letters table: a status then says 0.
HAS_DEAD_LETTERS = "SELECT to_regclass('dead_letters') IS NOT NULL"
COUNT_DEAD_LETTERS = "SELECT count(*) FROM dead_letters"


def stored_event(r: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        position=r["position"],
        event_id=r["event_id"],
        item_id=r["item_id"],
        version=r["item_version"],
        type=r["type"],
        payload=r["payload"],
        occurred_at=r["occurred_at"],
        held=bool(r.get("held", False)),
        trace_context=r.get("trace_context"),
    )


class PgEventLog:
    """The log, on one connection the caller owns."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def read_after(self, after: int, limit: int) -> tuple[Snapshot, list[StoredEvent]]:
        rows = await self.conn.fetch(READ_AFTER, after, limit)
        snapshot = Snapshot.parse(rows[0]["snap"])
        return snapshot, [stored_event(r) for r in rows if r["position"] is not None]

    async def next_xid(self) -> int:
        # Takes one transaction id; the projector asks only when a new hole appears.
        return int(await self.conn.fetchval(NEXT_XID))

    async def head(self) -> int:
        """The position of the latest event (0 for an empty log)."""
        return int(await self.conn.fetchval(HEAD))

    async def events_at(self, positions: list[int]) -> list[StoredEvent]:
        return [stored_event(r) for r in await self.conn.fetch(EVENTS_AT, positions)]

    async def lag_seconds(self, after: int) -> float:
        """How long the oldest event after `after` has been waiting (0.0 if none)."""
        return float(await self.conn.fetchval(LAG_SECONDS, after) or 0.0)

    # -- dead letters ------------------------------------------------------------------

    async def record_dead_letters(self, dead: list[tuple[StoredEvent, str]]) -> None:
        await self.conn.executemany(
            RECORD_DEAD_LETTERS, [(e.position, e.item_id, e.type, error) for e, error in dead]
        )

    async def dead_letters(self) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(DEAD_LETTERS))

    async def count_dead_letters(self) -> int:
        if not await self.conn.fetchval(HAS_DEAD_LETTERS):
            return 0
        return int(await self.conn.fetchval(COUNT_DEAD_LETTERS))

    async def resolve_dead_letters(self, positions: list[int]) -> None:
        await self.conn.execute(RESOLVE_DEAD_LETTERS, positions)


class PgLeaderSession(PgEventLog):
    """The projector's own connection to the log, on which NOTIFY wakes it."""

    async def listen(self, wake: Callable[[], None]) -> None:
        await self.conn.add_listener(CHANNEL, lambda *_: wake())
        self.conn.add_termination_listener(lambda _: wake())

    def is_closed(self) -> bool:
        return bool(self.conn.is_closed())

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # it may be dead already
            await self.conn.close(timeout=2)
        if not self.conn.is_closed():
            self.conn.terminate()


class PgLogConnector:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    async def connect(self) -> PgLeaderSession:
        return PgLeaderSession(await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT))
