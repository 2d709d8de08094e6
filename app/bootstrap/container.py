"""The container: every connected part a process uses, and what the operator commands
run on them. Built by wiring.py; nothing connects until first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.exceptions import RedisClusterException, RedisError

from app.commands.bus import CommandBus, CommandResult
from app.commands.commands import Command
from app.infrastructure.postgres import leases, pool
from app.infrastructure.postgres.event_log import PgEventLog, PgLogConnector
from app.infrastructure.postgres.leases import PgLeaseConnector
from app.infrastructure.postgres.pool import Database, Row
from app.infrastructure.postgres.relay_store import PgRelayConnector
from app.infrastructure.postgres.repositories import purge_expired_keys
from app.infrastructure.redis import client as redis_client
from app.infrastructure.redis.client import RedisClient
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
from app.projection.ownership import Ownership
from app.projection.ports import Target
from app.projection.runner import Projector
from app.projection.step import BatchStep
from app.queries.cache.pages import PageCache
from app.queries.cache.views import ViewCache
from app.queries.cache.watcher import CheckpointWatcher
from app.queries.handlers import QueryHandlers
from app.queries.tokens import TokenCodec
from app.relay.runner import Relay
from app.settings import Settings

# What an operator command reports as "a store could not be reached" (exit 2).
REDIS_UNREACHABLE = (RedisError, RedisClusterException)
UNREACHABLE = (*REDIS_UNREACHABLE, *pool.UNREACHABLE)


def unreachable_store(exc: BaseException) -> str:
    """Which store an error of UNREACHABLE is about. redis-py turns every socket error
    of its own into a RedisError (ConnectionError, TimeoutError) and the cluster client
    adds RedisClusterException; what else is there (OSError, asyncpg's connection
    errors) comes from the PostgreSQL connections."""
    return "Redis" if isinstance(exc, REDIS_UNREACHABLE) else "PostgreSQL"


@dataclass
class Container:
    settings: Settings
    database: Database
    redis: RedisClient
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
        self,
        targets: dict[int, Target] | None = None,
        batch_size: int | None = None,
        store: RedisProjectionStore | None = None,
    ) -> Projector:
        """The projector runner: on the live generations of the partitions it owns (its
        own store: it follows layouts on its own), or on fixed `targets` (a rebuild's
        generation, which it catches up owning nothing) of `store`."""
        s = self.settings
        ownership = None
        lease = None
        if targets is None:
            store = RedisProjectionStore(self.redis, self.layout)
            ownership = Ownership(
                PgLeaseConnector(s.database_dsn, s.redis_prefix, s.projector_lease_seconds),
                store,
                default_partitions=s.projection_partitions,
                lease=s.projector_lease_seconds,
                transient=not_ready,
            )
            lease = ownership.epoch
        step = BatchStep(
            store or self.projection_store,
            batch_size=batch_size or s.projector_batch_size,
            targets=targets,
            lease=lease,
        )
        connector = PgLogConnector(s.database_dsn)
        return Projector(
            connector,
            step,
            poll_interval=s.projector_poll_interval,
            transient=not_ready,
            brief=redis_client.moving,
            ownership=ownership,
        )

    def relay(self) -> Relay:
        """The outbox relay to NATS_URL's JetStream (its adapter imported only now)."""
        from app.infrastructure.nats.broker import NatsConnector

        s = self.settings
        if not s.nats_url:
            raise RuntimeError("NATS_URL is not set: there is no broker to relay to")
        broker = NatsConnector(
            s.nats_url,
            s.nats_stream,
            s.nats_subject_prefix,
            window=s.nats_duplicate_window,
            horizon=s.relay_retry_horizon,
        )
        return Relay(
            PgLogConnector(s.database_dsn),
            PgRelayConnector(s.database_dsn, s.nats_stream, s.relay_lease_seconds),
            broker,
            prefix=s.nats_subject_prefix,
            batch_size=s.relay_batch_size,
            lease=s.relay_lease_seconds,
            retry_horizon=s.relay_retry_horizon,
            poll_interval=s.projector_poll_interval,
            transient=not_ready,
        )

    async def projector_status(self) -> tuple[int, int]:
        """The head of the event log, and how many partitions of the followed layout
        have no owner now (no live projector holds their lease)."""
        async with self.database.connection() as conn:
            head = await PgEventLog(conn).head()
            owners = await leases.owners(
                conn, self.settings.redis_prefix, self.read_model.layout_name
            )
        held = sum(1 for row in owners if row["held"])
        return head, max(0, self.read_model.layout.partitions - held)

    async def projection_lag_seconds(self) -> float:
        """How long the oldest event past the lowest partition checkpoint has waited
        (0.0 when the read model has caught up)."""
        positions = await self.read_model.positions()
        low = min((cp for _, generation, cp in positions if generation is not None), default=0)
        async with self.database.connection() as conn:
            return await PgEventLog(conn).lag_seconds(low)

    async def write_visible(self, item_id: UUID, position: int | None) -> bool:
        """Wait until this process's reads include a write (its last event at `position`),
        WRITE_VISIBLE_WAIT_MS at most, so that a client's next request to any entry point
        of this process sees its own write with no token. False when the wait ran out or
        could not even begin (the read model is not being followed)."""
        wait = self.settings.write_visible_wait_ms / 1000
        if position is None or wait <= 0:
            return True  # nothing to wait for (no event yet), or told not to wait
        return await self.queries.visible(item_id, position, wait)

    async def command(self, cmd: Command, item_id: UUID) -> tuple[CommandResult, str | None]:
        """A command from an entry point without idempotency keys (GraphQL, gRPC): its
        result and the Consistency-Token of its last event, once this process's reads
        show it (write_visible)."""
        result = await self.bus.handle(cmd)
        token = None if result.position is None else self.tokens.issue(result.position)
        await self.write_visible(item_id, result.position)
        return result, token

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
        return await status_op.status(
            self.settings.database_dsn, self.projection_store, self.settings.nats_stream
        )

    async def verify(
        self,
        *,
        repair: bool = False,
        wait: float = 30.0,
        batch: int = 1000,
        progress: OnProgress = ignore,
    ) -> verify_op.VerifyReport:
        await self.read_model.follow_layout()  # the layout readers follow now
        store = RedisVerifyStore(self.redis, self.read_model.layout)
        return await verify_op.verify(
            self.settings.database_dsn,
            store,
            repair=repair,
            wait=wait,
            batch=batch,
            progress=progress,
        )

    async def rebuild(
        self,
        *,
        batch_size: int = 2000,
        dry_run: bool = False,
        partitions: int | None = None,
        progress: OnProgress = ignore,
    ) -> rebuild_op.RebuildReport:
        def stores(layout: KeyLayout) -> tuple[RedisProjectionStore, RedisRebuildStore]:
            store = RedisProjectionStore(self.redis, layout)
            return store, RedisRebuildStore(self.redis, layout, store)

        wired = rebuild_op.RebuildStores(
            dsn=self.settings.database_dsn,
            prefix=self.settings.redis_prefix,
            default_partitions=self.settings.projection_partitions,
            stores=stores,
            projector=lambda targets, size, store: self.projector(targets, size, store),
        )
        return await rebuild_op.rebuild(
            wired,
            batch_size=batch_size,
            dry_run=dry_run,
            partitions=partitions,
            progress=progress,
        )

    async def dead_letters(self) -> list[Row]:
        return await dead_letter_ops.list_dead_letters(self.settings.database_dsn)

    async def retry_dead_letters(self) -> dead_letter_ops.RetryReport:
        dsn = self.settings.database_dsn
        await self.read_model.follow_layout()
        store = RedisProjectionStore(self.redis, self.read_model.layout)
        # No targets and no ownership: the retry writes single items (app/projection/reapply.py).
        return await dead_letter_ops.retry_dead_letters(dsn, self.projector({}, store=store))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.database.close()


def not_ready(exc: BaseException) -> str | None:
    """A store not ready yet, as its adapter words it (None: a real failure)."""
    return redis_client.not_ready(exc) or pool.not_ready(exc)
