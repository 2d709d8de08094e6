"""Hostile input gets a clear 4xx problem+json answer, and changes nothing.

Extends test_errors.py (field rules, malformed JSON, the 64 KiB limit on POST, text that
looks like SQL): deep nesting, floods of invalid values, NUL bytes and invalid UTF-8
everywhere a client can put them, enormous or garbage parameters, forged and tampered
cursors and Consistency-Tokens, wrong content types, and text meant for PostgreSQL or
Redis that must be stored and returned as text. The raw-socket cases (what uvicorn itself
sees) are in test_hostile_http.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.queries.cursor import CursorCodec, _b64
from app.queries.tokens import TokenCodec
from app.settings import Settings
from tests.helpers import assert_problem, create, eventually, visible

ITEMS = "/api/v1/items"
JSON = {"content-type": "application/json"}


async def _state(db: Any) -> tuple[Any, ...]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM events) AS events,"
        " (SELECT coalesce(max(position), 0) FROM events) AS position,"
        " (SELECT count(*) FROM idempotency_keys) AS keys"
    )
    return tuple(row.values())


@contextlib.asynccontextmanager
async def unchanged(db: Any) -> AsyncIterator[None]:
    """Nothing in PostgreSQL moves: no row, no event, no idempotency record."""
    before = await _state(db)
    yield
    assert await _state(db) == before


def as_json(value: Any) -> bytes:
    """JSON with every non-ASCII character escaped, lone surrogates included (httpx's
    json= would fail to encode those)."""
    return json.dumps(value, ensure_ascii=True).encode()


def assert_4xx_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    return assert_problem(response, response.status_code)


@pytest.fixture
async def item(client: httpx.AsyncClient) -> dict[str, Any]:
    """One live item, visible on the read side, for the cases that need a real id."""
    return await visible(client, await create(client, name="target", tags=["keep"]))


# -- structure: depth, size, floods ------------------------------------------------------


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ' + nested(10_000) + b', "price": "1"}',  # in a field
        nested(30_000),  # the whole body
        nested(10_000, b'{"a":', b"}").replace(b"}", b"1}", 1),  # objects
        b'{"name": "x", "price": "1", "tags": ' + nested(5_000) + b"}",
    ],
    ids=["field", "root", "objects", "tags"],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_deep_json_is_a_4xx_not_a_recursion_error(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], body: bytes, method: str
) -> None:
    url = ITEMS if method == "POST" else f"{ITEMS}/{item['id']}"
    async with unchanged(db):
        for headers in (JSON, {**JSON, "Idempotency-Key": "deep"}):
            response = await client.request(method, url, content=body, headers=headers)
            problem = assert_4xx_problem(response, 400, 422)
            assert "Recursion" not in problem["detail"]


async def test_json_just_inside_the_parser_depth_is_a_field_error(
    client: httpx.AsyncClient, db: Any
) -> None:
    async with unchanged(db):
        body = b'{"name": ' + nested(500) + b', "price": "1"}'
        response = await client.post(ITEMS, content=body, headers=JSON)
        assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "name"]


async def test_a_flood_of_invalid_values_gets_a_bounded_answer(
    client: httpx.AsyncClient, db: Any
) -> None:
    body = b'{"name": "x", "price": "1", "tags": [' + b",".join([b"1"] * 20_000) + b"]}"
    async with unchanged(db):
        response = await client.post(ITEMS, content=body, headers=JSON)
    problem = assert_problem(response, 422)
    assert len(response.content) < 8_000  # not 2.6 MB: the first errors and a count
    assert len(problem["errors"]) == 20
    assert problem["detail"].startswith("20000 invalid fields: tags.0:")
    assert problem["detail"].endswith("; and 19980 more")


@pytest.mark.parametrize(
    "number", [b"9" * 5_000, b"1e400", b"-1e400", b"1" + b"0" * 400 + b".5"], ids=str
)
async def test_enormous_numbers_are_a_4xx(
    client: httpx.AsyncClient, db: Any, number: bytes
) -> None:
    async with unchanged(db):
        response = await client.post(
            ITEMS, content=b'{"name": "x", "price": ' + number + b"}", headers=JSON
        )
        assert_4xx_problem(response, 400, 422)


async def test_the_size_limit_is_exact_and_covers_patch_and_delete(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any]
) -> None:
    small = b'{"name": "padded", "price": "1"}'
    at_limit = small + b" " * (64 * 1024 - len(small))  # white space is valid JSON
    assert (await client.post(ITEMS, content=at_limit, headers=JSON)).status_code == 201
    async with unchanged(db):
        over = at_limit + b" "
        assert_problem(await client.post(ITEMS, content=over, headers=JSON), 413)
        url = f"{ITEMS}/{item['id']}"
        assert_problem(await client.patch(url, content=over, headers=JSON), 413)
        assert_problem(await client.request("DELETE", url, content=over, headers=JSON), 413)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "chunked", "price": "1", "description": "'
            for _ in range(100):
                yield b"a" * 1024  # no Content-Length: counted as it arrives

        assert_problem(await client.patch(url, content=chunks(), headers=JSON), 413)
    assert (await client.get(url)).json()["name"] == "target"


# -- NUL bytes and invalid UTF-8 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "price": "1", "description": "a\x00b"}, "description"),
        ({"name": "x", "price": "1", "tags": ["a\x00"]}, "tags"),
        ({"name": "\x00", "price": "1"}, "name"),
        ({"name": "x", "price": "1\x00"}, "price"),
        ({"name": "\ud800", "price": "1"}, "name"),  # JSON can spell a lone surrogate
        ({"name": "x", "price": "1", "description": "a\udfffb"}, "description"),
    ],
)
async def test_nul_or_a_surrogate_in_a_field_is_422_not_a_postgres_error(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    # PostgreSQL text holds neither NUL nor surrogates: they must never get that far.
    async with unchanged(db):
        problem = assert_problem(await client.post(ITEMS, content=as_json(body), headers=JSON), 422)
        assert [e["loc"] for e in problem["errors"]] == [["body", field]]
        patch = as_json({field: body[field]})
        url = f"{ITEMS}/{item['id']}"
        problem = assert_problem(await client.patch(url, content=patch, headers=JSON), 422)
        assert [e["loc"] for e in problem["errors"]] == [["body", field]]


async def test_a_raw_nul_or_invalid_utf8_in_the_body_is_a_4xx(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any]
) -> None:
    bodies = [
        b'{"name": "a\x00b", "price": "1"}',  # unescaped control character: not JSON
        b'{"name": "x", "price": "1", "description": "\xc3\x28"}',
        b'{"name": "\xed\xa0\x80", "price": "1"}',  # an encoded surrogate
        b"\xff\xfe{\x00}\x00",
    ]
    async with unchanged(db):
        for body in bodies:
            for method, url in (("POST", ITEMS), ("PATCH", f"{ITEMS}/{item['id']}")):
                response = await client.request(method, url, content=body, headers=JSON)
                assert_4xx_problem(response, 400, 422)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("tag=%00", 422),
        ("tag=%FF", 422),
        ("sort=%00", 422),
        ("sort=name%00", 422),
        ("limit=%00", 422),
        ("limit=1%00", 422),
        ("cursor=%00", 400),
        ("cursor=%FF.%FF", 400),
        ("cursor=%C3%A9.x", 400),
    ],
)
async def test_nul_and_invalid_utf8_in_the_query_are_a_4xx(
    client: httpx.AsyncClient, db: Any, query: str, status: int
) -> None:
    async with unchanged(db):
        assert_problem(await client.get(f"{ITEMS}?{query}"), status)


@pytest.mark.parametrize(
    "item_id",
    ["%00", "%FF", "abc", "1'%20OR%20'1'='1", "*", "%7Bt:0%7D", "x" * 10_000, "-1", "0"],
    ids=lambda s: s[:12],
)
async def test_a_path_id_that_is_not_a_uuid_is_422(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], item_id: str
) -> None:
    url = f"{ITEMS}/{item_id}"
    async with unchanged(db):
        assert_problem(await client.get(url), 422)
        assert_problem(await client.patch(url, json={"name": "y"}), 422)
        assert_problem(await client.delete(url), 422)


async def test_a_header_that_is_not_printable_ascii_is_400(
    client: httpx.AsyncClient, db: Any
) -> None:
    async with unchanged(db):
        for key in (b"\xff", b"caf\xc3\xa9", b"k" * 256):
            response = await client.post(
                ITEMS, json={"name": "x", "price": "1"}, headers={b"idempotency-key": key}
            )
            assert_problem(response, 400)


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit", [str(10**30), "-1", "0", "101", "abc", "1e2", "1.5", "", "0x10", "5 5"]
)
async def test_a_limit_outside_1_to_100_is_422(
    client: httpx.AsyncClient, db: Any, limit: str
) -> None:
    async with unchanged(db):
        problem = assert_problem(await client.get(ITEMS, params={"limit": limit}), 422)
        assert problem["errors"][0]["loc"] == ["query", "limit"]


async def test_enormous_parameters_are_refused_or_ignored(
    client: httpx.AsyncClient, db: Any
) -> None:
    async with unchanged(db):
        problem = assert_problem(await client.get(ITEMS, params={"cursor": "A" * 3_000}), 422)
        assert problem["errors"][0]["loc"] == ["query", "cursor"]
        assert_problem(await client.get(ITEMS, params={"cursor": "A" * 2_048}), 400)
        assert_problem(await client.get(ITEMS, params={"tag": "t" * 51}), 422)
        assert_problem(await client.get(ITEMS, params={"sort": "-" * 5_000}), 422)
        # There is no offset: an unknown parameter is ignored, whatever its size.
        page = await client.get(ITEMS, params={"offset": "9" * 5_000})
        assert page.status_code == 200


# -- cursors and consistency tokens -------------------------------------------------------


@pytest.fixture
async def cursor(client: httpx.AsyncClient) -> str:
    for n in range(3):
        await create(client, name=f"paged {n}")
    page = await eventually(
        lambda: client.get(ITEMS, params={"limit": 1}), lambda r: r.json()["total"] >= 3
    )
    next_cursor: str = page.json()["next_cursor"]
    assert next_cursor
    return next_cursor


def flip(text: str, at: int) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


def signed(secret: str, body: bytes) -> str:
    """A cursor with a valid signature around any body (needs the service's key)."""
    return _b64(body) + "." + _b64(CursorCodec(secret)._mac(body))


async def test_forged_and_tampered_cursors_are_400(
    client: httpx.AsyncClient, db: Any, settings: Settings, cursor: str
) -> None:
    body, mac = cursor.split(".")
    other = CursorCodec("some-other-secret-key-0123")
    bad = {
        "truncated": cursor[:-3],
        "body only": body,
        "no signature": body + ".",
        "tampered body": flip(cursor, 5),
        "tampered signature": flip(cursor, len(cursor) - 2),
        "swapped": mac + "." + body,
        "other key": other.encode(sort="-created_at", tag=None, after=b"x\x00y"),
        "forged": _b64(b'{"s":"-created_at","t":null,"a":"z"}') + "." + "A" * 22,
        "three parts": cursor + ".x",
        "empty": "",
        "dots": "...",
        "not base64": "!!!.???",
        "signed, not JSON": signed(settings.signing_key, b"not json"),
        "signed, a list": signed(settings.signing_key, b"[1]"),
        "signed, a string": signed(settings.signing_key, b'"x"'),
        "signed, no member": signed(settings.signing_key, b'{"s":"-created_at","t":null}'),
        "signed, a number": signed(settings.signing_key, b'{"s":"-created_at","t":null,"a":5}'),
    }
    async with unchanged(db):
        for name, value in bad.items():
            response = await client.get(ITEMS, params={"limit": 1, "cursor": value})
            problem = assert_problem(response, 400)
            assert problem["type"] == "urn:items:problem:invalid-cursor", name
        # A genuine cursor, but for another listing.
        for params in ({"sort": "name"}, {"tag": "keep"}):
            response = await client.get(ITEMS, params={"cursor": cursor, **params})
            assert "different sort or tag" in assert_problem(response, 400)["detail"]
    assert (await client.get(ITEMS, params={"limit": 1, "cursor": cursor})).status_code == 200


async def test_forged_and_tampered_consistency_tokens_are_400(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any]
) -> None:
    written = await client.patch(f"{ITEMS}/{item['id']}", json={"name": "moved"})
    token = written.headers["consistency-token"]
    bad = [
        token[:-2],
        token + "AA",
        flip(token, 3),
        flip(token, len(token) - 1),
        TokenCodec("some-other-secret-key-0123").issue(1),
        TokenCodec("some-other-secret-key-0123").issue(2**63),
        "",
        " ",
        "!!!",
        "A" * 10_000,
        "*1 $8 FLUSHALL",
        "caf\xe9",
    ]
    async with unchanged(db):
        for value in bad:
            headers = {b"consistency-token": value.encode("latin-1")}
            for url in (f"{ITEMS}/{item['id']}", ITEMS):
                problem = assert_problem(await client.get(url, headers=headers), 400)
                assert "consistency token" in problem["detail"]
    fresh = await client.get(f"{ITEMS}/{item['id']}", headers={"Consistency-Token": token})
    assert fresh.json()["name"] == "moved"


