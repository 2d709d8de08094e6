"""Redis faults on a real Redis server of the test's own (tests/servers.py).

1. Redis unreachable (killed): writes still succeed and their events wait in
   PostgreSQL; reads and readiness answer 503 quickly; when Redis comes back (empty, a
   new process) the projector restores the read model by itself and every write made
   before and during the outage is visible. Shown end to end with `items serve`.
   A hung Redis (frozen: it accepts connections and never answers) costs a read one
   short timeout, not a hang.
2. Redis restarted empty while the service runs: readiness and `items status` report
   the missing read model, the projector restores it with no operator action, and
   `items verify` finds nothing lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from app.commands import outbox
from app.domain.events import ItemCreated
from app.infrastructure.redis.keys import KeyLayout
from app.queries.cache.views import LEASE
from app.queries.tokens import TokenCodec
from app.settings import Settings, asyncpg_dsn
from tests.helpers import client_of, eventually, owners
from tests.servers import ITEMS, ItemsProcess, RedisServer, Spawner, free_port, items_env, refuses

REDIS_TIMEOUT = 1.0
WAIT_MS = 1000  # CONSISTENCY_WAIT_MS: how long a read with a token may wait
QUICK = 3.0  # a read or a readiness probe while Redis is down answers within this


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": redis_server.url,
            "redis_timeout": REDIS_TIMEOUT,
            "consistency_wait_ms": WAIT_MS,
            "projector_poll_interval": 0.2,
        }
    )


@pytest.fixture
async def fault_client(
    fault_settings: Settings, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, with its projector, on the test's own Redis."""
    async with client_of(fault_settings) as c:
        yield c


# -- 1. Redis unreachable ------------------------------------------------------------------


