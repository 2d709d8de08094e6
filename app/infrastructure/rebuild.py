"""`items rebuild`: a new generation of the read model, built beside the live one.

1. Note the live checkpoint L, then take a REPEATABLE READ snapshot of PostgreSQL: every
   event at or below L committed before the snapshot, so the snapshot reflects them.
2. Seed a new generation from the snapshot's item rows (views, versions, indexes) and
   tombstones for deleted items, in pipelined batches.
3. Catch it up from L with the projector's own code; events the snapshot already holds
   are skipped by the per-view version guard.
4. Switch readers with one Lua step, only once the new generation's checkpoint has
   reached the live one's; the live projector notices and follows.
5. Drop the old generation.

Reads and writes go on throughout. Interrupted, the live generation is untouched; the
next run removes the half-built one and starts clean. A session advisory lock makes a
second concurrent rebuild refuse.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from app.infrastructure.bootstrap import Container
from app.infrastructure.projection_store import Target, as_text
from app.infrastructure.projector import Projector
from app.infrastructure.rebuild_seed import ITEM_ROWS, seed_commands, send_commands
from app.infrastructure.settings import asyncpg_dsn

REBUILD_LOCK = 0x17E46

# KEYS: gen, rebuild. ARGV: generation, partition tag + ':', channel, partition. The
# reset notice (a ChangeNotice) is published in the same step as the switch, so view
# caches drop the old generation's views exactly when readers stop following it.
SWITCH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local live = redis.call('GET', KEYS[1])
local new_cp = tonumber(redis.call('GET', ARGV[2] .. ARGV[1] .. ':cp') or '0')
if live then
  local live_cp = tonumber(redis.call('GET', ARGV[2] .. live .. ':cp') or '0')
  if new_cp < live_cp then return {0, new_cp, live_cp} end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ':' .. new_cp .. ':' .. ARGV[1] .. ':*')
return {1, live or ''}
"""


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
    switched: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class Progress:
    """Items done, rate and ETA: redrawn in place on a terminal, log lines otherwise."""

    def __init__(self, total: int, out: Callable[[str], None], tty: bool | None = None) -> None:
        self.total, self.out = total, out
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = self._last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 2.0):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else 0.0
        line = f"rebuild: {done}/{self.total} items, {rate:,.0f} items/s, ETA {eta:.0f}s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            self.out(line)


class _CatchUp(Projector):
    """The projector's batch logic, aimed at the generation being rebuilt."""

    def __init__(self, container: Container, conn: asyncpg.Connection, targets: dict[int, Target],
                 checkpoint: int, batch_size: int) -> None:  # fmt: skip
        database_url, _ = container.settings.require_urls()
        super().__init__(
            asyncpg_dsn(database_url), container.projection_store, batch_size=batch_size
        )
        self._conn = conn
        self._fixed = targets
        self._targets.update(targets)
        self._checkpoints.update({p: checkpoint for p in targets})

    async def step(self) -> float | None:
        if not self._targets:  # fenced: reload our own targets, never the live ones
            store = self._store
            for p, target in self._fixed.items():
                self._targets[p] = target
                self._checkpoints[p] = await store.checkpoint(target)
        if not self._fixed:
            return None
        return await super().step()

    def release(self, partition: int) -> None:
        """That partition's generation is live now; the live projector takes it over."""
        self._fixed.pop(partition)
        self._targets.pop(partition, None)
        self._checkpoints.pop(partition, None)

    async def catch_up(self) -> None:
        while True:
            pause = await self.step()
            if pause is None:
                return
            if pause:
                await self._sleep(pause)


async def rebuild(
    container: Container,
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    out: Callable[[str], None],
    tty: bool | None = None,
) -> RebuildReport:
    database_url, _ = container.settings.require_urls()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    report = RebuildReport(dry_run=dry_run)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
            raise RebuildRefused("another `items rebuild` is running; wait for it to finish")
        await _run(container, conn, report, batch_size, out, tty)
    finally:
        await conn.close()
    return report