# -- bodies that are not what they claim -------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"id": "00000000-0000-4000-8000-000000000001"},
        {"version": 99},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"deleted": True},
        {"__proto__": {"admin": True}},
        {"Name": "shadow"},
    ],
    ids=lambda e: next(iter(e)),
)
async def test_unknown_fields_are_422_and_never_applied(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], extra: dict[str, Any]
) -> None:
    [field] = extra
    async with unchanged(db):
        problem = assert_problem(
            await client.post(ITEMS, json={"name": "x", "price": "1", **extra}), 422
        )
        assert [e["loc"] for e in problem["errors"]] == [["body", field]]
        problem = assert_problem(
            await client.patch(f"{ITEMS}/{item['id']}", json={"name": "y", **extra}), 422
        )
        assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert (await client.get(f"{ITEMS}/{item['id']}")).json() == item


@pytest.mark.parametrize("body", [b"[]", b'"item"', b"5", b"null", b"true", b"[{}]"])
async def test_a_body_that_is_not_an_object_is_422(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], body: bytes
) -> None:
    async with unchanged(db):
        for method, url in (("POST", ITEMS), ("PATCH", f"{ITEMS}/{item['id']}")):
            response = await client.request(method, url, content=body, headers=JSON)
            assert assert_problem(response, 422)["errors"][0]["loc"] == ["body"]


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/xml"},
        {"content-type": "application/jsonx"},
        {"content-type": "json"},
        {},
    ],
    ids=lambda h: h.get("content-type", "none"),
)
async def test_a_body_that_is_not_declared_json_is_415(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any], headers: dict[str, str]
) -> None:
    body = b'{"name": "sneaky", "price": "1"}'  # valid JSON: only the type is wrong
    async with unchanged(db):
        for method, url in (("POST", ITEMS), ("PATCH", f"{ITEMS}/{item['id']}")):
            response = await client.request(method, url, content=body, headers=headers)
            problem = assert_problem(response, 415)
            assert problem["type"] == "urn:items:problem:unsupported-media-type"


