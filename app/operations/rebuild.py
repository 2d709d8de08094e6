"""`items rebuild`: a new generation of the read model, built beside the live one.

1. Note the live checkpoint L, then take a REPEATABLE READ snapshot of PostgreSQL: every
   event at or below L committed before the snapshot, so the snapshot reflects them.
2. Seed a new generation from the snapshot's item rows (views, versions, indexes) and
   tombstones for deleted items, in pipelined batches.
3. Catch it up from L with the projector's own runner (catch_up); events the snapshot
   already holds are skipped by the per-view version guard.
4. Switch readers with one Lua step, only once the new generation's checkpoint has
   reached the live one's; the live projector notices and follows.
5. Drop the old generation.

Reads and writes go on throughout. Interrupted, the live generation is untouched; the
next run removes the half-built one and starts clean. A session advisory lock makes a
second concurrent rebuild refuse.

Progress stages: "rebuild.seeding" (done of total items, while seeding), "rebuild.seeded"
(the same, once), "rebuild.live" (done: items, seconds: the whole rebuild, item: the
generation now live).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.infrastructure.postgres import items_reader
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import Connection, own_connection
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.rebuild_store import RedisRebuildStore
from app.operations.progress import OnProgress, Progress, ignore
from app.projection.ports import Fenced, Target
from app.projection.runner import Projector

SWITCH_TRIES = 50  # catch-up rounds per partition before giving up on the live projector


class RebuildRefused(Exception):
    pass


@dataclass
class RebuildReport:
    items: int = 0
    tombstones: int = 0
    seconds: float = 0.0
    caught_up_from: int = 0
    generation: str = ""
    dry_run: bool = False
    pending_events: int = 0  # a dry run: events after the live checkpoint, to catch up
    switched: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class RebuildStores:
    dsn: str
    projection: RedisProjectionStore
    seeding: RedisRebuildStore
    # The projector runner, aimed at fixed targets and sized for the rebuild's batches.
    projector: Callable[[dict[int, Target], int], Projector]


async def rebuild(
    stores: RebuildStores,
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    progress: OnProgress = ignore,
) -> RebuildReport:
    report = RebuildReport(dry_run=dry_run)
    async with own_connection(stores.dsn) as conn:
        if not await items_reader.lock_rebuild(conn):
            raise RebuildRefused("another `items rebuild` is running; wait for it to finish")
        await _run(stores, conn, report, batch_size, progress)
    return report


async def _run(
    stores: RebuildStores,
    conn: Connection,
    report: RebuildReport,
    batch_size: int,
    progress: OnProgress,
) -> None:
    store, seeding = stores.projection, stores.seeding
    partitions = range(store.partitions)
    if not report.dry_run:
        await seeding.clear_stale()  # a run that was interrupted left these: start clean
    live_cps = []
    for p in partitions:
        live = await store.live(p)
        live_cps.append(await store.checkpoint(live) if live else 0)
    start = min(live_cps)
    report.caught_up_from = start
    generation = report.generation = f"g{time.time_ns() // 1000}"
    targets = {p: Target(p, generation, building=False, rebuild=True) for p in partitions}
    began = time.monotonic()
    async with items_reader.snapshot(conn):
        total = await items_reader.count_items(conn)
        if report.dry_run:
            report.pending_events = await items_reader.count_events_after(conn, start)
            report.items = total
            return
        await seeding.begin(generation)
        tombstones = await items_reader.tombstones(conn)
        await seeding.tombstones(generation, tombstones)
        report.tombstones = len(tombstones)
        await _seed(seeding, conn, generation, report, total, batch_size, progress)
    await seeding.set_checkpoint(generation, start)
    catch_up = stores.projector(targets, batch_size)
    log = PgEventLog(conn)
    for p in partitions:
        for _ in range(SWITCH_TRIES):
            await catch_up.catch_up(log)
            try:
                switched, old = await store.switch(targets[p])
            except Fenced as exc:
                raise RebuildRefused("the rebuild generation was removed while it ran") from exc
            if switched:
                catch_up.step.release(p)
                report.switched.append(p)
                if old:
                    await store.drop_generation(p, old)
                break
        else:
            raise RebuildRefused(f"partition {p}: could not catch up with the live projector")
    report.seconds = time.monotonic() - began
    progress(Progress("rebuild.live", report.items, seconds=report.seconds, item=generation))


async def _seed(
    seeding: RedisRebuildStore,
    conn: Connection,
    generation: str,
    report: RebuildReport,
    total: int,
    batch_size: int,
    progress: OnProgress,
) -> None:
    began = time.monotonic()
    cursor = await items_reader.item_rows(conn)
    # Three things overlap: PostgreSQL reads the next batch and Redis writes the
    # previous one while this process turns the current one into commands.
    fetching = asyncio.create_task(cursor.fetch(batch_size))
    writing: asyncio.Task[None] | None = None
    try:
        while rows := await fetching:
            fetching = asyncio.create_task(cursor.fetch(batch_size))
            commands = seeding.commands(generation, rows)
            if writing is not None:
                await writing
            writing = asyncio.create_task(seeding.send(commands))
            report.items += len(rows)
            progress(Progress("rebuild.seeding", report.items, total, time.monotonic() - began))
        if writing is not None:
            await writing
    finally:
        for task in (fetching, writing):
            if task is not None and not task.done():
                task.cancel()
    progress(Progress("rebuild.seeded", report.items, total, time.monotonic() - began))
