"""Reading the event log in position order without ever skipping a late commit.

Positions are handed out when a transaction inserts its events, but transactions commit
in their own order: position 11 can be visible while 10 is still in flight. A reader
that trusted "highest position seen" would skip 10 for good. Here every read also
returns the snapshot it ran in, and `GapGuard` lets the projector pass a hole in the
positions only once every transaction that could still fill it has ended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import orjson

from app.domain.events import Event
from app.infrastructure import event_codec

# `held`: the item has an unresolved dead letter, so this event must wait behind it.
# Asked here rather than in a query of its own: under load every round trip of a
# projector step adds to the projection lag.
READ_AFTER = """
SELECT s.snap::text AS snap, e.position, e.event_id, e.item_id, e.item_version,
       e.type, e.payload::text AS payload, e.occurred_at,
       EXISTS (SELECT 1 FROM dead_letters d WHERE d.item_id = e.item_id) AS held
FROM (SELECT pg_current_snapshot() AS snap) AS s
LEFT JOIN LATERAL (
    SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2
) AS e ON true
ORDER BY e.position
"""


@dataclass(frozen=True)
class StoredEvent:
    position: int
    event_id: UUID
    item_id: UUID
    version: int
    type: str
    payload: str
    occurred_at: datetime
    held: bool = False  # behind an unresolved dead letter of the same item (READ_AFTER)

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> StoredEvent:
        return cls(
            position=r["position"],
            event_id=r["event_id"],
            item_id=r["item_id"],
            version=r["item_version"],
            type=r["type"],
            payload=r["payload"],
            occurred_at=r["occurred_at"],
            held=bool(r.get("held", False)),
        )

    def decode(self) -> Event:
        payload: Any = orjson.loads(self.payload)
        if not isinstance(payload, dict):
            raise ValueError("payload must be a JSON object")
        return event_codec.from_record(
            type_name=self.type,
            payload=payload,
            item_id=self.item_id,
            version=self.version,
            occurred_at=self.occurred_at,
            event_id=self.event_id,
        )


@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot, from its text form "xmin:xmax:xip,...".

    PostgreSQL sets xmax to the latest *completed* transaction id + 1, not to the next id
    to be handed out: a transaction that already holds an id at or above xmax is running
    but is not listed in xip. So "running" is xip plus everything from xmax up."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xips = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xips.split(",") if x))

    def running(self, xid: int) -> bool:
        return xid >= self.xmax or xid in self.xip


@dataclass(frozen=True)
class _Owners:
    """Every transaction that may still fill a hole seen in one snapshot: those it
    listed as running, and those that held an id at or above its xmax, which are all
    below `bound` (an id handed out after that snapshot; None until fetched)."""

    xip: frozenset[int]
    xmax: int
    bound: int | None = None

    def ended_by(self, later: Snapshot) -> bool:
        if self.bound is None:
            return False
        if any(later.running(x) for x in self.xip):
            return False
        # Every id in [xmax, bound) has ended in `later`: below its xmax and not listed.
        return self.bound <= later.xmax and not any(self.xmax <= x < self.bound for x in later.xip)


class GapGuard:
    """Decides how far the projector may advance through a read.

    A hole below a visible position p was allocated before p, so whoever owns it held a
    transaction id when the snapshot that showed p was taken (the repositories write the
    item row first, which gives a writer its id before it takes a position). Once every
    transaction that was running then has ended, a hole still empty belongs to a
    transaction that rolled back and will never be filled: it is safe to pass.

    "Running then" is the snapshot's xip list plus every id from its xmax up to an id
    handed out after it: the projector fetches that bound (`needs_bound`/`set_bound`)
    when a new hole appears, so no hole is ever passed on a snapshot alone.
    """

    def __init__(self) -> None:
        # Holes below `_limit` are owned by transactions among `_owners` (or had ended).
        self._limit = 0
        self._owners: _Owners | None = None

    @property
    def needs_bound(self) -> bool:
        return self._owners is not None and self._owners.bound is None

    def set_bound(self, next_xid: int) -> None:
        """An id handed out after the snapshot that showed the latest hole."""
        assert self._owners is not None
        self._owners = _Owners(self._owners.xip, self._owners.xmax, next_xid)

    def safe_count(self, after: int, positions: list[int], snapshot: Snapshot) -> int:
        """How many of `positions` (ascending, all > after) may be applied now."""
        expected = after + 1
        for count, position in enumerate(positions):
            if position != expected and not self._hole_settled(position, snapshot):
                return count
            expected = position + 1
        return len(positions)

    def _hole_settled(self, position: int, snapshot: Snapshot) -> bool:
        owners = self._owners
        if position <= self._limit and owners is not None and owners.ended_by(snapshot):
            return True
        if position > self._limit:
            # Who could own this hole (and every one below it): a superset of the
            # previous owners that are still running, so replacing them loses nothing.
            self._limit, self._owners = position, _Owners(snapshot.xip, snapshot.xmax)
        return False


async def read_after(
    conn: asyncpg.Connection, after: int, limit: int
) -> tuple[Snapshot, list[StoredEvent]]:
    """Events after a position, and the snapshot they were read in."""
    rows = await conn.fetch(READ_AFTER, after, limit)
    snapshot = Snapshot.parse(rows[0]["snap"])
    events = [StoredEvent.from_row(r) for r in rows if r["position"] is not None]
    return snapshot, events


async def next_xid(conn: asyncpg.Connection) -> int:
    """A transaction id handed out now: above every id handed out before this call.
    (Takes one id; called only when a new hole appears.)"""
    return int(await conn.fetchval("SELECT pg_current_xact_id()::text"))


async def head(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))


class DeadLetterLog(Protocol):
    async def record(self, dead: list[tuple[StoredEvent, str]]) -> None: ...


class PgDeadLetters:
    """The projector's dead letters, on the connection that holds its lock."""

    def __init__(self, connection: Callable[[], asyncpg.Connection | None]) -> None:
        self._connection = connection

    def _conn(self) -> asyncpg.Connection:
        conn = self._connection()
        assert conn is not None, "the projector is not connected"
        return conn

    async def record(self, dead: list[tuple[StoredEvent, str]]) -> None:
        await record_dead_letters(self._conn(), dead)


async def record_dead_letters(
    conn: asyncpg.Connection, dead: list[tuple[StoredEvent, str]]
) -> None:
    await conn.executemany(
        "INSERT INTO dead_letters (position, item_id, event_type, error)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (position) DO NOTHING",
        [(e.position, e.item_id, e.type, error) for e, error in dead],
    )


async def dead_letters(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT position, item_id, event_type, error, failed_at FROM dead_letters"
            " ORDER BY position"
        )
    )


async def events_at(conn: asyncpg.Connection, positions: list[int]) -> list[StoredEvent]:
    rows = await conn.fetch(
        "SELECT position, event_id, item_id, item_version, type, payload::text AS payload,"
        " occurred_at FROM events WHERE position = ANY($1::bigint[]) ORDER BY position",
        positions,
    )
    return [StoredEvent.from_row(r) for r in rows]


async def resolve_dead_letters(conn: asyncpg.Connection, positions: list[int]) -> None:
    await conn.execute("DELETE FROM dead_letters WHERE position = ANY($1::bigint[])", positions)
