"""GET /api/v1/items: sorts, tag filter, cursors, totals."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.helpers import create, eventually


async def _page(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/items", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def _all_pages(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await _page(client, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _seed(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        tags = ["even"] if i % 2 == 0 else ["odd"]
        # Names collide in pairs and prices in threes, so ties must fall to the id.
        items.append(
            await create(client, name=f"Item {i // 2}", price=str(i // 3), tags=tags + ["all"])
        )
    last = items[-1]
    await eventually(lambda: _page(client, limit=1), lambda p: p["total"] == n)
    await eventually(
        lambda: client.get(f"/api/v1/items/{last['id']}"), lambda r: r.status_code == 200
    )
    return items


def _expected(items: list[dict[str, Any]], sort: str) -> list[str]:
    field = sort.lstrip("-")

    def key(item: dict[str, Any]) -> tuple[Any, str]:
        value = item[field]
        if field == "price":
            value = Decimal(value)
        elif field == "name":
            value = value.casefold()
        return value, item["id"]

    ordered = sorted(items, key=key, reverse=sort.startswith("-"))
    return [item["id"] for item in ordered]


@pytest.mark.parametrize(
    "sort",
    ["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name", "price", "-price"],
)
async def test_every_sort_pages_through_all_items_in_order(
    client: httpx.AsyncClient, sort: str
) -> None:
    items = await _seed(client, 13)
    listed = await _all_pages(client, sort=sort, limit=4)
    assert [i["id"] for i in listed] == _expected(items, sort)


async def test_default_is_newest_first_twenty(client: httpx.AsyncClient) -> None:
    items = await _seed(client, 23)
    page = await _page(client)
    assert len(page["items"]) == 20
    assert page["total"] == 23
    assert [i["id"] for i in page["items"]] == _expected(items, "-created_at")[:20]
    assert page["next_cursor"]


async def test_tag_filter_with_total(client: httpx.AsyncClient) -> None:
    items = await _seed(client, 9)
    listed = await _all_pages(client, tag="odd", sort="price", limit=2)
    odd = [i for i in items if "odd" in i["tags"]]
    assert [i["id"] for i in listed] == _expected(odd, "price")
    assert (await _page(client, tag="odd"))["total"] == len(odd)
    assert (await _page(client, tag="none-such")) == {"items": [], "next_cursor": None, "total": 0}


async def test_pages_stay_stable_while_items_are_added(client: httpx.AsyncClient) -> None:
    items = await _seed(client, 6)
    first = await _page(client, sort="created_at", limit=3)
    await create(client, name="late")
    await asyncio.sleep(0.3)
    second = await _page(client, sort="created_at", limit=3, cursor=first["next_cursor"])
    seen = [i["id"] for i in first["items"] + second["items"]]
    assert seen == [i["id"] for i in items]


async def test_list_view_follows_updates_and_deletes(client: httpx.AsyncClient) -> None:
    items = await _seed(client, 3)
    target = items[0]
    await client.patch(f"/api/v1/items/{target['id']}", json={"tags": ["moved"], "price": "99"})
    await client.delete(f"/api/v1/items/{items[1]['id']}")
    page = await eventually(lambda: _page(client, tag="moved"), lambda p: p["total"] == 1)
    assert page["items"][0]["price"] == "99.00"
    everything = await eventually(lambda: _page(client), lambda p: p["total"] == 2)
    assert items[1]["id"] not in [i["id"] for i in everything["items"]]
    assert (await _page(client, tag="even"))["total"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"sort": "color"},
        {"sort": "--name"},
        {"tag": "Bad Tag"},
        {"tag": "x" * 51},
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/items", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"][0] == "query"


async def test_tampered_or_foreign_cursors_are_refused(client: httpx.AsyncClient) -> None:
    await _seed(client, 3)
    cursor = (await _page(client, limit=1))["next_cursor"]
    body, mac = cursor.split(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    for bad, params in [
        (forged, {}),
        ("garbage", {}),
        (cursor + "x", {}),
        (cursor, {"sort": "name"}),  # issued for another sort
        (cursor, {"tag": "odd"}),  # or another filter
    ]:
        response = await client.get("/api/v1/items", params={"limit": 1, "cursor": bad, **params})
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
