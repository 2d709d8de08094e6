"""`items grpc`: the gRPC server, with the projector under the same rule as `items serve`
(PROJECTOR_IN_PROCESS, in a child process by default), the change-notice watcher its
read-your-writes wait on, the standard health service and server reflection.

Like the API it listens only once it can answer reads (bootstrap/readiness.py; after
STARTUP_READY_TIMEOUT it starts anyway, saying what is missing), and health says SERVING
from then on. SIGTERM or SIGINT drains: health turns NOT_SERVING, new calls are refused,
calls in flight get GRACE seconds to finish, then the projector stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from app import bootstrap
from app.bootstrap import Container
from app.bootstrap.readiness import Readiness
from app.grpc.generated.items.v1 import items_pb2, items_pb2_grpc
from app.grpc.servicer import ItemsServicer

log = logging.getLogger("items.grpc")

# grpc-stubs 1.53 predates the health service's asyncio servicer.
HealthServicer = health.aio.HealthServicer  # type: ignore[attr-defined]
SERVICE = items_pb2.DESCRIPTOR.services_by_name["ItemsService"].full_name
GRACE = 10.0  # seconds calls in flight may take to finish on SIGTERM
PROJECTOR_STOP_WAIT = 20.0


def build_server(container: Container, address: str) -> tuple[grpc.aio.Server, int, Any]:
    """The server on `address` (host:port; port 0 picks one), not started: ItemsService,
    health (NOT_SERVING until the caller says otherwise) and reflection. Also what a
    test runs in its own process."""
    server = grpc.aio.server()
    items_pb2_grpc.add_ItemsServiceServicer_to_server(ItemsServicer(container), server)
    checks = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    return server, port, checks


async def serving(checks: Any, status: int) -> None:
    for name in ("", SERVICE):  # "": the server as a whole
        await checks.set(name, status)


async def run(container: Container, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    projection = bootstrap.api_projector(container)
    projecting = asyncio.create_task(projection.run(), name="projector") if projection else None
    watcher = asyncio.create_task(container.watcher.run(), name="checkpoint-watcher")
    try:
        missing = await Readiness(container).wait(container.settings.startup_ready_timeout)
        if missing:
            log.warning("serving before ready (STARTUP_READY_TIMEOUT): %s", missing)
        server, bound, checks = build_server(container, f"{host}:{port}")
        await server.start()
        await serving(checks, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC: items.v1.ItemsService on %s:%d", host, bound)
        await stop.wait()
        log.info("draining: no new calls, %.0fs for those in flight", GRACE)
        await checks.enter_graceful_shutdown()
        await server.stop(GRACE)
    finally:
        container.watcher.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if projection is not None and projecting is not None:
            projection.stop()
            done, _ = await asyncio.wait([projecting], timeout=PROJECTOR_STOP_WAIT)
            if not done:
                projecting.cancel()
