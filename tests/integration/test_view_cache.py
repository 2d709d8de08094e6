"""The in-process view cache on real PostgreSQL and Redis: it serves hits, no reader
ever sees a version go back, read-your-writes holds, and every way a view changes in
Redis (a batch, a lost subscription, a rebuild switch, a verify repair) reaches it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from app.bootstrap import Container
from app.queries.cache.views import ViewCache
from app.settings import Settings
from tests.helpers import (
    Running,
    Seen,
    caches_enabled,
    create,
    eventually,
    get_until_hit,
    race_readers_with_writes,
    visible,
)

ITEMS = "/api/v1/items"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests are about the cache: on, whatever VIEW_CACHE_MB says."""
    return settings.model_copy(update={"view_cache_mb": 64})


def _cache(app: Running) -> ViewCache:
    container: Container = app.container
    return container.view_cache


async def _cached_get(client: httpx.AsyncClient, app: Running, path: str) -> httpx.Response:
    return await get_until_hit(client, path, lambda: _cache(app).hits)


async def _projected(app: Running, item: dict[str, Any]) -> dict[str, Any]:
    """Wait until Redis holds the item, without a GET (which would fill the cache)."""
    container: Container = app.container
    await eventually(lambda: container.read_model.get(item["id"]), lambda r: r.version >= 1)
    return item


async def _corrupt_view(redis: Redis, app: Running, item_id: str) -> bytes:
    """Rewrite the live view behind the projector's back (no notice): drift."""
    container: Container = app.container
    layout = container.layout
    p = layout.partition_of(item_id)
    generation = await redis.get(layout.gen(p))
    assert isinstance(generation, bytes)
    key = layout.base(p, generation.decode()) + f"v:{item_id}"
    view = await redis.get(key)
    assert isinstance(view, bytes)
    drifted = view.replace(b'"name":"thing"', b'"name":"drifted"')
    assert drifted != view
    await redis.set(key, drifted)
    return drifted


async def test_readers_never_see_a_version_go_back_and_the_cache_serves(
    app: Running, client: httpx.AsyncClient
) -> None:
    await caches_enabled(app)
    items = [await create(client) for _ in range(4)]
    for item in items:
        await visible(client, item)
    rounds = 25

    async def read() -> Seen:
        item = random.choice(items)
        response = await client.get(f"{ITEMS}/{item['id']}")
        assert response.status_code == 200, response.text
        version = response.json()["version"]
        assert response.headers["etag"] == f'"{version}"'
        return [(item["id"], version)]

    hits = _cache(app).hits
    assert await race_readers_with_writes(client, items, read, rounds) == []
    assert _cache(app).hits > hits, "the cache never served a read"
    status = (await client.get("/api/v1/admin/projection")).json()["view_cache"]
    assert status["enabled"] is True
    assert status["hits"] > hits
    for item in items:  # and the last write shows, from the cache or not
        final = await visible(client, {**item, "version": rounds + 1})
        assert final["name"] == f"n{rounds - 1}"


async def test_a_consistency_token_sees_its_write_through_a_warm_cache(
    app: Running, client: httpx.AsyncClient
) -> None:
    await caches_enabled(app)
    item = await visible(client, await create(client))
    path = f"{ITEMS}/{item['id']}"
    for n in range(15):
        await _cached_get(client, app, path)  # the cache holds the previous version
        patched = await client.patch(path, json={"name": f"v{n}"})
        token = patched.headers["consistency-token"]
        got = await client.get(path, headers={"Consistency-Token": token})
        assert got.status_code == 200
        assert got.json()["version"] == patched.json()["version"]
        assert got.json()["name"] == f"v{n}"


@pytest.fixture
def held_reconnect(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """While the returned event is clear, the checkpoint watcher cannot reconnect to
    Redis: notices published meanwhile are lost to it, as in a real outage."""
    gate = asyncio.Event()
    gate.set()
    original = Connection._connect

    async def connect(self: Connection) -> None:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "checkpoint-watcher":
            await gate.wait()
        await original(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(Connection, "_connect", connect)
    return gate


async def _kill_subscriber(redis: Redis, name: str) -> int:
    killed = 0
    for client in await redis.client_list():
        if client.get("name") == name and int(client.get("sub", 0)) > 0:
            await redis.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


async def test_a_lost_subscription_cannot_pin_a_stale_view(
    app: Running,
    client: httpx.AsyncClient,
    redis: Redis,
    prefix: str,
    held_reconnect: asyncio.Event,
) -> None:
    await caches_enabled(app)
    item = await visible(client, await create(client))
    path = f"{ITEMS}/{item['id']}"
    await _cached_get(client, app, path)
    held_reconnect.clear()
    assert await _kill_subscriber(redis, f"items:{prefix}") == 1
    patched = await client.patch(path, json={"name": "after the kill"})
    container: Container = app.container
    # The write is in Redis while the watcher is cut off: its notice is lost.
    await eventually(
        lambda: container.read_model.get(item["id"]),
        lambda r: r.version == patched.json()["version"],
    )
    held_reconnect.set()
    got = await eventually(lambda: client.get(path), lambda r: r.json()["name"] == "after the kill")
    assert got.headers["etag"] == patched.headers["etag"]
    await caches_enabled(app)
    await _cached_get(client, app, path)  # and it caches again afterwards


async def test_a_rebuild_switch_drops_views_of_the_old_generation(
    app: Running, client: httpx.AsyncClient, redis: Redis
) -> None:
    await caches_enabled(app)
    item = await _projected(app, await create(client))
    path = f"{ITEMS}/{item['id']}"
    drifted = await _corrupt_view(redis, app, item["id"])
    assert (await _cached_get(client, app, path)).content == drifted
    await app.container.rebuild()
    got = await eventually(lambda: client.get(path), lambda r: r.content != drifted)
    assert got.json() == item


async def test_a_verify_repair_drops_the_repaired_view(
    app: Running, client: httpx.AsyncClient, redis: Redis
) -> None:
    await caches_enabled(app)
    item = await _projected(app, await create(client))
    path = f"{ITEMS}/{item['id']}"
    drifted = await _corrupt_view(redis, app, item["id"])
    assert (await _cached_get(client, app, path)).content == drifted
    report = await app.container.verify(repair=True, wait=10)
    assert report.repaired == 1
    got = await eventually(lambda: client.get(path), lambda r: r.content != drifted)
    assert got.json() == item
