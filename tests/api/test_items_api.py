"""The HTTP contract of /api/v1/items, through the ASGI app on real PostgreSQL and Redis."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers import create, eventually, visible

RFC3339_MICRO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_create_returns_item_and_location(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items",
        json={"name": "  Lamp  ", "price": 9.9, "tags": ["b", "a", "b"], "description": "x"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    item = response.json()
    assert response.headers["location"] == f"/api/v1/items/{item['id']}"
    assert item["name"] == "Lamp"
    assert item["price"] == "9.90"
    assert item["tags"] == ["a", "b"]
    assert item["description"] == "x"
    assert item["version"] == 1
    assert RFC3339_MICRO_UTC.match(item["created_at"])
    assert item["created_at"] == item["updated_at"]
    assert list(item) == [
        "id", "name", "description", "price", "tags", "version", "created_at", "updated_at"
    ]  # fmt: skip


async def test_get_serves_the_projected_view(client: httpx.AsyncClient) -> None:
    item = await create(client, name="Chair", price="12")
    assert await visible(client, item) == item


@pytest.mark.parametrize("path", ["/api/v1/items", "/api/v1/items/"])
async def test_paths_answer_with_and_without_trailing_slash(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(path, json={"name": "a", "price": "1"})
    assert response.status_code == 201
    item = response.json()
    await visible(client, item)
    for url in (f"/api/v1/items/{item['id']}", f"/api/v1/items/{item['id']}/", path):
        got = await client.get(url)
        assert got.status_code == 200, url


async def test_patch_changes_only_sent_fields_and_bumps_version(
    client: httpx.AsyncClient,
) -> None:
    item = await create(client, name="Desk", price="100.00", description="oak", tags=["x"])
    response = await client.patch(f"/api/v1/items/{item['id']}", json={"price": "90.5"})
    assert response.status_code == 200
    patched = response.json()
    assert patched["price"] == "90.50"
    assert patched["version"] == 2
    assert patched["description"] == "oak"
    assert patched["tags"] == ["x"]
    assert patched["updated_at"] > item["updated_at"]
    assert patched["created_at"] == item["created_at"]
    assert await visible(client, patched) == patched

    cleared = await client.patch(f"/api/v1/items/{item['id']}", json={"description": None})
    assert cleared.json()["description"] is None
    assert cleared.json()["version"] == 3


async def test_patch_that_changes_nothing_keeps_the_version(
    client: httpx.AsyncClient, db: Any
) -> None:
    item = await create(client, name="Same", price="1.50", tags=["a"])
    response = await client.patch(
        f"/api/v1/items/{item['id']}", json={"name": " Same ", "price": "1.5", "tags": ["a", "a"]}
    )
    assert response.status_code == 200
    assert response.json() == item
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_patch_refuses_null_for_required_fields(client: httpx.AsyncClient) -> None:
    item = await create(client)
    for field in ("name", "price", "tags"):
        response = await client.patch(f"/api/v1/items/{item['id']}", json={field: None})
        assert response.status_code == 422, field
        assert response.json()["errors"][0]["loc"] == ["body", field]


async def test_delete_then_404_everywhere(client: httpx.AsyncClient, db: Any) -> None:
    item = await create(client)
    await visible(client, item)
    response = await client.delete(f"/api/v1/items/{item['id']}")
    assert response.status_code == 204
    assert response.content == b""

    async def get() -> httpx.Response:
        return await client.get(f"/api/v1/items/{item['id']}")

    gone = await eventually(get, lambda r: r.status_code == 404)
    assert gone.headers["content-type"] == "application/problem+json"
    assert (await client.delete(f"/api/v1/items/{item['id']}")).status_code == 404
    assert (await client.patch(f"/api/v1/items/{item['id']}", json={})).status_code == 404
    types = await db.fetch("SELECT type, item_version FROM events ORDER BY position")
    assert [(r["type"], r["item_version"]) for r in types] == [
        ("ItemCreated", 1),
        ("ItemDeleted", 2),
    ]


async def test_unknown_ids_are_404_and_bad_ids_422(client: httpx.AsyncClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await client.get(f"/api/v1/items/{unknown}")).status_code == 404
    assert (await client.patch(f"/api/v1/items/{unknown}", json={"name": "x"})).status_code == 404
    assert (await client.delete(f"/api/v1/items/{unknown}")).status_code == 404
    response = await client.get("/api/v1/items/not-a-uuid")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["path", "item_id"]


async def test_write_is_visible_within_a_second(client: httpx.AsyncClient) -> None:
    item = await create(client)

    async def get() -> httpx.Response:
        return await client.get(f"/api/v1/items/{item['id']}")

    await eventually(get, lambda r: r.status_code == 200, within=1.0)


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/items" in spec["paths"]
    assert "/api/v1/items/{item_id}" in spec["paths"]
    create_schema = spec["components"]["schemas"]["ItemCreate"]
    assert create_schema["examples"]
