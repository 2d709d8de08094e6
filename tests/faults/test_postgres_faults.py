"""PostgreSQL unreachable, through a proxy that cuts every connection or stops passing
anything on (tests/servers.py): writes answer 503 quickly, reads keep being
served from Redis, and when PostgreSQL returns the same app instance writes again, and
its projector reconnects, takes its lock back and projects the new writes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.settings import Settings, sqlalchemy_url
from tests.helpers import client_of, eventually, owners
from tests.servers import PgProxy

CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 1.0
QUICK = CONNECT_TIMEOUT + 1.5  # a write while PostgreSQL refuses answers within this
# ... and while it does not answer at all: the statement's timeout; then the connection
# is cut at once (app/infrastructure/postgres/pool.py), not closed politely.
HUNG = COMMAND_TIMEOUT + 1.5


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[PgProxy]:
    proxy = PgProxy(database_url)
    proxy.start()
    yield proxy
    proxy.close()


@pytest.mark.slow
async def test_postgres_down_reads_go_on_and_writes_come_back_without_a_restart(
    pg_proxy: PgProxy, settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    async with _served_behind(pg_proxy, settings) as c:
        await _outage_and_return(c, pg_proxy, db, settings.redis_prefix)


@contextlib.asynccontextmanager
async def _served_behind(
    proxy: PgProxy, settings: Settings, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app (lifespan run, read model ready) reaching PostgreSQL only
    through `proxy`, with short timeouts so a fault shows quickly."""
    behind_proxy = settings.model_copy(
        update={
            "database_url": sqlalchemy_url(proxy.url),
            "db_connect_timeout": CONNECT_TIMEOUT,
            "projector_poll_interval": 0.2,
            **overrides,
        }
    )
    async with client_of(behind_proxy) as c:
        yield c


async def _outage_and_return(
    c: httpx.AsyncClient, proxy: PgProxy, db: asyncpg.Connection, prefix: str
) -> None:
    item = (await _write(c, "POST", "", {"name": "a", "price": "1.00", "tags": ["x"]}, 201)).json()
    await eventually(lambda: c.get(_url(item)), lambda r: r.status_code == 200)

    # PostgreSQL restarted while the service idled: every pooled connection is dead,
    # and still the next write succeeds at its first try.
    proxy.cut()
    proxy.restore()
    other = await _write(c, "POST", "", {"name": "b", "price": "2.00"}, 201)
    token = {"Consistency-Token": other.headers["consistency-token"]}
    assert (await c.get(_url(other.json()), headers=token)).status_code == 200

    proxy.cut()
    for method, path, body in (
        ("POST", "", {"name": "c", "price": "3.00"}),
        ("PATCH", f"/{item['id']}", {"price": "1.50"}),
        ("DELETE", f"/{item['id']}", None),
    ):
        refused = await _write(c, method, path, body, 503)
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"] == "urn:items:problem:write-model-unreachable"

    # Reads are served from Redis, as before, read-your-writes included.
    assert (await c.get(_url(item))).json() == item
    assert (await c.get(_url(other.json()), headers=token)).json() == other.json()
    page = await c.get("/api/v1/items", params={"tag": "x"})
    assert page.status_code == 200
    assert page.json()["items"] == [item]
    assert (await c.get("/api/v1/items")).json()["total"] == 2

    started = time.monotonic()
    ready = await c.get("/readyz")
    assert time.monotonic() - started < QUICK
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["postgres"] != "ok", checks
    assert checks["redis"] == "ok", checks
    assert "postgres" in ready.json()["detail"]
    # The projector's connections went with the cut: its lease lapses, unrenewed.
    await eventually(_owned(db, prefix), lambda held: not held, within=LEASE + 2)

    proxy.restore()
    # The same instance writes again at once: no restart, no failed first write.
    patched = await _write(c, "PATCH", f"/{item['id']}", {"price": "1.50"}, 200)
    assert patched.json()["version"] == 2
    started = time.monotonic()
    await eventually(_owned(db, prefix), bool, within=LEASE + 2)
    token = {"Consistency-Token": patched.headers["consistency-token"]}
    seen = await eventually(
        lambda: c.get(_url(item), headers=token), lambda r: r.status_code == 200
    )
    assert seen.json() == patched.json()
    print(f"projector back and caught up {time.monotonic() - started:.2f}s after restore")  # noqa: T201
    assert (await c.get("/readyz")).status_code == 200


async def test_a_postgres_that_stops_answering_costs_a_write_one_timeout(
    pg_proxy: PgProxy, settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    async with _served_behind(pg_proxy, settings, db_command_timeout=COMMAND_TIMEOUT) as c:
        item = (await _write(c, "POST", "", {"name": "a", "price": "1"}, 201)).json()
        await eventually(lambda: c.get(_url(item)), lambda r: r.status_code == 200)

        pg_proxy.freeze()  # nothing is refused, nothing is answered
        try:
            refused = await _write(c, "PATCH", f"/{item['id']}", {"name": "b"}, 503, HUNG)
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
            assert (await c.get(_url(item))).json() == item
            ready = await c.get("/readyz")
            assert ready.json()["checks"]["postgres"] != "ok"
        finally:
            pg_proxy.thaw()
        patched = await _write(c, "PATCH", f"/{item['id']}", {"name": "b"}, 200)
        token = {"Consistency-Token": patched.headers["consistency-token"]}
        seen = await eventually(
            lambda: c.get(_url(item), headers=token), lambda r: r.status_code == 200
        )
        assert seen.json() == patched.json()


LEASE = 5.0  # PROJECTOR_LEASE_SECONDS' default


def _owned(db: asyncpg.Connection, prefix: str) -> Any:
    async def probe() -> dict[int, int]:
        return await owners(db, prefix)

    return probe


def _url(item: dict[str, Any]) -> str:
    return f"/api/v1/items/{item['id']}"


async def _write(
    c: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    within: float = QUICK,
) -> httpx.Response:
    started = time.monotonic()
    async with asyncio.timeout(within + 5):  # a hang fails the test instead of stalling it
        response = await c.request(method, "/api/v1/items" + path, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == status, response.text
    assert elapsed < within, f"{method} took {elapsed:.2f}s"
    return response
