"""Helpers for tests that talk to the running service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool] = bool,
    within: float = 5.0,
) -> T:
    """Poll `probe` until `check` accepts its result; fail with the last result."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if check(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s; last: {result!r}")
        await asyncio.sleep(0.02)


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "thing", "price": "1.00", **fields}
    response = await client.post("/api/v1/items", json=body)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def visible(client: httpx.AsyncClient, item: dict[str, Any]) -> dict[str, Any]:
    """Wait until GET shows this version of the item (the projection is asynchronous)."""

    async def get() -> httpx.Response:
        return await client.get(f"/api/v1/items/{item['id']}")

    response = await eventually(
        get, lambda r: r.status_code == 200 and r.json()["version"] >= item["version"]
    )
    result: dict[str, Any] = response.json()
    return result
