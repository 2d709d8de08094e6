"""All SQL of the write side: items rows, the event outbox and idempotency keys.

Fixed statements with parameters, run on the unit of work's `Transaction` (asyncpg;
pool.py says why not SQLAlchemy). The column lists follow tables.py, the schema of
record that the migrations create.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson

from app import tracing
from app.commands import outbox
from app.commands.idempotency import IdempotencyStore, StoredResponse
from app.commands.unit_of_work import ItemRepository
from app.domain.events import Event
from app.domain.model import Item
from app.infrastructure.postgres.transaction import Transaction

IDEMPOTENCY_LOCK_SPACE = 0x1D3  # first half of the two-int advisory lock key
KEY_TTL = timedelta(hours=24)  # keys are kept (at least) this long

# FOR UPDATE: concurrent commands on one item queue here, so each one sees the version
# the previous one committed and versions grow 1, 2, 3 with no gaps.
SELECT_ITEM_FOR_UPDATE = """
SELECT id, name, description, price, tags, version, created_at, updated_at
FROM items WHERE id = $1 FOR UPDATE
"""
# INSERT_ITEM and UPDATE_ITEM take the same first seven parameters (_row_values).
# ON CONFLICT DO NOTHING: a create that met a lost connection is sent again (the first
# may have committed), and must then find its own row rather than fail (PgWrites).
INSERT_ITEM = """
INSERT INTO items (id, name, description, price, tags, version, updated_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING
"""
UPDATE_ITEM = """
UPDATE items SET name = $2, description = $3, price = $4, tags = $5, version = $6,
    updated_at = $7
WHERE id = $1
"""
DELETE_ITEM = "DELETE FROM items WHERE id = $1"
LAST_POSITION = "SELECT max(position) FROM events WHERE item_id = $1"
EVENT_POSITION = "SELECT position FROM events WHERE event_id = $1"
# position and tx_id are filled in by PostgreSQL (identity, pg_current_xact_id()).
EVENT_COLUMNS = "(event_id, item_id, item_version, type, payload, occurred_at, trace_context)"
INSERT_EVENT = f"""
INSERT INTO events {EVENT_COLUMNS}
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
RETURNING position
"""


def with_event(row_write: str, first: int) -> str:
    """A row write and the event it raised as one statement: one round trip, and atomic
    on its own (no BEGIN/COMMIT needed). The event row is made from the row write's
    RETURNING, so the item row is written first and the transaction holds its id before
    the event takes a position, as the gap check needs (PgEventStore). `first`: the
    number of the first event parameter ($first = event_id, then as INSERT_EVENT)."""
    p = [f"${first + k}" for k in range(6)]
    return f"""
WITH item AS ({row_write.strip()} RETURNING id)
INSERT INTO events {EVENT_COLUMNS}
SELECT {p[0]}, item.id, {p[1]}, {p[2]}, {p[3]}::jsonb, {p[4]}, {p[5]} FROM item
RETURNING position
"""


CREATE_WITH_EVENT = with_event(INSERT_ITEM, 9)
UPDATE_WITH_EVENT = with_event(UPDATE_ITEM, 8)
DELETE_WITH_EVENT = with_event(DELETE_ITEM, 2)

LOCK_KEY = "SELECT pg_try_advisory_xact_lock($1, hashtext($2))"
GET_KEY = """
SELECT fingerprint, status, headers::text AS headers, body
FROM idempotency_keys WHERE key = $1 AND created_at > now() - $2::interval
"""
# An expired record that the purge has not reached yet is simply replaced.
SAVE_KEY = """
INSERT INTO idempotency_keys (key, fingerprint, status, headers, body, created_at)
VALUES ($1, $2, $3, $4::jsonb, $5, now())
ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
    status = excluded.status, headers = excluded.headers, body = excluded.body,
    created_at = excluded.created_at
"""
# Small batches keep locks short.
PURGE_KEYS = """
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM idempotency_keys WHERE created_at <= now() - $1::interval LIMIT $2
)
"""


class PgItemRepository(ItemRepository):
    """Reads (and locks) rows at once; holds the writes back until the unit of work
    appends the events they raised, so a row and its event go out as one statement."""

    def __init__(self, tx: Transaction) -> None:
        super().__init__()
        self._tx = tx
        self.held: dict[UUID, Item] = {}  # written at the next append, in this order
        self.new: set[UUID] = set()  # held rows that are not in the table yet

    async def _get(self, item_id: UUID) -> Item | None:
        row = await self._tx.fetchrow(SELECT_ITEM_FOR_UPDATE, item_id)
        return None if row is None else item_from_row(row)

    async def _add(self, item: Item) -> None:
        self.held[item.id] = item
        self.new.add(item.id)

    async def save(self, item: Item) -> None:
        self.held[item.id] = item

    async def last_position(self, item_id: UUID) -> int | None:
        position = await self._tx.fetchval(LAST_POSITION, item_id)
        return None if position is None else int(position)

    async def write_held(self) -> None:
        """Write every held row, one statement each (rows without an event of theirs)."""
        for item, new in self.take():
            if new and not item.deleted:
                status = await self._tx.execute(INSERT_ITEM, *_row_values(item), item.created_at)
                if status == "INSERT 0 0":
                    raise RuntimeError(f"item {item.id} was not written: its id is taken")
            elif item.deleted:
                await self._tx.execute(DELETE_ITEM, item.id)
            else:
                await self._tx.execute(UPDATE_ITEM, *_row_values(item))

    def take(self) -> list[tuple[Item, bool]]:
        """The held rows, each with whether it is new; none is held after."""
        held = [(item, item.id in self.new) for item in self.held.values()]
        self.held, self.new = {}, set()
        return held


def _event_values(e: Event, context: str | None) -> tuple[Any, ...]:
    """INSERT_EVENT's parameters but the item id (which with_event takes from the row)."""
    return (e.event_id, e.version, type(e).__name__, outbox.payload_text(e), e.occurred_at,
            context)  # fmt: skip


