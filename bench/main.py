"""One run of the bench, in order: settings and servers, the pin, the service, pgbench's
write references, the ../shared/bench references, the rebuild, the same loads on a small
and a large store, the scale part (BENCH_SCALE=0 skips it), then the report.
Whatever fails, the processes are stopped, the databases and keys removed, and the
partial results still printed and written."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import report
from .config import config
from .console import say
from .grpc_bench import NOTE as GRPC_NOTE
from .metrics_cost import NOTE as METRICS_NOTE
from .on_granian import server_summary
from .pgbench import bench_pgbench
from .processes import Processes, terminate_as_exit
from .rebuild import bench_rebuild
from .references import bench_references
from .scale import bench_scale
from .servers import choose_servers
from .service import STEADY_STATE_NOTE, bench_service
from .sizes import bench_sizes
from .stores import Stores


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
        "machine": report.machine(cfg),
        "servers": servers,
        "settings": {
            "items": cfg.items,
            "duration_s": cfg.duration,
            "connections": cfg.connections,
            "rebuild_items": cfg.rebuild_items,
            "rebuild_batch": cfg.rebuild_batch,
            "scale": cfg.scale,
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
            results["notes"] += [STEADY_STATE_NOTE, GRPC_NOTE, METRICS_NOTE]
            results["projection_lag"] = lag
            results["measurements"].update(bench_pgbench(cfg, stores, tmp))
            if (cfg.shared / "ceiling.py").exists() and (cfg.shared / "peer_seed.py").exists():
                results["measurements"].update(bench_references(cfg, procs, stores, tmp))
            else:
                note = f"references skipped: {cfg.shared} not found (ratios left empty)"
                results["notes"].append(note)
                say(f"note: {note}")
            results["rebuild"], rb_url, rb_prefix = bench_rebuild(cfg, procs, stores)
            results["sizes"] = bench_sizes(cfg, procs, stores, tmp, rb_url, rb_prefix)
            if cfg.scale:
                results["scale"] = {}  # filled as it goes: a failure keeps what came first
                bench_scale(cfg, procs, stores, tmp, results["scale"])
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
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    report.ratios(results)
    results["http_servers"] = server_summary(results["measurements"])  # granian / uvicorn
    results["targets"] = report.targets(results)
    path = report.write(results, cfg)
    say("")
    say(report.table(results))
    say(f"\nwritten to {path} and {cfg.results_dir / 'latest.json'}")
    return 1 if failed else 0
