"""`make bench`: the service as users run it, loaded by wrk, beside its references.

One run, on one machine:

- starts `items serve` (uvicorn, uvloop, httptools, no access log, one worker) pinned to
  one CPU, with wrk (and this driver) pinned to the other; the API's projector runs in its
  child process, which inherits the pin: the whole service shares that one CPU;
- seeds N items through the API (BENCH_ITEMS, default 100,000);
- measures GET by id (random ids, keep-alive, 64 connections), GET list (pages of 20 and
  100, default sort and a tag filter), POST, PATCH, a 95/5 read/write mix and, under that
  mix, the projection lag (a write's commit to its view in Redis), p50 and p99;
- measures `items rebuild` of BENCH_REBUILD_ITEMS items (default 1,000,000) seeded
  straight into PostgreSQL: items per second and peak memory;
- measures the references of ../shared/bench in the same run: the bare HTTP ceiling, the
  one-redis-py-GET ceiling and the seed-style FastAPI + SQLModel peer reading PostgreSQL
  (the same wrk loads as the service's);
- prints requests per second, p50, p99 and the ratios to the references, and writes them
  to bench/results/bench-<timestamp>.json and bench/results/latest.json.

The references run on this repo's own .venv interpreter (same uvicorn, Starlette and
FastAPI as the service); only sqlmodel, which the peer needs and the service does not, is
installed with `pip --target bench/.venv-ref --no-deps` and put on PYTHONPATH.

Env: BENCH_ITEMS, BENCH_DURATION (seconds per load), BENCH_CONNECTIONS,
BENCH_REBUILD_ITEMS, BENCH_DATABASE_URL (admin URL; a fresh database is created and
dropped), BENCH_REDIS_URL (keys live under a per-run prefix and are removed); unset, the
machine's own servers on 127.0.0.1:5432 / 6379 if they answer, else embedded ones as `make
run` starts;
BENCH_SHARED (the references' folder, default ../shared/bench).
`--smoke`: a few seconds of everything, so the bench cannot rot (tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOAD_LUA = BENCH / "load.lua"
REF_SITE = BENCH / ".venv-ref"
VENV_BIN = Path(sys.executable).parent
ITEMS_CMD = str(VENV_BIN / "items")
ITEMS = "/api/v1/items/"
TAGS = [f"t{i}" for i in range(10)]

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- settings


@dataclass
class Config:
    smoke: bool
    items: int
    duration: int
    connections: int
    warmup: int
    rebuild_items: int
    rebuild_batch: int
    admin_url: str
    redis_url: str
    shared: Path
    results_dir: Path
    server_cpu: int
    load_cpu: int
    pinned: bool
    run_id: str = field(default_factory=lambda: f"{int(time.time())}_{secrets.token_hex(3)}")

    @property
    def prefix(self) -> str:
        return f"bench_{self.run_id}"


def config(argv: list[str] | None) -> Config:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--smoke", action="store_true", help="a few seconds of every part")
    ap.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = ap.parse_args(argv)
    env = os.environ.get

    def num(name: str, full: int, smoke: int) -> int:
        return int(env(name) or (smoke if args.smoke else full))

    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    shared = Path(env("BENCH_SHARED") or ROOT.parent / "shared" / "bench")
    return Config(
        smoke=args.smoke,
        items=num("BENCH_ITEMS", 100_000, 200),
        duration=num("BENCH_DURATION", 10, 1),
        connections=num("BENCH_CONNECTIONS", 64, 64),
        warmup=num("BENCH_WARMUP", 2, 0),
        rebuild_items=num("BENCH_REBUILD_ITEMS", 1_000_000, 2000),
        rebuild_batch=num("BENCH_REBUILD_BATCH", 5000, 500),
        admin_url=env("BENCH_DATABASE_URL") or "",  # "": see choose_servers
        redis_url=env("BENCH_REDIS_URL") or "",
        shared=shared.resolve(),
        results_dir=args.results_dir,
        server_cpu=cpus[0],
        load_cpu=cpus[1] if pinned else cpus[0],
        pinned=pinned,
    )


# --------------------------------------------------------------------------- servers

MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/13"
EMBEDDED_DATA = ROOT / ".data" / "bench"


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def choose_servers(cfg: Config) -> dict[str, str]:
    """Fill in the URLs the environment left unset: the machine's own server on its
    default port when one answers, else an embedded one, as `make run` would start
    (data in .data/bench; stopped when this process exits). What was picked goes into
    the JSON: the servers' speed is part of the figures."""
    picked = {"postgres": "BENCH_DATABASE_URL", "redis": "BENCH_REDIS_URL"}
    if not cfg.admin_url and _answers("127.0.0.1", 5432):
        cfg.admin_url, picked["postgres"] = MACHINE_PG, "127.0.0.1:5432"
    elif not cfg.admin_url:
        from app.infrastructure.embedded import start_postgres

        cfg.admin_url, picked["postgres"] = start_postgres(EMBEDDED_DATA), "embedded"
    if not cfg.redis_url and _answers("127.0.0.1", 6379):
        cfg.redis_url, picked["redis"] = MACHINE_REDIS, "127.0.0.1:6379"
    elif not cfg.redis_url:
        from app.infrastructure.embedded import EmbeddedRedis

        redis_server = EmbeddedRedis(EMBEDDED_DATA, persistent=False)
        cfg.redis_url, picked["redis"] = redis_server.start(), "embedded"
        atexit.register(redis_server.stop)
    return picked


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process this run starts, each in its own session; all are stopped at exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its children
                proc.wait()
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int, cfg: Config) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cfg.pinned else []


