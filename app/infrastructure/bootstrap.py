"""The composition root: the one place that turns settings into connected parts.

The API's lifespan, the projector process and the operator commands all start here.
Nothing connects at import time; `build` creates clients that connect on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.commands.bus import CommandBus
from app.infrastructure.database import Database
from app.infrastructure.projection_store import ProjectionStore
from app.infrastructure.projector import Projector
from app.infrastructure.redis_keys import KeyLayout
from app.infrastructure.repositories import purge_expired_keys
from app.infrastructure.settings import Settings, asyncpg_dsn
from app.infrastructure.unit_of_work import PgUnitOfWork
from app.queries.cursor import CursorCodec
from app.queries.handlers import QueryHandlers
from app.queries.page_cache import PageCache
from app.queries.read_model import CheckpointWatcher, ReadModel
from app.queries.tokens import TokenCodec
from app.queries.view_cache import ViewCache

# List pages (page_cache.py) may take 1/PAGE_SHARE of VIEW_CACHE_MB, views the rest:
# a page of 20 is a few KiB and a few hundred distinct pages serve most traffic.
PAGE_SHARE = 8


@dataclass
class Container:
    settings: Settings
    database: Database
    redis: Redis
    layout: KeyLayout
    bus: CommandBus
    queries: QueryHandlers
    read_model: ReadModel
    projection_store: ProjectionStore
    watcher: CheckpointWatcher
    view_cache: ViewCache
    page_cache: PageCache
    tokens: TokenCodec

    def projector(self) -> Projector:
        return make_projector(self.settings, self.redis)

    async def purge_idempotency_keys(self) -> int:
        """Delete expired Idempotency-Key records, a small batch per transaction."""
        removed = 0
        while True:
            async with self.database.connection() as conn:
                batch = await purge_expired_keys(conn)
            removed += batch
            if batch == 0:
                return removed

    async def close(self) -> None:
        await self.redis.aclose()
        await self.database.close()


def make_redis(settings: Settings) -> Redis:
    _, redis_url = settings.require_urls()
    # A blocking pool queues callers when every connection is busy instead of failing
    # them; the timeouts turn an unreachable Redis into a quick error, not a hang.
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        # After a Redis restart every pooled connection is dead; one immediate retry on
        # a fresh connection keeps that from failing a request per pooled connection.
        # Not on timeouts: a hung Redis must cost a request one timeout, not two.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        # Named, so an operator (or a test) can find this process's connections, among
        # them the pub/sub one the view cache depends on.
        client_name=f"items:{settings.redis_prefix}",
    )
    return Redis(connection_pool=pool)


def make_projector(settings: Settings, redis: Redis) -> Projector:
    database_url, _ = settings.require_urls()
    layout = KeyLayout(settings.redis_prefix, settings.projection_partitions)
    return Projector(
        asyncpg_dsn(database_url),
        ProjectionStore(redis, layout),
        batch_size=settings.projector_batch_size,
        poll_interval=settings.projector_poll_interval,
    )


def build(settings: Settings) -> Container:
    database = Database(settings)
    redis = make_redis(settings)
    layout = KeyLayout(settings.redis_prefix, settings.projection_partitions)
    read_model = ReadModel(redis, layout)
    budget = settings.view_cache_mb * 1024 * 1024
    view_cache = ViewCache(budget - budget // PAGE_SHARE)
    page_cache = PageCache(view_cache, budget // PAGE_SHARE)
    watcher = CheckpointWatcher(redis, layout.checkpoint_channel, read_model, view_cache)
    return Container(
        settings=settings,
        database=database,
        redis=redis,
        layout=layout,
        bus=CommandBus(lambda: PgUnitOfWork(database)),
        queries=QueryHandlers(
            read_model,
            CursorCodec(settings.secret_key.get_secret_value()),
            watcher,
            settings.consistency_wait_ms / 1000,
            view_cache,
            page_cache,
        ),
        read_model=read_model,
        projection_store=ProjectionStore(redis, layout),
        watcher=watcher,
        view_cache=view_cache,
        page_cache=page_cache,
        tokens=TokenCodec(settings.secret_key.get_secret_value()),
    )