async def _run(container: Container, conn: asyncpg.Connection, report: RebuildReport,
               batch_size: int, out: Callable[[str], None], tty: bool | None) -> None:  # fmt: skip
    redis, layout, store = container.redis, container.layout, container.projection_store
    partitions = range(layout.partitions)
    if not report.dry_run:
        for p in partitions:  # a run that was interrupted left these: start clean
            stale = await redis.get(layout.rebuild(p))
            if stale is not None:
                await store.drop_generation(p, as_text(stale))
                await redis.delete(layout.rebuild(p))
    live_cps = []
    for p in partitions:
        live = await store.live(p)
        live_cps.append(await store.checkpoint(live) if live else 0)
    start = min(live_cps)
    report.caught_up_from = start
    generation = report.generation = f"g{time.time_ns() // 1000}"
    targets = {p: Target(p, generation, building=False, rebuild=True) for p in partitions}
    began = time.monotonic()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = int(await conn.fetchval("SELECT count(*) FROM items"))
        if report.dry_run:
            pending = await conn.fetchval("SELECT count(*) FROM events WHERE position > $1", start)
            out(f"dry run: would rebuild {total} items and catch up {pending} events after {start}")
            report.items = total
            return
        for p in partitions:
            await redis.set(layout.rebuild(p), generation)
        progress = Progress(total, out, tty)
        tombstones = await conn.fetch(
            "SELECT item_id, max(item_version) AS version FROM events"
            " WHERE type = 'ItemDeleted' GROUP BY item_id"
        )
        for p, rows in _by_partition(container, [(r["item_id"], r["version"]) for r in tombstones]):
            await redis.hset(layout.base(p, generation) + "ver",
                             mapping={str(i): -v for i, v in rows})  # fmt: skip
        report.tombstones = len(tombstones)
        cursor = await conn.cursor(ITEM_ROWS)
        # Three things overlap: PostgreSQL reads the next batch and Redis writes the
        # previous one while this process turns the current one into commands.
        fetching = asyncio.create_task(cursor.fetch(batch_size))
        writing: asyncio.Task[None] | None = None
        try:
            while rows := await fetching:
                fetching = asyncio.create_task(cursor.fetch(batch_size))
                commands = seed_commands(layout, generation, rows)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(send_commands(redis, commands))
                report.items += len(rows)
                progress.update(report.items)
            if writing is not None:
                await writing
        finally:
            for task in (fetching, writing):
                if task is not None and not task.done():
                    task.cancel()
        progress.update(report.items, final=True)
    for p in partitions:
        await redis.set(layout.base(p, generation) + "cp", start)
    catch_up = _CatchUp(container, conn, targets, start, batch_size)
    switch = redis.register_script(SWITCH)
    for p in partitions:
        for _ in range(50):
            await catch_up.catch_up()
            result = await switch(keys=[layout.gen(p), layout.rebuild(p)],
                                  args=[generation, layout.tag(p) + ":",
                                        layout.checkpoint_channel, p])  # fmt: skip
            if result[0] == 1:
                catch_up.release(p)
                report.switched.append(p)
                old = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
                if old:
                    await store.drop_generation(p, old)
                break
            if result[0] == -1:
                raise RebuildRefused("the rebuild generation was removed while it ran")
        else:
            raise RebuildRefused(f"partition {p}: could not catch up with the live projector")
    report.seconds = time.monotonic() - began
    out(
        f"rebuild: {report.items} items in {report.seconds:.1f}s "
        f"({report.rate:,.0f} items/s), generation {generation} is live"
    )


def _by_partition(container: Container, pairs: list[tuple[object, int]]
                  ) -> list[tuple[int, list[tuple[object, int]]]]:  # fmt: skip
    groups: dict[int, list[tuple[object, int]]] = defaultdict(list)
    for item_id, version in pairs:
        groups[container.layout.partition_of(str(item_id))].append((item_id, version))
    return list(groups.items())
