"""wrk, the bench's one load generator, driven by bench/load.lua: timed runs that report
rps and latency, and open-ended runs that end when the driver says so (seeding items
through the API, reading every id once to warm the views). wrk is pinned to the load
CPU, apart from the server it loads."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import ITEMS, LOAD_LUA, Config
from .console import say
from .processes import pin

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
    prefer: str = "",
    keyed: bool = False,
) -> dict[str, Any]:
    """One wrk run (one thread, keep-alive, cfg.connections) pinned to the load CPU;
    `prefer`: the Prefer header of its writes; `keyed`: an Idempotency-Key on each POST."""
    seconds = duration if duration is not None else cfg.duration
    env = {**os.environ, "MODE": mode, "PREFIX": prefix, "PATHS": "|".join(paths or []),
           "PREFER": prefer, "KEYED": "1" if keyed else ""}  # fmt: skip
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


def warm_views(cfg: Config, base: str, ids_file: Path, within: float = 600.0, rounds: int = 1
               ) -> float:  # fmt: skip
    """GET every id once, in order (wrk, 64 connections, load CPU): the steady state of a
    long-running service, whose view cache holds every view it was asked for (100,000
    views take about 40 MiB of the default 64). Random reads for a few seconds leave most
    ids unread: a 2 s warm-up and a 10 s run at ~9k rps read about 60% of 100,000 ids, so
    the run measured mostly first reads. `rounds`: read every id that many times (API
    workers each have their own cache, and each read reaches one of them). Returns the
    seconds it took."""
    done = ids_file.with_suffix(".warm")
    done.unlink(missing_ok=True)
    env = {**os.environ, "MODE": "sweep", "PREFIX": ITEMS, "IDS_FILE": str(ids_file),
           "SWEEP_DONE": str(done), "SWEEP_ROUNDS": str(rounds)}  # fmt: skip
    began = time.monotonic()
    with open_ended_wrk(cfg, base, env, int(within), "5s") as proc:
        while not done.exists():
            if proc.poll() is not None:
                raise RuntimeError("wrk stopped before every id was read once")
            time.sleep(0.1)
    return time.monotonic() - began
