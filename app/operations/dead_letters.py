"""`items dead-letters`: list the events the projector could not apply, and retry them
once their cause is fixed (a corrected payload, a new version of the service)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import Row, own_connection
from app.projection.runner import Projector
from app.projection.step import FOLD_ERRORS

ROUNDS = 10  # passes over the table: the projector may hold back more events meanwhile


@dataclass
class RetryReport:
    resolved: list[int] = field(default_factory=list)  # positions applied and cleared
    failing: dict[str, str] = field(default_factory=dict)  # item id -> error


async def list_dead_letters(dsn: str) -> list[Row]:
    async with own_connection(dsn) as conn:
        return await PgEventLog(conn).dead_letters()


async def retry_dead_letters(dsn: str, projector: Projector) -> RetryReport:
    """Apply each item's dead letters, in position order, onto its live view.

    An item either applies all its held events or none; one that still fails keeps its
    dead letters (and its later events stay held behind them)."""
    report = RetryReport()
    async with own_connection(dsn) as conn:
        log = PgEventLog(conn)
        # The projector may add held events for an item while we work: go again until
        # an item has none left (or fails).
        for _ in range(ROUNDS):
            pending: dict[str, list[int]] = defaultdict(list)
            for row in await log.dead_letters():
                if str(row["item_id"]) not in report.failing:
                    pending[str(row["item_id"])].append(row["position"])
            if not pending:
                break
            for item_id, positions in pending.items():
                try:
                    await projector.reapply(item_id, await log.events_at(positions))
                except FOLD_ERRORS as exc:
                    report.failing[item_id] = f"{type(exc).__name__}: {exc}"
                    continue
                await log.resolve_dead_letters(positions)
                report.resolved += positions
    return report
