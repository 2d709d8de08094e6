"""Writes through FastItemWrites answer exactly as the router does: the same status,
headers in the same order and body for every problem; the same shape for a new write
(ids, times and tokens are a write's own); and an Idempotency-Key taken on one path is
replayed, byte for byte, on the other."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.api.fast_writes import FastItemWrites
from app.api.routes import items as routes
from tests.helpers import Running, assert_problem, create, without

ITEMS = "/api/v1/items"
SAME_ID = {"X-Request-ID": "same-for-both"}


@pytest.fixture
async def router_client(app: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with app.client(without(app, FastItemWrites)) as c:
        yield c


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers.raw == slow.headers.raw
    assert fast.content == slow.content


async def _both(
    client: httpx.AsyncClient, router: httpx.AsyncClient, method: str, path: str, **kw: Any
) -> httpx.Response:
    kw["headers"] = {**SAME_ID, **kw.get("headers", {})}
    fast = await client.request(method, path, **kw)
    _same(fast, await router.request(method, path, **kw))
    return fast


# What is a write's own, not its path's: its id and times, and the token of its position.
OWN_HEADERS = {b"location", b"consistency-token"}
OWN_FIELDS = {"id", "created_at", "updated_at"}


def _alike(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert [n for n, _ in fast.headers.raw] == [n for n, _ in slow.headers.raw]
    for (name, a), (_, b) in zip(fast.headers.raw, slow.headers.raw, strict=True):
        assert name in OWN_HEADERS or a == b, name
    if fast.content:
        mine, theirs = fast.json(), slow.json()
        assert mine.keys() == theirs.keys()
        assert {k: v for k, v in mine.items() if k not in OWN_FIELDS} == {
            k: v for k, v in theirs.items() if k not in OWN_FIELDS
        }
    else:
        assert slow.content == b""


async def test_valid_writes_skip_the_router(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def routed(*args: object) -> None:
        raise AssertionError("the router's write ran")

    monkeypatch.setattr(routes, "_write", routed)
    made = await client.post(ITEMS, json={"name": "lamp", "price": "2.50", "tags": ["a"]})
    assert made.status_code == 201, made.text
    path = made.headers["location"]
    assert (await client.patch(path, json={"price": 3})).status_code == 200
    assert (await client.delete(path, headers={"If-Match": '"2"'})).status_code == 204
    # What the fast path does not take reaches the router, whose model words the 422.
    refused = await client.post(ITEMS, json={"name": "lamp", "price": "-1"})
    assert assert_problem(refused, 422)["errors"][0]["field"] == "price"


async def test_new_writes_answer_alike(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient
) -> None:
    body = {"name": " lamp ", "description": "warm", "price": 9.9, "tags": ["b", "a", "b"]}
    made = await client.post(ITEMS, json=body, headers=SAME_ID)
    _alike(made, await router_client.post(ITEMS, json=body, headers=SAME_ID))
    assert made.json()["name"] == "lamp"
    assert made.json()["tags"] == ["a", "b"]
    for prefer in ({}, {"Prefer": "respond-async"}):
        one, two = await create(client), await create(client)
        patched = await client.patch(
            f"{ITEMS}/{one['id']}", json={"description": None}, headers={**SAME_ID, **prefer}
        )
        _alike(
            patched,
            await router_client.patch(
                f"{ITEMS}/{two['id']}", json={"description": None}, headers={**SAME_ID, **prefer}
            ),
        )
        _alike(
            await client.delete(f"{ITEMS}/{one['id']}", headers={**SAME_ID, **prefer}),
            await router_client.delete(f"{ITEMS}/{two['id']}", headers={**SAME_ID, **prefer}),
        )


@pytest.mark.parametrize("first_fast", [True, False])
async def test_a_key_taken_on_one_path_replays_on_the_other(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient, first_fast: bool
) -> None:
    first, second = (client, router_client) if first_fast else (router_client, client)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}", **SAME_ID}
    # The fingerprint is of the JSON, not its spelling: the same request in other bytes.
    made = await first.post(ITEMS, content=b'{"name":"a","price":"1"}', headers={
        **key, "Content-Type": "application/json"})  # fmt: skip
    again = await second.post(ITEMS, content=b'{ "price": "1", "name": "a" }', headers={
        **key, "Content-Type": "application/json"})  # fmt: skip
    assert made.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == made.content
    assert again.headers["location"] == made.headers["location"]
    other = await second.post(ITEMS, json={"name": "b", "price": "1"}, headers=key)
    assert assert_problem(other, 422)["type"] == "urn:items:problem:idempotency-key-reused"
    path = made.headers["location"]
    patch_key = {"Idempotency-Key": f"p-{uuid.uuid4()}", "If-Match": '"1"'}
    patched = await first.patch(path, json={"name": "c"}, headers=patch_key)
    replayed = await second.patch(path, json={"name": "c"}, headers=patch_key)
    assert patched.status_code == replayed.status_code == 200
    assert replayed.content == patched.content
    assert replayed.headers["idempotent-replayed"] == "true"


async def test_problems_are_the_same_bytes(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient
) -> None:
    item = await create(client)
    path = f"{ITEMS}/{item['id']}"
    missing = f"{ITEMS}/{uuid.uuid4()}"
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("PATCH", missing, {"json": {"name": "x"}}, 404),
        ("DELETE", missing, {}, 404),
        ("PATCH", path, {"json": {"name": "x"}, "headers": {"If-Match": '"7"'}}, 412),
        ("DELETE", path, {"headers": {"If-Match": '"7"'}}, 412),
        ("PATCH", path, {"json": {"name": "x"}, "headers": {"If-Match": "7"}}, 400),
        (
            "POST",
            ITEMS,
            {"json": {"name": "x", "price": 1}, "headers": {"Idempotency-Key": ""}},
            400,
        ),  # fmt: skip
        ("POST", ITEMS, {"json": {"name": "x", "price": 1, "extra": 1}}, 422),
        (
            "POST",
            ITEMS,
            {
                "content": b'{"name": "x", "price": 1',
                "headers": {"Content-Type": "application/json"},
            },
            400,
        ),  # fmt: skip
        ("POST", ITEMS, {"content": b"", "headers": {"Content-Type": "application/json"}}, 422),
        ("PATCH", path, {"json": {"name": None}}, 422),
        ("PATCH", path, {"json": [1]}, 422),
    ]
    for method, target, kw, status in cases:
        assert_problem(await _both(client, router_client, method, target, **kw), status)
    # The body of a write that failed changed nothing.
    assert (await client.get(path)).json()["version"] == item["version"]
