"""Log lines of a real `items serve`: JSON with the request id (LOG_FORMAT=json,
ACCESS_LOG=true), and no secret on any line at any level."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.servers import serving


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_log_lines_carry_the_request_id(database_url: str, redis_url: str) -> None:
    env = {"LOG_FORMAT": "json", "ACCESS_LOG": "true"}
    with serving(database_url, redis_url, **env) as server:
        got = httpx.get(server.url + "/api/v1/items", headers={"X-Request-ID": "abc-123"})
        assert got.status_code == 200
        assert got.headers["x-request-id"] == "abc-123"
        missing = httpx.get(
            server.url + "/api/v1/items/00000000-0000-4000-8000-000000000000",
            headers={"X-Request-ID": "abc-124"},
        )
        assert missing.status_code == 404
        time.sleep(0.3)
        lines = _json_lines(server.log_tail(200_000))
    assert lines, "no JSON line at all"
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    access = [x for x in lines if x.get("request_id") == "abc-123"]
    assert access, lines[-5:]
    [line] = [x for x in access if x["logger"] == "items.access"]
    assert line["route"] == "/api/v1/items"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert any(x.get("request_id") == "abc-124" and x.get("status") == 404 for x in lines)
    # The start-up lines (uvicorn's own among them) are JSON too.
    assert any(x["logger"].startswith("uvicorn") for x in lines)


def test_without_access_log_a_request_writes_no_line(database_url: str, redis_url: str) -> None:
    """ACCESS_LOG is off by default: neither the service's access line nor uvicorn's.
    uvicorn's came back once through the root handler and took 40% of GET by id."""
    with serving(database_url, redis_url, LOG_FORMAT="json") as server:
        for _ in range(20):
            assert httpx.get(server.url + "/api/v1/items").status_code == 200
        time.sleep(0.3)
        lines = _json_lines(server.log_tail(200_000))
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # it does log, as JSON
    assert [x for x in lines if x["logger"] in ("uvicorn.access", "items.access")] == []


def test_no_secret_reaches_a_log_line(database_url: str, redis_url: str) -> None:
    key, secret, password = "key-Zq8w3n5v7x9", "signing-secret-Hk2m4p6r8t0", "pw-Tg5j7l9n1b3"
    head, _, tail = database_url.partition("://")
    user, _, rest = tail.partition("@")
    with_password = f"{head}://{user.split(':')[0]}:{password}@{rest}"
    env = {"API_KEYS": key, "SECRET_KEY": secret, "LOG_LEVEL": "debug", "ACCESS_LOG": "true"}
    with serving(with_password, redis_url, **env) as server:
        auth = {"Authorization": f"Bearer {key}"}
        assert (
            httpx.post(
                server.url + "/api/v1/items", json={"name": "a", "price": "1"}, headers=auth
            ).status_code
            == 201
        )
        assert httpx.post(
            server.url + "/api/v1/items", json={"name": "a", "price": "1"},
            headers={"Authorization": "Bearer wrong-key-123"},
        ).status_code == 403  # fmt: skip
        assert httpx.get(server.url + "/api/v1/admin/projection", headers=auth).status_code == 200
        time.sleep(0.3)
        log = server.log_tail(500_000)
    assert "API keys: 1 configured" in log  # the lines are there; only the secrets are not
    for leaked in (key, secret, password, "wrong-key-123"):
        assert leaked not in log, f"{leaked} in the log"
