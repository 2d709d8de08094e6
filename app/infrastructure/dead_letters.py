"""`items dead-letters`: list the events the projector could not apply, and retry them
once their cause is fixed (a corrected payload, a new version of the service)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from app.infrastructure import event_log
from app.infrastructure.bootstrap import Container
from app.infrastructure.projection import ProjectionError, diff, fold
from app.infrastructure.projection_store import BaseMoved, Fenced
from app.infrastructure.settings import asyncpg_dsn


@dataclass
class RetryReport:
    resolved: list[int] = field(default_factory=list)  # positions applied and cleared
    failing: dict[str, str] = field(default_factory=dict)  # item id -> error


async def list_dead_letters(container: Container) -> list[asyncpg.Record]:
    database_url, _ = container.settings.require_urls()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await event_log.dead_letters(conn)
    finally:
        await conn.close()


async def retry_dead_letters(container: Container) -> RetryReport:
    """Apply each item's dead letters, in position order, onto its live view.

    An item either applies all its held events or none; one that still fails keeps its
    dead letters (and its later events stay held behind them)."""
    database_url, _ = container.settings.require_urls()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    report = RetryReport()
    try:
        # The projector may add held events for an item while we work: go again until
        # an item has none left (or fails).
        for _ in range(10):
            rows = await event_log.dead_letters(conn)
            pending: dict[str, list[int]] = defaultdict(list)
            for row in rows:
                if str(row["item_id"]) not in report.failing:
                    pending[str(row["item_id"])].append(row["position"])
            if not pending:
                break
            for item_id, positions in pending.items():
                try:
                    await _apply_item(container, conn, item_id, positions)
                except (ProjectionError, KeyError, TypeError, ValueError) as exc:
                    report.failing[item_id] = f"{type(exc).__name__}: {exc}"
                    continue
                await event_log.resolve_dead_letters(conn, positions)
                report.resolved += positions
    finally:
        await conn.close()
    return report


async def _apply_item(
    container: Container, conn: asyncpg.Connection, item_id: str, positions: list[int]
) -> None:
    store, layout = container.projection_store, container.layout
    p = layout.partition_of(item_id)
    events = [e.decode() for e in await event_log.events_at(conn, positions)]
    for _ in range(20):
        target = await store.live(p)
        if target is None:
            raise ValueError("the read model is being restored; retry when it is live")
        # Same checkpoint in and out: this writes views only, guarded like the
        # projector's batches (a racing batch makes us fold again).
        cp = await store.checkpoint(target)
        state = (await store.load(target, [item_id]))[item_id]
        op = diff(item_id, state, fold(state, events))
        try:
            await store.apply(target, cp, cp, [op] if op else [])
            return
        except (Fenced, BaseMoved):
            continue
    raise ValueError("the projector kept moving the view; try again")