async def test_forms_and_multipart_are_415(
    client: httpx.AsyncClient, db: Any, item: dict[str, Any]
) -> None:
    async with unchanged(db):
        assert_problem(await client.post(ITEMS, data={"name": "x", "price": "1"}), 415)
        response = await client.post(ITEMS, files={"name": (None, "x"), "price": (None, "1")})
        assert_problem(response, 415)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
async def test_json_in_its_spellings_is_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    body = b'{"name": "typed", "price": "1"}'
    response = await client.post(ITEMS, content=body, headers={"content-type": content_type})
    assert response.status_code == 201, response.text


# -- text meant for PostgreSQL or Redis ----------------------------------------------------


HOSTILE_NAMES = [
    "'; DROP TABLE items;--",
    "Robert'); DELETE FROM events; --",
    "*1 $8 FLUSHALL",
    "]] redis.call('FLUSHALL') --[[",
    "{t:0}:gen",
    "* ? [a-z] \\ %s %n",
]
HOSTILE_TEXT = [
    "*1\r\n$8\r\nFLUSHALL\r\n",
    "EVAL \"return redis.call('FLUSHALL')\" 0\r\n",
    "'); DROP TABLE items; -- \\x00 $$; COPY events TO PROGRAM 'id'; --",
    '{"s": "-created_at", "a": "\\u0000"}',
]


