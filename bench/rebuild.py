"""The `items rebuild` measurement: BENCH_REBUILD_ITEMS items (default 1,000,000) seeded
straight into PostgreSQL in one statement, then a rebuild of their views pinned to the
server CPU: items per second (from its own "rebuilt N items" line), peak memory and the
Redis memory its views and indexes take per item; then its reference, Redis taking the
same writes raw (redis_raw.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.redis.keys import KeyLayout, layout_key

from .config import ITEMS_CMD, Config
from .console import say
from .processes import Processes, pin
from .redis_raw import raw_redis, used_memory
from .service import service_env
from .stores import Stores

SEED_SQL = """
WITH new AS (
    SELECT gen_random_uuid() AS id, 'seeded ' || g AS name, g AS n,
           clock_timestamp() AS at FROM generate_series(1, $1) AS g
), items_in AS (
    INSERT INTO items (id, name, price, tags, version, created_at, updated_at)
    SELECT id, name, (n % 1000) + 0.5, ARRAY['t' || (n % 10)], 1, at, at FROM new
)
INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)
SELECT gen_random_uuid(), id, 1, 'ItemCreated',
       jsonb_build_object('name', name, 'description', null,
                          'price', ((n % 1000) + 0.5)::numeric(11,2)::text,
                          'tags', jsonb_build_array('t' || (n % 10))), at
FROM new
"""

REBUILT = re.compile(
    r"rebuilt (?P<items>\d+) items .* in (?P<seconds>[\d.]+)s: (?P<rate>[\d,.]+) items/s"
)


async def seed_rebuild(cfg: Config, database_url: str, prefix: str, items: int) -> int:
    """Items and their creation events in one statement; then the live generation is
    marked as caught up with them, as if a projector had applied them all."""
    conn = await asyncpg.connect(database_url, command_timeout=None)
    try:
        await conn.execute(SEED_SQL, items)
        await conn.execute("ANALYZE items")
        head = await PgEventLog(conn).head()
    finally:
        await conn.close()
    layout = KeyLayout(prefix, 1)
    r = Redis.from_url(cfg.redis_url)
    try:
        await r.set(layout.gen(0), "seed")
        await r.set(layout.checkpoint(0, "seed"), head)
    finally:
        await r.aclose()
    return head


def prepare(cfg: Config, stores: Stores, name: str, items: int
            ) -> tuple[str, str, dict[str, str]]:  # fmt: skip
    """A fresh database and Redis prefix (`name`) with `items` seeded into PostgreSQL
    (seed_rebuild): its URL, prefix, and the environment of `items` commands on it."""
    database_url = stores.database(f"items_bench_{name}_{cfg.run_id}")
    prefix = f"{cfg.prefix}_{name}"
    stores.redis_patterns.append(f"{{{prefix}:*")
    stores.redis_keys.append(layout_key(prefix))
    env = service_env(cfg, database_url, prefix, 8000)  # PORT unused here
    env["PROJECTOR_IN_PROCESS"] = "false"
    env["LOG_LEVEL"] = "info"
    done = subprocess.run([ITEMS_CMD, "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"items migrate failed: {done.stderr[-2000:]}")
    asyncio.run(seed_rebuild(cfg, database_url, prefix, items))
    return database_url, prefix, env


def bench_rebuild(cfg: Config, procs: Processes, stores: Stores
                  ) -> tuple[dict[str, Any], str, str]:  # fmt: skip
    """The rebuild's figures, and the database URL and prefix it left live (sizes.py
    serves them)."""
    say(f"rebuild: seeding {cfg.rebuild_items:,} items straight into PostgreSQL")
    began = time.monotonic()
    database_url, prefix, env = prepare(cfg, stores, "rb", cfg.rebuild_items)
    say(f"  seeded in {time.monotonic() - began:.1f}s; "
        f"items rebuild --batch-size {cfg.rebuild_batch} on CPU {cfg.server_cpu}")  # fmt: skip
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "rebuild", "--batch-size", str(cfg.rebuild_batch)]
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        cmd = [str(gnu_time), "-v", *cmd]
    memory_before = used_memory(cfg.redis_url)
    proc = procs.start("rebuild", cmd, env)
    # wait4 gives the child's peak RSS even where GNU time is missing.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    procs.stop(proc)
    text = procs.log_tail("rebuild", 200)
    if proc.returncode != 0:
        raise RuntimeError(f"items rebuild exited with {proc.returncode}:\n{text}")
    found = REBUILT.search(text)
    if found is None:
        raise RuntimeError(f"no 'rebuilt N items' line in the output of items rebuild:\n{text}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    # Under GNU time the wait4 figure is time's own; its -v line is the rebuild's.
    max_rss_kb = int(rss.group(1)) if rss else int(usage.ru_maxrss)
    result = {
        "items": int(found["items"]),
        "seconds": float(found["seconds"]),
        "items_per_s": float(found["rate"].replace(",", "")),
        "max_rss_mb": max_rss_kb / 1024,
        # The old generation was empty (seed_rebuild): the growth is the new one's.
        "redis_bytes_per_item": (used_memory(cfg.redis_url) - memory_before) / int(found["items"]),
        "batch_size": cfg.rebuild_batch,
        "line": found.group(0),
    }
    say(
        f"  rebuild: {result['items']:,} items in {result['seconds']:.1f}s, "
        f"{result['items_per_s']:,.0f} items/s, peak RSS {result['max_rss_mb']:.0f} MiB, "
        f"Redis {result['redis_bytes_per_item']:,.0f} bytes/item"
    )
    raw = asyncio.run(raw_redis(cfg, stores, database_url))
    result["redis_raw"] = raw
    result["ratio_raw"] = result["items_per_s"] / raw["items_per_s"] if raw["items_per_s"] else None
    say(f"  reference, the same writes sent raw from one client: {raw['items_per_s']:,.0f} "
        f"items/s ({raw['redis_bytes_per_item']:,.0f} bytes/item): rebuild at "
        f"{result['ratio_raw'] or 0:.2f}x")  # fmt: skip
    return result, database_url, prefix
