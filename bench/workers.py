"""`items serve --workers 1` against `--workers 2`, GET by id (single Redis, one
partition, the data of that configuration of the scale part), wrk on the load CPU: each
with the service pinned to the server CPU, then (the same processes moved) free to use
every core beside wrk. Each API worker has its own view cache, and each connection is
answered by one worker: every id is read several times over before the runs, and each
worker's own cache counters (an admin request on a connection that ss says it answers)
show how warm it was. Also recorded: the connections each worker answered during the
run, and the CPU cores each process of the service and wrk used."""

from __future__ import annotations

import http.client
import json
import resource
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .config import ITEMS_CMD, Config
from .console import say, show
from .cpu import client_ports, connection_owners, cpu_seconds, set_cpus, tree
from .loads import warm_views, wrk
from .processes import Processes, free_port, pin, wait_http
from .scale_run import Serving, Sizes

ADMIN = "/api/v1/admin/projection"


def worker_caches(port: int, workers: int, within: float = 60.0) -> dict[int, dict[str, Any]]:
    """pid -> view cache counters of each of the `workers` API processes: admin requests
    on fresh connections, 8 at a time, until every worker has answered one."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + within
    while len(found) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(found)} of {workers} workers answered: {list(found)}")
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]
        answers = []
        try:
            for conn in conns:
                conn.request("GET", ADMIN)
            for conn in conns:
                resp = conn.getresponse()
                answers.append((conn.sock.getsockname()[1], resp.status, resp.read()))
            owners = client_ports(port)  # while the connections are still open
        finally:
            for conn in conns:
                conn.close()
        for client, status, body in answers:
            pid = owners.get(client)
            if status == 200 and pid is not None:
                found.setdefault(pid, json.loads(body)["view_cache"])
        if len(found) < workers:
            time.sleep(0.2)
    return found


def get_row(cfg: Config, proc: subprocess.Popen[bytes], base: str, ids_file: Path,
            workers: int, where: str, sizes: Sizes) -> dict[str, Any]:  # fmt: skip
    port = int(base.rsplit(":", 1)[1])
    before = worker_caches(port, workers)
    pids = tree(proc.pid)
    cpu0, load0 = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(wrk, cfg, base, "get", sizes.duration, ids_file=ids_file)
        time.sleep(sizes.duration / 2)
        connections = connection_owners(port)
        result = running.result()
    cpu1, load1 = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - began
    after = worker_caches(port, workers)
    caches = {}
    for pid, b in before.items():
        a = after.get(pid, b)
        hits, misses = a["hits"] - b["hits"], a["misses"] - b["misses"]
        rate = hits / (hits + misses) if hits + misses else None
        caches[str(pid)] = {"entries_before": b["entries"], "hits": hits, "misses": misses,
                            "hit_rate": rate}  # fmt: skip
    wrk_cpu = (load1.ru_utime + load1.ru_stime) - (load0.ru_utime + load0.ru_stime)
    result |= {
        "view_cache_per_worker": caches,
        "connections_per_worker": {str(p): n for p, n in connections.items()},
        "cores": {
            "per_process": {str(p): (cpu1[p] - cpu0[p]) / wall for p in cpu1 if p in cpu0},
            "service": sum(cpu1[p] - cpu0[p] for p in cpu1 if p in cpu0) / wall,
            "wrk": wrk_cpu / wall,
        },
    }
    row = {"workers": workers, "cpus": where, "get_by_id": result}
    show(f"workers {workers}, {where}", result)
    rates = ", ".join(f"{c['hit_rate'] or 0:.1%}" for c in caches.values())
    say(f"  {'':<22} view cache hit rate per worker: {rates}; connections per worker: "
        f"{sorted(connections.values())}; service {result['cores']['service']:.2f} cores, "
        f"wrk {result['cores']['wrk']:.2f}")  # fmt: skip
    return row


def rows_of(cfg: Config, proc: subprocess.Popen[bytes], base: str, ids_file: Path,
            workers: int, sizes: Sizes, rows: list[dict[str, Any]]) -> None:  # fmt: skip
    """Warm every worker, then the pinned row and, moved to every core, the unpinned."""
    warm = warm_views(cfg, base, ids_file, rounds=sizes.rounds)
    say(f"  workers {workers}: read every id {sizes.rounds} times in {warm:.1f}s")
    pinned = "pinned" if cfg.pinned else "unpinned (one CPU)"
    rows.append(get_row(cfg, proc, base, ids_file, workers, pinned, sizes))
    rows[-1]["warm_up"] = (
        f"every id read {sizes.rounds} times, in order, on 64 connections the kernel spread "
        f"over the workers ({warm:.1f}s), before the pinned run"
    )
    if cfg.pinned and not cfg.smoke:  # smoke: the pinned rows only
        set_cpus(proc.pid, set(cfg.cpus))
        rows.append(get_row(cfg, proc, base, ids_file, workers, "unpinned", sizes))
        rows[-1]["warm_up"] = "the same processes as the pinned run, just after it"


def workers_one(cfg: Config, serving: Serving, sizes: Sizes, rows: list[dict[str, Any]]) -> None:
    """`--workers 1`: the (single Redis, 1 partition) configuration's own service."""
    assert serving.proc is not None
    rows_of(cfg, serving.proc, serving.base, serving.ids_file, 1, sizes, rows)


def workers_two(cfg: Config, procs: Processes, serving: Serving, sizes: Sizes,
                rows: list[dict[str, Any]]) -> None:  # fmt: skip
    """`--workers 2` on the same database and prefix (once the first has stopped)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say(f"scale: items serve --workers 2 on {base}, CPU {cfg.server_cpu}")
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve", "--workers", "2"]
    proc = procs.start("scale-workers2", cmd, {**serving.env, "PORT": str(port)})
    try:
        wait_http(base + "/readyz", proc, procs, "scale-workers2", timeout=90)
        worker_caches(port, 2)  # both workers answer
        rows_of(cfg, proc, base, serving.ids_file, 2, sizes, rows)
    finally:
        procs.stop(proc)
