"""The references of ../shared/bench, measured in the same run with the same wrk loads as
the service: ceiling.py (the bare HTTP ceiling and the one-redis-py-GET ceiling) and
peer_seed.py (the seed-style FastAPI + SQLModel peer over PostgreSQL). They run on this
repo's interpreter; sqlmodel, which only the peer needs, is installed in bench/.venv-ref."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.settings import sqlalchemy_url

from . import on_granian
from .config import ITEMS, REF_SITE, ROOT, Config
from .console import say, show
from .loads import wrk
from .processes import Processes, free_port, pin, wait_http
from .stores import Stores


def reference_site() -> Path:
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


def ref_env(site: Path, extra: dict[str, str]) -> dict[str, str]:
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
    site = reference_site()
    out: dict[str, dict[str, Any]] = {}

    def run(name: str, base: str, mode: str, **kw: Any) -> None:
        out[name] = wrk(cfg, base, mode, **kw)
        show(name, out[name])

    # The ceilings: constant bytes, and one redis-py GET of stored JSON bytes.
    ceil_ids = [str(uuid.uuid4()) for _ in range(cfg.items)]
    # ceiling.py's keys have a fixed prefix: remove exactly ours (a concurrent run has others)
    stores.redis_keys.extend("ceil:item:" + i for i in ceil_ids)
    asyncio.run(seed_ceiling(cfg, ceil_ids))
    ceil_file = tmp / "ceil_ids"
    ceil_file.write_text("\n".join(ceil_ids))
    say(f"references: ceiling.py (from {cfg.shared})")
    proc, base = ref_server(cfg, procs, "ceiling", "ceiling:app",
                            ref_env(site, {"CEIL_REDIS_URL": cfg.redis_url}))  # fmt: skip
    try:
        if cfg.warmup:
            wrk(cfg, base, "get", cfg.warmup, prefix="/bare/", ids_file=ceil_file)
        run("ref_bare_http", base, "get", prefix="/bare/", ids_file=ceil_file)
        run("ref_redis_get", base, "get", prefix="/redis/", ids_file=ceil_file)
    finally:
        procs.stop(proc)
    # The same constant bytes on granian: whose ceiling is the server's (on_granian.py).
    say("references: ceiling.py on granian")
    with on_granian.start(cfg, procs, "ceiling-granian", "ceiling:app",
                          ref_env(site, {"CEIL_REDIS_URL": cfg.redis_url}),
                          factory=False, ready="/", cwd=cfg.shared) as base:  # fmt: skip
        if cfg.warmup:
            wrk(cfg, base, "get", cfg.warmup, prefix="/bare/", ids_file=ceil_file)
        run("ref_bare_http" + on_granian.SUFFIX, base, "get", prefix="/bare/", ids_file=ceil_file)

    # The seed-style peer: FastAPI + SQLModel repository over PostgreSQL.
    peer_db = stores.database(f"items_bench_peer_{cfg.run_id}")
    peer_url = sqlalchemy_url(peer_db)  # the peer connects through SQLAlchemy
    say("references: peer_seed.py (FastAPI + SQLModel over PostgreSQL)")
    proc, base = ref_server(cfg, procs, "peer", "peer_seed:app",
                            ref_env(site, {"PEER_DATABASE_URL": peer_url}))  # fmt: skip
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
