"""One configuration of the scale part (scale.py): a Redis (single, or a cluster) and a
partition count, on a fresh database and Redis prefix. First the projection throughput
(catchup.py): backlogs caught up by `items projector` processes pinned to the server
CPU (two, for several partitions, then one). Then `items serve --workers 1` (its
projector in a child, pinned with it) starts, items are seeded through the API, and wrk
loads GET by id (after one read of every id), list 20, POST and the 95/5 mix with the
projection lag. Each load records the CPU cores the service and Redis used meanwhile
(cpu.py), which says what bounds it; so does a moment of the service idle."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.infrastructure.postgres.migrations import migrate
from app.infrastructure.redis.keys import KeyLayout, layout_key
from app.settings import sqlalchemy_url

from . import lag as lag_probe
from .catchup import catch_up, wait_projectors
from .config import ITEMS, ITEMS_CMD, Config
from .console import say, show
from .cpu import cpu_seconds, redis_cpu, set_cpus, tree
from .loads import seed_api, warm_views, wrk
from .processes import Processes, free_port, pin, wait_http
from .service import service_env, view_cache_stats, wait_projected
from .stores import Stores

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    items: int  # seeded through the API
    events: int  # the backlog of one projection run
    duration: int  # seconds of each wrk load
    rounds: int  # reads of every id before a workers row (each worker has its own cache)


@dataclass(frozen=True)
class Redises:
    kind: str  # "single" or "cluster"
    url: str  # the service's REDIS_URL
    nodes: list[str]  # every server (for INFO cpu); notices are subscribed to on the first


@dataclass
class Serving:
    """A configuration's `items serve`, and what it serves."""

    proc: subprocess.Popen[bytes] | None  # None until it starts
    base: str
    env: dict[str, str]
    database_url: str
    prefix: str
    partitions: int
    redises: Redises
    ids_file: Path


def measured(serving: Serving, load: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """Run `load`; with it, the CPU cores the service's processes and Redis used."""
    pids = tree(serving.proc.pid) if serving.proc is not None else []
    cpu0, redis0, began = cpu_seconds(pids), redis_cpu(serving.redises.nodes), time.monotonic()
    result = load()
    cpu1, redis1 = cpu_seconds(pids), redis_cpu(serving.redises.nodes)
    wall = time.monotonic() - began
    service = sum(cpu1[p] - cpu0[p] for p in cpu1 if p in cpu0)
    return result, {"service_cores": service / wall, "redis_cores": (redis1 - redis0) / wall}


def run_configuration(
    cfg: Config,
    procs: Processes,
    stores: Stores,
    tmp: Path,
    redises: Redises,
    partitions: int,
    sizes: Sizes,
    out: dict[str, Any],
    *,
    two_projectors: bool,
    during: Callable[[Serving], None] | None = None,
) -> Serving:
    """Measure one configuration into `out` (filled as it goes: a failure keeps what was
    measured); `during(serving)` runs last, before the service stops."""
    name = f"{redises.kind}{partitions}"
    database_url = stores.database(f"items_bench_sc_{name}_{cfg.run_id}")
    prefix = f"{cfg.prefix}_sc_{name}"
    if redises.kind == "single":  # a cluster's keys go with the cluster
        stores.redis_patterns.append(f"{{{prefix}:*")
        stores.redis_keys.append(layout_key(prefix))
    port = free_port()
    env = service_env(cfg, database_url, prefix, port)
    env |= {"REDIS_URL": redises.url, "PROJECTION_PARTITIONS": str(partitions)}
    base = f"http://127.0.0.1:{port}"
    out |= {"redis": redises.kind, "partitions": partitions, "projection": {}}
    label = f"scale-{name}"
    say(f"scale: {redises.kind} Redis, {partitions} partition(s)")
    migrate(sqlalchemy_url(database_url))
    serving = Serving(None, base, env, database_url, prefix, partitions, redises,
                      tmp / f"scale_{name}_ids")  # fmt: skip
    projection(cfg, procs, label, serving, sizes, two_projectors, out["projection"])
    say(f"  items serve on {base}, CPU {cfg.server_cpu}")
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve", "--workers", "1"]
    serving.proc = proc = procs.start(label, cmd, env)
    try:
        wait_http(base + "/readyz", proc, procs, label, timeout=90)
        out["idle"] = idle(serving, 0.5 if cfg.smoke else 2.0)
        backlog = sum(run["events"] for run in out["projection"].values())
        loads(cfg, serving, sizes, backlog, out)
        if during is not None:
            during(serving)
    finally:
        procs.stop(proc)
    if proc.returncode not in (0, -signal.SIGTERM):
        say(f"note: {label} exited with {proc.returncode}:\n{procs.log_tail(label)}")
    return serving


def idle(serving: Serving, seconds: float) -> dict[str, float]:
    """The cores the service and Redis use with no request at all (the change feed's
    probes, the lease ticks, the projector's polls)."""
    _, cpu = measured(serving, lambda: time.sleep(seconds))
    say(f"  idle: service {cpu['service_cores']:.2f} cores, Redis {cpu['redis_cores']:.2f}")
    return cpu | {"seconds": seconds}


def projection(cfg: Config, procs: Processes, label: str, serving: Serving, sizes: Sizes,
               two: bool, runs: dict[str, Any]) -> None:  # fmt: skip
    """Backlogs caught up by `items projector` processes pinned to the server CPU, before
    the service starts (its API process would share their CPU): by two (then both moved
    to every core), then by one alone."""
    layout = KeyLayout(serving.prefix, serving.partitions)
    db, node = serving.database_url, serving.redises.nodes[0]
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "projector"]
    started = [procs.start(f"{label}-projector", cmd, serving.env)]
    if two:
        started.append(procs.start(f"{label}-projector-2", cmd, serving.env))

    def check() -> None:
        for i, proc in enumerate(started):
            if proc.poll() is not None:
                name = f"{label}-projector" + ("-2" if i else "")
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n"
                                   f"{procs.log_tail(name)}")  # fmt: skip

    def run(key: str, what: str, owners: dict[int, list[int]]) -> None:
        pids = [p for pid in owners for p in tree(pid)]
        cpu0, redis0 = cpu_seconds(pids), redis_cpu(serving.redises.nodes)
        runs[key] = r = asyncio.run(catch_up(db, node, layout, sizes.events))
        cpu1, redis1 = cpu_seconds(pids), redis_cpu(serving.redises.nodes)
        used = sum(cpu1[p] - cpu0[p] for p in cpu1 if p in cpu0)
        r |= {"what": what, "cpu": {"projector_cores": used / r["seconds"],
                                    "redis_cores": (redis1 - redis0) / r["seconds"]}}  # fmt: skip
        say(f"  projection, {what}: {r['events']:,} events in {r['seconds']:.2f}s, "
            f"{r['events_per_s']:,.0f} events/s (projectors {r['cpu']['projector_cores']:.2f} "
            f"cores, Redis {r['cpu']['redis_cores']:.2f})")  # fmt: skip

    try:
        if two:
            owners = wait_projectors(db, node, layout, 2, check)
            split = "+".join(str(len(p)) for p in owners.values())
            run("two_projectors", f"2 projectors ({split} partitions), both on CPU "
                f"{cfg.server_cpu}", owners)  # fmt: skip
            if cfg.pinned:
                for pid in owners:
                    set_cpus(pid, set(cfg.cpus))
                run("two_projectors_unpinned", f"2 projectors ({split}), unpinned", owners)
            procs.stop(started.pop())
        owners = wait_projectors(db, node, layout, 1, check)
        run("one_projector", f"1 projector on CPU {cfg.server_cpu}", owners)
    finally:
        for proc in started:
            procs.stop(proc)


