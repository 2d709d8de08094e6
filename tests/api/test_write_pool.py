"""Every pooled PostgreSQL connection busy: a write waits DB_POOL_TIMEOUT at most, then
answers 503 write-model-busy with Retry-After (not a queue without bound), writes
nothing, and the next write after the crowd is gone succeeds."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from app.bootstrap import Container
from app.settings import Settings
from tests.helpers import Running

POOL_TIMEOUT = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A pool of at most two connections (DB_POOL_SIZE plus as much overflow).
    return settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout": POOL_TIMEOUT})


async def test_a_write_that_finds_every_connection_busy_is_503_busy_and_writes_nothing(
    app: Running, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    container: Container = app.container
    database = container.database
    held = [await database.acquire(), await database.acquire()]
    try:
        started = time.monotonic()
        async with asyncio.timeout(POOL_TIMEOUT + 5):  # a write queued for good fails here
            refused = await client.post("/api/v1/items", json={"name": "x", "price": "1.00"})
        waited = time.monotonic() - started
    finally:
        for conn in held:
            await database.release(conn)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:items:problem:write-model-busy"
    assert int(refused.headers["retry-after"]) >= 1
    assert POOL_TIMEOUT <= waited < POOL_TIMEOUT + 2
    assert await db.fetchval("SELECT count(*) FROM items") == 0
    assert await db.fetchval("SELECT count(*) FROM events") == 0

    created = await client.post("/api/v1/items", json={"name": "x", "price": "1.00"})
    assert created.status_code == 201, created.text