async def _keys(redis: Redis, prefix: str) -> set[bytes]:
    return {key async for key in redis.scan_iter(match=f"{{{prefix}:*", count=1000)}


async def test_sql_and_redis_text_is_stored_and_returned_verbatim(
    client: httpx.AsyncClient, db: Any, redis: Redis, prefix: str
) -> None:
    first = await visible(client, await create(client, name="first"))
    keys_before = await _keys(redis, prefix)
    created = []
    for name, text in zip(HOSTILE_NAMES, HOSTILE_TEXT * 2, strict=False):
        item = await create(client, name=name, description=text)
        assert (item["name"], item["description"]) == (name, text)
        created.append(await visible(client, item))
    assert [(i["name"], i["description"]) for i in created] == list(
        zip(HOSTILE_NAMES, HOSTILE_TEXT * 2, strict=False)
    )
    patched = await client.patch(
        f"{ITEMS}/{created[0]['id']}", json={"description": HOSTILE_NAMES[0]}
    )
    assert patched.json()["description"] == HOSTILE_NAMES[0]

    # Nothing was interpreted: the tables, the other item and every earlier key remain.
    assert await db.fetchval("SELECT count(*) FROM items") == len(created) + 1
    stored = await db.fetch("SELECT name, description FROM items ORDER BY created_at")
    assert [r["name"] for r in stored] == ["first", *HOSTILE_NAMES]
    assert await _keys(redis, prefix) >= keys_before
    assert (await client.get(f"{ITEMS}/{first['id']}")).json() == first
    page = await eventually(
        lambda: client.get(ITEMS, params={"sort": "name", "limit": 100}),
        lambda r: len(r.json()["items"]) == len(created) + 1,
    )
    assert {i["name"] for i in page.json()["items"]} == {"first", *HOSTILE_NAMES}


@pytest.mark.parametrize("tag", ["*", "{t:0}", "a b", "FLUSHALL\r\n", "x]", "?", "a\x00"])
async def test_glob_and_hash_tag_text_is_no_tag(
    client: httpx.AsyncClient, db: Any, tag: str
) -> None:
    async with unchanged(db):
        problem = assert_problem(
            await client.post(ITEMS, json={"name": "x", "price": "1", "tags": [tag]}), 422
        )
        assert problem["errors"][0]["loc"] == ["body", "tags"]
        assert_problem(await client.get(ITEMS, params={"tag": tag}), 422)
