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

With `--partitions N` (a count other than the live one) the new generation is built in
a new layout of N partitions instead, and readers switch layouts (repartition.py).

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

from app.infrastructure.postgres import items_reader, leases
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import Connection, own_connection
from app.infrastructure.redis.keys import LAYOUT_VERSION, KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.rebuild_store import RedisRebuildStore
from app.operations import repartition
from app.operations.progress import OnProgress, Progress, ignore
from app.operations.repartition import RebuildRefused
from app.projection.ports import Fenced, Target
from app.projection.runner import Projector

SWITCH_TRIES = 50  # catch-up rounds per partition before giving up on the live projector


__all__ = ["RebuildRefused", "RebuildReport", "RebuildStores", "rebuild"]


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
    partitions: int = 0
    layout: str = ""  # the layout now live (another one than before: a repartitioning)
    repartitioned: bool = False

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class RebuildStores:
    dsn: str
    prefix: str
    default_partitions: int  # PROJECTION_PARTITIONS: the count of a first read model
    # The projection and seeding stores of one layout.
    stores: Callable[[KeyLayout], tuple[RedisProjectionStore, RedisRebuildStore]]
    # The projector runner, aimed at fixed targets of a store, sized for the batches.
    projector: Callable[[dict[int, Target], int, RedisProjectionStore], Projector]


async def rebuild(
    stores: RebuildStores,
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    partitions: int | None = None,
    progress: OnProgress = ignore,
) -> RebuildReport:
    """`partitions`: build the read model with this many (None: as many as now)."""
    report = RebuildReport(dry_run=dry_run)
    async with own_connection(stores.dsn) as conn:
        if not await items_reader.lock_rebuild(conn):
            raise RebuildRefused("another `items rebuild` is running; wait for it to finish")
        live, target = await _layouts(stores, conn, partitions, dry_run)
        report.partitions, report.layout = target.partitions, target.name
        await _run(stores, conn, report, batch_size, progress, live, target)
    return report


async def _layouts(
    stores: RebuildStores, conn: Connection, partitions: int | None, dry_run: bool
) -> tuple[KeyLayout, KeyLayout]:
    """The layout readers follow (made now when there is none yet) and the one to build:
    the same, or a new one when the partition count changes."""
    probe, _ = stores.stores(KeyLayout(stores.prefix, stores.default_partitions))
    live = await probe.followed_record()
    if live is None:
        count = partitions or await leases.partition_count(
            conn, stores.prefix, stores.default_partitions
        )
        if dry_run:
            return (KeyLayout(stores.prefix, count),) * 2
        await probe.create_layout(count)
        live = await probe.followed_record()
        assert live is not None
    count = partitions or live.partitions
    if count == live.partitions and live.version == LAYOUT_VERSION:
        return live, live
    # Another count, or a layout an earlier release wrote: a new layout beside it.
    return live, KeyLayout(stores.prefix, count, f"r{time.time_ns() // 1000}")


async def _run(
    stores: RebuildStores,
    conn: Connection,
    report: RebuildReport,
    batch_size: int,
    progress: OnProgress,
    live: KeyLayout,
    layout: KeyLayout,
) -> None:
    live_store, _ = stores.stores(live)
    store, seeding = stores.stores(layout)
    partitions = range(layout.partitions)
    if not report.dry_run:
        await seeding.clear_stale()  # a run that was interrupted left these: start clean
    live_cps = []
    for p in range(live.partitions):
        current = await live_store.live(p)
        live_cps.append(await live_store.checkpoint(current) if current else 0)
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
    catch_up = stores.projector(targets, batch_size, store)
    log = PgEventLog(conn)
    if layout != live:
        await repartition.switch(conn, log, catch_up, live_store, store, generation)
        report.repartitioned = True
        report.switched = list(partitions)
        report.seconds = time.monotonic() - began
        progress(Progress("rebuild.live", report.items, seconds=report.seconds, item=generation))
        await repartition.retire(conn, live_store)
        return
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
