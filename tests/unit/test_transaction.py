"""The write side's transaction on fake connections: when a unit of work starts again
on a fresh connection (only when BEGIN met a dead one) and when it never does."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import pytest

from app.infrastructure.postgres import pool
from app.infrastructure.postgres.pool import Database
from app.infrastructure.postgres.transaction import Transaction

DEAD = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


class FakeConnection:
    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.sent: list[str] = []
        self.terminated = False
        self.in_transaction = False

    async def execute(self, sql: str, *args: Any) -> str:
        self.sent.append(sql)
        if sql in self.fail:
            raise self.fail[sql]
        if sql == "BEGIN":
            self.in_transaction = True
        elif sql in ("COMMIT", "ROLLBACK"):
            self.in_transaction = False
        return "OK"

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self.execute(sql, *args)
        return 1

    fetchrow = fetchval

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.terminated

    def is_in_transaction(self) -> bool:
        return self.in_transaction


class FakeDatabase:
    def __init__(self, *connections: FakeConnection) -> None:
        self.waiting = list(connections)
        self.released: list[FakeConnection] = []
        self.expired = 0

    async def acquire(self) -> FakeConnection:
        return self.waiting.pop(0)

    async def release(self, conn: FakeConnection) -> None:
        self.released.append(conn)

    async def expire_connections(self) -> None:
        self.expired += 1


def transaction(db: FakeDatabase) -> Transaction:
    return Transaction(cast(Database, db))


# What asyncpg raises on a pooled connection whose server sent FATAL (pg_terminate_backend)
# before its end of file arrived: a plain Exception, before anything is sent.
SWITCH = asyncpg.InternalClientError(
    "cannot switch to state 15; another operation (2) is in progress"
)
# Both ways a pooled connection is found dead before anything of ours reached it.
each_dead_connection = pytest.mark.parametrize(
    "error", [DEAD, SWITCH], ids=["ended", "ended, FATAL unread"]
)


@each_dead_connection
async def test_a_dead_pooled_connection_at_begin_starts_again_on_a_fresh_one(
    error: Exception,
) -> None:
    dead, fresh = FakeConnection({"BEGIN": error}), FakeConnection()
    db = FakeDatabase(dead, fresh)
    tx = transaction(db)
    await tx.execute("INSERT 1")
    await tx.commit()
    await tx.end(None)
    assert dead.terminated
    assert db.expired == 1
    assert fresh.sent == ["BEGIN", "INSERT 1", "COMMIT"]
    assert db.released == [dead, fresh]
    assert not fresh.terminated


@pytest.mark.parametrize("failing", ["INSERT 2", "COMMIT"])
async def test_a_lost_protocol_state_after_begin_is_a_lost_connection_never_retried(
    failing: str,
) -> None:
    conn = FakeConnection({failing: SWITCH})
    db = FakeDatabase(conn, FakeConnection())
    tx = transaction(db)
    await tx.execute("INSERT 1")
    statement = tx.commit() if failing == "COMMIT" else tx.execute("INSERT 2")
    with pytest.raises(asyncpg.ConnectionDoesNotExistError) as raised:
        await statement
    await tx.end(raised.value)
    assert raised.value.__cause__ is SWITCH
    assert conn.terminated
    assert len(db.waiting) == 1


async def test_it_starts_again_only_once() -> None:
    db = FakeDatabase(FakeConnection({"BEGIN": DEAD}), FakeConnection({"BEGIN": DEAD}))
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await transaction(db).execute("INSERT 1")
    assert len(db.released) == 2


@pytest.mark.parametrize("error", [TimeoutError(), asyncpg.exceptions.AdminShutdownError()])
async def test_a_begin_that_timed_out_or_was_refused_is_not_retried(error: Exception) -> None:
    conn = FakeConnection({"BEGIN": error})
    db = FakeDatabase(conn, FakeConnection())
    with pytest.raises(type(error)):
        await transaction(db).execute("INSERT 1")
    assert conn.terminated
    assert db.released == [conn]
    assert db.expired == 0


async def test_a_statement_after_begin_is_never_retried() -> None:
    conn = FakeConnection({"INSERT 2": DEAD})
    db = FakeDatabase(conn, FakeConnection())
    tx = transaction(db)
    await tx.execute("INSERT 1")
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await tx.execute("INSERT 2")
    await tx.end(DEAD)
    assert conn.sent == ["BEGIN", "INSERT 1", "INSERT 2"]
    assert conn.terminated
    assert len(db.waiting) == 1


async def test_a_commit_is_never_retried_and_its_connection_is_cut() -> None:
    conn = FakeConnection({"COMMIT": DEAD})
    db = FakeDatabase(conn, FakeConnection())
    tx = transaction(db)
    await tx.execute("INSERT 1")
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await tx.commit()
    await tx.end(DEAD)
    assert conn.sent == ["BEGIN", "INSERT 1", "COMMIT"]
    assert conn.terminated
    assert len(db.waiting) == 1


async def test_a_failed_command_rolls_back_and_keeps_the_connection() -> None:
    conn = FakeConnection()
    db = FakeDatabase(conn)
    tx = transaction(db)
    await tx.fetchrow("SELECT 1 FOR UPDATE")
    await tx.end(ValueError("the handler refused the command"))
    assert conn.sent == ["BEGIN", "SELECT 1 FOR UPDATE", "ROLLBACK"]
    assert not conn.terminated
    assert db.released == [conn]


async def test_a_statement_that_timed_out_gets_its_connection_cut_not_rolled_back() -> None:
    conn = FakeConnection()
    db = FakeDatabase(conn)
    tx = transaction(db)
    await tx.execute("INSERT 1")
    await tx.end(TimeoutError())
    assert conn.sent == ["BEGIN", "INSERT 1"]
    assert conn.terminated
    assert db.released == [conn]


async def test_a_unit_of_work_without_statements_takes_no_connection() -> None:
    db = FakeDatabase()
    tx = transaction(db)
    await tx.commit()
    await tx.end(None)
    assert db.released == []


def test_a_lost_protocol_state_anywhere_else_is_unreachable_not_a_bug() -> None:
    """Outside a unit of work too (a status read, a ping), the entry points answer 503."""
    assert pool.unreachable(SWITCH)
    assert isinstance(SWITCH, pool.ERRORS)


# -- a statement of its own (a create without an Idempotency-Key) ------------------------


@each_dead_connection
async def test_a_statement_of_its_own_that_met_a_dead_connection_is_sent_again_once(
    error: Exception,
) -> None:
    dead, fresh = FakeConnection({"CREATE": error}), FakeConnection()
    db = FakeDatabase(dead, fresh)
    assert await transaction(db).alone("fetchval", "CREATE") == 1
    assert dead.terminated
    assert not fresh.terminated
    assert db.expired == 1
    assert fresh.sent == ["CREATE"]  # no BEGIN, no COMMIT
    assert db.released == [dead, fresh]


async def test_a_statement_of_its_own_is_sent_again_only_once() -> None:
    db = FakeDatabase(FakeConnection({"CREATE": DEAD}), FakeConnection({"CREATE": DEAD}))
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await transaction(db).alone("fetchval", "CREATE")
    assert len(db.released) == 2


@pytest.mark.parametrize(
    "error",
    [TimeoutError(), asyncpg.exceptions.AdminShutdownError(), asyncpg.UniqueViolationError()],
    ids=["timed out", "shutdown", "refused"],
)
async def test_a_statement_of_its_own_that_timed_out_or_was_refused_is_not_sent_again(
    error: Exception,
) -> None:
    conn = FakeConnection({"CREATE": error})
    db = FakeDatabase(conn, FakeConnection())
    with pytest.raises(type(error)):
        await transaction(db).alone("fetchval", "CREATE")
    assert db.released == [conn]
    assert db.expired == 0
    # Refused, it is idle again and kept; timed out or shut down, its state is unknown.
    assert conn.terminated == (not isinstance(error, asyncpg.UniqueViolationError))
