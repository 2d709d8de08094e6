"""Leases of a projector that died on this host move at the next tick, not a lease later:
to its successor and to a survivor alike, and to a process that has the dead one's pid
(a container restarted as pid 1). A stopped but live one keeps them until they lapse."""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from app.infrastructure.postgres import liveness
from app.infrastructure.postgres.leases import PgLeases
from app.settings import Settings, asyncpg_dsn

LEASE = 5.0  # seconds: far longer than the test, so nothing lapses by time


async def _leases(database_url: str, settings: Settings) -> PgLeases:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    return PgLeases(conn, settings.redis_prefix, lease=LEASE)


async def _own_pid(db: asyncpg.Connection, member: str, pid: int) -> None:
    """Say `member` runs as `pid` (both run in this test's process)."""
    await db.execute("UPDATE projection_owners SET owner_pid = $1 WHERE owner = $2", pid, member)
    await db.execute("UPDATE projector_members SET pid = $1 WHERE member = $2", pid, member)


async def test_a_dead_owners_partitions_are_taken_at_once(
    database_url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    dead, survivor = await _leases(database_url, settings), await _leases(database_url, settings)
    try:
        assert sorted(await dead.tick("", 4)) == [0, 1, 2, 3]
        await _own_pid(db, dead.member, 1)  # pid 1 (init) runs: a live owner keeps its own
        assert await survivor.tick("", 4) == {}
        # The owner's process is gone (killed): its rows name a pid that has exited.
        exited = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await exited.wait()
        await _own_pid(db, dead.member, exited.pid)
        assert sorted(await survivor.tick("", 4)) == [0, 1, 2, 3]
    finally:
        for leases in (dead, survivor):
            await leases.close()


async def test_a_previous_life_of_this_pid_is_dead_and_a_live_neighbour_is_not(
    database_url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    before, after = await _leases(database_url, settings), await _leases(database_url, settings)
    try:
        assert sorted(await before.tick("", 2)) == [0, 1]
        # `after` runs under the same pid (this process) with another member id, and
        # `before` is no longer one of this process's open projectors (as in a container
        # restarted as pid 1): what it holds belongs to a life of this pid that has ended.
        liveness.closed(before.member)
        assert sorted(await after.tick("", 2)) == [0, 1]
        # A neighbour whose pid runs (pid 1: init) is left alone: nothing moves back.
        await _own_pid(db, after.member, 1)
        assert await before.tick("", 2) == {}
    finally:
        for leases in (before, after):
            await leases.close()
