"""The 95/5 read/write mix, and the projection lag of every write it made: how long after
a write's event was recorded in PostgreSQL its view was visible in Redis. The probe
listens to the service's change notices while wrk runs the mix, then reads the mix's
events back from the log."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.redis.keys import KeyLayout
from app.queries.notices import ChangeNotice, parse_notice

from .config import Config
from .loads import wrk

# The probe's own read of the log (not one of the service's queries): the mix's events,
# with the database's clock at their INSERT.
MIX_EVENTS = (
    "SELECT position, item_id, recorded_at FROM events WHERE position > $1 ORDER BY position"
)

MEASURED = (
    "every write of mix_95_5: from the database clock at its event's "
    "INSERT (events.recorded_at; the transaction's last statement before COMMIT) to "
    "this driver receiving the checkpoint notice that covers it, which the projector "
    "publishes from the Lua script that writes the view"
)


async def mix_with_lag(
    cfg: Config,
    base: str,
    prefix: str,
    database_url: str,
    ids_file: Path,
    *,
    redis_url: str,
    partitions: int,
    duration: int | None = None,
) -> tuple[dict[str, Any], list[float]]:
    """The 95/5 mix (`duration` seconds, default cfg.duration), and the projection lag of
    every write it made: from the database's clock at the event's INSERT (`recorded_at`:
    the write transaction's last statement, one round trip before its COMMIT) to the
    moment this driver received the checkpoint notice covering it, which the projector
    publishes in the same Lua script that writes the view (so: visible in Redis). In
    milliseconds. `redis_url`: where to subscribe to the notices (a single Redis, or any
    one node of a cluster: a PUBLISH reaches the subscribers of every node);
    `partitions`: the read model's partition count (which partition a write lands in)."""
    layout = KeyLayout(prefix, partitions)
    conn = await asyncpg.connect(database_url)
    r = Redis.from_url(redis_url)
    seen: list[tuple[float, int, int]] = []  # (arrival, partition, checkpoint)
    stop = asyncio.Event()

    async def listen() -> None:
        while not stop.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is not None:
                at = time.time()
                notice = parse_notice(msg["data"])
                if isinstance(notice, ChangeNotice) and not notice.layout:
                    seen.append((at, notice.partition, notice.checkpoint))

    def reached(part: int) -> int:
        return max((cp for _, p, cp in seen if p == part), default=0)

    try:
        async with r.pubsub() as pubsub:
            await pubsub.subscribe(layout.checkpoint_channel)
            before = await PgEventLog(conn).head()
            listener = asyncio.create_task(listen())
            try:
                result = await asyncio.to_thread(wrk, cfg, base, "mix", duration, ids_file=ids_file)
                rows = await conn.fetch(MIX_EVENTS, before)
                events = [(int(x["position"]), layout.partition_of(x["item_id"]),
                           float(x["recorded_at"].timestamp())) for x in rows]  # fmt: skip
                need: dict[int, int] = {}
                for position, part, _ in events:
                    need[part] = max(need.get(part, 0), position)
                deadline = time.monotonic() + 60
                while any(reached(p) < pos for p, pos in need.items()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"projection did not catch up with the mix: {need}")
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await listener
    finally:
        await r.aclose()
        await conn.close()
    lags = []
    for position, part, occurred in events:
        visible = next(at for at, p, cp in seen if p == part and cp >= position)
        lags.append((visible - occurred) * 1000)
    return result, lags


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(lags: list[float]) -> dict[str, Any]:
    """The lags as they go into the JSON's `projection_lag`."""
    if not lags:
        raise RuntimeError("the projection-lag probe took no sample")
    return {
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags),
        "samples": len(lags),
        "measured": MEASURED,
    }
