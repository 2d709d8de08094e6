"""Projector leadership, reads without PostgreSQL, and the `items` console script."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from app import cli
from app.api.app import create_app
from app.bootstrap import Container
from app.commands.commands import CreateItem
from app.projection.runner import Projector
from app.settings import Settings
from tests.helpers import create, eventually, running
from tests.servers import ITEMS, free_port


async def test_only_one_projector_owns_a_partition_and_another_takes_over(
    container: Container, redis: Redis
) -> None:
    first, second = container.projector(), container.projector()
    tasks = [asyncio.create_task(p.run()) for p in (first, second)]
    try:
        await eventually(lambda: _owners(first, second), lambda n: n == 1)
        await asyncio.sleep(1.5)  # a lease tick or more: the standby must not take it
        assert await _owners(first, second) == 1
        owner, standby = (first, second) if first.owns else (second, first)

        item_id = uuid.uuid4()
        await container.bus.handle(CreateItem(item_id=item_id, name="a", price="1"))
        await eventually(
            lambda: container.read_model.get(str(item_id)), lambda r: r.data is not None
        )

        owner.stop()  # a clean stop gives the lease up: the standby takes over at once
        await eventually(lambda: _owns(standby), within=3)
        later = uuid.uuid4()
        await container.bus.handle(CreateItem(item_id=later, name="b", price="1"))
        await eventually(lambda: container.read_model.get(str(later)), lambda r: r.data is not None)
    finally:
        first.stop()
        second.stop()
        await asyncio.wait(tasks, timeout=10)


async def _owners(*projectors: Projector) -> int:
    return sum(bool(p.owns) for p in projectors)


async def _owns(projector: Projector) -> bool:
    return bool(projector.owns)


async def test_reads_are_served_while_postgresql_is_unreachable(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    item = await create(client, name="still here")
    await eventually(
        lambda: client.get(f"/api/v1/items/{item['id']}"), lambda r: r.status_code == 200
    )
    # A second instance whose PostgreSQL is gone (nothing listens on that port).
    cut_off = settings.model_copy(
        update={
            "database_url": "postgresql+asyncpg://postgres@127.0.0.1:9/none",
            "projector_in_process": False,
            "db_connect_timeout": 1.0,
        }
    )
    async with running(create_app(cut_off)) as started, started.client() as c:
        got = await c.get(f"/api/v1/items/{item['id']}")
        assert got.status_code == 200
        assert got.json() == item
        assert (await c.get("/api/v1/items")).json()["total"] == 1
        write = await c.post("/api/v1/items", json={"name": "x", "price": "1"})
        assert write.status_code == 503
        assert write.headers["content-type"] == "application/problem+json"
        assert write.headers["retry-after"]
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert "postgres" in ready.json()["detail"]


@pytest.mark.slow
async def test_console_script_serves_and_projects_in_separate_processes(
    settings: Settings, redis: Redis, db: object
) -> None:
    port = free_port()
    assert settings.database_url
    assert settings.redis_url
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.replace("+asyncpg", ""),  # plain URL accepted
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "SECRET_KEY": settings.signing_key,
        "PORT": str(port),
        "PROJECTOR_IN_PROCESS": "false",
        "PROJECTOR_POLL_INTERVAL": "0.2",
    }
    # Long-running servers: Popen returns at once, nothing here blocks the loop.
    serve = subprocess.Popen([ITEMS, "serve"], env=env, stderr=subprocess.PIPE)  # noqa: ASYNC220
    projector = subprocess.Popen([ITEMS, "projector"], env=env, stderr=subprocess.PIPE)  # noqa: ASYNC220
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:

            async def up() -> bool:
                try:
                    return (await c.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, within=20)
            created = await c.post("/api/v1/items", json={"name": "via cli", "price": "2"})
            assert created.status_code == 201
            await eventually(
                lambda: c.get(created.headers["location"]), lambda r: r.status_code == 200
            )
    finally:
        for process in (serve, projector):
            process.send_signal(signal.SIGTERM)
        for process in (serve, projector):
            assert process.wait(15) == 0, process.stderr.read().decode() if process.stderr else ""


@pytest.mark.parametrize(
    "sub",
    ["serve", "projector", "migrate", "rebuild", "verify", "status", "dead-letters", "servers"],
)
def test_every_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    # In this process: a console-script start costs a second of imports each, and the
    # console script itself is run by test_console_script_serves_and_projects_...
    with pytest.raises(SystemExit) as exited:
        cli.main([sub, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("Usage: items " + sub), out
