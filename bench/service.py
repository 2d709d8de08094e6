"""The service's measurements: `items serve` on a fresh database and Redis prefix, pinned to
the server CPU, seeded through its API, then every wrk load (GET by id cold and warm, the
list pages, POST, PATCH, the 95/5 mix with the projection lag; beside the warm GET by id,
GraphQL item(id) and gRPC GetItem, grpc_bench.py), then GET by id with the metrics off and
on (metrics_cost.py), then GET by id, list 20 and POST on uvicorn and on granian,
alternating (on_granian.py)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from app.infrastructure.redis.keys import layout_key

from . import lag as lag_probe
from .config import ITEMS, ITEMS_CMD, TAGS, Config
from .console import say, show
from .grpc_bench import bench_grpc
from .loads import seed_api, warm_views, wrk
from .metrics_cost import metrics_cost
from .on_granian import bench_servers
from .processes import Processes, free_port, pin, wait_http
from .stores import Stores

STEADY_STATE_NOTE = (
    "get_by_id is the steady state of a long-running service: it runs after every id was "
    "read once, so the in-process view cache holds every view (its hit rate is in the "
    "JSON); get_by_id_cold is the same load right after start (a short random warm-up, "
    "most reads are first reads). The targets judge get_by_id."
)


def service_env(cfg: Config, database_url: str, prefix: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "REDIS_URL": cfg.redis_url,
        "REDIS_PREFIX": prefix,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PROJECTOR_IN_PROCESS": "true",
        "LOG_LEVEL": "warning",
    }


def view_cache_stats(base: str) -> dict[str, Any]:
    """The service's own view cache counters (GET /api/v1/admin/projection)."""
    with urllib.request.urlopen(base + "/api/v1/admin/projection", timeout=10) as r:
        stats: dict[str, Any] = json.loads(r.read())["view_cache"]
    return stats


async def wait_projected(base: str, n: int, within: float = 600.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while True:
            r = await client.get(ITEMS, params={"limit": 1})
            if r.status_code == 200 and r.json()["total"] >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"projection did not reach {n} items: {r.status_code} {r.text}")
            await asyncio.sleep(0.2)


def bench_service(cfg: Config, procs: Processes, stores: Stores, tmp: Path
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:  # fmt: skip
    database_url = stores.database(f"items_bench_{cfg.run_id}")
    prefix = cfg.prefix
    stores.redis_patterns.append(f"{{{prefix}:*")
    stores.redis_keys.append(layout_key(prefix))  # `{prefix}:layout`, outside that pattern
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say(f"service: items serve on {base}, CPU {cfg.server_cpu}; wrk on CPU {cfg.load_cpu}")
    env = service_env(cfg, database_url, prefix, port)
    proc = procs.start("service", [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve"], env)
    wait_http(base + "/readyz", proc, procs, "service", timeout=90)
    began = time.monotonic()
    say(f"seeding {cfg.items} items through the API (wrk POST, {cfg.connections} connections)")
    ids_file = tmp / "service_ids"
    seed_api(cfg, base, cfg.items, ids_file)
    asyncio.run(wait_projected(base, cfg.items))
    seed_seconds = time.monotonic() - began
    say(f"  seeded and projected in {seed_seconds:.1f}s ({cfg.items / seed_seconds:,.0f}/s)")
    out: dict[str, dict[str, Any]] = {}

    def run(name: str, mode: str, **kw: Any) -> None:
        out[name] = wrk(cfg, base, mode, **kw)
        show(name, out[name])

    def counted(name: str, **kw: Any) -> None:
        """A GET by id run, with the view cache's hits and misses during it."""
        before = view_cache_stats(base)
        run(name, "get", **kw)
        after = view_cache_stats(base)
        hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
        rate = hits / (hits + misses) if hits + misses else None
        out[name]["view_cache"] = {"hits": hits, "misses": misses, "hit_rate": rate,
                                   "entries": after["entries"]}  # fmt: skip
        say(f"  {'':<22} view cache: {hits:,} hits, {misses:,} misses "
            f"({0 if rate is None else rate:.0%}), {after['entries']:,} entries")  # fmt: skip

    if cfg.warmup:
        wrk(cfg, base, "get", cfg.warmup, ids_file=ids_file)
    # First the reads of a service just started (cache mostly cold), then, after one read
    # of every id, the steady state the targets are judged on (see loads.warm_views).
    counted("get_by_id_cold", ids_file=ids_file)
    warm_seconds = warm_views(cfg, base, ids_file)
    say(f"  read every id once in {warm_seconds:.1f}s: the view cache is warm")
    counted("get_by_id", ids_file=ids_file)
    out["get_by_id"]["view_cache"]["warm_up"] = (
        f"every id read once, in order, before this run ({warm_seconds:.1f}s)"
    )
    # The same read over the other entry points, in the same run: GraphQL item(id) on the
    # same process (its view cache warm), gRPC GetItem on `items grpc` beside it.
    run("graphql_item", "graphql", ids_file=ids_file)
    out["grpc_get_item"] = bench_grpc(cfg, procs, env, ids_file)
    show("grpc_get_item", out["grpc_get_item"])
    run("list_20", "list", paths=[f"{ITEMS}?limit=20"])
    run("list_100", "list", paths=[f"{ITEMS}?limit=100"])
    run("list_20_tag", "list", paths=[f"{ITEMS}?limit=20&tag={t}" for t in TAGS])
    run("list_100_tag", "list", paths=[f"{ITEMS}?limit=100&tag={t}" for t in TAGS])
    # Writes answer once the read model shows them (WRITE_VISIBLE_WAIT_MS); the same
    # loads with Prefer: respond-async answer at commit: the cost of the wait, same run.
    run("post", "post")
    run("post_async", "post", prefer="respond-async")
    run("post_keyed", "post", keyed=True)  # and its Idempotency-Key row, same transaction
    run("patch", "patch", ids_file=ids_file)
    run("patch_async", "patch", ids_file=ids_file, prefer="respond-async")
    partitions = int(os.environ.get("PROJECTION_PARTITIONS", "1"))  # the service inherits it
    probe = lag_probe.mix_with_lag(cfg, base, prefix, database_url, ids_file,
                                   redis_url=cfg.redis_url, partitions=partitions)  # fmt: skip
    mix, lags = asyncio.run(probe)
    out["mix_95_5"] = mix
    show("mix_95_5", mix)
    lag = lag_probe.summary(lags)
    say(f"  projection lag under mix_95_5: p50 {lag['p50_ms']:.1f} ms, "
        f"p99 {lag['p99_ms']:.1f} ms ({len(lags)} samples)")  # fmt: skip
    procs.stop(proc)
    if proc.returncode not in (0, -signal.SIGTERM):
        say(f"note: service exited with {proc.returncode}:\n{procs.log_tail('service')}")
    out |= metrics_cost(cfg, procs, env, ids_file)
    out |= bench_servers(cfg, procs, env, ids_file)
    return out, lag
