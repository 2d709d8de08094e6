"""The operator commands as an operator runs them: `items verify`, `items status`,
against real PostgreSQL and Redis, with the exit codes the README promises."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import httpx
import pytest
from redis.asyncio import Redis

from app.api.app import create_app
from app.bootstrap import Container
from app.settings import Settings
from tests.helpers import Running, create, eventually, running
from tests.servers import ITEMS


def _env(settings: Settings) -> dict[str, str]:
    assert settings.database_url
    assert settings.redis_url
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "SECRET_KEY": settings.signing_key,
    }


async def items(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [ITEMS, *args], env=_env(settings), capture_output=True, text=True
    )


@pytest.mark.slow
async def test_verify_names_a_lost_view_and_repair_fixes_it(
    client: httpx.AsyncClient, app: Running, settings: Settings, redis: Redis
) -> None:
    kept = await create(client, name="kept")
    lost = await create(client, name="lost", tags=["x"])
    for item in (kept, lost):
        await eventually(
            lambda i=item: client.get(f"/api/v1/items/{i['id']}"),  # type: ignore[misc]
            lambda r: r.status_code == 200,
        )
    assert (await items(settings, "verify")).returncode == 0

    container: Container = app.container
    live = await redis.get(container.layout.gen(0))
    assert live is not None
    generation = live.decode() if isinstance(live, bytes) else live
    await redis.delete(container.layout.base(0, generation) + f"v:{lost['id']}")

    found = await items(settings, "verify")
    assert found.returncode == 1
    assert lost["id"] in found.stdout
    assert kept["id"] not in found.stdout
    repaired = await items(settings, "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert (await items(settings, "verify")).returncode == 0
    assert (await client.get(f"/api/v1/items/{lost['id']}")).json() == lost


@pytest.mark.slow
async def test_lost_redis_is_detected_restored_and_verified(
    container: Container, settings: Settings, redis: Redis
) -> None:
    # The API without its projector, so the loss stays visible until we restore.
    reader = create_app(settings.model_copy(update={"projector_in_process": False}))
    projector = container.projector()
    task = asyncio.create_task(projector.run())
    async with running(reader) as started, started.client() as client:
        await eventually(container.read_model.ready)
        made = [await create(client, name=f"n{i}") for i in range(20)]
        await eventually(lambda: client.get("/api/v1/items"), lambda r: r.json()["total"] == 20)
        projector.stop()
        await asyncio.wait([task], timeout=10)

        async for key in redis.scan_iter(match=f"{{{settings.redis_prefix}:*"):
            await redis.delete(key)  # what FLUSHDB does to this service's keys

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["read_model"] != "ok"
        status = json.loads((await items(settings, "status", "--json")).stdout)
        assert status["read_model"] != "live"
        assert (await client.get(f"/api/v1/items/{made[0]['id']}")).status_code == 503

        task = asyncio.create_task(projector.run())  # restores from the event log
        try:
            await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
            page = await client.get("/api/v1/items", params={"limit": 100})
            assert sorted(i["id"] for i in page.json()["items"]) == sorted(i["id"] for i in made)
            verified = await items(settings, "verify")
            assert verified.returncode == 0, verified.stdout
            status = json.loads((await items(settings, "status", "--json")).stdout)
            assert status["read_model"] == "live"
            assert status["lag_events"] == 0
        finally:
            projector.stop()
            await asyncio.wait([task], timeout=10)


@pytest.mark.parametrize("command", ["status", "verify"])
async def test_an_unreachable_redis_is_named_with_exit_2_not_a_traceback(
    settings: Settings, command: str
) -> None:
    closed = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    done = await items(closed, command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
