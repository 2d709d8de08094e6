"""Settings into connected parts: the one place adapters are constructed."""

from __future__ import annotations

from app.bootstrap.container import Container
from app.commands.bus import CommandBus
from app.infrastructure.postgres.pool import Database
from app.infrastructure.postgres.unit_of_work import PgUnitOfWork
from app.infrastructure.redis import client as redis_client
from app.infrastructure.redis.change_feed import RedisChangeFeed
from app.infrastructure.redis.client import RedisClient
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.read_model import RedisReadModel
from app.queries.cache.pages import PageCache
from app.queries.cache.views import ViewCache
from app.queries.cache.watcher import CheckpointWatcher
from app.queries.cursor import CursorCodec
from app.queries.handlers import QueryHandlers
from app.queries.tokens import TokenCodec
from app.settings import Settings

# List pages (cache/pages.py) may take 1/PAGE_SHARE of VIEW_CACHE_MB, views the rest:
# a page of 20 is a few KiB and a few hundred distinct pages serve most traffic.
PAGE_SHARE = 8


def make_redis(settings: Settings) -> RedisClient:
    _, redis_url = settings.require_urls()
    return redis_client.make_redis(
        redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        client_name=f"items:{settings.redis_prefix}",
        cluster=settings.redis_cluster,
    )


def build(settings: Settings) -> Container:
    database = Database(settings)
    redis = make_redis(settings)
    layout = KeyLayout(settings.redis_prefix, settings.projection_partitions)
    read_model = RedisReadModel(redis, layout)
    budget = settings.view_cache_mb * 1024 * 1024
    view_cache = ViewCache(budget - budget // PAGE_SHARE)
    page_cache = PageCache(view_cache, budget // PAGE_SHARE)
    feed = RedisChangeFeed(redis, layout.checkpoint_channel)
    watcher = CheckpointWatcher(feed, read_model, view_cache)
    secret = settings.signing_key
    return Container(
        settings=settings,
        database=database,
        redis=redis,
        layout=layout,
        bus=CommandBus(lambda: PgUnitOfWork(database)),
        queries=QueryHandlers(
            read_model,
            CursorCodec(secret),
            watcher,
            settings.consistency_wait_ms / 1000,
            view_cache,
            page_cache,
        ),
        read_model=read_model,
        projection_store=RedisProjectionStore(redis, layout),
        watcher=watcher,
        view_cache=view_cache,
        page_cache=page_cache,
        tokens=TokenCodec(secret),
    )
