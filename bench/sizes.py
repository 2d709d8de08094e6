"""Cost that does not grow with the work: GET by id, list 20 and POST on a small store and
on the rebuild's large one, in the same run. The large one is what the rebuild left live
(BENCH_REBUILD_ITEMS items, default 1,000,000); the small one, min(10,000, a tenth of
that), is seeded and rebuilt the same way. Both are served by `items serve` pinned to the
server CPU, read on the same number of ids (the small store's count, sampled at random),
each read once first so the view cache is warm in both: what differs is only the size of
the tables and of the Redis indexes beneath. The ratios are large / small."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from .config import ITEMS, ITEMS_CMD, Config
from .console import say, show
from .loads import warm_views, wrk
from .processes import Processes, free_port, pin, wait_http
from .rebuild import prepare
from .service import service_env
from .stores import Stores

LOADS = ("get_by_id", "list_20", "post")


async def sample_ids(database_url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id::text FROM items ORDER BY random() LIMIT $1", n)
        return [r[0] for r in rows]
    finally:
        await conn.close()


def loads_at(cfg: Config, procs: Processes, tmp: Path, label: str, database_url: str,
             prefix: str, ids: int) -> dict[str, Any]:  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(cfg, database_url, prefix, port)
    proc = procs.start(f"service_{label}", [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve"], env)
    try:
        wait_http(base + "/readyz", proc, procs, f"service_{label}", timeout=90)
        ids_file = tmp / f"ids_{label}"
        ids_file.write_text("\n".join(asyncio.run(sample_ids(database_url, ids))))
        warm_views(cfg, base, ids_file)
        out = {
            "get_by_id": wrk(cfg, base, "get", ids_file=ids_file),
            "list_20": wrk(cfg, base, "list", paths=[f"{ITEMS}?limit=20"]),
            "post": wrk(cfg, base, "post"),
        }
    finally:
        procs.stop(proc)
    for name, m in out.items():
        show(f"{name} at {label}", m)
    return out


def bench_sizes(cfg: Config, procs: Processes, stores: Stores, tmp: Path,
                large_url: str, large_prefix: str) -> dict[str, Any]:  # fmt: skip
    large_n = cfg.rebuild_items
    small_n = max(100, min(10_000, large_n // 10))
    say(f"sizes: GET by id, list 20 and POST at {small_n:,} and at {large_n:,} items")
    small_url, small_prefix, small_env = prepare(cfg, stores, "small", small_n)
    done = subprocess.run([ITEMS_CMD, "rebuild"], env=small_env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"items rebuild of the small store failed: {done.stderr[-2000:]}")
    small = loads_at(cfg, procs, tmp, f"{small_n:,}", small_url, small_prefix, small_n)
    large = loads_at(cfg, procs, tmp, f"{large_n:,}", large_url, large_prefix, small_n)
    ratios = {name: large[name]["rps"] / small[name]["rps"] for name in LOADS}
    say("  large / small: " + ", ".join(f"{n} {r:.2f}" for n, r in ratios.items()))
    return {"small_items": small_n, "large_items": large_n, "small": small, "large": large,
            "ratios": ratios}  # fmt: skip
