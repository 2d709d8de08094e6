"""Partition ownership in PostgreSQL: leases with heartbeats, and epochs as fencing tokens.

Why not the advisory lock the projector held before: a session lock lives as long as the
server thinks the session does, and a host that died without closing its connection
kept Marten's for 20–33 minutes (Marten PR #5304), projecting nothing all along. A lease
here lapses by the database's own clock unless its owner renews it, so a dead or stuck
owner's partitions move within LEASE seconds. Every acquisition takes a new epoch from
a sequence; Redis refuses writes under an epoch older than one it has seen (apply.lua),
so an owner that lost a partition without knowing it (stopped, stalled past its lease)
cannot write to it again.

Each process keeps its leases on a connection of its own (not the one it reads the log
on), once per tick (app/projection/ownership.py):

1. heartbeat into projector_members; the members seen within a lease are the live ones;
2. renew its own leases of the followed layout; give up any of another layout, or of a
   partition beyond the layout's count;
3. its fair share is ceil(partitions / live members): give up what exceeds it (the
   highest-numbered first), or acquire free or lapsed partitions up to it (SKIP LOCKED:
   two processes never wait on each other, and never both take one row).

Two processes on four partitions: the first takes all four, the second's heartbeat makes
the first's share two on its next tick, it gives up two, the second takes them.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import uuid

import asyncpg

from app.infrastructure.postgres import liveness

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0
FORGET_MEMBERS_AFTER = 10  # leases: a member unseen this long is deleted, not just ignored

# $1 is always the read model (its REDIS_PREFIX): read models sharing a database (test
# runs, a blue/green pair) divide their own partitions among their own projectors.
HEARTBEAT = """
INSERT INTO projector_members (member, read_model, pid, host, seen_at)
VALUES ($2, $1, $3, $4, now())
ON CONFLICT (member) DO UPDATE SET seen_at = now()
"""
LIVE_MEMBERS = """
SELECT count(*) FROM projector_members
WHERE read_model = $1 AND seen_at > now() - make_interval(secs => $2)
"""
FORGET_MEMBERS = """
DELETE FROM projector_members WHERE seen_at < now() - make_interval(secs => $1)
"""
ENSURE_ROWS = """
INSERT INTO projection_owners (read_model, layout, partition)
SELECT $1, $2, p FROM generate_series(0, $3 - 1) AS p
ON CONFLICT (read_model, layout, partition) DO NOTHING
"""
# What is not of the followed layout, or beyond its count, is given up.
LET_GO_OTHERS = """
UPDATE projection_owners SET owner = NULL, lease_until = NULL
WHERE read_model = $1 AND owner = $2 AND (layout <> $3 OR partition >= $4)
"""
RENEW = """
UPDATE projection_owners SET lease_until = now() + make_interval(secs => $5)
WHERE read_model = $1 AND owner = $2 AND layout = $3 AND partition < $4
RETURNING partition, epoch
"""
LET_GO = """
UPDATE projection_owners SET owner = NULL, lease_until = NULL
WHERE read_model = $1 AND owner = $2 AND layout = $3 AND partition = ANY($4::int[])
"""
ACQUIRE = """
UPDATE projection_owners AS o
SET owner = $2, owner_pid = $3, owner_host = $4, epoch = nextval('projection_epochs'),
    lease_until = now() + make_interval(secs => $8), acquired_at = now()
FROM (
    SELECT read_model, layout, partition FROM projection_owners
    WHERE read_model = $1 AND layout = $5 AND partition < $6
      AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
    ORDER BY partition LIMIT $7
    FOR UPDATE SKIP LOCKED
) AS free
WHERE o.read_model = free.read_model AND o.layout = free.layout
  AND o.partition = free.partition
RETURNING o.partition, o.epoch
"""
# Members and leases still running of other processes on this host: if such a process
# is gone (this one's predecessor, killed), it is forgotten and its leases let go at
# once rather than waited out, by its successor and by any survivor alike.
LOCAL_NEIGHBOURS = """
SELECT member, pid FROM projector_members
WHERE read_model = $1 AND host = $2 AND member <> $3
UNION
SELECT owner, owner_pid FROM projection_owners
WHERE read_model = $1 AND owner_host = $2 AND owner <> $3 AND lease_until > now()
"""
LAPSE = """
UPDATE projection_owners SET owner = NULL, lease_until = NULL
WHERE read_model = $1 AND owner = ANY($2::text[])
"""
FORGET_DEAD = "DELETE FROM projector_members WHERE member = ANY($1::text[])"
RELEASE = """
UPDATE projection_owners SET owner = NULL, lease_until = NULL
WHERE read_model = $1 AND owner = $2
"""
LEAVE = "DELETE FROM projector_members WHERE member = $1"
PARTITIONS = "SELECT partitions FROM projection_layout WHERE read_model = $1"
SET_PARTITIONS_IF_NONE = """
INSERT INTO projection_layout (read_model, partitions) VALUES ($1, $2)
ON CONFLICT (read_model) DO NOTHING
"""
SET_PARTITIONS = """
INSERT INTO projection_layout (read_model, partitions) VALUES ($1, $2)
ON CONFLICT (read_model) DO UPDATE SET partitions = excluded.partitions, updated_at = now()
"""
# For operators: who owns what, as the database sees it now.
OWNERS = """
SELECT partition, epoch, owner, owner_pid, owner_host, acquired_at, lease_until,
       coalesce(lease_until > now(), false) AS held
