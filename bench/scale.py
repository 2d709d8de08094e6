"""The scale part (issue 16): the service with 1 and 4 projection partitions, on the run's
single Redis and on a Redis Cluster of 3 masters started for it, each configuration on a
fresh database and prefix (scale_run.py): GET by id, list 20, POST, the 95/5 mix with
its projection lag, and the projection's throughput catching up a backlog (catchup.py),
with 1 projector and, for 4 partitions, 2; then `items serve --workers 1` against
`--workers 2` for GET by id (workers.py). Figures only: no targets. Results go to the
JSON's "scale" key as they are measured, so a failure keeps what came before it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .catchup import MEASURED
from .config import Config
from .console import say
from .processes import Processes
from .scale_run import Redises, Serving, Sizes, run_configuration
from .stores import Stores
from .workers import workers_one, workers_two

PARTITIONS = (1, 4)
CLUSTER_MASTERS = 3
WARM_ROUNDS = 8  # reads of every id before a workers row: a worker misses one with 2^-8

NOTES = [
    "scale: figures only, no targets. Each configuration: a fresh database and Redis "
    "prefix, `items serve --workers 1` (its projector in a child) pinned to the server "
    "CPU, wrk to the load CPU; PostgreSQL, the single Redis and the cluster's nodes are "
    "not pinned (they run on whichever core is free, as the main part's servers do)",
    "scale loads: GET by id (after one read of every id, as the main table's get_by_id), "
    "list 20, POST and the 95/5 mix with its projection lag, on items seeded through the "
    "API after the projection runs' backlogs; 'cpu' is the cores the service's processes "
    "and the Redis servers (a cluster's nodes summed, INFO cpu) used during the load, "
    "'idle' the same with no request at all, just after the service was ready",
    f"scale projection: {MEASURED}",
    "scale workers: this machine has 2 cores and wrk needs one, so two API workers cannot "
    "show their real gain here: pinned, both share the server CPU (only their overhead "
    "shows); unpinned, they compete with wrk for the load CPU",
]

CLUSTER_NOTE = (
    f"scale cluster: {CLUSTER_MASTERS} masters of Debian's redis-server on loopback, no "
    "replicas, no persistence (tests/redis_cluster.py); the service's REDIS_URL names the "
    "first node and the cluster is detected (REDIS_CLUSTER=auto); notices are subscribed "
    "to on that node"
)


@contextlib.contextmanager
def cluster_starting(cfg: Config, tmp: Path) -> Iterator[Future[Any] | None]:
    """A LocalRedisCluster (tests/redis_cluster.py) for the scale part, started in a
    thread while the single-Redis configurations run (None: the binaries are missing),
    and stopped on leaving, however it went. Its nodes are not pinned: the thread starting
    them leaves the load CPU first (affinity is a thread's, and children inherit it)."""
    from tests.redis_cluster import LocalRedisCluster, available

    if available() is not None:
        yield None
        return
    cluster = LocalRedisCluster(tmp / "redis-cluster", masters=CLUSTER_MASTERS)

    def start() -> Any:
        os.sched_setaffinity(0, set(cfg.cpus))  # this thread only
        return cluster.start()  # stops what it started if it fails

    pool = ThreadPoolExecutor(1, thread_name_prefix="redis-cluster")
    try:
        yield pool.submit(start)
    finally:
        pool.shutdown(wait=True)
        cluster.stop()


def bench_scale(cfg: Config, procs: Processes, stores: Stores, tmp: Path, out: dict[str, Any]
                ) -> None:  # fmt: skip
    from tests.redis_cluster import available

    sizes = Sizes(cfg.scale_items, cfg.scale_events, cfg.scale_duration, WARM_ROUNDS)
    configurations: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    out |= {
        "settings": {
            "items": sizes.items,
            "backlog_events": sizes.events,
            "duration_s": sizes.duration,
            "connections": cfg.connections,
            "partitions": list(PARTITIONS),
            "cluster_masters": CLUSTER_MASTERS,
            "warm_rounds_workers": sizes.rounds,
        },
        "configurations": configurations,
        "workers": workers,
        "notes": list(NOTES),
    }

    def configuration(redises: Redises, partitions: int, **kw: Any) -> Serving:
        configurations.append({})
        # Smoke: two projectors in one configuration only (each start costs seconds).
        row, two = configurations[-1], partitions > 1 and (not cfg.smoke or redises == single)
        return run_configuration(
            cfg, procs, stores, tmp, redises, partitions, sizes, row, two_projectors=two, **kw
        )

    single = Redises("single", cfg.redis_url, [cfg.redis_url])
    with cluster_starting(cfg, tmp) as starting:
        # Single Redis, 1 partition: its service is `--workers 1` of the workers rows,
        # and `--workers 2` runs on its data next.
        one = configuration(single, 1, during=lambda s: workers_one(cfg, s, sizes, workers))
        workers_two(cfg, procs, one, sizes, workers)
        for partitions in PARTITIONS[1:]:
            configuration(single, partitions)
        if starting is None:
            reason = available()
            out["notes"].append(f"cluster configurations skipped: {reason}")
            say(f"note: scale: cluster configurations skipped: {reason}")
            return
        cluster = starting.result()
        out["cluster"] = {"masters": CLUSTER_MASTERS, "urls": cluster.urls}
        out["notes"].append(CLUSTER_NOTE)
        say(f"scale: Redis Cluster of {CLUSTER_MASTERS} masters at {', '.join(cluster.urls)}")
        redises = Redises("cluster", cluster.url, cluster.urls)
        for partitions in PARTITIONS:
            configuration(redises, partitions)
