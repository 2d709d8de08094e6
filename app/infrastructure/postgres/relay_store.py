"""The outbox relay's checkpoint and lease in PostgreSQL (app/relay/ports.py's Checkpoint).

One row per stream. A lease, not an advisory lock, for the reason leases.py gives (a
session lock outlives a dead host); every statement that holds it renews it, and the
checkpoint moves only under it, so a relay that lost its lease cannot move it back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from typing import Any

import asyncpg

from app.infrastructure.postgres import liveness
from app.relay.ports import Held

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0

ENSURE = "INSERT INTO relay_checkpoints (stream) VALUES ($1) ON CONFLICT (stream) DO NOTHING"
HOLDER = "SELECT owner, owner_pid, owner_host FROM relay_checkpoints WHERE stream = $1"
# $6: a holder of this host whose process is gone (its lease is let go at once).
ACQUIRE = """
UPDATE relay_checkpoints
SET owner = $2, owner_pid = $3, owner_host = $4,
    acquired_at = CASE WHEN owner IS DISTINCT FROM $2 THEN now() ELSE acquired_at END,
    lease_until = now() + make_interval(secs => $5)
WHERE stream = $1
  AND (owner = $2 OR owner IS NULL OR lease_until IS NULL OR lease_until < now() OR owner = $6)
RETURNING position, acquired_at
"""
SAVE = """
UPDATE relay_checkpoints
SET position = $3, updated_at = now(), lease_until = now() + make_interval(secs => $4)
WHERE stream = $1 AND owner = $2 AND lease_until > now()
RETURNING position
"""
RELEASE = """
UPDATE relay_checkpoints SET owner = NULL, lease_until = NULL WHERE stream = $1 AND owner = $2
"""
HAS_TABLE = "SELECT to_regclass('relay_checkpoints') IS NOT NULL"
DESCRIBE = """
SELECT stream, position, owner, owner_pid, owner_host, acquired_at, lease_until, updated_at,
       coalesce(lease_until > now(), false) AS held
FROM relay_checkpoints WHERE stream = $1
"""


class PgRelayCheckpoint:
    def __init__(self, conn: asyncpg.Connection, stream: str, lease: float) -> None:
        self._conn = conn
        self._stream = stream
        self._lease = lease
        # A new identity per start, as leases.py's: a restarted relay is another holder.
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._me = f"{self._host}:{self._pid}:{uuid.uuid4().hex[:8]}"
        liveness.opened(self._me)

    async def acquire(self) -> Held | None:
        await self._conn.execute(ENSURE, self._stream)
        gone = None
        row = await self._conn.fetchrow(HOLDER, self._stream)
        if row is not None and row["owner"] not in (None, self._me):
            if (
                row["owner_host"] == self._host
                and row["owner_pid"]
                and liveness.gone(row["owner_pid"], row["owner"])
            ):
                gone = row["owner"]
        held = await self._conn.fetchrow(
            ACQUIRE, self._stream, self._me, self._pid, self._host, self._lease, gone
        )
        if held is None:
            return None
        return Held(int(held["position"]), held["acquired_at"].isoformat())

    async def save(self, position: int) -> bool:
        saved = await self._conn.fetchval(SAVE, self._stream, self._me, position, self._lease)
        return saved is not None

    async def release(self) -> None:
        await self._conn.execute(RELEASE, self._stream, self._me)

    async def close(self) -> None:
        liveness.closed(self._me)
        with contextlib.suppress(Exception):  # it may be dead already
            await self._conn.close(timeout=2)
        if not self._conn.is_closed():
            self._conn.terminate()


class PgRelayConnector:
    def __init__(self, dsn: str, stream: str, lease: float) -> None:
        self._dsn = dsn
        self._stream = stream
        self._lease = lease

    async def connect(self) -> PgRelayCheckpoint:
        conn = await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
        )
        return PgRelayCheckpoint(conn, self._stream, self._lease)


async def describe(conn: asyncpg.Connection, stream: str) -> dict[str, Any] | None:
    """The relay row of `stream` for operators (None: no relay ever ran for it, or the
    database is not migrated that far)."""
    if not await conn.fetchval(HAS_TABLE):
        return None
    row = await conn.fetchrow(DESCRIBE, stream)
    if row is None:
        return None
    owner = None
    if row["held"]:
        owner = {
            "pid": row["owner_pid"],
            "host": row["owner_host"],
            "member": row["owner"],
            "since": row["acquired_at"].isoformat() if row["acquired_at"] else None,
            "lease_until": row["lease_until"].isoformat() if row["lease_until"] else None,
        }
    return {
        "stream": row["stream"],
        "position": int(row["position"]),
        "owner": owner,
        "updated_at": row["updated_at"].isoformat(),
    }
