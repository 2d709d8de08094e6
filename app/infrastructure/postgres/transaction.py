"""The write side's transaction: one unit of work on one pooled connection (pool.py),
begun by its first statement, or a statement that is a transaction of its own."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from app.infrastructure.postgres.pool import (
    Database,
    broken,
    closed,
    connection_lost,
    terminate,
    unreachable,
)

log = logging.getLogger("items.database")


class Transaction:
    """One transaction on one pooled connection, begun by its first statement and
    ended by `commit` or `end`. Statements run strictly one after another, in the
    order they are called (the event log's gap check relies on that order)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: asyncpg.Connection | None = None

    @property
    def begun(self) -> bool:
        return self._conn is not None

    async def alone(self, method: str, sql: str, *args: Any) -> Any:
        """One statement as a transaction of its own (PostgreSQL's implicit one: no BEGIN,
        no COMMIT, one round trip), before this transaction has begun. Sent again, once,
        on a fresh connection when the first met a dead one, as `_begin` does: only for a
        statement that is safe to send twice, since the first may have committed."""
        assert self._conn is None, "a statement of its own runs before the transaction"
        try:
            return await self._alone(method, sql, args)
        except _Lost:
            log.info("a pooled PostgreSQL connection was dead; sending again on a new one")
            await self._db.expire_connections()
            return await self._alone(method, sql, args, retry=False)

    async def _alone(self, method: str, sql: str, args: tuple[Any, ...], retry: bool = True
                     ) -> Any:  # fmt: skip
        conn = await self._db.acquire()
        try:
            result = await getattr(conn, method)(sql, *args)
        except BaseException as exc:
            lost = connection_lost(exc, conn)
            if unreachable(exc) or not isinstance(exc, asyncpg.PostgresError):
                terminate(conn)  # a statement refused leaves it idle, and reusable
            await self._db.release(conn)
            if retry and lost:
                raise _Lost() from exc
            if isinstance(exc, asyncpg.InternalClientError):
                raise broken(exc) from exc
            raise
        await self._db.release(conn)
        return result

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, args)

    async def execute(self, sql: str, *args: Any) -> str:
        return str(await self._run("execute", sql, args))

    async def _run(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        conn = self._conn if self._conn is not None else await self._begin()
        try:
            return await getattr(conn, method)(sql, *args)
        except asyncpg.InternalClientError as exc:
            raise broken(exc) from exc

    async def commit(self) -> None:
        # Never retried: a COMMIT whose answer was lost may have happened.
        if self._conn is not None:
            await self._run("execute", "COMMIT", ())

    async def rollback(self) -> None:
        if self._conn is not None and self._conn.is_in_transaction():
            await self._conn.execute("ROLLBACK")

    async def end(self, exc: BaseException | None) -> None:
        """Give the connection back: rolled back if still in the transaction, or cut
        when its state is unknown (a statement timed out, was cancelled or lost)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if _state_unknown(exc) or closed(conn):
                terminate(conn)
            elif conn.is_in_transaction():
                await conn.execute("ROLLBACK")
        except Exception:
            terminate(conn)  # PostgreSQL rolls back a transaction whose connection ends
        except BaseException:
            terminate(conn)
            raise
        finally:
            await self._db.release(conn)

    async def _begin(self) -> asyncpg.Connection:
        try:
            self._conn = await self._start()
        except _Lost:
            # BEGIN met a dead pooled connection: nothing was written, so the unit of
            # work starts again, once, on a fresh connection. The others in the pool
            # most likely died with it (a PostgreSQL restart), so they are replaced.
            log.info("a pooled PostgreSQL connection was dead; starting again on a new one")
            await self._db.expire_connections()
            self._conn = await self._start(retry=False)
        return self._conn

    async def _start(self, retry: bool = True) -> asyncpg.Connection:
        conn = await self._db.acquire()
        try:
            await conn.execute("BEGIN")
        except BaseException as exc:
            lost = connection_lost(exc, conn)
            terminate(conn)
            await self._db.release(conn)
            if retry and lost:
                raise _Lost() from exc
            raise
        return conn


class _Lost(Exception):
    """BEGIN (or a statement of its own) found its pooled connection dead."""


def _state_unknown(exc: BaseException | None) -> bool:
    return isinstance(
        exc,
        TimeoutError
        | asyncio.CancelledError
        | OSError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError,
    )
