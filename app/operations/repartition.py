"""`items rebuild --partitions N`: switch readers to a new layout of N partitions.

The rebuild (rebuild.py) has seeded the new layout's generation from a snapshot and
caught it up with the projector's own runner. Then:

1. Each new partition's generation is made live within the new layout. No reader
   follows that layout yet, so nothing changes for them; the catch-up goes on writing
   to the now-live generations.
2. Once the new layout has caught up with everything the live one shows (its lowest
   checkpoint at or past the live one's highest), the layout record is switched in one
   Lua step, with a notice on which every API process follows at once (others within
   a second, re-reading the record). PostgreSQL keeps the new count, for a restore.
3. The catch-up goes on until live projectors own every new partition (they follow the
   record within a lease tick), or TAKEOVER_WAIT has passed (none runs).
4. After GRACE more seconds, for reads that started on the old layout to finish, the
   old layout's keys and ownership rows are deleted.

Between the switch and a projector's takeover the rebuild keeps the new layout current;
a client whose read of the old layout raced the switch may for that moment read the new
one a few events behind what it saw (a Consistency-Token read waits it out).
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.infrastructure.postgres import leases
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import Connection
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.projection.ports import Target
from app.projection.runner import Projector

log = logging.getLogger("items.rebuild")

CATCH_UP_TRIES = 50  # rounds to bring the new layout level with the live one
TAKEOVER_WAIT = 30.0  # seconds the rebuild waits for live projectors to take over
GRACE = 3.0  # seconds between the takeover and deleting the old layout (LAYOUT_CHECK x 3)
POLL = 0.1


class RebuildRefused(Exception):
    pass


async def switch(
    conn: Connection,
    log_: PgEventLog,
    catch_up: Projector,
    live: RedisProjectionStore,
    new: RedisProjectionStore,
    generation: str,
) -> None:
    """Steps 1-3 above."""
    await catch_up.catch_up(log_)
    layout = new.layout
    live_targets = {}
    for p in range(layout.partitions):
        target = Target(p, generation, building=False, rebuild=True)
        await new.activate(target)
        live_targets[p] = Target(p, generation, building=False)
    catch_up.step.fix(live_targets)
    for _ in range(CATCH_UP_TRIES):
        await catch_up.catch_up(log_)
        ahead = await _highest(live)
        if await _lowest(new) >= ahead:
            break
    else:
        raise RebuildRefused("the new layout could not catch up with the live one")
    if not await live.switch_layout(layout):
        raise RebuildRefused("the read model's layout changed while the rebuild ran")
    await leases.set_partitions(conn, layout.prefix, layout.partitions)
    log.info("readers follow layout %r with %d partitions", layout.name, layout.partitions)
    deadline = time.monotonic() + TAKEOVER_WAIT
    while not await _owned(conn, layout):
        if time.monotonic() > deadline:
            log.warning("no projector took layout %r over within %.0fs; it catches up when "
                        "one starts", layout.name, TAKEOVER_WAIT)  # fmt: skip
            return
        await catch_up.catch_up(log_)
        await asyncio.sleep(POLL)


async def retire(conn: Connection, old: RedisProjectionStore) -> None:
    """Step 4: the old layout goes, once no read can still be on it."""
    await asyncio.sleep(GRACE)
    removed = await old.drop_layout()
    await leases.forget_layout(conn, old.layout.prefix, old.layout_name)
    log.info("removed layout %r (%d keys)", old.layout_name, removed)


async def _highest(store: RedisProjectionStore) -> int:
    found = 0
    for p in range(store.partitions):
        target = await store.live(p)
        if target is not None:
            found = max(found, await store.checkpoint(target))
    return found


async def _lowest(store: RedisProjectionStore) -> int:
    found: int | None = None
    for p in range(store.partitions):
        target = await store.live(p)
        cp = 0 if target is None else await store.checkpoint(target)
        found = cp if found is None else min(found, cp)
    return found or 0


async def _owned(conn: Connection, layout: KeyLayout) -> bool:
    rows = await leases.owners(conn, layout.prefix, layout.name)
    return sum(1 for r in rows if r["held"]) >= layout.partitions
