"""gRPC GetItem in the service's run: `items grpc` on the run's database and Redis prefix
(its projector off: `items serve`'s projects), pinned to the server CPU as the API is,
loaded by bench/grpc_load.py pinned to the load CPU with as many concurrent calls as wrk
has connections."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .config import ITEMS_CMD, ROOT, Config
from .loads import RESULT
from .processes import Processes, free_port, pin

SERVICE = "items.v1.ItemsService"
NOTE = (
    "grpc_get_item is loaded by a Python asyncio client (bench/grpc_load.py; ghz is not "
    "available) on the load CPU, where wrk loads the REST and GraphQL rows: on a fast "
    "server that client may be what limits its rate"
)


def wait_serving(address: str, proc: subprocess.Popen[bytes], procs: Processes,
                 within: float = 90.0) -> None:  # fmt: skip
    deadline = time.monotonic() + within
    with grpc.insecure_channel(address) as channel:
        checks = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"items grpc exited:\n{procs.log_tail('grpc')}")
            try:
                found = checks.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
                if found.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"items grpc not SERVING within {within}s:\n{procs.log_tail('grpc')}")


def bench_grpc(cfg: Config, procs: Processes, env: dict[str, str], ids_file: Path
               ) -> dict[str, Any]:  # fmt: skip
    port = free_port()
    address = f"127.0.0.1:{port}"
    grpc_env = {**env, "GRPC_PORT": str(port), "PROJECTOR_IN_PROCESS": "false"}
    proc = procs.start("grpc", [*pin(cfg.server_cpu, cfg), ITEMS_CMD, "grpc"], grpc_env)
    try:
        wait_serving(address, proc, procs)
        cmd = [*pin(cfg.load_cpu, cfg), sys.executable, "-m", "bench.grpc_load", address,
               str(ids_file), str(cfg.duration), str(cfg.connections)]  # fmt: skip
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             timeout=cfg.duration + 600)  # fmt: skip
        found = RESULT.search(out.stdout)
        if out.returncode != 0 or found is None:
            raise RuntimeError(f"grpc load failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    finally:
        procs.stop(proc)
    return {
        "rps": float(found["rps"]),
        "p50_ms": float(found["p50"]),
        "p99_ms": float(found["p99"]),
        "errors": int(found["errors"]),
        "requests": int(found["requests"]),
        "seconds": cfg.duration,
        "connections": cfg.connections,
        "client": "bench/grpc_load.py (Python grpc.aio, one process)",
    }
