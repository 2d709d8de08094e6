"""Every 4xx/5xx is application/problem+json, and bad input changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import PROBLEM, assert_problem, create


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": "1"}, "name"),
        ({"name": "x"}, "price"),
        ({"name": "   ", "price": "1"}, "name"),
        ({"name": "x" * 201, "price": "1"}, "name"),
        ({"name": "a\x00b", "price": "1"}, "name"),
        ({"name": 5, "price": "1"}, "name"),
        ({"name": "x", "price": "1", "description": "d" * 2001}, "description"),
        ({"name": "x", "price": "-1"}, "price"),
        ({"name": "x", "price": "1.234"}, "price"),
        ({"name": "x", "price": 1.234}, "price"),
        ({"name": "x", "price": "1e3"}, "price"),
        ({"name": "x", "price": " 1"}, "price"),
        ({"name": "x", "price": "1000000000"}, "price"),
        ({"name": "x", "price": "NaN"}, "price"),
        ({"name": "x", "price": True}, "price"),
        ({"name": "x", "price": None}, "price"),
        ({"name": "x", "price": "1", "tags": ["UPPER"]}, "tags"),
        ({"name": "x", "price": "1", "tags": [""]}, "tags"),
        ({"name": "x", "price": "1", "tags": ["t" * 51]}, "tags"),
        ({"name": "x", "price": "1", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"name": "x", "price": "1", "tags": "notalist"}, "tags"),
        ({"name": "x", "price": "1", "color": "red"}, "color"),
    ],
)
async def test_invalid_create_is_422_naming_the_field(
    client: httpx.AsyncClient, db: Any, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post("/api/v1/items", json=body), 422)
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert all(e["msg"] for e in problem["errors"])
    assert await db.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    ("price", "stored"),
    [("1.230", "1.23"), ("0", "0.00"), (0, "0.00"), ("999999999.99", "999999999.99"), (5, "5.00"),
     (".5", "0.50"), ("7.", "7.00")],
)  # fmt: skip
async def test_valid_prices_are_normalised(
    client: httpx.AsyncClient, price: Any, stored: str
) -> None:
    assert (await create(client, price=price))["price"] == stored


async def test_twenty_tags_after_collapsing_duplicates_are_fine(client: httpx.AsyncClient) -> None:
    tags = [f"t{i:02d}" for i in range(20)] * 2
    assert (await create(client, tags=tags))["tags"] == sorted(set(tags))


async def test_several_invalid_fields_are_all_listed(client: httpx.AsyncClient) -> None:
    problem = assert_problem(
        await client.post("/api/v1/items", json={"name": "", "price": "x", "tags": ["A"]}), 422
    )
    assert sorted(e["field"] for e in problem["errors"]) == ["name", "price", "tags"]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert "JSON" in assert_problem(response, 400)["detail"]


async def test_invalid_utf8_is_a_clear_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items",
        content=b'{"name": "\xff\xfe", "price": "1"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == PROBLEM


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient, db: Any) -> None:
    body = b'{"name": "x", "price": "1", "description": "' + b"a" * 70_000 + b'"}'
    response = await client.post(
        "/api/v1/items", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 4096  # no Content-Length: a chunked body, counted as it arrives

    response = await client.post(
        "/api/v1/items", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    assert await db.fetchval("SELECT count(*) FROM items") == 0


async def test_non_json_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items", content=b"name=x&price=1", headers={"content-type": "text/plain"}
    )
    assert response.status_code in (415, 422)
    assert response.headers["content-type"] == PROBLEM


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)
    assert_problem(await client.put("/api/v1/items"), 405)


async def test_patch_unknown_field_is_422(client: httpx.AsyncClient) -> None:
    item = await create(client)
    problem = assert_problem(
        await client.patch(f"/api/v1/items/{item['id']}", json={"version": 7}), 422
    )
    assert problem["errors"][0]["loc"] == ["body", "version"]


async def test_text_that_looks_like_sql_or_redis_is_stored_verbatim(
    client: httpx.AsyncClient,
) -> None:
    hostile = "'); DROP TABLE items; -- *3\r\n$3\r\nDEL\r\n {tag} ]] .. '\\"
    item = await create(client, name="x'; --", description=hostile)
    assert item["description"] == hostile
    page = (await client.get("/api/v1/items")).json()
    assert page["total"] >= 0
