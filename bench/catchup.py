"""Projection throughput: how fast the projectors catch up a backlog. K items and their
ItemCreated events go into PostgreSQL in one statement (rebuild.py's SQL), while the
projectors that own the read model's partitions wait, caught up; the time from that
statement's commit to the change notice that brings the last partition's checkpoint to
the new head gives events per second. Before each run, the projection's status (as
`items status` reads it) must show the projectors meant to share the work holding
every partition between them, evenly, with the read model live and caught up."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.redis.client import make_redis
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.operations.status import status
from app.queries.notices import ChangeNotice, parse_notice

from .rebuild import SEED_SQL

MEASURED = (
    "K items and their ItemCreated events inserted into PostgreSQL in one statement while "
    "the projectors (`items projector`, no API running) were caught up and idle; seconds "
    "from its commit to the change notice that brought the last partition's checkpoint "
    "to the new head (each projector reads every event and applies those of the "
    "partitions it owns; every batch moves each of its partitions' checkpoints); "
    "events/s = K / that"
)


async def projection_state(database_url: str, redis_url: str, layout: KeyLayout
                           ) -> dict[str, Any]:  # fmt: skip
    """What `items status --json` prints (a single Redis or a cluster, as the service
    tells them apart), asked in this process."""
    redis = make_redis(redis_url, max_connections=4, timeout=5.0, client_name="bench-status")
    try:
        return await status(database_url, RedisProjectionStore(redis, layout))
    finally:
        await redis.aclose()


def wait_projectors(
    database_url: str,
    redis_url: str,
    layout: KeyLayout,
    processes: int,
    check: Callable[[], None],
    within: float = 60.0,
) -> dict[int, list[int]]:
    """Wait until the read model is live and caught up, and `processes` projectors hold
    every partition between them, none more than its fair share (the leases rebalance
    once a second); pid -> its partitions. `check` raises if a projector died."""
    share = math.ceil(layout.partitions / processes)
    deadline = time.monotonic() + within
    while True:
        check()
        state = asyncio.run(projection_state(database_url, redis_url, layout))
        found: dict[int, list[int]] = {}
        for p in state["partitions"]:
            if p["owner"] is not None:
                found.setdefault(int(p["owner"]["pid"]), []).append(int(p["partition"]))
        held = sum(len(parts) for parts in found.values())
        if (state["read_model"] == "live" and state["lag_events"] == 0
                and len(found) == processes and held == layout.partitions
                and all(len(parts) <= share for parts in found.values())):  # fmt: skip
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{processes} projector(s) did not come to own {layout.partitions} "
                f"partition(s) evenly, caught up, within {within:.0f}s: {state}"
            )
        time.sleep(0.1)


async def catch_up(database_url: str, redis_url: str, layout: KeyLayout, events: int,
                   within: float = 600.0) -> dict[str, Any]:  # fmt: skip
    """Insert `events` items with their ItemCreated events, and time the projectors until
    every partition's checkpoint reached the new head (the notices arrive at `redis_url`:
    a single Redis, or one node of a cluster)."""
    r = Redis.from_url(redis_url)
    conn = await asyncpg.connect(database_url, command_timeout=None)
    reached = dict.fromkeys(range(layout.partitions), 0)
    batches = 0
    try:
        async with r.pubsub() as pubsub:
            await pubsub.subscribe(layout.checkpoint_channel)
            confirmed = await pubsub.get_message(timeout=10)  # subscribed before the insert
            if confirmed is None or confirmed["type"] != "subscribe":
                raise RuntimeError(f"no confirmation of SUBSCRIBE: {confirmed}")
            await conn.execute(SEED_SQL, events)
            began = last = time.monotonic()
            head = await PgEventLog(conn).head()
            while min(reached.values()) < head:
                if time.monotonic() - began > within:
                    raise RuntimeError(f"projection did not reach {head} in {within}s: {reached}")
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None:
                    continue
                notice = parse_notice(msg["data"])
                if (isinstance(notice, ChangeNotice) and not notice.layout
                        and notice.checkpoint > reached.get(notice.partition, head)):  # fmt: skip
                    reached[notice.partition] = notice.checkpoint
                    last = time.monotonic()
                    batches += 1
    finally:
        await r.aclose()
        await conn.close()
    seconds = max(last - began, 1e-6)
    return {
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "partition_batches": batches,
        "head": head,
    }
