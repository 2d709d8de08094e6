"""`items status`: where the projection stands, for operators.

Head of the event log, per-partition generation and checkpoint, restores and rebuilds in
progress, lag in events and seconds, which backend holds the projector lock and since
when, and how many dead letters wait. Everything in the result is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from app.infrastructure.bootstrap import Container
from app.infrastructure.projection_store import as_text
from app.infrastructure.projector import LOCK_KEY
from app.infrastructure.settings import asyncpg_dsn

# A session advisory lock on one bigint key k shows in pg_locks as classid = k >> 32,
# objid = k & 0xffffffff, objsubid = 1 (the two-int form uses objsubid = 2).
LOCK_HOLDER = """
SELECT a.pid, a.backend_start, a.state_change, a.application_name,
       a.client_addr::text AS client_addr
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = $1 AND l.objid::bigint = $2
"""

LAG_SECONDS = """
SELECT greatest(0, extract(epoch FROM clock_timestamp()
                             - coalesce(recorded_at, occurred_at)))::float8
FROM events WHERE position > $1 ORDER BY position LIMIT 1
"""


async def status(container: Container) -> dict[str, Any]:
    database_url, _ = container.settings.require_urls()
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
        partitions = await _partitions(container)
        live = [p["checkpoint"] for p in partitions if p["generation"] is not None]
        missing = len(live) < len(partitions)
        # A partition without a live generation serves nothing: it counts as position 0.
        low = min(live) if live and not missing else 0
        lag_seconds = await conn.fetchval(LAG_SECONDS, low) if head > low else 0.0
        holder = await conn.fetchrow(LOCK_HOLDER, LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF)
        dead = 0
        if await conn.fetchval("SELECT to_regclass('dead_letters') IS NOT NULL"):
            dead = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
    finally:
        await conn.close()
    for p in partitions:
        p["lag_events"] = max(0, head - (p["checkpoint"] or 0))
    return {
        "head_position": head,
        "checkpoint": low,
        "lag_events": max(0, head - low),
        "lag_seconds": round(float(lag_seconds or 0.0), 3),
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


async def _partitions(container: Container) -> list[dict[str, Any]]:
    layout, redis = container.layout, container.redis
    count = layout.partitions
    pointers: list[str] = []
    for p in range(count):
        pointers += [layout.gen(p), layout.building(p), layout.rebuild(p)]
    names = [None if n is None else as_text(n) for n in await redis.mget(pointers)]
    cp_keys = [
        layout.base(i // 3, n) + "cp" if n is not None else layout.gen(i // 3)
        for i, n in enumerate(names)
    ]
    cps = await redis.mget(cp_keys)
    result: list[dict[str, Any]] = []
    for p in range(count):
        (gen, building, rebuild), raw = names[3 * p : 3 * p + 3], cps[3 * p : 3 * p + 3]

        def checkpoint(name: str | None, value: Any) -> int | None:
            return None if name is None else int(value or 0)

        result.append(
            {
                "partition": p,
                "generation": gen,
                "checkpoint": checkpoint(gen, raw[0]),
                "restoring": building is not None,
                "restore_generation": building,
                "restore_checkpoint": checkpoint(building, raw[1]),
                "rebuilding": rebuild is not None,
                "rebuild_generation": rebuild,
                "rebuild_checkpoint": checkpoint(rebuild, raw[2]),
            }
        )
    return result


def render_status(d: dict[str, Any]) -> str:
    """The status for humans, one fact per line."""
    lines = [
        f"head position:   {d['head_position']}",
        f"read model:      {d['read_model']}",
        f"checkpoint:      {d['checkpoint']}",
        f"lag:             {d['lag_events']} event(s), {d['lag_seconds']:.3f}s",
    ]
    for p in d["partitions"]:
        live = (
            f"generation {p['generation']} at {p['checkpoint']}"
            if p["generation"] is not None
            else "no live generation (missing or being restored)"
        )
        line = f"partition {p['partition']}:     {live}"
        if p["restoring"]:
            line += f"; restoring {p['restore_generation']} at {p['restore_checkpoint']}"
        if p["rebuilding"]:
            line += f"; rebuilding {p['rebuild_generation']} at {p['rebuild_checkpoint']}"
        lines.append(line)
    holder = d["projector"]
    if holder is None:
        lines.append("projector lock:  not held (no projector running)")
    else:
        who = f"pid {holder['pid']}"
        if holder.get("application_name"):
            who += f" ({holder['application_name']})"
        if holder.get("client_addr"):
            who += f" from {holder['client_addr']}"
        lines.append(f"projector lock:  {who}, connected since {holder['since']}")
    lines.append(f"dead letters:    {d['dead_letters']}")
    return "\n".join(lines)