FROM projection_owners WHERE read_model = $1 AND layout = $2 ORDER BY partition
"""
HAS_OWNERS = "SELECT to_regclass('projection_owners') IS NOT NULL"
FORGET_LAYOUT = "DELETE FROM projection_owners WHERE read_model = $1 AND layout = $2"


class PgLeases:
    def __init__(self, conn: asyncpg.Connection, read_model: str, lease: float) -> None:
        self.conn = conn
        self.read_model = read_model
        self.lease = lease
        # A new identity per start: a restarted process (same pid, same host) must not
        # renew leases its previous life held, whose epochs Redis may have moved past.
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        liveness.opened(self.member)
        self.pid = os.getpid()
        self.host = socket.gethostname()

    async def partitions(self, default: int) -> int:
        await self.conn.execute(SET_PARTITIONS_IF_NONE, self.read_model, default)
        return int(await self.conn.fetchval(PARTITIONS, self.read_model))

    async def tick(self, layout: str, partitions: int) -> dict[int, int]:
        rm, me, conn = self.read_model, self.member, self.conn
        async with conn.transaction():
            await conn.execute(HEARTBEAT, rm, me, self.pid, self.host)
            await conn.execute(FORGET_MEMBERS, self.lease * FORGET_MEMBERS_AFTER)
            await self._forget_dead_neighbours()
            live = max(1, int(await conn.fetchval(LIVE_MEMBERS, rm, self.lease)))
            await conn.execute(ENSURE_ROWS, rm, layout, partitions)
            await conn.execute(LET_GO_OTHERS, rm, me, layout, partitions)
            rows = await conn.fetch(RENEW, rm, me, layout, partitions, self.lease)
            owned = {int(r["partition"]): int(r["epoch"]) for r in rows}
            share = math.ceil(partitions / live)
            if len(owned) > share:
                extra = sorted(owned)[share:]
                await conn.execute(LET_GO, rm, me, layout, extra)
                for p in extra:
                    del owned[p]
            elif len(owned) < share:
                rows = await conn.fetch(
                    ACQUIRE, rm, me, self.pid, self.host, layout, partitions,
                    share - len(owned), self.lease,
                )  # fmt: skip
                owned |= {int(r["partition"]): int(r["epoch"]) for r in rows}
        return owned

    async def _forget_dead_neighbours(self) -> None:
        """Forget the members, and let go the leases, of processes on this host that
        have exited: a killed projector's partitions move now, not a lease later, to
        its successor or to a survivor. A pid that runs is left alone, whatever runs
        under it (only a dead one is sure), except this process's own pid under another
        member: a previous life of this very pid (a container restarted as pid 1)."""
        rows = await self.conn.fetch(LOCAL_NEIGHBOURS, self.read_model, self.host, self.member)
        dead = [r["member"] for r in rows if r["pid"] and liveness.gone(r["pid"], r["member"])]
        if dead:
            await self.conn.execute(FORGET_DEAD, dead)
            await self.conn.execute(LAPSE, self.read_model, dead)

    async def release(self) -> None:
        async with self.conn.transaction():
            await self.conn.execute(RELEASE, self.read_model, self.member)
            await self.conn.execute(LEAVE, self.member)

    async def close(self) -> None:
        liveness.closed(self.member)
        with contextlib.suppress(Exception):  # it may be dead already
            await self.conn.close(timeout=2)
        if not self.conn.is_closed():
            self.conn.terminate()


class PgLeaseConnector:
    def __init__(self, dsn: str, read_model: str, lease: float) -> None:
        self._dsn = dsn
        self._read_model = read_model
        self._lease = lease

    async def connect(self) -> PgLeases:
        conn = await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
        )
        return PgLeases(conn, self._read_model, self._lease)


async def set_partitions(conn: asyncpg.Connection, read_model: str, partitions: int) -> None:
    """The count a rebuild switched to: the one a restore builds from now on."""
    await conn.execute(SET_PARTITIONS, read_model, partitions)


async def owners(conn: asyncpg.Connection, read_model: str, layout: str) -> list[asyncpg.Record]:
    """Each partition's row of `layout` (none before the migration, or any projector)."""
    if not await conn.fetchval(HAS_OWNERS):
        return []
    return list(await conn.fetch(OWNERS, read_model, layout))


async def partition_count(conn: asyncpg.Connection, read_model: str, default: int) -> int:
    """The count kept for the read model, or `default` when none is yet."""
    kept = await conn.fetchval(PARTITIONS, read_model)
    return default if kept is None else int(kept)


async def forget_layout(conn: asyncpg.Connection, read_model: str, layout: str) -> None:
    """The ownership rows of a layout no one projects any more."""
    await conn.execute(FORGET_LAYOUT, read_model, layout)
