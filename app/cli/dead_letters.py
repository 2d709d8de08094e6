"""`items dead-letters list|retry`: events the projector could not apply."""

from __future__ import annotations

import argparse

from app.bootstrap import Container
from app.cli.common import FOUND, OK, Subparsers, operate, say


def register(sub: Subparsers) -> None:
    dead = sub.add_parser(
        "dead-letters",
        help="list or retry events the projector could not apply",
        description="Events that failed to apply after retries, and the later events of "
        "the same items held back behind them.",
    )
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dead_sub.add_parser("list", help="show the dead letters", description="Show them.")
    dead_sub.add_parser(
        "retry",
        help="apply them again (after fixing the cause)",
        description="Apply each item's dead letters in order; exit 1 if any still fail.",
    )
    dead.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        if args.action == "list":
            rows = await container.dead_letters()
            for row in rows:
                say(
                    f"{row['position']}\t{row['item_id']}\t{row['event_type']}\t"
                    f"{row['failed_at']:%Y-%m-%dT%H:%M:%SZ}\t{row['error']}"
                )
            say(f"{len(rows)} dead letter(s)")
            return OK
        report = await container.retry_dead_letters()
        say(f"resolved {len(report.resolved)} dead letter(s)")
        for item_id, error in report.failing.items():
            say(f"still failing: item {item_id}: {error}")
        return FOUND if report.failing else OK

    return operate(work)