def loads(cfg: Config, serving: Serving, sizes: Sizes, backlog: int, out: dict[str, Any]
          ) -> None:  # fmt: skip
    base, ids_file = serving.base, serving.ids_file
    began = time.monotonic()
    seed_api(cfg, base, sizes.items, ids_file)
    asyncio.run(wait_projected(base, sizes.items + backlog))
    warm = warm_views(cfg, base, ids_file)
    say(f"  seeded {sizes.items:,} items through the API and projected them, read each once: "
        f"{time.monotonic() - began:.1f}s")  # fmt: skip

    def run(name: str, mode: str, **kw: Any) -> None:
        before = view_cache_stats(base) if mode == "get" else {}
        out[name], cpu = measured(serving, lambda: wrk(cfg, base, mode, sizes.duration, **kw))
        out[name]["cpu"] = cpu
        if mode == "get":
            after = view_cache_stats(base)
            hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
            out[name]["view_cache"] = {
                "hits": hits, "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else None,
                "warm_up": f"every id read once, in order, before this run ({warm:.1f}s)",
            }  # fmt: skip
        show(name, out[name])

    run("get_by_id", "get", ids_file=ids_file)
    run("list_20", "list", paths=[f"{ITEMS}?limit=20"])
    run("post", "post")

    def mix() -> tuple[dict[str, Any], list[float]]:
        probe = lag_probe.mix_with_lag(
            cfg, base, serving.prefix, serving.database_url, ids_file,
            redis_url=serving.redises.nodes[0], partitions=serving.partitions,
            duration=sizes.duration,
        )  # fmt: skip
        return asyncio.run(probe)

    (out["mix_95_5"], lags), cpu = measured(serving, mix)
    out["mix_95_5"]["cpu"] = cpu
    show("mix_95_5", out["mix_95_5"])
    out["projection_lag"] = lag = lag_probe.summary(lags)
    say(f"  projection lag under mix_95_5: p50 {lag['p50_ms']:.1f} ms, "
        f"p99 {lag['p99_ms']:.1f} ms ({len(lags)} samples)")  # fmt: skip
