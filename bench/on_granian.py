"""The HTTP server itself (issue 20): granian (Rust, its ASGI interface, one worker,
uvloop) beside uvicorn, the server `items serve` runs. In the same run, on the same
pinned CPU and wrk loads: the bare ceiling (ceiling.py's constant bytes) on granian,
called from references.py beside uvicorn's, and the service's own app factory on
granian beside `items serve`, fresh processes in alternating rounds on the main
service's database and prefix once its own process has stopped, each view cache warmed
as the main get_by_id's is. The projector runs as under `items serve` with one worker:
the app's lifespan starts its child, in granian's worker.

Only measured here: `items serve` stays on uvicorn until granian wins by more than the
noise and keeps every guarantee (README, Performance)."""

from __future__ import annotations

import statistics
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .config import ITEMS, ITEMS_CMD, ROOT, VENV_BIN, Config
from .console import say, show
from .loads import warm_views, wrk
from .processes import Processes, free_port, pin, serving

GRANIAN = str(VENV_BIN / "granian")
SERVICE_APP = "app.api.app:serving_app"  # the factory `items serve` hands uvicorn
# The service's rows run again on granian; each is set against its uvicorn row.
LOADS = ("get_by_id", "list_20", "post")
SUFFIX = "_granian"


def load_args(ids_file: Path) -> dict[str, dict[str, Any]]:
    """Each of LOADS as service.py runs it."""
    return {
        "get_by_id": {"mode": "get", "ids_file": ids_file},
        "list_20": {"mode": "list", "paths": [f"{ITEMS}?limit=20"]},
        "post": {"mode": "post"},
    }


def granian_cmd(cfg: Config, app: str, port: int, *, factory: bool) -> list[str]:
    """granian as uvicorn is run here: one worker, uvloop, no websockets, no access log."""
    cmd = [*pin(cfg.server_cpu, cfg), GRANIAN, "--interface", "asgi", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--loop", "uvloop", "--no-ws",
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return [*cmd, *(["--factory"] if factory else []), app]


def start(cfg: Config, procs: Processes, name: str, app: str, env: dict[str, str], *,
          factory: bool, ready: str, cwd: Path = ROOT) -> AbstractContextManager[str]:  # fmt: skip
    """`app` on granian on a free port: a context yielding its base URL (processes.serving)."""
    port = free_port()
    cmd = granian_cmd(cfg, app, port, factory=factory)
    return serving(procs, name, cmd, env, f"http://127.0.0.1:{port}", ready, cwd)


def one_round(cfg: Config, procs: Processes, env: dict[str, str], ids_file: Path,
              server: str, n: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """A fresh service on `server`, its view cache warmed, then each of LOADS."""
    name = f"service-{server}-{n}"
    if server == "granian":
        served = start(cfg, procs, name, SERVICE_APP, env, factory=True, ready="/readyz")
    else:
        port = free_port()
        cmd = [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "serve"]
        served = serving(procs, name, cmd, {**env, "PORT": str(port)}, f"http://127.0.0.1:{port}")
    with served as base:
        warm_views(cfg, base, ids_file)
        return {load: wrk(cfg, base, **args) for load, args in load_args(ids_file).items()}


def bench_servers(cfg: Config, procs: Processes, env: dict[str, str], ids_file: Path
                  ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """GET by id (steady state), list 20 and POST on uvicorn (`items serve`) and on
    granian, fresh processes in alternating rounds (uvicorn, granian, uvicorn, ...; smoke:
    one each), so a drift of the machine falls on both; each row is the mean of its
    rounds, with every round kept (their spread is the noise the verdict is set against)."""
    rounds = 1 if cfg.smoke else 2
    say(f"servers: the service on uvicorn and on granian, {rounds} alternating round(s)")
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {"uvicorn": [], "granian": []}
    for n in range(rounds):
        for server, done in runs.items():
            done.append(one_round(cfg, procs, env, ids_file, server, n))
    out: dict[str, dict[str, Any]] = {}
    for server, done in runs.items():
        for load in LOADS:
            row: dict[str, Any] = {
                key: statistics.fmean(r[load][key] for r in done)
                for key in ("rps", "p50_ms", "p99_ms")
            }
            row |= {"errors": sum(r[load]["errors"] for r in done),
                    "runs": [r[load] for r in done]}  # fmt: skip
            out[f"{load}_{server}"] = row
            show(f"{load}_{server}", row)
    return out


def spread(row: dict[str, Any]) -> float | None:
    """The fastest of a row's rounds over its slowest (None: one round)."""
    rates = [r["rps"] for r in row.get("runs") or []]
    return max(rates) / min(rates) if len(rates) > 1 and min(rates) > 0 else None


def server_summary(ms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """granian / uvicorn for the bare ceiling and each of the service's paired loads, with
    the rounds' own spread (max / min of one server's rounds, the worse of the two)."""
    pairs = {"bare_http": ("ref_bare_http", "ref_bare_http" + SUFFIX)}
    pairs |= {load: (load + "_uvicorn", load + SUFFIX) for load in LOADS}
    out: dict[str, Any] = {}
    for label, (uv, gr) in pairs.items():
        a, b = ms.get(uv, {}), ms.get(gr, {})
        if not a.get("rps") or not b.get("rps"):
            continue
        spreads = [s for s in (spread(a), spread(b)) if s is not None]
        out[label] = {"uvicorn_rps": a["rps"], "granian_rps": b["rps"],
                      "granian_over_uvicorn": b["rps"] / a["rps"],
                      "noise": max(spreads) if spreads else None}  # fmt: skip
    return out
