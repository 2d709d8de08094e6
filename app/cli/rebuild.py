"""`items rebuild [--batch-size N] [--dry-run] [--partitions N]`: a new read model with no
downtime, with as many partitions as before or another count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from app.bootstrap import Container
from app.cli.common import FOUND, OK, begin, complain, finish, operate, say
from app.cli.progress import Meter
from app.operations.progress import Progress
from app.operations.rebuild import RebuildRefused

SHORT = "rebuild the Redis read model without downtime"
HELP = (
    "Build a new generation of every item view from a consistent snapshot of PostgreSQL "
    "while the live one keeps serving, catch it up with the event log, switch readers to "
    "it atomically and remove the old one. Interrupted, the live generation is untouched "
    "and the next run starts clean. Progress: a bar on a terminal, a line every few "
    "seconds otherwise."
)


def register(app: typer.Typer) -> None:
    app.command("rebuild", help=HELP, short_help=SHORT)(command)


class Shown:
    """The rebuild's progress (app/operations/progress.py: "rebuild.seeding" and
    "rebuild.seeded" count the items seeded, "rebuild.live" names the generation
    switched to): a bar on a terminal, a line every few seconds otherwise (a log)."""

    def __init__(self, out: Callable[[str], None], tty: bool | None = None) -> None:
        self.out = out
        self.meter = Meter("rebuild", out, tty)

    def __enter__(self) -> Shown:
        return self

    def __exit__(self, *_: object) -> None:
        self.meter.close()

    def __call__(self, step: Progress) -> None:
        if step.stage == "rebuild.live":
            self.meter.close()
            rate = step.done / step.seconds if step.seconds else 0.0
            self.out(
                f"rebuild: {step.done} items in {step.seconds:.1f}s ({rate:,.0f} items/s), "
                f"generation {step.item} is live"
            )
            return
        final = step.stage == "rebuild.seeded"
        self.meter.show(step.done, step.total, step.seconds, final=final)


def command(
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="items per batch")] = 2000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be done")] = False,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            metavar="N",
            help="build it with N partitions (1-64) and switch readers to them; the count "
            "is kept from then on (default: as many as the live read model has)",
            show_default=False,
        ),
    ] = None,
) -> None:
    begin("rebuild")
    finish(run(batch_size, dry_run, partitions))


def run(batch_size: int, dry_run: bool, partitions: int | None) -> int:
    async def work(container: Container) -> int:
        try:
            with Shown(say) as shown:
                report = await container.rebuild(
                    batch_size=batch_size,
                    dry_run=dry_run,
                    partitions=partitions,
                    progress=shown,
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
