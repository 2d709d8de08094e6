"""`items verify [--repair]`: compare the read model with PostgreSQL, and say what differs."""

from __future__ import annotations

import argparse

from app.bootstrap import Container
from app.cli.common import FOUND, OK, UNREACHABLE, Subparsers, complain, operate, say
from app.operations.progress import Progress
from app.operations.verify import VerifyReport, VerifyTimeout

LISTED = 20  # ids named per kind in a summary


def register(sub: Subparsers) -> None:
    verify = sub.add_parser(
        "verify",
        help="compare the read model with PostgreSQL",
        description="Wait (bounded) for the projection to reach the head position read at "
        "the start, then compare every item in PostgreSQL with its Redis view and the list "
        "indexes with the live items. Exit 0 when they match, 1 when they differ, 2 when "
        "the projection did not catch up in time.",
    )
    verify.add_argument("--repair", action="store_true", help="fix what differs from PostgreSQL")
    verify.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the projection"
    )
    verify.add_argument("--batch-size", type=int, default=1000, help="items compared per batch")
    verify.set_defaults(func=run)


def progress_line(step: Progress) -> str:
    if step.stage == "verify.waiting":
        return "waiting for the projection to reach the head of the event log"
    if step.stage == "verify.compared":
        return f"checked {step.done} item(s) in {step.seconds:.1f}s"
    if step.stage == "verify.repairing":
        return "repairing"
    if step.stage == "verify.changed-while-repairing":
        return f"item {step.item} changed while repairing; left to the projector"
    return f"repaired {step.done} item(s); verifying again"


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


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        try:
            report = await container.verify(
                repair=args.repair,
                wait=args.wait,
                batch=args.batch_size,
                progress=lambda step: say(progress_line(step)),
            )
        except VerifyTimeout as exc:
            complain("items verify", str(exc))
            return UNREACHABLE
        for line in summary(report):
            say(line)
        return OK if report.ok else FOUND

    return operate(work)