def wait_http(url: str, proc: subprocess.Popen[bytes], procs: Processes, name: str,
              timeout: float = 60.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout}s:\n{procs.log_tail(name)}")


RESULT = re.compile(
    r"RESULT rps=(?P<rps>[\d.]+) p50_ms=(?P<p50>[\d.]+) p99_ms=(?P<p99>[\d.]+) "
    r"errors=(?P<errors>\d+) requests=(?P<requests>\d+)"
)


def wrk(
    cfg: Config,
    base: str,
    mode: str,
    duration: int | None = None,
    *,
    prefix: str = ITEMS,
    ids_file: Path | None = None,
    paths: list[str] | None = None,
) -> dict[str, Any]:
    """One wrk run (one thread, keep-alive, cfg.connections) pinned to the load CPU."""
    seconds = duration if duration is not None else cfg.duration
    env = {**os.environ, "MODE": mode, "PREFIX": prefix, "PATHS": "|".join(paths or [])}
    if ids_file is not None:
        env["IDS_FILE"] = str(ids_file)
    cmd = [*pin(cfg.load_cpu, cfg), "wrk", "-t1", f"-c{cfg.connections}", f"-d{seconds}s",
           "--timeout", "5s", "-s", str(LOAD_LUA), base]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    found = RESULT.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"wrk {mode} failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    return {
        "rps": float(found["rps"]),
        "p50_ms": float(found["p50"]),
        "p99_ms": float(found["p99"]),
        "errors": int(found["errors"]),
        "requests": int(found["requests"]),
        "seconds": seconds,
        "connections": cfg.connections,
    }


