"""Who may write: bearer API keys, operator-only endpoints, CORS (issue 5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.settings import Settings
from tests.helpers import (
    KEY,
    OTHER_KEY,
    UNKNOWN_KEY,
    assert_problem,
    bearer,
    client_of,
    eventually,
    visible,
    with_keys,
)

ORIGIN = "https://app.example"
ITEM = {"name": "Desk lamp", "price": "24.90"}


@pytest.fixture
async def keyed(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(with_keys(settings)) as c:
        yield c


@pytest.fixture
async def closed_reads(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(with_keys(settings, read_requires_key=True)) as c:
        yield c


@pytest.fixture
async def cors(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(with_keys(settings, cors_origins=(ORIGIN,))) as c:
        yield c


async def nothing_written(db: asyncpg.Connection) -> None:
    for table in ("items", "events", "idempotency_keys"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


# --- writes ------------------------------------------------------------------------------


async def test_write_without_a_key_is_401_and_changes_nothing(
    keyed: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await keyed.post("/api/v1/items", json=ITEM)
    body = assert_problem(response, 401)
    assert body["type"] == "urn:items:problem:unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    await nothing_written(db)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        KEY,
        f"Token {KEY}",
        f"Bearer {KEY} extra",
    ],
)
async def test_malformed_authorization_is_401(
    keyed: httpx.AsyncClient, db: asyncpg.Connection, authorization: str
) -> None:
    response = await keyed.post(
        "/api/v1/items", json=ITEM, headers={"Authorization": authorization}
    )
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    await nothing_written(db)


@pytest.mark.parametrize("key", [UNKNOWN_KEY, KEY[:-1], KEY + "0", KEY.upper()])
async def test_unknown_key_is_403_and_changes_nothing(
    keyed: httpx.AsyncClient, db: asyncpg.Connection, key: str
) -> None:
    response = await keyed.post(
        "/api/v1/items", json=ITEM, headers={**bearer(key), "Idempotency-Key": "k-1"}
    )
    body = assert_problem(response, 403)
    assert body["type"] == "urn:items:problem:forbidden"
    await nothing_written(db)


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
async def test_any_configured_key_may_write(keyed: httpx.AsyncClient, key: str) -> None:
    response = await keyed.post("/api/v1/items", json=ITEM, headers=bearer(key))
    assert response.status_code == 201, response.text
    assert response.json()["name"] == ITEM["name"]


async def test_the_scheme_is_case_insensitive(keyed: httpx.AsyncClient) -> None:
    response = await keyed.post(
        "/api/v1/items", json=ITEM, headers={"Authorization": f"bearer {KEY}"}
    )
    assert response.status_code == 201, response.text


async def test_patch_and_delete_need_a_key(keyed: httpx.AsyncClient) -> None:
    created = (await keyed.post("/api/v1/items", json=ITEM, headers=bearer(KEY))).json()
    path = f"/api/v1/items/{created['id']}"
    assert_problem(await keyed.patch(path, json={"name": "x"}), 401)
    assert_problem(await keyed.delete(path, headers=bearer(UNKNOWN_KEY)), 403)
    assert_problem(await keyed.put(path, json=ITEM), 401)
    patched = await keyed.patch(path, json={"name": "x"}, headers=bearer(OTHER_KEY))
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    assert (await keyed.delete(path, headers=bearer(KEY))).status_code == 204


async def test_an_oversized_body_without_a_key_is_refused_before_it_is_read(
    keyed: httpx.AsyncClient,
) -> None:
    response = await keyed.post("/api/v1/items", content=b"x" * 100_000)
    assert_problem(response, 401)


# --- reads and open paths ----------------------------------------------------------------


async def test_reads_stay_open_by_default(keyed: httpx.AsyncClient) -> None:
    created = (await keyed.post("/api/v1/items", json=ITEM, headers=bearer(KEY))).json()
    assert (await visible(keyed, created))["id"] == created["id"]
    listed = await keyed.get("/api/v1/items")
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()["items"]] == [created["id"]]


async def test_reads_need_a_key_when_configured(closed_reads: httpx.AsyncClient) -> None:
    response = await closed_reads.get("/api/v1/items")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await closed_reads.get("/api/v1/items", headers=bearer(UNKNOWN_KEY)), 403)
    assert (await closed_reads.get("/api/v1/items", headers=bearer(KEY))).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
async def test_health_and_docs_stay_open(closed_reads: httpx.AsyncClient, path: str) -> None:
    assert (await closed_reads.get(path)).status_code == 200


async def test_options_is_not_refused(keyed: httpx.AsyncClient) -> None:
    response = await keyed.options("/api/v1/items")
    assert response.status_code not in (401, 403)


# --- operator-only -----------------------------------------------------------------------


async def test_admin_projection_needs_a_key_even_for_a_get(keyed: httpx.AsyncClient) -> None:
    assert_problem(await keyed.get("/api/v1/admin/projection"), 401)
    assert_problem(await keyed.get("/api/v1/admin/projection", headers=bearer(UNKNOWN_KEY)), 403)
    await keyed.post("/api/v1/items", json=ITEM, headers=bearer(KEY))

    async def projection() -> httpx.Response:
        return await keyed.get("/api/v1/admin/projection", headers=bearer(OTHER_KEY))

    response = await eventually(
        projection, lambda r: r.status_code == 200 and r.json()["lag_events"] == 0
    )
    assert response.headers["content-type"] == "application/json"
    found = response.json()
    assert found["head_position"] == 1
    assert found["read_model"] == "live"
    assert [p["partition"] for p in found["partitions"]] == [0]


async def test_admin_projection_is_open_without_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/admin/projection")
    assert response.status_code == 200, response.text
    assert response.json()["head_position"] == 0


# --- logs and start-up -------------------------------------------------------------------


async def test_keys_never_reach_the_logs(
    keyed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await keyed.post("/api/v1/items", json=ITEM, headers=bearer(KEY))).status_code == 201
    assert_problem(await keyed.post("/api/v1/items", json=ITEM, headers=bearer(UNKNOWN_KEY)), 403)
    assert_problem(await keyed.get("/api/v1/admin/projection", headers=bearer(UNKNOWN_KEY)), 403)
    assert caplog.records, "the refusals should be logged (without the key)"
    for secret in (KEY, OTHER_KEY, UNKNOWN_KEY):
        assert secret not in caplog.text


async def test_start_up_warns_loudly_without_keys(
    settings: Settings, db: asyncpg.Connection, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with client_of(settings):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("API_KEYS is not set" in m and "OPEN" in m for m in warnings), warnings


async def test_start_up_counts_the_keys_without_showing_them(
    settings: Settings, db: asyncpg.Connection, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client_of(with_keys(settings)):
        pass
    assert not any("API_KEYS is not set" in r.getMessage() for r in caplog.records)
    assert any("2 configured" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
    assert OTHER_KEY not in caplog.text


# --- settings ----------------------------------------------------------------------------


def test_settings_read_comma_separated_keys_and_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", f" {KEY}, {OTHER_KEY},,")
    monkeypatch.setenv("CORS_ORIGINS", f"{ORIGIN},https://admin.example")
    monkeypatch.setenv("READ_REQUIRES_KEY", "true")
    settings = Settings(_env_file=None)
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OTHER_KEY]
    assert settings.cors_origins == (ORIGIN, "https://admin.example")
    assert settings.read_requires_key is True
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert KEY not in shown
        assert OTHER_KEY not in shown


def test_settings_default_to_no_keys_and_no_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEYS", "CORS_ORIGINS", "READ_REQUIRES_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.api_keys == ()
    assert settings.api_key_digests == ()
    assert settings.cors_origins == ()
    assert settings.read_requires_key is False
    monkeypatch.setenv("API_KEYS", "")
    assert Settings(_env_file=None).api_keys == ()


# --- OpenAPI -----------------------------------------------------------------------------


async def test_openapi_declares_the_bearer_scheme_on_writes(keyed: httpx.AsyncClient) -> None:
    spec = (await keyed.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the keys in API_KEYS.",
    }
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/items", "post"),
        ("/api/v1/items/{item_id}", "patch"),
        ("/api/v1/items/{item_id}", "delete"),
        ("/api/v1/admin/projection", "get"),
    ]:
        operation = paths[path][method]
        assert operation["security"] == [{"bearer": []}], (path, method)
        assert {"401", "403"} <= operation["responses"].keys(), (path, method)
    for path in ("/api/v1/items", "/api/v1/items/{item_id}", "/healthz"):
        assert "security" not in paths[path]["get"], path


async def test_openapi_has_no_security_without_keys(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in spec.get("components", {})
    assert "security" not in spec["paths"]["/api/v1/items"]["post"]


# --- CORS --------------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    answer = await client.options("/api/v1/items", headers=preflight(ORIGIN))
    assert "access-control-allow-origin" not in answer.headers
    simple = await client.get("/api/v1/items", headers={"Origin": ORIGIN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


async def test_a_configured_origin_is_allowed(cors: httpx.AsyncClient) -> None:
    answer = await cors.options("/api/v1/items", headers=preflight(ORIGIN))
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "idempotency-key" in allowed
    assert "POST" in answer.headers["access-control-allow-methods"]

    simple = await cors.get("/api/v1/items", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    exposed = simple.headers["access-control-expose-headers"].lower()
    for name in ("etag", "location", "consistency-token", "x-projection-position"):
        assert name in exposed


async def test_refusals_carry_cors_headers(cors: httpx.AsyncClient) -> None:
    refused = await cors.post("/api/v1/items", json=ITEM, headers={"Origin": ORIGIN})
    assert_problem(refused, 401)
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    forbidden = await cors.post(
        "/api/v1/items", json=ITEM, headers={"Origin": ORIGIN, **bearer(UNKNOWN_KEY)}
    )
    assert_problem(forbidden, 403)
    assert forbidden.headers["access-control-allow-origin"] == ORIGIN


async def test_another_origin_is_not_allowed(cors: httpx.AsyncClient) -> None:
    other = "https://evil.example"
    answer = await cors.options("/api/v1/items", headers=preflight(other))
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    simple = await cors.get("/api/v1/items", headers={"Origin": other})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_the_signing_key_never_shows_in_a_repr_of_the_settings() -> None:
    settings = Settings(secret_key="a-signing-key-of-some-length", _env_file=None)
    assert "a-signing-key-of-some-length" not in repr(settings)
    assert settings.signing_key == "a-signing-key-of-some-length"
    assert not settings.random_signing_key
