"""Operators' reads of the items table: the rebuild's consistent snapshot, and the
verifier's batches and lookups."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

REBUILD_LOCK = 0x17E46  # advisory lock id: one `items rebuild` at a time

_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# The rows a rebuild seeds from, with ids, prices and times already rendered as the
# view's text (app/queries/views.py): price is numeric(11,2), so its text always has two
# decimals, like views.format_price. app/infrastructure/redis/rebuild_store.py packs them.
ITEM_ROWS = (
    "SELECT id::text, name, description, price::text, tags, version, "
    f"{_TIME.format('created_at')}, {_TIME.format('updated_at')} FROM items"
)
COUNT_ITEMS = "SELECT count(*) FROM items"
COUNT_EVENTS_AFTER = "SELECT count(*) FROM events WHERE position > $1"
# A deleted item has no row: its last version comes from the log, as a tombstone.
TOMBSTONES = """
SELECT item_id, max(item_version) AS version FROM events
WHERE type = 'ItemDeleted' GROUP BY item_id
"""
TRY_LOCK = "SELECT pg_try_advisory_lock($1)"

ITEM_COLUMNS = "id, name, description, price, tags, version, created_at, updated_at"
ROWS_BY_ID = f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ANY($1::uuid[])"
FIRST_ROWS = f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1"
ROWS_AFTER = f"SELECT {ITEM_COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2"


# -- the rebuild ---------------------------------------------------------------------------


async def lock_rebuild(conn: asyncpg.Connection) -> bool:
    """Hold the one-rebuild-at-a-time lock for this connection's session."""
    return bool(await conn.fetchval(TRY_LOCK, REBUILD_LOCK))


@asynccontextmanager
async def snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Everything read inside sees one consistent state of the write model."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


async def count_items(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(COUNT_ITEMS))


async def count_events_after(conn: asyncpg.Connection, position: int) -> int:
    return int(await conn.fetchval(COUNT_EVENTS_AFTER, position))


async def tombstones(conn: asyncpg.Connection) -> list[tuple[UUID, int]]:
    return [(r["item_id"], r["version"]) for r in await conn.fetch(TOMBSTONES)]


async def item_rows(conn: asyncpg.Connection) -> asyncpg.cursor.Cursor:
    """A server-side cursor over ITEM_ROWS (inside `snapshot`); fetch(n) pages it."""
    return await conn.cursor(ITEM_ROWS)


# -- the verifier --------------------------------------------------------------------------


async def rows_by_id(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """The rows of these ids (canonical UUID text) that exist."""
    if not ids:
        return {}
    return {str(r["id"]): r for r in await conn.fetch(ROWS_BY_ID, list(ids))}


async def row_batches(conn: asyncpg.Connection, batch: int) -> AsyncIterator[list[asyncpg.Record]]:
    """Every row, in id order, `batch` at a time (keyset pages: no long snapshot)."""
    last: UUID | None = None
    while True:
        if last is None:
            rows = await conn.fetch(FIRST_ROWS, batch)
        else:
            rows = await conn.fetch(ROWS_AFTER, last, batch)
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1]["id"]
