"""`items status` (and GET /api/v1/admin/projection): where the projection stands.

Head of the event log, per-partition generation and checkpoint, restores and rebuilds in
progress, lag in events and seconds, which backend holds the projector lock and since
when, and how many dead letters wait. Everything in the result is JSON-serialisable;
app/cli/status.py words it for humans.
"""

from __future__ import annotations

from typing import Any

from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import own_connection
from app.infrastructure.redis.projection_store import RedisProjectionStore

CONNECT_TIMEOUT = 10.0


async def status(dsn: str, store: RedisProjectionStore) -> dict[str, Any]:
    async with own_connection(dsn, CONNECT_TIMEOUT) as conn:
        log = PgEventLog(conn)
        head = await log.head()
        partitions = await store.describe()
        live = [p["checkpoint"] for p in partitions if p["generation"] is not None]
        missing = len(live) < len(partitions)
        # A partition without a live generation serves nothing: it counts as position 0.
        low = min(live) if live and not missing else 0
        lag_seconds = await log.lag_seconds(low) if head > low else 0.0
        holder = await log.lock_holder()
        dead = await log.count_dead_letters()
    for p in partitions:
        p["lag_events"] = max(0, head - (p["checkpoint"] or 0))
    return {
        "head_position": head,
        "checkpoint": low,
        "lag_events": max(0, head - low),
        "lag_seconds": round(lag_seconds, 3),
        "read_model": "missing" if missing else "live",
        "partitions": partitions,
        "projector": None
        if holder is None
        else {
            "pid": holder["pid"],
            "since": holder["backend_start"].isoformat() if holder["backend_start"] else None,
            "state_change": (
                holder["state_change"].isoformat() if holder["state_change"] else None
            ),
            "application_name": holder["application_name"] or None,
            "client_addr": holder["client_addr"],
        },
        "dead_letters": dead,
    }
