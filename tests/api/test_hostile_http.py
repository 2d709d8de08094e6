"""Hostile bytes on a real socket, against `items serve` (uvicorn with httptools).

What the ASGI tests cannot send: framing the HTTP parser must judge (Content-Length
that is no number, Content-Length with chunked encoding, a chunked body past the limit)
and raw bytes in the request line and headers. The parser's own refusals never reach the
app: uvicorn answers them, through app/api/http_protocol.py as problem+json too; whatever
reaches the app is answered with problem+json. Nothing changes in PostgreSQL, and the
server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from app.settings import asyncpg_dsn
from tests.servers import LiveServer, own_database, serving

PROBLEM = b"application/problem+json"
HEAD = b"Host: test\r\nConnection: close\r\n"
JSON = b"Content-Type: application/json\r\n"


@pytest.fixture(scope="module")
def live(server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    admin_url, redis_url = server_urls
    with own_database(admin_url) as database_url, serving(database_url, redis_url) as server:
        created = httpx.post(f"{server.url}/api/v1/items", json={"name": "kept", "price": "1"})
        assert created.status_code == 201
        yield server


def exchange(server: LiveServer, request: bytes) -> tuple[int, bytes, bytes]:
    """Send raw bytes; (status, content type, body) of the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get(b"content-type", b""), body


def counts(server: LiveServer) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        conn = await asyncpg.connect(asyncpg_dsn(server.database_url))
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM events)"
            )
            return int(row[0]), int(row[1])
        finally:
            await conn.close()

    return asyncio.run(run())


def chunked(size: int) -> bytes:
    return b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(size // 4096)) + b"0\r\n\r\n"


PARSER_REFUSES = {
    "Content-Length not a number": b"POST /api/v1/items HTTP/1.1\r\n"
    + HEAD
    + JSON
    + b"Content-Length: abc\r\n\r\n{}",
    "negative Content-Length": b"POST /api/v1/items HTTP/1.1\r\n"
    + HEAD
    + JSON
    + b"Content-Length: -1\r\n\r\n{}",
    "Content-Length and chunked": b"POST /api/v1/items HTTP/1.1\r\n"
    + HEAD
    + JSON
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "invalid UTF-8 in the path": b"GET /api/v1/items/\xff\xfe HTTP/1.1\r\n" + HEAD + b"\r\n",
    "NUL in the path": b"GET /api/v1/items/\x00 HTTP/1.1\r\n" + HEAD + b"\r\n",
    "invalid UTF-8 in the query": b"GET /api/v1/items?tag=\xff HTTP/1.1\r\n" + HEAD + b"\r\n",
    "NUL in a header": b"GET /api/v1/items HTTP/1.1\r\n" + HEAD + b"X-A: a\x00b\r\n\r\n",
    # A request line past the header block's bound is 414: tests/api/test_http_edge.py.
}

APP_REFUSES = {
    "a chunked body past 64 KiB": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HEAD + JSON + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunked(80 * 1024),
        413,
    ),
    "a declared body past 64 KiB": (
        b"PATCH /api/v1/items/00000000-0000-4000-8000-000000000001 HTTP/1.1\r\n" + HEAD + JSON
        + b"Content-Length: 70000\r\n\r\n" + b" " * 70_000,
        413,
    ),
    "Latin-1 in a Consistency-Token": (
        b"GET /api/v1/items HTTP/1.1\r\n" + HEAD + b"Consistency-Token: \xff\xfe\r\n\r\n",
        400,
    ),
    "Latin-1 in an Idempotency-Key": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HEAD + JSON
        + b"Idempotency-Key: \xff\r\nContent-Length: 26\r\n\r\n"
        + b'{"name": "x", "price": 1} ',
        400,
    ),
    "a body in UTF-16": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HEAD + JSON + b"Content-Length: 6\r\n\r\n"
        + "{}".encode("utf-16"),
        400,
    ),
}  # fmt: skip


@pytest.mark.parametrize("request_bytes", PARSER_REFUSES.values(), ids=PARSER_REFUSES.keys())
def test_the_http_parser_refuses_malformed_requests(live: LiveServer, request_bytes: bytes) -> None:
    before = counts(live)
    status, content_type, body = exchange(live, request_bytes)
    assert (status, content_type) == (400, PROBLEM), body
    problem = json.loads(body)
    assert problem["status"] == 400
    assert problem["type"].startswith("urn:items:problem:"), problem
    assert counts(live) == before
    assert httpx.get(f"{live.url}/readyz").status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "expected"), APP_REFUSES.values(), ids=APP_REFUSES.keys()
)
def test_the_app_refuses_with_a_problem(
    live: LiveServer, request_bytes: bytes, expected: int
) -> None:
    before = counts(live)
    status, content_type, body = exchange(live, request_bytes)
    assert (status, content_type) == (expected, PROBLEM), body
    assert counts(live) == before
    assert httpx.get(f"{live.url}/readyz").status_code == 200
