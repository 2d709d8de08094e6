"""`items grpc` as an operator runs it: the real console script on real PostgreSQL and
Redis, with its own projector; health SERVING once it listens, server reflection, a
write read back through the stub, and a SIGTERM that lets the call in flight finish."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from app.grpc.generated.items.v1 import items_pb2 as pb
from app.grpc.generated.items.v1 import items_pb2_grpc
from app.queries.tokens import TokenCodec
from app.settings import Settings
from tests.deploy_files import python_healthcheck
from tests.servers import Spawner, free_port, items_env

SERVICE = "items.v1.ItemsService"


async def serving(channel: grpc.aio.Channel, within: float = 30.0) -> None:
    checks = health_pb2_grpc.HealthStub(channel)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            found = await checks.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
            if found.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        assert loop.time() < deadline, "never SERVING"
        await asyncio.sleep(0.1)


async def services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in stub.ServerReflectionInfo(iter([request])):
        return [s.name for s in answer.list_services_response.service]
    return []


@pytest.mark.slow
async def test_items_grpc_serves_reflects_and_drains(
    settings: Settings, db: object, redis: object, tmp_path: Path
) -> None:
    port = free_port()
    env = items_env(settings, GRPC_PORT=str(port), CONSISTENCY_WAIT_MS="3000")
    async with Spawner(tmp_path) as spawn:
        process = await spawn.start("grpc", ["grpc"], env)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await serving(channel)
            check = await asyncio.to_thread(  # docker-compose.yml's own, run on this server
                subprocess.run, python_healthcheck("grpc", port), capture_output=True, timeout=30
            )
            assert check.returncode == 0, check.stderr
            assert SERVICE in await services(channel)
            assert "grpc.health.v1.Health" in await services(channel)
            stub = items_pb2_grpc.ItemsServiceStub(channel)
            call = stub.CreateItem(pb.CreateItemRequest(item=pb.Item(name="lamp", price="2")))
            made = await call
            token = dict(await call.initial_metadata())["consistency-token"]
            got = await stub.GetItem(
                pb.GetItemRequest(id=made.id), metadata=(("consistency-token", token),)
            )
            assert got.name == "lamp"

            # A read waiting for a position no write reached yet is in flight at SIGTERM:
            # it gets its own answer (the wait ran out), not a cancellation.
            future = TokenCodec(settings.signing_key).issue(10**9)
            waiting = asyncio.ensure_future(
                stub.GetItem(
                    pb.GetItemRequest(id=made.id), metadata=(("consistency-token", future),)
                )
            )
            await asyncio.sleep(0.5)
            process.signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await waiting
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
            assert "has not reached the requested position" in (caught.value.details() or "")
        assert await process.wait(20) == 0, process.log()
    assert "Traceback" not in process.log(), process.log()
