"""`items verify [--repair]`: compare the read model with PostgreSQL, and say what differs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from app.bootstrap import Container
from app.cli.common import FOUND, OK, UNREACHABLE, begin, complain, finish, operate, say
from app.cli.progress import Meter
from app.operations.progress import Progress
from app.operations.verify import VerifyReport, VerifyTimeout

LISTED = 20  # ids named per kind in a summary

SHORT = "compare the read model with PostgreSQL"
HELP = (
    "Wait (bounded) for the projection to reach the head position read at the start, then "
    "compare every item in PostgreSQL with its Redis view and the list indexes with the "
    "live items. Exit 0 when they match, 1 when they differ, 2 when the projection did not "
    "catch up in time (or a store is unreachable)."
)
# A step of the comparison itself, with items done (and the total when known), for the
# bar; the operation may report it per batch (app/operations/verify/).
COMPARING = "verify.comparing"


def register(app: typer.Typer) -> None:
    app.command("verify", help=HELP, short_help=SHORT)(command)


def command(
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what differs from PostgreSQL")
    ] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the projection")] = 30.0,
    batch_size: Annotated[
        int, typer.Option(min=1, metavar="N", help="items compared per batch")
    ] = 1000,
) -> None:
    begin("verify")
    finish(run(repair, wait, batch_size))


def progress_line(step: Progress) -> str:
    if step.stage == "verify.waiting":
        return "waiting for the projection to reach the head of the event log"
    if step.stage == COMPARING:
        return f"checking: {step.done} item(s) in {step.seconds:.1f}s"
    if step.stage == "verify.compared":
        return f"checked {step.done} item(s) in {step.seconds:.1f}s"
    if step.stage == "verify.repairing":
        return "repairing"
    if step.stage == "verify.changed-while-repairing":
        return f"item {step.item} changed while repairing; left to the projector"
    return f"repaired {step.done} item(s); verifying again"


class Shown:
    """The verify's progress: each stage's line as it comes (stdout), and on a terminal
    a bar (stderr) from the wait for the projection to the end of the comparison."""

    def __init__(self, out: Callable[[str], None], tty: bool | None = None) -> None:
        self.out = out
        self.meter = Meter("verify", out, tty)

    def __enter__(self) -> Shown:
        return self

    def __exit__(self, *_: object) -> None:
        self.meter.close()

    def __call__(self, step: Progress) -> None:
        if step.stage == COMPARING:
            self.meter.show(step.done, step.total, step.seconds)
            return
        self.meter.close()
        self.out(progress_line(step))
        if step.stage in ("verify.waiting", "verify.repaired"):
            self.meter.waiting("verify: waiting for the projection, then comparing")


def summary(report: VerifyReport) -> list[str]:
    """What was found, for humans: one line per kind of difference."""
    lines = _lines(report)
    if report.after_repair is not None:
        lines.append(f"repaired {report.repaired} item(s); verifying again:")
        lines += ["  " + line for line in _lines(report.after_repair)]
    return lines


def _lines(report: VerifyReport) -> list[str]:
    if report.read_model_missing:
        parts = ", ".join(str(p) for p in report.missing_partitions)
        return [
            f"read model missing: partition(s) {parts} have no live generation"
            " (Redis lost its data or a restore is in progress)"
        ]
    head = f"checked {report.checked} item(s) at head position {report.head}"
    if not report.differences:
        return [f"{head}: the read model matches PostgreSQL"]
    lines = [f"{head}: differences found"]
    for kind in ("missing", "extra", "stale", "corrupt"):
        ids: list[str] = getattr(report, kind)
        if ids:
            lines.append(_listing(kind, len(ids), ids))
    for kind in ("index_missing", "index_extra"):
        pairs: list[tuple[str, str]] = getattr(report, kind)
        if pairs:
            lines.append(_listing(kind, len(pairs), [f"{i} ({s})" for i, s in pairs]))
    return lines


def _listing(kind: str, count: int, names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    more = f", ... and {count - LISTED} more" if count > LISTED else ""
    return f"{kind}: {count}: {shown}{more}"


def run(repair: bool, wait: float, batch_size: int) -> int:
    async def work(container: Container) -> int:
        try:
            with Shown(say) as shown:
                report = await container.verify(
                    repair=repair, wait=wait, batch=batch_size, progress=shown
                )
        except VerifyTimeout as exc:
            complain("items verify", str(exc))
            return UNREACHABLE
        for line in summary(report):
            say(line)
        return OK if report.ok else FOUND

    return operate(work)
