"""The run's settings, read once: the BENCH_* environment variables, the command line
(--smoke, --results-dir), the CPUs the service and the load are pinned to, and the paths
the other modules use. Every other module takes them from one Config."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __doc__ as OVERVIEW

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOAD_LUA = BENCH / "load.lua"
REF_SITE = BENCH / ".venv-ref"
VENV_BIN = Path(sys.executable).parent
ITEMS_CMD = str(VENV_BIN / "items")
ITEMS = "/api/v1/items/"
TAGS = [f"t{i}" for i in range(10)]


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
    cpus: list[int]
    scale: bool
    scale_items: int
    scale_events: int
    scale_duration: int
    run_id: str = field(default_factory=lambda: f"{int(time.time())}_{secrets.token_hex(3)}")

    @property
    def prefix(self) -> str:
        return f"bench_{self.run_id}"


def config(argv: list[str] | None) -> Config:
    ap = argparse.ArgumentParser(description=OVERVIEW.split("\n")[0] if OVERVIEW else None)
    ap.add_argument("--smoke", action="store_true", help="a few seconds of every part")
    ap.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = ap.parse_args(argv)
    env = os.environ.get

    def num(name: str, full: int, smoke: int) -> int:
        return int(env(name) or (smoke if args.smoke else full))

    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    shared = Path(env("BENCH_SHARED") or ROOT.parent / "shared" / "bench")
    items, duration = num("BENCH_ITEMS", 100_000, 200), num("BENCH_DURATION", 10, 1)
    return Config(
        smoke=args.smoke,
        items=items,
        duration=duration,
        connections=num("BENCH_CONNECTIONS", 64, 64),
        warmup=num("BENCH_WARMUP", 2, 0),
        rebuild_items=num("BENCH_REBUILD_ITEMS", 1_000_000, 2000),
        rebuild_batch=num("BENCH_REBUILD_BATCH", 5000, 500),
        admin_url=env("BENCH_DATABASE_URL") or "",  # "": see servers.choose_servers
        redis_url=env("BENCH_REDIS_URL") or "",
        shared=shared.resolve(),
        results_dir=args.results_dir,
        server_cpu=cpus[0],
        load_cpu=cpus[1] if pinned else cpus[0],
        pinned=pinned,
        cpus=cpus,
        scale=env("BENCH_SCALE", "1") != "0",
        scale_items=num("BENCH_SCALE_ITEMS", min(items, 20_000), min(items, 20_000)),
        scale_events=num("BENCH_SCALE_EVENTS", 20_000, 500),
        scale_duration=num("BENCH_SCALE_DURATION", max(3, duration // 2), 1),
    )
