"""`items dead-letters list|retry`: events the projector could not apply."""

from __future__ import annotations

import typer

from app.bootstrap import Container
from app.cli.common import FOUND, OK, begin, finish, operate, say

group = typer.Typer(
    name="dead-letters",
    help="Events that failed to apply after retries, and the later events of the same "
    "items held back behind them.",
    short_help="list or retry events the projector could not apply",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("list", help="Show them.", short_help="show the dead letters")
def list_them() -> None:
    begin("dead-letters")

    async def work(container: Container) -> int:
        rows = await container.dead_letters()
        for row in rows:
            say(
                f"{row['position']}\t{row['item_id']}\t{row['event_type']}\t"
                f"{row['failed_at']:%Y-%m-%dT%H:%M:%SZ}\t{row['error']}"
            )
        say(f"{len(rows)} dead letter(s)")
        return OK

    finish(operate(work))


@group.command(
    "retry",
    help="Apply each item's dead letters in order; exit 1 if any still fail.",
    short_help="apply them again (after fixing the cause)",
)
def retry() -> None:
    begin("dead-letters")

    async def work(container: Container) -> int:
        report = await container.retry_dead_letters()
        say(f"resolved {len(report.resolved)} dead letter(s)")
        for item_id, error in report.failing.items():
            say(f"still failing: item {item_id}: {error}")
        return FOUND if report.failing else OK

    finish(operate(work))
