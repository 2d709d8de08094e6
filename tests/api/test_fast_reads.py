"""GET by id through FastItemReads answers exactly as the router does: same status,
same headers in the same order, same body, for answers and for problems."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.exceptions
from redis.asyncio import Redis

from app.api.fast_reads import MAX_PARSED, FastItemReads, ItemReads
from app.queries.tokens import TokenCodec
from app.settings import Settings
from tests.helpers import (
    KEY,
    Running,
    assert_problem,
    bearer,
    client_of,
    create,
    visible,
    with_keys,
    without,
)

ITEMS = "/api/v1/items"


@pytest.fixture
async def router_client(app: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with app.client(without(app, FastItemReads)) as c:
        yield c


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code
    assert fast.headers.raw == slow.headers.raw
    assert fast.content == slow.content


async def _both(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient, path: str, **kw: Any
) -> httpx.Response:
    # One request id for both: it is echoed in X-Request-ID and in every problem.
    kw["headers"] = {"X-Request-ID": "same-for-both", **kw.get("headers", {})}
    fast = await client.get(path, **kw)
    _same(fast, await router_client.get(path, **kw))
    return fast


def test_only_canonical_item_paths_take_the_fast_path() -> None:
    some = str(uuid.uuid4())
    reads = ItemReads()

    def match(path: str, method: str = "GET") -> Any:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        return reads.match({**scope, "query_string": b""})

    assert match(f"{ITEMS}/{some}") == uuid.UUID(some)
    # A trailing slash is the same resource (StripTrailingSlash), and as fast.
    assert match(f"{ITEMS}/{some}/") == uuid.UUID(some)
    assert match(f"{ITEMS}/") is not None
    assert match(f"{ITEMS}/{some.upper()}") is None
    assert match(f"{ITEMS}/{some.replace('-', '')}") is None
    assert match(f"{ITEMS}/{some}", "HEAD") is None
    assert match(f"{ITEMS}/{some}", "PATCH") is None
    assert match(f"{ITEMS}/{some}x") is None
    assert match(f"/api/v1/admin/{some}") is None


async def test_answers_match_the_router_byte_for_byte(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient
) -> None:
    item = await visible(client, await create(client, tags=["office"]))
    path = f"{ITEMS}/{item['id']}"
    got = await _both(client, router_client, path)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == item
    # An upper-case id goes through the router of the same app: the same answer.
    upper = path.upper().replace("/API/V1/ITEMS", ITEMS)
    _same(got, await client.get(upper, headers={"X-Request-ID": "same-for-both"}))
    # A query string changes nothing for this route, on either path.
    await _both(client, router_client, path + "?x=1")
    not_modified = await _both(client, router_client, path, headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""


async def test_read_your_writes_token_and_bad_token(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient, settings: Settings
) -> None:
    item = await create(client)
    patched = await client.patch(f"{ITEMS}/{item['id']}", json={"name": "renamed"})
    token = patched.headers["consistency-token"]
    got = await _both(
        client, router_client, f"{ITEMS}/{item['id']}", headers={"Consistency-Token": token}
    )
    assert got.json()["name"] == "renamed"
    bad = await _both(
        client, router_client, f"{ITEMS}/{item['id']}", headers={"Consistency-Token": "x" * 27}
    )
    assert_problem(bad, 400)
    forged = TokenCodec("another-secret-0123456789").issue(1)
    assert_problem(
        await _both(
            client, router_client, f"{ITEMS}/{item['id']}", headers={"Consistency-Token": forged}
        ),
        400,
    )


async def test_unknown_item_is_the_same_404_problem(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient
) -> None:
    missing = await _both(client, router_client, f"{ITEMS}/{uuid.uuid4()}")
    assert_problem(missing, 404)


async def test_redis_down_is_the_same_503_problem(
    client: httpx.AsyncClient,
    router_client: httpx.AsyncClient,
    app: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def down(item_id: object) -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(app.container.read_model, "get", down)
    gone = await _both(client, router_client, f"{ITEMS}/{uuid.uuid4()}")
    assert_problem(gone, 503)
    assert gone.headers["retry-after"] == "1"


async def test_reads_behind_read_requires_key_still_need_one(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    async with client_of(with_keys(settings, read_requires_key=True)) as c:
        made = await c.post(ITEMS, json={"name": "lamp", "price": "1"}, headers=bearer(KEY))
        path = f"{ITEMS}/{made.json()['id']}"
        refused = await c.get(path)
        assert_problem(refused, 401)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get(path, headers=bearer(KEY))).status_code in (200, 404)


def test_only_plain_list_queries_take_the_fast_path() -> None:
    reads = ItemReads()

    def query(qs: bytes, path: str = ITEMS, method: str = "GET") -> Any:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        # Twice: the second answer comes from the parsed queries kept, and must agree.
        first = reads.match({**scope, "query_string": qs})
        assert reads.match({**scope, "query_string": qs}) == first
        return first

    plain = query(b"limit=100&sort=-price&tag=office&cursor=abc_-")
    assert plain is not None
    assert (plain.limit, plain.sort, plain.tag, plain.cursor) == (100, "-price", "office", "abc_-")
    default = query(b"")
    assert default is not None
    assert (default.limit, default.sort, default.tag) == (20, "-created_at", None)
    for routed in (
        b"limit=0",
        b"limit=101",
        b"limit=020",
        b"limit=x",
        b"limit=",
        b"limit",
        b"limit=5&limit=6",
        b"sort=size",
        b"tag=Office",
        b"tag=%41",
        b"tag=a+b",
        b"other=1",
        b"cursor=" + b"c" * 2049,
    ):
        assert query(routed) is None, routed
    assert query(b"", path=ITEMS + "/") == default  # the same resource (StripTrailingSlash)
    assert query(b"", method="HEAD") is None
    for n in range(3 * MAX_PARSED):  # cursors make query strings unbounded; the kept are not
        query(b"cursor=c%d" % n)
    assert len(reads._parsed) <= MAX_PARSED


async def test_list_pages_match_the_router_byte_for_byte(
    client: httpx.AsyncClient, router_client: httpx.AsyncClient
) -> None:
    made = [
        await create(client, name=f"item {n}", tags=["office"] if n % 2 else []) for n in range(5)
    ]
    patched = await client.patch(f"{ITEMS}/{made[0]['id']}", json={"name": "renamed"})
    token = {"Consistency-Token": patched.headers["consistency-token"]}
    first = await _both(client, router_client, ITEMS, headers=token)
    assert first.json()["total"] == 5
    for qs in ("limit=2", "limit=2&sort=name", "tag=office&sort=-price", "limit=100", "x=1"):
        page = await _both(client, router_client, f"{ITEMS}?{qs}")
        assert page.status_code == 200
    page = await _both(client, router_client, f"{ITEMS}?limit=2&sort=name")
    cursor = page.json()["next_cursor"]
    assert cursor
    second = await _both(client, router_client, f"{ITEMS}?limit=2&sort=name&cursor={cursor}")
    assert [i["name"] for i in second.json()["items"]] == ["item 3", "item 4"]
    etag = {"If-None-Match": second.headers["etag"]}
    again = await _both(
        client, router_client, f"{ITEMS}?limit=2&sort=name&cursor={cursor}", headers=etag
    )
    assert again.status_code == 304
    # A cursor from another sort, a tampered one, and a bad token: the same problems.
    assert_problem(await _both(client, router_client, f"{ITEMS}?limit=2&cursor={cursor}"), 400)
    assert_problem(await _both(client, router_client, f"{ITEMS}?cursor={cursor[:-2]}AA"), 400)
    bad = {"Consistency-Token": "x" * 27}
    assert_problem(await _both(client, router_client, ITEMS, headers=bad), 400)
    assert_problem(await _both(client, router_client, f"{ITEMS}?limit=0"), 422)
