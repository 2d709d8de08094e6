"""`items rebuild [--batch-size N] [--dry-run] [--partitions N]`: a new read model with no
downtime, with as many partitions as before or another count."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from app.bootstrap import Container
from app.cli.common import FOUND, OK, Subparsers, complain, operate, say
from app.operations.progress import Progress
from app.operations.rebuild import RebuildRefused


def register(sub: Subparsers) -> None:
    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild the Redis read model without downtime",
        description="Build a new generation of every item view from a consistent snapshot "
        "of PostgreSQL while the live one keeps serving, catch it up with the event log, "
        "switch readers to it atomically and remove the old one. Interrupted, the live "
        "generation is untouched and the next run starts clean.",
    )
    rebuild.add_argument("--batch-size", type=int, default=2000, help="items per batch")
    rebuild.add_argument("--dry-run", action="store_true", help="count what would be done")
    rebuild.add_argument(
        "--partitions",
        type=int,
        choices=range(1, 65),
        metavar="N",
        help="build it with N partitions (1-64) and switch readers to them; the count "
        "is kept from then on (default: as many as the live read model has)",
    )
    rebuild.set_defaults(func=run)


class Shown:
    """Items done, rate and ETA: redrawn in place on a terminal, a line every few seconds
    otherwise (a log)."""

    def __init__(self, out: Callable[[str], None], tty: bool | None = None) -> None:
        self.out = out
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._last = 0.0

    def __call__(self, step: Progress) -> None:
        if step.stage == "rebuild.live":
            rate = step.done / step.seconds if step.seconds else 0.0
            self.out(
                f"rebuild: {step.done} items in {step.seconds:.1f}s ({rate:,.0f} items/s), "
                f"generation {step.item} is live"
            )
            return
        final = step.stage == "rebuild.seeded"
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 2.0):
            return
        self._last = now
        rate = step.done / max(step.seconds, 1e-9)
        eta = ((step.total or 0) - step.done) / rate if rate else 0.0
        line = f"rebuild: {step.done}/{step.total} items, {rate:,.0f} items/s, ETA {eta:.0f}s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            self.out(line)


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        try:
            report = await container.rebuild(
                batch_size=args.batch_size,
                dry_run=args.dry_run,
                partitions=args.partitions,
                progress=Shown(say),
            )
        except RebuildRefused as exc:
            complain("items rebuild", str(exc))
            return FOUND
        if report.dry_run:
            say(
                f"dry run: would rebuild {report.items} items and catch up "
                f"{report.pending_events} events after {report.caught_up_from}"
            )
            return OK
        say(
            f"rebuilt {report.items} items ({report.tombstones} deleted) in "
            f"{report.seconds:.1f}s: {report.rate:,.0f} items/s; caught up from "
            f"position {report.caught_up_from}; generation {report.generation} is live"
            + (
                f" in a new layout of {report.partitions} partitions ({report.layout})"
                if report.repartitioned
                else ""
            )
        )
        return OK

    return operate(work)
