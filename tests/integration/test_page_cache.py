"""The in-process list page cache on real PostgreSQL and Redis and the real projector:
it serves hits, and once a write is visible in a list no later list shows an older
state; read-your-writes holds through a warm cache; a verify repair reaches it."""

from __future__ import annotations

import random

import httpx
import pytest
from redis.asyncio import Redis

from app.bootstrap import Container
from app.queries.cache.pages import PageCache
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
PAGES = [f"{ITEMS}?limit=20", f"{ITEMS}?limit=3", f"{ITEMS}?limit=20&sort=-updated_at"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests are about the cache: on, whatever VIEW_CACHE_MB says."""
    return settings.model_copy(update={"view_cache_mb": 64})


def _pages(app: Running) -> PageCache:
    container: Container = app.container
    return container.page_cache


async def _cached_list(client: httpx.AsyncClient, app: Running, path: str) -> httpx.Response:
    return await get_until_hit(client, path, lambda: _pages(app).hits)


async def test_no_list_shows_an_older_state_once_a_write_is_visible(
    app: Running, client: httpx.AsyncClient
) -> None:
    await caches_enabled(app)
    items = [await create(client) for _ in range(4)]
    for item in items:
        await visible(client, item)
    rounds = 25

    async def read() -> Seen:
        response = await client.get(random.choice(PAGES))
        assert response.status_code == 200, response.text
        return [(e["id"], e["version"]) for e in response.json()["items"]]

    hits = _pages(app).hits
    assert await race_readers_with_writes(client, items, read, rounds) == []
    assert _pages(app).hits > hits, "the page cache never served a list"
    status = (await client.get("/api/v1/admin/projection")).json()["page_cache"]
    assert status["hits"] > hits
    # And the last writes show, from the cache or not.
    final = await eventually(
        lambda: client.get(f"{ITEMS}?limit=20"),
        lambda r: all(e["version"] == rounds + 1 for e in r.json()["items"]),
    )
    assert {e["name"] for e in final.json()["items"]} == {f"n{rounds - 1}"}


async def test_a_consistency_token_sees_its_write_in_a_warm_page(
    app: Running, client: httpx.AsyncClient
) -> None:
    await caches_enabled(app)
    item = await visible(client, await create(client))
    path = f"{ITEMS}/{item['id']}"
    for n in range(15):
        await _cached_list(client, app, f"{ITEMS}?limit=5")  # holds the previous state
        patched = await client.patch(path, json={"name": f"v{n}"})
        token = patched.headers["consistency-token"]
        got = await client.get(f"{ITEMS}?limit=5", headers={"Consistency-Token": token})
        assert got.status_code == 200
        [mine] = [e for e in got.json()["items"] if e["id"] == item["id"]]
        assert mine == patched.json()
    created = await client.post(ITEMS, json={"name": "new", "price": "1"})
    token = created.headers["consistency-token"]
    got = await client.get(f"{ITEMS}?limit=5", headers={"Consistency-Token": token})
    assert got.json()["items"][0] == created.json()


async def test_a_verify_repair_drops_cached_pages(
    app: Running, client: httpx.AsyncClient, redis: Redis
) -> None:
    await caches_enabled(app)
    container: Container = app.container
    item = await create(client, name="thing")
    await eventually(lambda: container.read_model.get(item["id"]), lambda r: r.version >= 1)
    layout = container.layout
    p = layout.partition_of(item["id"])
    generation = await redis.get(layout.gen(p))
    assert isinstance(generation, bytes)
    key = layout.base(p, generation.decode()) + f"v:{item['id']}"
    view = await redis.get(key)
    assert isinstance(view, bytes)
    await redis.set(key, view.replace(b'"name":"thing"', b'"name":"drifted"'))  # no notice
    path = f"{ITEMS}?limit=20"
    assert (await _cached_list(client, app, path)).json()["items"][0]["name"] == "drifted"
    report = await container.verify(repair=True, wait=10)
    assert report.repaired == 1
    got = await eventually(
        lambda: client.get(path), lambda r: r.json()["items"][0]["name"] == "thing"
    )
    assert got.json()["items"][0] == item
