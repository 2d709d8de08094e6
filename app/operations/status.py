"""`items status` (and GET /api/v1/admin/projection): where the projection stands.

Head of the event log; per partition of the followed layout its owner (the projector
process and host holding its lease, or null), epoch, generation, checkpoint and lag, and
restores and rebuilds in progress; totals (lag in events and seconds, owners); how many
dead letters wait; the outbox relay of NATS_STREAM (its acknowledged position, lag and
the process holding its lease; null when no relay ever ran for that stream). Everything
in the result is JSON-serialisable; app/cli/status.py words it for humans.
"""

from __future__ import annotations

from typing import Any

from app.infrastructure.postgres import leases, relay_store
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import own_connection
from app.infrastructure.redis.projection_store import RedisProjectionStore

CONNECT_TIMEOUT = 10.0


async def status(
    dsn: str, store: RedisProjectionStore, relay_stream: str | None = None
) -> dict[str, Any]:
    followed = await store.followed_layout()
    if followed is not None:
        store.follow(*followed)
    async with own_connection(dsn, CONNECT_TIMEOUT) as conn:
        log = PgEventLog(conn)
        head = await log.head()
        partitions = await store.describe()
        rows = await leases.owners(conn, store.layout.prefix, store.layout_name)
        owners = {r["partition"]: r for r in rows}
        live = [p["checkpoint"] for p in partitions if p["generation"] is not None]
        missing = len(live) < len(partitions)
        # A partition without a live generation serves nothing: it counts as position 0.
        low = min(live) if live and not missing else 0
        lag_seconds = await log.lag_seconds(low) if head > low else 0.0
        dead = await log.count_dead_letters()
        relay = None if relay_stream is None else await relay_store.describe(conn, relay_stream)
        if relay is not None:
            at = relay["position"]
            relay["lag_events"] = max(0, head - at)
            relay["lag_seconds"] = round(await log.lag_seconds(at), 3) if head > at else 0.0
        for p in partitions:
            cp = p["checkpoint"] or 0
            seconds = await log.lag_seconds(cp) if head > cp else 0.0
            p["lag_seconds"] = round(seconds, 3)
    for p in partitions:
        p["lag_events"] = max(0, head - (p["checkpoint"] or 0))
        row = owners.get(p["partition"])
        p["epoch"] = None if row is None or not row["epoch"] else int(row["epoch"])
        p["owner"] = None if row is None or not row["held"] else _owner(row)
    processes = {(p["owner"]["host"], p["owner"]["pid"]) for p in partitions if p["owner"]}
    return {
        "head_position": head,
        "checkpoint": low,
        "lag_events": max(0, head - low),
        "lag_seconds": round(lag_seconds, 3),
        "read_model": "missing" if missing else "live",
        "layout": {"name": store.layout_name, "partitions": len(partitions)},
        "partitions": partitions,
        "owned_partitions": sum(1 for p in partitions if p["owner"]),
        "projectors": len(processes),
        "dead_letters": dead,
        "relay": relay,
    }


def _owner(row: Any) -> dict[str, Any]:
    return {
        "pid": row["owner_pid"],
        "host": row["owner_host"],
        "member": row["owner"],
        "since": row["acquired_at"].isoformat() if row["acquired_at"] else None,
        "lease_until": row["lease_until"].isoformat() if row["lease_until"] else None,
    }