def row_and_event(item: Item, new: bool, event: Event, context: str | None
                  ) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """The one statement that writes `item`'s row and the event it raised, and its
    parameters (`new`: the row is not in the table yet; `context`: the trace context,
    None unless tracing is on). bench/pgbench.py runs the same."""
    if item.deleted:
        return DELETE_WITH_EVENT, (item.id, *_event_values(event, context))
    if new:
        return CREATE_WITH_EVENT, (*_row_values(item), item.created_at,
                                   *_event_values(event, context))  # fmt: skip
    return UPDATE_WITH_EVENT, (*_row_values(item), *_event_values(event, context))


class PgWrites:
    """The writes of one unit of work: held rows and their events, in as few statements
    as the rules allow. A command that wrote one row and raised one event for it (every
    command today) sends one statement for both; when it is the unit of work's only
    statement (a create without an Idempotency-Key), that statement is its own
    transaction, with no BEGIN or COMMIT around it."""

    def __init__(self, tx: Transaction, items: PgItemRepository) -> None:
        self._tx = tx
        self._items = items
        self._events = PgEventStore(tx)

    async def append(self, events: list[Event], *, last: bool) -> int:
        held, event = list(self._items.held.values()), events[0]
        item = held[0] if len(held) == 1 and len(events) == 1 else None
        new = item is not None and item.id in self._items.new
        if item is None or event.item_id != item.id or (new and item.deleted):
            await self._items.write_held()
            return await self._events.append(events)
        self._items.take()
        sql, args = row_and_event(item, new, event, tracing.traceparent())
        if last and not self._tx.begun and sql is CREATE_WITH_EVENT:
            # Safe to send twice (ON CONFLICT DO NOTHING), so Transaction.alone may
            # send it again on a fresh connection when the first met a dead one.
            position = await self._tx.alone("fetchval", sql, *args)
            if position is None:  # the row was there: our own first attempt, or not
                position = await self._tx.alone("fetchval", EVENT_POSITION, event.event_id)
        else:
            position = await self._tx.fetchval(sql, *args)
        if position is None:
            raise RuntimeError(f"item {item.id} was not written (its id is taken?)")
        return int(position)


class PgEventStore:
    """Appends events to the outbox inside the caller's transaction.

    The caller has already written the item row (statements run in call order), so the
    transaction holds a transaction id before it takes positions: the projector's gap
    check (app/projection/gap_guard.py) relies on it.
    """

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def append(self, new_events: list[Event]) -> int:
        # One statement per event: a command raises one event, and positions taken in
        # one transaction one after another grow.
        position = 0
        context = tracing.traceparent()  # None unless tracing is on
        for e in new_events:
            event_id, *rest = _event_values(e, context)
            position = await self._tx.fetchval(INSERT_EVENT, event_id, e.item_id, *rest)
        return int(position)


class PgIdempotencyStore(IdempotencyStore):
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def lock(self, key: str) -> bool:
        # A transaction-scoped advisory lock on the key: a concurrent request with the
        # same key learns at once that the first is still in flight (409) instead of
        # queueing behind it. The two-int form keeps these apart from other locks.
        return bool(await self._tx.fetchval(LOCK_KEY, IDEMPOTENCY_LOCK_SPACE, key))

    async def get(self, key: str) -> tuple[str, StoredResponse] | None:
        row = await self._tx.fetchrow(GET_KEY, key, KEY_TTL)
        if row is None:
            return None
        headers = orjson.loads(row["headers"])
        return row["fingerprint"], StoredResponse(row["status"], headers, bytes(row["body"]))

    async def save(self, key: str, fingerprint: str, response: StoredResponse) -> None:
        await self._tx.execute(
            SAVE_KEY,
            key,
            fingerprint,
            response.status,
            orjson.dumps(response.headers).decode(),
            response.body,
        )


async def purge_expired_keys(conn: Any, batch: int = 1000) -> int:
    """Delete a batch of expired Idempotency-Key records; the number deleted."""
    status: str = await conn.execute(PURGE_KEYS, KEY_TTL, batch)
    return int(status.rsplit(" ", 1)[1])  # "DELETE <n>"


def _row_values(item: Item) -> tuple[Any, ...]:
    """The columns an insert and an update both write, in their parameter order."""
    return (
        item.id,
        item.name,
        item.description,
        item.price,
        list(item.tags),
        item.version,
        item.updated_at,
    )


def item_from_row(row: Mapping[Any, Any]) -> Item:
    """An Item from an items row (an asyncpg record)."""
    return Item(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        price=row["price"],
        tags=tuple(row["tags"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
