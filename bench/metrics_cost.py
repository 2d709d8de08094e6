"""What the metrics cost on the hot path (issue 17): GET by id, steady state, with
METRICS_ENABLED=false and =true, on the main service's database and prefix, once its own
process has stopped. Each run is a fresh `items serve` (pinned like the main one) whose
view cache is warmed by one read of every id, as the main get_by_id is; the runs
alternate off, on, off, on (smoke: one of each), so a drift of the machine during them
falls on both sides, and each side's figure is the mean of its runs."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .config import ITEMS_CMD, Config
from .console import say, show
from .loads import warm_views, wrk
from .processes import Processes, free_port, pin, serving

NOTE = (
    "get_by_id_metrics_off / _on: GET by id in the steady state with METRICS_ENABLED false "
    "and true (the default, as every other row), fresh `items serve` each, runs alternating "
    "off/on, each figure the mean of its runs (the JSON keeps every run)"
)


def one_run(cfg: Config, procs: Processes, env: dict[str, str], ids_file: Path,
            enabled: bool, n: int) -> dict[str, Any]:  # fmt: skip
    port = free_port()
    name = f"metrics-{'on' if enabled else 'off'}-{n}"
    run_env = {**env, "PORT": str(port), "METRICS_ENABLED": "true" if enabled else "false"}
    cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve"]
    with serving(procs, name, cmd, run_env, f"http://127.0.0.1:{port}") as base:
        warm_views(cfg, base, ids_file)
        return wrk(cfg, base, "get", ids_file=ids_file)


def metrics_cost(cfg: Config, procs: Processes, env: dict[str, str], ids_file: Path
                 ) -> dict[str, dict[str, Any]]:  # fmt: skip
    rounds = 1 if cfg.smoke else 2
    say(f"metrics cost: GET by id with METRICS_ENABLED off and on, {rounds} run(s) each")
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for n in range(rounds):
        for enabled in (False, True):
            runs[enabled].append(one_run(cfg, procs, env, ids_file, enabled, n))
    out = {}
    for enabled, done in runs.items():
        row: dict[str, Any] = {
            key: statistics.fmean(r[key] for r in done) for key in ("rps", "p50_ms", "p99_ms")
        }
        row |= {"errors": sum(r["errors"] for r in done), "runs": done}
        name = f"get_by_id_metrics_{'on' if enabled else 'off'}"
        out[name] = row
        show(name, row)
    return out