@pytest.mark.slow
async def test_redis_down_writes_wait_in_postgresql_and_the_service_catches_up(
    redis_server: RedisServer, settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = items_env(
        settings,
        REDIS_URL=redis_server.url,
        REDIS_TIMEOUT=str(REDIS_TIMEOUT),
        CONSISTENCY_WAIT_MS=str(WAIT_MS),
        PROJECTOR_IN_PROCESS="true",
    )
    port = free_port()
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.serve("serve", env, port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                await _outage_and_recovery(c, redis_server, settings, db, serve)
        finally:
            code = await serve.stop()
        assert code == 0, serve.log()


async def _outage_and_recovery(
    c: httpx.AsyncClient,
    redis_server: RedisServer,
    settings: Settings,
    db: asyncpg.Connection,
    serve: ItemsProcess,
) -> None:
    kept = await _write(c, "POST", "", 201, {"name": "kept", "price": "1.00"})
    doomed = await _write(c, "POST", "", 201, {"name": "doomed", "price": "2.00"})
    await eventually(lambda: c.get(_url(doomed)), lambda r: r.status_code == 200)

    redis_server.stop()
    assert refuses(redis_server.port)

    # Writes succeed: they need PostgreSQL only, and their events wait there.
    during = await _write(c, "POST", "", 201, {"name": "during", "price": "3.00"})
    patch = await c.patch(_url(kept), json={"price": "1.50"})
    assert patch.status_code == 200, patch.text
    kept = patch.json()
    assert (await c.delete(_url(doomed))).status_code == 204
    logged = await db.fetch(
        "SELECT item_id::text, item_version, type FROM events ORDER BY position"
    )
    assert [tuple(r) for r in logged[-3:]] == [
        (during["id"], 1, "ItemCreated"),
        (kept["id"], 2, "ItemUpdated"),
        (doomed["id"], 2, "ItemDeleted"),
    ]

    # Reads answer 503 problem+json with Retry-After, quickly.
    for path in (_url(kept), "/api/v1/items"):
        await _unavailable(c, path, within=QUICK)
    # Read-your-writes waits at most its bound, then 503 (never a stale view).
    token = {"Consistency-Token": patch.headers["consistency-token"]}
    await _unavailable(c, _url(kept), within=WAIT_MS / 1000 + QUICK, headers=token)

    started = time.monotonic()
    ready = await c.get("/readyz")
    assert time.monotonic() - started < QUICK
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.headers["retry-after"]
    checks = ready.json()["checks"]
    assert checks["redis"] != "ok", checks
    assert checks["postgres"] == "ok", checks
    assert "redis" in ready.json()["detail"]

    # The projector has not died: it still owns its partition (renews the lease: that
    # is PostgreSQL's business, up all along) and retries.
    assert serve.running
    assert await owners(db, settings.redis_prefix)
    later = await _write(c, "POST", "", 201, {"name": "later", "price": "4.00"})

    redis_server.start()  # a new, empty server on the same port
    started = time.monotonic()
    await eventually(lambda: c.get("/readyz"), lambda r: r.status_code == 200, within=12)
    restored_in = time.monotonic() - started

    # Every write, before and during the outage, is visible at its version.
    for item in (kept, during, later):
        got = await c.get(_url(item))
        assert got.status_code == 200, got.text
        assert got.json() == item
    assert (await c.get(_url(doomed))).status_code == 404
    page = (await c.get("/api/v1/items")).json()
    assert sorted(i["id"] for i in page["items"]) == sorted(i["id"] for i in (kept, during, later))

    # The checkpoint watcher (pub/sub) is subscribed again on the new server, so a
    # read-your-writes read is woken by the projector instead of polling.
    await _watcher_resubscribed(redis_server.url, settings, db, c)
    print(f"read model restored {restored_in:.2f}s after Redis came back")  # noqa: T201


async def _watcher_resubscribed(
    redis_url: str, settings: Settings, db: asyncpg.Connection, c: httpx.AsyncClient
) -> None:
    channel = KeyLayout(settings.redis_prefix, settings.projection_partitions).checkpoint_channel
    client = Redis.from_url(redis_url)
    try:

        async def subscribers() -> int:
            counts = await client.pubsub_numsub(channel)
            return int(counts[0][1])

        await eventually(subscribers, lambda n: n >= 1, within=5)
    finally:
        await client.aclose()

    tokens = TokenCodec(settings.signing_key)
    some = (await c.get("/api/v1/items?limit=1")).json()["items"][0]
    for attempt in range(2):
        # A read waiting for the next position; the write that fills it comes after.
        head = int(await db.fetchval("SELECT max(position) FROM events"))
        waiting = {"Consistency-Token": tokens.issue(head + 1)}
        started = time.monotonic()
        read = asyncio.create_task(c.get(_url(some), headers=waiting))
        await asyncio.sleep(0.05)
        await _write(c, "POST", "", 201, {"name": f"ryw {attempt}", "price": "1"})
        answer = await read
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        # Without a publish the read only re-checks every 0.5 s.
        assert elapsed < 0.45, f"read-your-writes took {elapsed:.2f}s: not woken by pub/sub"


async def test_a_hung_redis_costs_a_read_one_short_timeout(
    fault_client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    c = fault_client
    item = await _write(c, "POST", "", 201, {"name": "a", "price": "1"})
    await eventually(lambda: c.get(_url(item)), lambda r: r.status_code == 200)

    redis_server.freeze()  # connections are accepted, nothing ever answers
    try:
        # The view cache may answer a GET by id for up to its lease after the last PONG
        # (app/queries/cache/views.py); past that, with no PONG, every read goes to Redis. Without
        # the lease this read was answered 200 from the cache for as long as Redis hung.
        await asyncio.sleep(LEASE)
        for path in (_url(item), "/api/v1/items"):
            await _unavailable(c, path, within=REDIS_TIMEOUT + 1.5)
        started = time.monotonic()
        ready = await c.get("/readyz")
        assert time.monotonic() - started < QUICK
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] != "ok"
        written = await _write(c, "PATCH", f"/{item['id']}", 200, {"name": "b"})
    finally:
        redis_server.thaw()
    got = await eventually(
        lambda: c.get(_url(item)), lambda r: r.status_code == 200 and r.json() == written
    )
    assert got.json()["version"] == 2


# -- 2. Redis restarted empty --------------------------------------------------------------


@pytest.mark.slow
async def test_redis_restarted_empty_is_reported_and_restored_without_operator_action(
    fault_client: httpx.AsyncClient,
    fault_settings: Settings,
    redis_server: RedisServer,
    db: asyncpg.Connection,
) -> None:
    c = fault_client
    made = [await _write(c, "POST", "", 201, {"name": f"n{i}", "price": "1"}) for i in range(8)]
    await _write(c, "PATCH", f"/{made[0]['id']}", 200, {"name": "renamed"})
    await _write(c, "PATCH", f"/{made[0]['id']}", 200, {"price": "9.99"})
    assert (await c.delete(_url(made[1]))).status_code == 204
    await _all_visible(c, db)

    # While the projector is idle: it notices the lost generation and restores it.
    redis_server.restart()
    started = time.monotonic()
    await eventually(lambda: c.get("/readyz"), lambda r: r.status_code == 200, within=5)
    restored_in = time.monotonic() - started
    await _all_visible(c, db)

    # Again, with a write transaction left open (a hole in the positions): the restore
    # cannot finish before it ends, so the missing read model must be reported meanwhile.
    assert fault_settings.database_url
    hole = await asyncpg.connect(asyncpg_dsn(fault_settings.database_url))
    try:
        await _begin_create(hole)
        after_hole = await _write(c, "POST", "", 201, {"name": "after the hole", "price": "2"})
        redis_server.restart()
        for _ in range(2):
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            checks = ready.json()["checks"]
            assert checks["read_model"] != "ok", checks
            assert checks["redis"] == "ok", checks
            await _unavailable(c, _url(made[0]), within=QUICK, kind="read-model-unavailable")
            await asyncio.sleep(0.3)
        text = await _items(fault_settings, "status")
        assert text.returncode == 0, text.stderr
        assert "read model:      missing" in text.stdout, text.stdout
        assert "no live generation" in text.stdout, text.stdout
    finally:
        await hole.execute("ROLLBACK")
        await hole.close()

    await eventually(lambda: c.get("/readyz"), lambda r: r.status_code == 200, within=5)
    await _all_visible(c, db)
    assert (await c.get(_url(after_hole))).json() == after_hole
    status, verified = await asyncio.gather(
        _items(fault_settings, "status", "--json"), _items(fault_settings, "verify")
    )
    found = json.loads(status.stdout)
    assert found["read_model"] == "live"
    assert found["lag_events"] == 0
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(f"idle projector restored the read model in {restored_in:.2f}s")  # noqa: T201


async def _all_visible(c: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    """Every item of PostgreSQL is served, at its version; deleted ones are not."""
    rows = await db.fetch("SELECT id::text, version FROM items")
    expected = {r["id"]: r["version"] for r in rows}

    async def served() -> dict[str, int]:
        page = await c.get("/api/v1/items", params={"limit": 100})
        if page.status_code != 200:
            return {}
        return {i["id"]: i["version"] for i in page.json()["items"]}

    await eventually(served, lambda s: s == expected, within=5)
    gone = await db.fetch("SELECT DISTINCT item_id::text FROM events WHERE type = 'ItemDeleted'")
    for r in gone:
        assert (await c.get(f"/api/v1/items/{r['item_id']}")).status_code == 404


async def _begin_create(conn: asyncpg.Connection) -> None:
    """Open a transaction that writes an item and its event as the repositories do
    (row first, then the event) and leave it open: its position is a hole."""
    item_id, now = uuid.uuid4(), datetime.now(UTC)
    event = ItemCreated(
        item_id=item_id, version=1, occurred_at=now, name="open", description=None,
        price=Decimal("1.00"), tags=(),
    )  # fmt: skip
    await conn.execute("BEGIN")
    await conn.execute(
        "INSERT INTO items (id, name, price, version, created_at, updated_at)"
        " VALUES ($1, 'open', 1.00, 1, $2, $2)",
        item_id, now,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)"
        " VALUES ($1, $2, 1, 'ItemCreated', $3::jsonb, $4)",
        event.event_id, item_id, orjson.dumps(outbox.to_payload(event)).decode(), now,
    )  # fmt: skip


# -- helpers -------------------------------------------------------------------------------


def _url(item: dict[str, Any]) -> str:
    return f"/api/v1/items/{item['id']}"


async def _write(
    c: httpx.AsyncClient, method: str, path: str, status: int, body: dict[str, Any]
) -> dict[str, Any]:
    started = time.monotonic()
    async with asyncio.timeout(QUICK + 5):
        response = await c.request(method, "/api/v1/items" + path, json=body)
    assert response.status_code == status, response.text
    assert time.monotonic() - started < QUICK
    item: dict[str, Any] = response.json()
    return item


async def _unavailable(
    c: httpx.AsyncClient,
    path: str,
    *,
    within: float,
    kind: str = "read-model-unreachable",
    headers: dict[str, str] | None = None,
) -> None:
    started = time.monotonic()
    async with asyncio.timeout(within + 5):  # a hang fails the test instead of stalling it
        response = await c.get(path, headers=headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["type"] == f"urn:items:problem:{kind}"
    assert elapsed < within, f"GET {path} took {elapsed:.2f}s"


async def _items(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `items` command against this test's stores."""
    assert settings.database_url
    assert settings.redis_url
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "SECRET_KEY": settings.signing_key,
    }
    return await asyncio.to_thread(
        subprocess.run,
        [ITEMS, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
