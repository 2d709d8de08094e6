"""What the write side sends PostgreSQL per command (issue 20): a create is one statement
that is its own transaction; an update or a delete locks the row, then writes it and its
event as one statement. Against a real PostgreSQL: the statements' text is the proof."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.commands.bus import CommandBus
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.infrastructure.postgres import repositories as sql
from app.infrastructure.postgres.pool import Database
from app.infrastructure.postgres.unit_of_work import PgUnitOfWork
from app.settings import Settings


class RecordingDatabase(Database):
    """The service's pool, each connection logging the statements it sends."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: list[str] = []

    async def acquire(self) -> asyncpg.Connection:
        conn = await super().acquire()
        conn.add_query_logger(self._log)
        return conn

    async def release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(asyncpg.InterfaceError):  # cut: released already
            conn.remove_query_logger(self._log)
        await super().release(conn)

    def _log(self, record: Any) -> None:
        self.sent.append(record.query)


@pytest.fixture
async def database(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[RecordingDatabase]:
    database = RecordingDatabase(settings)
    yield database
    await database.close()


def bus_on(database: Database) -> CommandBus:
    return CommandBus(lambda: PgUnitOfWork(database))


async def test_a_create_is_one_statement_and_a_transaction_of_its_own(
    database: RecordingDatabase, db: asyncpg.Connection
) -> None:
    result = await bus_on(database).handle(
        CreateItem(item_id=uuid.uuid4(), name="one", price="1.50", tags=("a",))
    )
    assert database.sent == [sql.CREATE_WITH_EVENT]
    row = await db.fetchrow(
        "SELECT e.position, e.tx_id::text AS tx, i.xmin::text AS xmin FROM events e "
        "JOIN items i ON i.id = e.item_id WHERE e.item_id = $1",
        result.item.id,
    )
    assert row["position"] == result.position
    # One transaction wrote both rows (xmin is the 32-bit low half of the xid8).
    assert int(row["tx"]) % 2**32 == int(row["xmin"])


async def test_an_update_and_a_delete_lock_the_row_then_write_it_and_its_event_at_once(
    database: RecordingDatabase, db: asyncpg.Connection
) -> None:
    bus = bus_on(database)
    created = await bus.handle(CreateItem(item_id=uuid.uuid4(), name="one", price="1"))
    item_id = created.item.id
    database.sent.clear()
    updated = await bus.handle(UpdateItem(item_id=item_id, changes={"price": "2"}))
    assert database.sent == ["BEGIN", sql.SELECT_ITEM_FOR_UPDATE, sql.UPDATE_WITH_EVENT, "COMMIT"]
    assert updated.position is not None
    assert updated.position > (created.position or 0)
    database.sent.clear()
    unchanged = await bus.handle(UpdateItem(item_id=item_id, changes={"price": "2"}))
    assert unchanged.position == updated.position
    assert not unchanged.changed
    database.sent.clear()
    await bus.handle(DeleteItem(item_id=item_id))
    assert database.sent == ["BEGIN", sql.SELECT_ITEM_FOR_UPDATE, sql.DELETE_WITH_EVENT, "COMMIT"]
    assert await db.fetchval("SELECT count(*) FROM items") == 0
    types = [r["type"] for r in await db.fetch("SELECT type FROM events ORDER BY position")]
    assert types == ["ItemCreated", "ItemUpdated", "ItemDeleted"]


async def test_a_create_sent_twice_finds_its_own_first_write(
    database: RecordingDatabase, db: asyncpg.Connection
) -> None:
    """What makes sending it again after a lost connection safe: the second finds the row
    there, writes nothing, and the event's position is read back by its id."""
    item_id, event_id = uuid.uuid4(), uuid.uuid4()
    now = await db.fetchval("SELECT now()")
    row: tuple[Any, ...] = (item_id, "one", None, 1, [], 1, now, now)
    args: tuple[Any, ...] = (*row, event_id, 1, "ItemCreated", '{"name": "one"}', now, None)
    first = await db.fetchval(sql.CREATE_WITH_EVENT, *args)
    assert first is not None
    assert await db.fetchval(sql.CREATE_WITH_EVENT, *args) is None
    assert await db.fetchval(sql.EVENT_POSITION, event_id) == first
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_a_create_on_a_pooled_connection_that_died_is_written_once(
    database: RecordingDatabase, db: asyncpg.Connection
) -> None:
    bus = bus_on(database)
    await bus.handle(CreateItem(item_id=uuid.uuid4(), name="warm", price="1"))
    # The pooled connection dies while idle (an operator, a restart, a proxy).
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    result = await bus.handle(CreateItem(item_id=uuid.uuid4(), name="after", price="1"))
    assert result.position is not None
    names = [r["name"] for r in await db.fetch("SELECT name FROM items ORDER BY name")]
    assert names == ["after", "warm"]
    assert await db.fetchval("SELECT count(*) FROM events") == 2