# --------------------------------------------------------------------------- stores


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def plain_pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_admin(cfg: Config, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(plain_pg(cfg.admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def redis_drop(cfg: Config, patterns: list[str], keys: list[str]) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(cfg.redis_url)
    try:
        for start in range(0, len(keys), 5000):
            await r.unlink(*keys[start : start + 5000])
        for pattern in patterns:
            batch: list[bytes] = []
            async for key in r.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)
    finally:
        await r.aclose()


class Stores:
    """The databases and Redis key patterns this run made, removed at the end."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.databases: list[str] = []
        self.redis_patterns: list[str] = []
        self.redis_keys: list[str] = []

    def database(self, name: str) -> str:
        asyncio.run(pg_admin(self.cfg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(pg_admin(self.cfg, f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        return with_database(plain_pg(self.cfg.admin_url), name)

    def cleanup(self) -> None:
        for name in self.databases:
            try:
                asyncio.run(pg_admin(self.cfg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                say(f"note: could not drop database {name}: {exc}")
        try:
            asyncio.run(redis_drop(self.cfg, self.redis_patterns, self.redis_keys))
        except Exception as exc:  # noqa: BLE001
            say(f"note: could not remove Redis keys {self.redis_patterns}: {exc}")


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


# --------------------------------------------------------------------------- the service


@contextlib.contextmanager
def open_ended_wrk(cfg: Config, base: str, env: dict[str, str], seconds: int, timeout: str
                   ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """wrk pinned to the load CPU for a load that ends when the caller says so (its script
    reports progress in files): on leaving, wrk is interrupted (it would sleep out its
    duration) or, failing that, killed."""
    cmd = [*pin(cfg.load_cpu, cfg), "wrk", "-t1", f"-c{cfg.connections}", f"-d{seconds}s",
           "--timeout", timeout, "-s", str(LOAD_LUA), base]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield proc
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def seed_api(cfg: Config, base: str, n: int, ids_out: Path) -> float:
    """POST n items through the API with wrk (64 connections, load CPU); their ids, from the
    Location headers, go to ids_out. Returns the seconds it took."""
    env = {**os.environ, "MODE": "seed", "PREFIX": ITEMS, "SEED_COUNT": str(n),
           "IDS_OUT": str(ids_out)}  # fmt: skip
    began = time.monotonic()
    with open_ended_wrk(cfg, base, env, 3600, "10s") as proc:
        shown = 0
        while True:
            time.sleep(0.2)
            have = ids_out.read_bytes().count(b"\n") if ids_out.exists() else 0
            if have >= n:
                break
            if have >= shown + max(n // 10, 1):
                shown = have
                say(f"  seeded {have}/{n}")
            if proc.poll() is not None:
                raise RuntimeError(f"wrk stopped seeding at {have}/{n}")
            if time.monotonic() - began > 3600:
                raise RuntimeError(f"seeding timed out at {have}/{n}")
    return time.monotonic() - began


def warm_views(cfg: Config, base: str, ids_file: Path, within: float = 600.0) -> float:
    """GET every id once, in order (wrk, 64 connections, load CPU): the steady state of a
    long-running service, whose view cache holds every view it was asked for (100,000
    views take about 40 MiB of the default 64). Random reads for a few seconds leave most
    ids unread: a 2 s warm-up and a 10 s run at ~9k rps read about 60% of 100,000 ids, so
    the run measured mostly first reads. Returns the seconds it took."""
    done = ids_file.with_suffix(".warm")
    done.unlink(missing_ok=True)
    env = {**os.environ, "MODE": "sweep", "PREFIX": ITEMS, "IDS_FILE": str(ids_file),
           "SWEEP_DONE": str(done)}  # fmt: skip
    began = time.monotonic()
    with open_ended_wrk(cfg, base, env, int(within), "5s") as proc:
        while not done.exists():
            if proc.poll() is not None:
                raise RuntimeError("wrk stopped before every id was read once")
            time.sleep(0.1)
    return time.monotonic() - began


def view_cache_stats(base: str) -> dict[str, Any]:
    """The service's own view cache counters (GET /api/v1/admin/projection)."""
    with urllib.request.urlopen(base + "/api/v1/admin/projection", timeout=10) as r:
        stats: dict[str, Any] = json.loads(r.read())["view_cache"]
    return stats


async def wait_projected(base: str, n: int, within: float = 600.0) -> None:
    import httpx

    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while True:
            r = await client.get(ITEMS, params={"limit": 1})
            if r.status_code == 200 and r.json()["total"] >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"projection did not reach {n} items: {r.status_code} {r.text}")
            await asyncio.sleep(0.2)


async def mix_with_lag(cfg: Config, base: str, prefix: str, database_url: str, ids_file: Path
                       ) -> tuple[dict[str, Any], list[float]]:  # fmt: skip
    """The 95/5 mix, and the projection lag of every write it made: from the database's
    clock at the event's INSERT (`recorded_at`: the write transaction's last statement,
    one round trip before its COMMIT) to the moment this driver received the checkpoint
    notice covering it, which the projector publishes in the same Lua script that writes
    the view (so: visible in Redis). In milliseconds."""
    import asyncpg
    from redis.asyncio import Redis

    from app.infrastructure.redis_keys import KeyLayout

    layout = KeyLayout(prefix, int(os.environ.get("PROJECTION_PARTITIONS", "1")))
    conn = await asyncpg.connect(database_url)
    r = Redis.from_url(cfg.redis_url)
    seen: list[tuple[float, int, int]] = []  # (arrival, partition, checkpoint)
    stop = asyncio.Event()

    async def listen() -> None:
        while not stop.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is not None:
                at = time.time()
                data = msg["data"]
                text = data.decode() if isinstance(data, bytes) else str(data)
                # A ChangeNotice: "<partition>:<checkpoint>:<generation>:<ids>".
                part, cp = text.split(":", 2)[:2]
                seen.append((at, int(part), int(cp)))

    def reached(part: int) -> int:
        return max((cp for _, p, cp in seen if p == part), default=0)

    try:
        async with r.pubsub() as pubsub:
            await pubsub.subscribe(layout.checkpoint_channel)
            before = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
            listener = asyncio.create_task(listen())
            try:
                result = await asyncio.to_thread(wrk, cfg, base, "mix", ids_file=ids_file)
                rows = await conn.fetch(
                    "SELECT position, item_id, recorded_at FROM events WHERE position > $1"
                    " ORDER BY position",
                    before,
                )
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


def bench_service(cfg: Config, procs: Processes, stores: Stores, tmp: Path
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:  # fmt: skip
    database_url = stores.database(f"items_bench_{cfg.run_id}")
    prefix = cfg.prefix
    stores.redis_patterns.append(f"{{{prefix}:*")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say(f"service: items serve on {base}, CPU {cfg.server_cpu}; wrk on CPU {cfg.load_cpu}")
    proc = procs.start("service", [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve"],
                       service_env(cfg, database_url, prefix, port))  # fmt: skip
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
    # of every id, the steady state the targets are judged on (see warm_views).
    counted("get_by_id_cold", ids_file=ids_file)
    warm_seconds = warm_views(cfg, base, ids_file)
    say(f"  read every id once in {warm_seconds:.1f}s: the view cache is warm")
    counted("get_by_id", ids_file=ids_file)
    out["get_by_id"]["view_cache"]["warm_up"] = (
        f"every id read once, in order, before this run ({warm_seconds:.1f}s)"
    )
    run("list_20", "list", paths=[f"{ITEMS}?limit=20"])
    run("list_100", "list", paths=[f"{ITEMS}?limit=100"])
    run("list_20_tag", "list", paths=[f"{ITEMS}?limit=20&tag={t}" for t in TAGS])
    run("list_100_tag", "list", paths=[f"{ITEMS}?limit=100&tag={t}" for t in TAGS])
    run("post", "post")
    run("patch", "patch", ids_file=ids_file)
    mix, lags = asyncio.run(mix_with_lag(cfg, base, prefix, database_url, ids_file))
    out["mix_95_5"] = mix
    show("mix_95_5", mix)
    if not lags:
        raise RuntimeError("the projection-lag probe took no sample")
    lag = {
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags),
        "samples": len(lags),
        "measured": "every write of mix_95_5: from the database clock at its event's "
        "INSERT (events.recorded_at; the transaction's last statement before COMMIT) to "
        "this driver receiving the checkpoint notice that covers it, which the projector "
        "publishes from the Lua script that writes the view",
    }
    say(f"  projection lag under mix_95_5: p50 {lag['p50_ms']:.1f} ms, "
        f"p99 {lag['p99_ms']:.1f} ms ({len(lags)} samples)")  # fmt: skip
    procs.stop(proc)
    if proc.returncode not in (0, -signal.SIGTERM):
        say(f"note: service exited with {proc.returncode}:\n{procs.log_tail('service')}")
    return out, lag


STEADY_STATE_NOTE = (
    "get_by_id is the steady state of a long-running service: it runs after every id was "
    "read once, so the in-process view cache holds every view (its hit rate is in the "
    "JSON); get_by_id_cold is the same load right after start (a short random warm-up, "
    "most reads are first reads). The targets judge get_by_id."
)


def show(name: str, m: dict[str, Any]) -> None:
    say(f"  {name:<22} {m['rps']:>10,.0f} rps  p50 {m['p50_ms']:8.2f} ms  "
        f"p99 {m['p99_ms']:8.2f} ms  errors {m['errors']}")  # fmt: skip


# --------------------------------------------------------------------------- references


def reference_site(cfg: Config) -> Path:
    """sqlmodel (the peer's one package the service lacks) in a --target dir, once."""
    marker = REF_SITE / ".installed"
    if marker.exists():
        return REF_SITE
    shutil.rmtree(REF_SITE, ignore_errors=True)
    REF_SITE.mkdir(parents=True)
    pips = [[sys.executable, "-m", "pip"], [str(ROOT / ".tools/bin/python"), "-m", "pip"],
            ["python3", "-m", "pip"]]  # fmt: skip
    errors = []
    for pip in pips:
        cmd = [*pip, "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--target", str(REF_SITE), "sqlmodel"]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except OSError as exc:
            errors.append(f"{pip[0]}: {exc}")
            continue
        if done.returncode == 0:
            marker.write_text(" ".join(cmd) + "\n")
            return REF_SITE
        errors.append(f"{' '.join(pip)}: {done.stderr.strip()[-300:]}")
    raise RuntimeError("could not install sqlmodel for the peer: " + " | ".join(errors))


def ref_env(cfg: Config, site: Path, extra: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def ref_server(cfg: Config, procs: Processes, name: str, app: str, env: dict[str, str]
               ) -> tuple[subprocess.Popen[bytes], str]:  # fmt: skip
    port = free_port()
    cmd = [*pin(cfg.server_cpu, cfg), sys.executable, "-m", "uvicorn", app,
           "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
           "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]  # fmt: skip
    proc = procs.start(name, cmd, env, cwd=cfg.shared)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/", proc, procs, name, timeout=60)
    return proc, base


async def seed_ceiling(cfg: Config, ids: list[str]) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(cfg.redis_url)
    try:
        for start in range(0, len(ids), 5000):
            pipe = r.pipeline(transaction=False)
            for i in ids[start : start + 5000]:
                view = {"id": i, "name": "item " + i[:8], "description": "a thing",
                        "price": "9.99", "version": 1}  # fmt: skip
                pipe.set("ceil:item:" + i, json.dumps(view))
            await pipe.execute()
    finally:
        await r.aclose()


async def seed_peer(database_url: str, n: int) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = [(f"item {k}", "a thing", 9.99) for k in range(n)]
        await conn.copy_records_to_table(
            "item", records=rows, columns=["name", "description", "price"]
        )
        return [str(r["id"]) for r in await conn.fetch("SELECT id FROM item")]
    finally:
        await conn.close()


def bench_references(cfg: Config, procs: Processes, stores: Stores, tmp: Path
                     ) -> dict[str, dict[str, Any]]:  # fmt: skip
    site = reference_site(cfg)
    out: dict[str, dict[str, Any]] = {}

    def run(name: str, base: str, mode: str, **kw: Any) -> None:
        out[name] = wrk(cfg, base, mode, **kw)
        show(name, out[name])

    # The ceilings: constant bytes, and one redis-py GET of stored JSON bytes.
    import uuid

    ceil_ids = [str(uuid.uuid4()) for _ in range(cfg.items)]
    # ceiling.py's keys have a fixed prefix: remove exactly ours (a concurrent run has others)
    stores.redis_keys.extend("ceil:item:" + i for i in ceil_ids)
    asyncio.run(seed_ceiling(cfg, ceil_ids))
    ceil_file = tmp / "ceil_ids"
    ceil_file.write_text("\n".join(ceil_ids))
    say(f"references: ceiling.py (from {cfg.shared})")
    proc, base = ref_server(cfg, procs, "ceiling", "ceiling:app",
                            ref_env(cfg, site, {"CEIL_REDIS_URL": cfg.redis_url}))  # fmt: skip
    try:
        if cfg.warmup:
            wrk(cfg, base, "get", cfg.warmup, prefix="/bare/", ids_file=ceil_file)
        run("ref_bare_http", base, "get", prefix="/bare/", ids_file=ceil_file)
        run("ref_redis_get", base, "get", prefix="/redis/", ids_file=ceil_file)
    finally:
        procs.stop(proc)

    # The seed-style peer: FastAPI + SQLModel repository over PostgreSQL.
    peer_db = stores.database(f"items_bench_peer_{cfg.run_id}")
    peer_url = peer_db.replace("postgresql://", "postgresql+asyncpg://", 1)
    say("references: peer_seed.py (FastAPI + SQLModel over PostgreSQL)")
    proc, base = ref_server(cfg, procs, "peer", "peer_seed:app",
                            ref_env(cfg, site, {"PEER_DATABASE_URL": peer_url}))  # fmt: skip
    try:
        peer_ids = asyncio.run(seed_peer(peer_db, cfg.items))
        peer_file = tmp / "peer_ids"
        peer_file.write_text("\n".join(peer_ids))
        if cfg.warmup:
            wrk(cfg, base, "get", cfg.warmup, ids_file=peer_file)
        run("ref_peer_get_by_id", base, "get", ids_file=peer_file)
        run("ref_peer_list_20", base, "list", paths=[f"{ITEMS}?limit=20"])
        run("ref_peer_list_100", base, "list", paths=[f"{ITEMS}?limit=100"])
        run("ref_peer_post", base, "post")
        run("ref_peer_patch", base, "patch", ids_file=peer_file)
        run("ref_peer_mix_95_5", base, "mix", ids_file=peer_file)
    finally:
        procs.stop(proc)
    return out


# The service's measurement -> the peer's measurement of the same request. The peer has no
# tags, so a tag-filtered page is set against its plain page of the same size.
PEER_OF = {
    "get_by_id": "ref_peer_get_by_id",
    "get_by_id_cold": "ref_peer_get_by_id",
    "list_20": "ref_peer_list_20",
    "list_100": "ref_peer_list_100",
    "list_20_tag": "ref_peer_list_20",
    "list_100_tag": "ref_peer_list_100",
    "post": "ref_peer_post",
    "patch": "ref_peer_patch",
    "mix_95_5": "ref_peer_mix_95_5",
}


# --------------------------------------------------------------------------- rebuild

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


async def seed_rebuild(cfg: Config, database_url: str, prefix: str) -> int:
    """Items and their creation events in one statement; then the live generation is
    marked as caught up with them, as if a projector had applied them all."""
    import asyncpg
    from redis.asyncio import Redis

    from app.infrastructure.redis_keys import KeyLayout

    conn = await asyncpg.connect(database_url, command_timeout=None)
    try:
        await conn.execute(SEED_SQL, cfg.rebuild_items)
        await conn.execute("ANALYZE items")
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    finally:
        await conn.close()
    layout = KeyLayout(prefix, 1)
    r = Redis.from_url(cfg.redis_url)
    try:
        await r.set(layout.gen(0), "seed")
        await r.set(layout.base(0, "seed") + "cp", head)
    finally:
        await r.aclose()
    return head


def bench_rebuild(cfg: Config, procs: Processes, stores: Stores) -> dict[str, Any]:
    database_url = stores.database(f"items_bench_rb_{cfg.run_id}")
    prefix = f"{cfg.prefix}_rb"
    stores.redis_patterns.append(f"{{{prefix}:*")
    env = service_env(cfg, database_url, prefix, 8000)  # PORT unused here
    env["PROJECTOR_IN_PROCESS"] = "false"
    env["LOG_LEVEL"] = "info"
    done = subprocess.run([ITEMS_CMD, "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"items migrate failed: {done.stderr[-2000:]}")
    say(f"rebuild: seeding {cfg.rebuild_items:,} items straight into PostgreSQL")
    began = time.monotonic()
    asyncio.run(seed_rebuild(cfg, database_url, prefix))
    say(f"  seeded in {time.monotonic() - began:.1f}s; "
        f"items rebuild --batch-size {cfg.rebuild_batch} on CPU {cfg.server_cpu}")  # fmt: skip
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "rebuild", "--batch-size", str(cfg.rebuild_batch)]
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        cmd = [str(gnu_time), "-v", *cmd]
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
        "batch_size": cfg.rebuild_batch,
        "line": found.group(0),
    }
    say(
        f"  rebuild: {result['items']:,} items in {result['seconds']:.1f}s, "
        f"{result['items_per_s']:,.0f} items/s, peak RSS {result['max_rss_mb']:.0f} MiB"
    )
    return result


# --------------------------------------------------------------------------- report


def machine(cfg: Config) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": (wrk_version.stdout + wrk_version.stderr).strip().splitlines()[0:1],
        "server_cpu": cfg.server_cpu,
        "load_cpu": cfg.load_cpu,
        "pinned": cfg.pinned,
    }


def ratios(results: dict[str, Any]) -> None:
    ms: dict[str, dict[str, Any]] = results["measurements"]
    bare = ms.get("ref_bare_http", {}).get("rps")
    redis_ceiling = ms.get("ref_redis_get", {}).get("rps")
    for name, m in ms.items():
        if name.startswith("ref_"):
            continue
        m["ratio_bare"] = m["rps"] / bare if bare else None
        m["ratio_redis"] = m["rps"] / redis_ceiling if redis_ceiling else None
        peer = ms.get(PEER_OF.get(name, ""), {}).get("rps")
        m["peer"] = PEER_OF.get(name) if peer else None
        m["ratio_peer"] = m["rps"] / peer if peer else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's targets, each judged on this run's own figures (None: not measured)."""
    ms: dict[str, dict[str, Any]] = results["measurements"]
    lag = results.get("projection_lag") or {}
    rb = results.get("rebuild") or {}

    def get(name: str, key: str) -> float | None:
        value = ms.get(name, {}).get(key)
        return float(value) if value is not None else None

    checks: list[tuple[str, float | None, str, float]] = [
        ("GET by id / Redis GET ceiling", get("get_by_id", "ratio_redis"), ">=", 0.9),
        ("GET by id / seed peer GET", get("get_by_id", "ratio_peer"), ">=", 6.0),
        ("GET by id p99 ms", get("get_by_id", "p99_ms"), "<", 20.0),
        ("GET list 20 / Redis GET ceiling", get("list_20", "ratio_redis"), ">=", 0.5),
        ("POST / seed peer POST", get("post", "ratio_peer"), ">=", 1.0),
        ("projection lag p99 ms", lag.get("p99_ms"), "<", 50.0),
        ("rebuild items/s", rb.get("items_per_s"), ">=", 30_000.0),
    ]
    if rb.get("items", 0) >= 1_000_000:
        checks.append(("rebuild of 1,000,000 items, seconds", rb.get("seconds"), "<", 60.0))
    out = []
    for name, value, op, bound in checks:
        met = None if value is None else (value >= bound if op == ">=" else value < bound)
        out.append({"target": f"{name} {op} {bound:g}", "value": value, "met": met})
    return out


def table(results: dict[str, Any]) -> str:
    def ratio(v: float | None) -> str:
        return f"{v:.2f}x" if v is not None else "-"

    head = (f"{'name':<20} {'rps':>10} {'p50_ms':>9} {'p99_ms':>9} {'errors':>7} "
            f"{'/redis':>8} {'/peer':>8}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, m in results["measurements"].items():
        lines.append(
            f"{name:<20} {m['rps']:>10,.0f} {m['p50_ms']:>9.2f} {m['p99_ms']:>9.2f} "
            f"{m['errors']:>7} {ratio(m.get('ratio_redis')):>8} {ratio(m.get('ratio_peer')):>8}"
        )
    lag = results.get("projection_lag")
    if lag:
        lines.append(f"projection lag under mix_95_5: p50 {lag['p50_ms']:.1f} ms, "
                     f"p99 {lag['p99_ms']:.1f} ms ({lag['samples']} samples)")  # fmt: skip
    rb = results.get("rebuild")
    if rb:
        lines.append(
            f"items rebuild: {rb['items']:,} items in {rb['seconds']:.1f}s, "
            f"{rb['items_per_s']:,.0f} items/s, peak RSS {rb['max_rss_mb']:.0f} MiB"
        )
    for check in results.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        value = "-" if check["value"] is None else f"{check['value']:,.2f}"
        lines.append(f"target: {check['target']:<45} {value:>12}  {verdict}")
    for note in results["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write(results: dict[str, Any], cfg: Config) -> Path:
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = cfg.results_dir / f"bench-{stamp}{'-smoke' if cfg.smoke else ''}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    (cfg.results_dir / "latest.json").write_text(text)
    return path


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through `finally`, so every process gets stopped."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    cfg = config(argv)
    if shutil.which("wrk") is None:
        say("bench: wrk is not on PATH (Debian package `wrk`)")
        return 2
    if cfg.pinned and shutil.which("taskset") is None:
        say("bench: taskset is not on PATH (Debian package `util-linux`)")
        return 2
    # Before the pin below: embedded servers started here would inherit it.
    servers = choose_servers(cfg)
    say(f"servers: PostgreSQL {servers['postgres']}, Redis {servers['redis']}")
    if cfg.pinned:
        os.sched_setaffinity(0, {cfg.load_cpu})  # this driver shares the load CPU with wrk
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "smoke": cfg.smoke,
        "machine": machine(cfg),
        "servers": servers,
        "settings": {
            "items": cfg.items,
            "duration_s": cfg.duration,
            "connections": cfg.connections,
            "rebuild_items": cfg.rebuild_items,
            "rebuild_batch": cfg.rebuild_batch,
            "references": str(cfg.shared),
        },
        "measurements": {},
        "notes": [],
    }
    if not cfg.pinned:
        results["notes"].append("one CPU only: server and load are not pinned apart")
    failed = False
    with terminate_as_exit(), tempfile.TemporaryDirectory(prefix="items-bench-") as tmp_name:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        logs.mkdir()
        procs, stores = Processes(logs), Stores(cfg)
        try:
            service, lag = bench_service(cfg, procs, stores, tmp)
            results["measurements"].update(service)
            results["notes"].append(STEADY_STATE_NOTE)
            results["projection_lag"] = lag
            if (cfg.shared / "ceiling.py").exists() and (cfg.shared / "peer_seed.py").exists():
                results["measurements"].update(bench_references(cfg, procs, stores, tmp))
            else:
                note = f"references skipped: {cfg.shared} not found (ratios left empty)"
                results["notes"].append(note)
                say(f"note: {note}")
            results["rebuild"] = bench_rebuild(cfg, procs, stores)
        except Exception as exc:  # noqa: BLE001 - reported, partial results kept
            failed = True
            results["error"] = f"{type(exc).__name__}: {exc}"
            say(f"bench failed: {results['error']}")
            for name, _ in procs.running:
                say(f"--- last lines of {name}:\n{procs.log_tail(name)}")
        finally:
            procs.stop_all()
            stores.cleanup()
    results["finished"] = datetime.now(UTC).isoformat()
    ratios(results)
    results["targets"] = targets(results)
    path = write(results, cfg)
    say("")
    say(table(results))
    say(f"\nwritten to {path} and {cfg.results_dir / 'latest.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
