"""The consistency contract: ETags, conditional requests, idempotency keys and
read-your-writes tokens, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from app.queries.tokens import TokenCodec
from app.settings import Settings
from tests.helpers import Running, client_of, create, eventually

ITEMS = "/api/v1/items"


async def _visible(client: httpx.AsyncClient, item: dict[str, Any]) -> httpx.Response:
    return await eventually(
        lambda: client.get(f"{ITEMS}/{item['id']}"),
        lambda r: r.status_code == 200 and r.json()["version"] == item["version"],
    )


async def test_etag_is_the_version_on_both_sides(client: httpx.AsyncClient) -> None:
    created = await client.post(ITEMS, json={"name": "a", "price": "1"})
    assert created.headers["etag"] == '"1"'
    item = created.json()
    got = await _visible(client, item)
    assert got.headers["etag"] == '"1"'
    patched = await client.patch(f"{ITEMS}/{item['id']}", json={"name": "b"})
    assert patched.headers["etag"] == '"2"'


async def test_if_none_match_gives_304_by_id_and_for_lists(client: httpx.AsyncClient) -> None:
    item = await create(client)
    got = await _visible(client, item)
    again = await client.get(
        f"{ITEMS}/{item['id']}", headers={"If-None-Match": got.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == got.headers["etag"]

    page = await client.get(ITEMS)
    assert page.headers["etag"]
    cached = await client.get(ITEMS, headers={"If-None-Match": page.headers["etag"]})
    assert cached.status_code == 304
    await client.patch(f"{ITEMS}/{item['id']}", json={"price": "2"})
    changed = await eventually(
        lambda: client.get(ITEMS, headers={"If-None-Match": page.headers["etag"]}),
        lambda r: r.status_code == 200,
    )
    assert changed.headers["etag"] != page.headers["etag"]


async def test_if_match_mismatch_is_412_with_current_etag_and_changes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    item = await create(client)
    await client.patch(f"{ITEMS}/{item['id']}", json={"name": "v2"})
    stale = await client.patch(
        f"{ITEMS}/{item['id']}", json={"name": "v3"}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.headers["etag"] == '"2"'
    refused = await client.delete(f"{ITEMS}/{item['id']}", headers={"If-Match": '"1"'})
    assert refused.status_code == 412
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    ok = await client.delete(f"{ITEMS}/{item['id']}", headers={"If-Match": '"2"'})
    assert ok.status_code == 204
    gone = await client.patch(f"{ITEMS}/{item['id']}", json={}, headers={"If-Match": '"3"'})
    assert gone.status_code == 404  # unknown or deleted: 404 whatever the precondition


async def test_twenty_concurrent_patches_with_one_if_match_one_wins(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    item = await create(client)
    answers = await asyncio.gather(
        *(
            client.patch(
                f"{ITEMS}/{item['id']}", json={"name": f"n{i}"}, headers={"If-Match": '"1"'}
            )
            for i in range(20)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [412] * 19
    assert await db.fetchval("SELECT max(item_version) FROM events") == 2


async def test_concurrent_patches_without_if_match_all_apply_in_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    item = await create(client)
    answers = await asyncio.gather(
        *(client.patch(f"{ITEMS}/{item['id']}", json={"price": str(i + 10)}) for i in range(15))
    )
    assert all(a.status_code == 200 for a in answers)
    assert sorted(a.json()["version"] for a in answers) == list(range(2, 17))
    versions = await db.fetch("SELECT item_version FROM events ORDER BY position")
    assert [r["item_version"] for r in versions] == list(range(1, 17))
    last = next(a.json() for a in answers if a.json()["version"] == 16)
    assert (await _visible(client, last)).json() == last


async def test_idempotent_post_replays_the_first_answer_byte_for_byte(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    body = {"name": "once", "price": "3.50"}
    first = await client.post(ITEMS, json=body, headers=headers)
    assert first.status_code == 201
    second = await client.post(ITEMS, content=b'{"price": "3.50",  "name": "once"}', headers={
        **headers, "content-type": "application/json"})  # fmt: skip
    assert second.status_code == 201
    assert second.content == first.content
    for name in ("location", "etag", "consistency-token", "content-type"):
        assert second.headers[name] == first.headers[name], name
    assert await db.fetchval("SELECT count(*) FROM items") == 1
    assert await db.fetchval("SELECT count(*) FROM events") == 1

    other = await client.post(ITEMS, json={"name": "other", "price": "1"}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"


async def test_twenty_concurrent_posts_with_one_key_create_one_item(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    answers = await asyncio.gather(
        *(
            client.post(ITEMS, json={"name": "x", "price": "1"}, headers={"Idempotency-Key": "k"})
            for _ in range(20)
        )
    )
    created = [a for a in answers if a.status_code == 201]
    assert created
    assert {a.content for a in created} == {created[0].content}
    assert all(a.status_code == 409 for a in answers if a.status_code != 201)
    assert await db.fetchval("SELECT count(*) FROM items") == 1
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_idempotent_patch_and_delete(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    item = await create(client)
    url = f"{ITEMS}/{item['id']}"
    first = await client.patch(url, json={"name": "p"}, headers={"Idempotency-Key": "p1"})
    retry = await client.patch(url, json={"name": "p"}, headers={"Idempotency-Key": "p1"})
    assert retry.content == first.content
    assert retry.json()["version"] == 2
    gone = await client.delete(url, headers={"Idempotency-Key": "d1"})
    again = await client.delete(url, headers={"Idempotency-Key": "d1"})
    assert (gone.status_code, again.status_code) == (204, 204)
    assert again.headers["consistency-token"] == gone.headers["consistency-token"]
    assert await db.fetchval("SELECT count(*) FROM events") == 3


async def test_bad_idempotency_keys_are_400(client: httpx.AsyncClient) -> None:
    for key in (b"k" * 256, "caf\u00e9".encode(), b"tab\tkey"):
        response = await client.post(
            ITEMS, json={"name": "x", "price": "1"}, headers=[(b"Idempotency-Key", key)]
        )
        assert response.status_code == 400, key


async def test_expired_keys_are_purged(
    app: Running, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await client.post(ITEMS, json={"name": "x", "price": "1"}, headers={"Idempotency-Key": "old"})
    await client.post(ITEMS, json={"name": "y", "price": "1"}, headers={"Idempotency-Key": "new"})
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'"
    )
    assert await app.container.purge_idempotency_keys() == 1
    assert await db.fetchval("SELECT array_agg(key) FROM idempotency_keys") == ["new"]
    # An expired key is free again: the request runs anew.
    again = await client.post(
        ITEMS, json={"name": "z", "price": "1"}, headers={"Idempotency-Key": "old"}
    )
    assert again.status_code == 201


async def test_get_with_token_after_post_never_404s(client: httpx.AsyncClient) -> None:
    for _ in range(30):
        created = await client.post(ITEMS, json={"name": "ryw", "price": "1"})
        token = created.headers["consistency-token"]
        got = await client.get(created.headers["location"], headers={"Consistency-Token": token})
        assert got.status_code == 200
        assert got.json() == created.json()
        assert int(got.headers["x-projection-position"]) >= 1
        page = await client.get(ITEMS, params={"limit": 1}, headers={"Consistency-Token": token})
        assert page.json()["items"][0]["id"] == created.json()["id"]


async def test_noop_patch_token_names_the_latest_event(client: httpx.AsyncClient) -> None:
    item = await create(client)
    created_token = (await client.patch(f"{ITEMS}/{item['id']}", json={})).headers[
        "consistency-token"
    ]
    first = await client.post(ITEMS, json={"name": "later", "price": "1"})
    noop = await client.patch(f"{ITEMS}/{item['id']}", json={"name": item["name"]})
    assert noop.headers["consistency-token"] == created_token
    assert noop.headers["consistency-token"] != first.headers["consistency-token"]


async def test_forged_tokens_are_400(client: httpx.AsyncClient) -> None:
    item = await create(client)
    forged = TokenCodec("another-secret-entirely-xyz").issue(1)
    for token in ("garbage!", forged, "AAAA"):
        response = await client.get(f"{ITEMS}/{item['id']}", headers={"Consistency-Token": token})
        assert response.status_code == 400, token
        assert response.headers["content-type"] == "application/problem+json"


async def test_unreached_position_is_503_not_stale(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    item = await create(client)
    await eventually(lambda: client.get(f"{ITEMS}/{item['id']}"), lambda r: r.status_code == 200)
    future = TokenCodec(settings.signing_key).issue(10_000)
    quick = settings.model_copy(update={"consistency_wait_ms": 300, "projector_in_process": False})
    async with client_of(quick) as c:
        response = await c.get(f"{ITEMS}/{item['id']}", headers={"Consistency-Token": future})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"] == "application/problem+json"
