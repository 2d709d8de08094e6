"""Shared fixtures.

Real servers: TEST_DATABASE_URL / TEST_REDIS_URL when set, otherwise embedded
PostgreSQL and Redis started once per session in a temporary folder. Each session gets
its own database (migrated by the real Alembic migrations); each test gets empty
tables and its own Redis key prefix, so no test sees another's state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app import bootstrap
from app.api.app import create_app
from app.settings import Settings, asyncpg_dsn
from tests.helpers import Running, running
from tests.jetstream import URL as NATS_URL
from tests.jetstream import Stream, own_stream, reachable
from tests.servers import own_database


@pytest.fixture(scope="session")
def server_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(PostgreSQL admin URL, Redis URL) of the servers the suite runs against."""
    pg_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    redis_server = None
    root = tmp_path_factory.mktemp("servers")
    if not pg_url:
        from app.infrastructure.embedded import start_postgres

        pg_url = start_postgres(root)
    if not redis_url:
        from app.infrastructure.embedded import EmbeddedRedis

        redis_server = EmbeddedRedis(Path(root), persistent=False)
        redis_url = redis_server.start()
    yield pg_url, redis_url
    if redis_server is not None:
        redis_server.stop()


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A fresh database for this session, migrated to head."""
    with own_database(server_urls[0]) as url:
        yield url


@pytest.fixture
def redis_url(server_urls: tuple[str, str]) -> str:
    return server_urls[1]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_url: str, redis_url: str, prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        secret_key="test-secret-key-0123456789",
        projector_poll_interval=0.2,
        # On the test's own event loop: a child process per test app would cost a
        # second each. `items serve` in tests/faults and the bench smoke run it as a child.
        projector_in_child=False,
        _env_file=None,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection to the test database; the tables start empty."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.execute("TRUNCATE items, events, idempotency_keys, dead_letters RESTART IDENTITY")
    yield conn
    await conn.close()


@pytest.fixture
async def redis(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{{{prefix}:*", count=1000):
        await client.unlink(key)
    await client.aclose()


@pytest.fixture
async def container(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[bootstrap.Container]:
    built = bootstrap.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def app(settings: Settings, db: asyncpg.Connection, redis: Redis) -> AsyncIterator[Running]:
    """The app with its lifespan run and its read model live."""
    async with running(create_app(settings)) as started:
        yield started


@pytest.fixture
async def client(app: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with app.client() as c:
        yield c


@pytest.fixture
async def jetstream() -> AsyncIterator[Stream]:
    """A JetStream stream of this test's own on the machine's NATS (127.0.0.1:4222)."""
    if not reachable():
        pytest.skip(f"NATS with JetStream does not answer at {NATS_URL} (the relay's broker)")
    async with own_stream() as stream:
        yield stream
