"""The one-screen report of a history run: per setup, the operations by kind and outcome,
the faults with their recovery times, `items verify`, and every violation with the
operations that show it; last, one line for all setups."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.history.checker import Violation, check
from tests.history.history import History, Op
from tests.history.recovery import Recovery, recoveries

OUTCOMES = ("2xx", "404", "409", "412", "503", "5xx", "4xx", "none")
KINDS = ("create", "patch", "delete", "get", "list")
SHOWN_VIOLATIONS = 12


@dataclass
class Result:
    history: History
    violations: list[Violation]
    recoveries: list[Recovery]


def analyse(history: History) -> Result:
    return Result(history, check(history), recoveries(history))


def outcome(op: Op) -> str:
    if op.status is None:
        return "none"
    if 200 <= op.status < 300:
        return "2xx"
    if str(op.status) in OUTCOMES:
        return str(op.status)
    return "5xx" if op.status >= 500 else "4xx"


def setup_lines(r: Result) -> list[str]:
    h = r.history
    counts = Counter((op.f, outcome(op)) for op in h.ops)
    extra = {
        "patch": sum(1 for op in h.ops if op.f == "patch" and "if-match" in op.req_headers),
        "get": sum(1 for op in h.ops if op.f == "get" and op.token),
        "list": len({op.walk for op in h.ops if op.walk is not None}),
    }
    notes = {"patch": "with If-Match", "get": "with a token", "list": "cursor walks"}
    replays = sum(1 for op in h.ops if op.headers.get("idempotent-replayed") == "true")
    out = [
        f"== setup {h.setup}: seed {h.seed}, {h.seconds:.0f} s, {len(h.ops)} operations "
        f"({len(h.ops) / max(h.seconds, 1):.0f}/s), {replays} idempotent replays",
        f"  {'':8}" + "".join(f"{o:>7}" for o in OUTCOMES) + "   ",
    ]
    for kind in KINDS:
        row = "".join(f"{counts[(kind, o)]:>7}" for o in OUTCOMES)
        note = f"   {extra[kind]} {notes[kind]}" if kind in extra else ""
        out.append(f"  {kind:8}{row}{note}")
    out.append("  fault                  at     for  failed   recovery: reads  writes  tokens")
    for rec in r.recoveries:
        f = rec.fault
        mark = "+" if rec.censored else " "
        measured = (
            f"{'(overlapped by another fault)':>31}"
            if rec.overlapped
            else f"{rec.reads:13.2f}s{mark}{rec.writes:6.2f}s{mark}{rec.token_reads:6.2f}s{mark}"
        )
        out.append(
            f"  {f.name:20} {f.start:5.1f} {f.end - f.start:6.1f}s {rec.failed_during:6}"
            f"   {measured}  {_details(f.details)}"
        )
    if h.verifies:
        last = h.verifies[-1]
        out.append(
            f"  items verify: exit {last.exit} {last.at - h.faults_over:.1f} s after the last "
            f"fault ({len(h.verifies)} run{'s' * (len(h.verifies) != 1)}): {last.says}"
        )
    out.append(f"  violations: {len(r.violations)}")
    for v in r.violations[:SHOWN_VIOLATIONS]:
        out.append(f"    {v}")
        for op in _ops(h, v)[:2]:
            out.append(
                f"      #{op.id} s{op.session} {op.conn} t={op.invoke:.2f}-{op.complete:.2f} "
                f"{op.method} {op.path} {op.req_headers or ''} -> {op.status} "
                f"{str(op.body)[:120]}"
            )
    if len(r.violations) > SHOWN_VIOLATIONS:
        out.append(f"    ... and {len(r.violations) - SHOWN_VIOLATIONS} more (in the history file)")
    return out


def _ops(h: History, v: Violation) -> list[Op]:
    by_id = {op.id: op for op in h.ops}
    return [by_id[i] for i in v.ops if i in by_id]


def _details(details: dict[str, object]) -> str:
    shown = []
    for key, value in details.items():
        if key in ("item", "says"):
            continue
        if isinstance(value, dict) and {"closed", "of", "longest"} <= set(value):
            shown.append(f"{key} {value['closed']}/{value['of']} closed <={value['longest']}s")
        else:
            shown.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(shown)[:90]


def lines(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        out += setup_lines(r)
    ops = sum(len(r.history.ops) for r in results)
    faults = sum(len(r.history.faults) for r in results)
    violations = sum(len(r.violations) for r in results)
    every = [(rec, r.history.setup) for r in results for rec in r.recoveries if not rec.overlapped]
    if every:
        top, setup = max(every, key=lambda pair: pair[0].worst)
        out.append(
            f"slowest recovery: {top.worst:.2f} s after {top.fault.name} ({setup}); target < 1 s"
        )
    out.append(f"history: {ops} operations, {faults} faults, {violations} violations")
    return out
