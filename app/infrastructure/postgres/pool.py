"""The write side's PostgreSQL connections: one asyncpg pool, and transactions on it.

Why raw asyncpg and not SQLAlchemy's AsyncSession: a py-spy profile of POST at full load
put more than half of the service's CPU in SQLAlchemy (session bookkeeping, building and
cache-keying `insert(...).values(**row)` per call, greenlet adaption, and
pool_pre_ping's extra round trip per checkout), and POST ran below a plain FastAPI +
SQLModel service. The statements (repositories.py and the other modules of this
folder) are fixed strings with parameters ($1, $2, ...), which asyncpg prepares once per
connection and caches. SQLAlchemy still describes the schema (tables.py) for Alembic,
which alone creates it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.commands.unit_of_work import WriteModelBusy
from app.settings import Settings

log = logging.getLogger("items.database")

# A connection of the driver's, and a row it returns, as the rest of the service names
# them (the operator commands hold both; only this folder knows they are asyncpg's).
Connection = asyncpg.Connection
Row = asyncpg.Record
# Errors that mean "PostgreSQL could not be reached", for operator commands to name.
UNREACHABLE = (OSError, asyncpg.PostgresConnectionError)
# What a statement or a connection of the write side may raise: the entry points catch
# these and ask `unreachable` whether it is worth a retry (app/bootstrap/errors.py).
ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


def unreachable(exc: BaseException) -> bool:
    """PostgreSQL cannot be reached or is going away: the request may be retried later
    (503), as opposed to a statement PostgreSQL refused (a bug: 500)."""
    return isinstance(
        exc,
        OSError  # refused, reset, and TimeoutError (connect and command timeouts)
        | asyncpg.InterfaceError  # "connection is closed", a pool closing
        | asyncpg.PostgresConnectionError  # 08xxx, among them ConnectionDoesNotExistError
        | asyncpg.InternalClientError  # the driver lost the protocol's state (`broken`)
        | asyncpg.exceptions.OperatorInterventionError  # 57xxx: shutdown, cancel
        | asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections
    )


def not_ready(exc: BaseException) -> str | None:
    """What a failure says about PostgreSQL when it is only not ready yet (unreachable,
    starting, not migrated), in a few words; None for anything else."""
    if isinstance(exc, asyncpg.UndefinedTableError):
        return "the database has no tables yet (run `items migrate`)"
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return "PostgreSQL is starting up"
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return f"PostgreSQL is unreachable ({type(exc).__name__}: {exc})"
    return None


# Statement caching is asyncpg's default; named here because the write path relies on it.
STATEMENT_CACHE_SIZE = 100
CLOSE_WAIT = 5.0  # seconds a graceful pool close may take before connections are cut


def connection_lost(exc: BaseException, conn: Any) -> bool:
    """The connection was dead before or while a statement was sent, as opposed to a
    statement that timed out (the server may still run it) or that PostgreSQL refused."""
    lost = asyncpg.ConnectionDoesNotExistError | asyncpg.InternalClientError  # see `broken`
    if isinstance(exc, lost | ConnectionResetError):
        return True
    if isinstance(exc, TimeoutError):
        return False
    return isinstance(exc, asyncpg.InterfaceError | OSError) and closed(conn)


# Seen under pg_terminate_backend: the server's FATAL reaches an idle pooled connection
# before its end of file, asyncpg waits for a ReadyForQuery that never comes, and the
# next statement fails, before anything is sent, with a plain `InternalClientError:
# cannot switch to state 15; another operation (2) is in progress`. It is a lost
# connection: a BEGIN that met it starts again on a fresh one, any other statement 503s.
def broken(exc: asyncpg.InternalClientError) -> asyncpg.ConnectionDoesNotExistError:
    return asyncpg.ConnectionDoesNotExistError(f"the connection was lost ({exc})")


def closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True  # closed, and so already handed back to the pool by asyncpg


def terminate(conn: Any) -> None:
    """Cut the connection (the pool opens a new one when needed)."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass  # closed, and so already handed back to the pool by asyncpg


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: our transactions end by COMMIT or ROLLBACK (asyncpg
    rolls back one left open before calling this), advisory locks are transaction
    scoped, and nothing LISTENs or SETs. asyncpg's default reset would spend one more
    round trip per unit of work on `RESET ALL; UNLISTEN *; ...`."""


class Database:
    """The pool, created on first use (so `build` connects nothing) in the running loop.

    Up to twice `db_pool_size` connections, like the SQLAlchemy pool this replaced
    (pool_size plus as much overflow); idle ones close after asyncpg's five minutes. No
    pre-ping: asyncpg replaces connections it knows are closed, and `Transaction`
    retries a unit of work whose very first statement met a dead connection.
    """

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.database_dsn
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    async def acquire(self) -> asyncpg.Connection:
        pool = self._pool if self._pool is not None else await self._open()
        waited = self._settings.db_pool_timeout
        started = time.monotonic()
        try:
            return await pool.acquire(timeout=waited)
        except TimeoutError:
            # The same exception type comes from a connect that timed out inside the
            # acquire (after db_connect_timeout, shorter): only the whole wait running
            # out is the pool being busy; the other is PostgreSQL being unreachable.
            if time.monotonic() - started < waited:
                raise
            raise WriteModelBusy(f"no free PostgreSQL connection within {waited:g}s") from None

    async def release(self, conn: asyncpg.Connection) -> None:
        assert self._pool is not None
        await self._pool.release(conn)

    async def expire_connections(self) -> None:
        """Every pooled connection is replaced before its next use (after one was found
        dead: a restarted server has closed all of them)."""
        if self._pool is not None:
            await self._pool.expire_connections()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for one statement in its own (implicit) transaction."""
        conn = await self.acquire()
        try:
            yield conn
        except BaseException:
            terminate(conn)  # its state is unknown; a new one is cheap
            raise
        finally:
            await self.release(conn)

    async def _open(self) -> asyncpg.Pool:
        s = self._settings
        # min_size 0: initialising connects nothing, so it cannot fail (a pool whose
        # first connect failed would be closed for good) and it never suspends, so two
        # first requests cannot both initialise it.
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=2 * s.db_pool_size,
            timeout=s.db_connect_timeout,
            command_timeout=s.db_command_timeout,
            statement_cache_size=STATEMENT_CACHE_SIZE,
            reset=_keep_session,
        )
        await pool
        self._pool = pool
        return pool

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is None:
            return
        pool = self._pool
        try:
            await asyncio.wait_for(pool.close(), CLOSE_WAIT)
        except (TimeoutError, OSError, asyncpg.InterfaceError):
            pool.terminate()
        self._pool = None


@asynccontextmanager
async def own_connection(
    dsn: str, connect_timeout: float = 60.0
) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, outside the pool: for an operator command's snapshot or
    session lock, anything whose session state must not be shared."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        yield conn
    finally:
        await conn.close()
