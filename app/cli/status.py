"""`items status [--json] [--check]`: where the projection stands, and whether that is
well (the exit code of `--check`, for a probe or a script)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from app.bootstrap import Container
from app.cli.common import FOUND, OK, begin, complain, finish, operate, say

SHORT = "projection position, lag, partitions and their owners, dead letters"
HELP = (
    "Head event position; per partition its owner (projector pid@host), epoch, "
    "generation, checkpoint and lag; totals; the dead-letter count; the NATS relay's "
    "position, lag and holder. With --check, exit 1 "
    "(saying why, on stderr) when the lag exceeds --max-lag, a partition has no owner, "
    "dead letters wait, or the relay lags past --max-lag or has events to send and no "
    "holder; 2 when a store is unreachable."
)
DEFAULT_MAX_LAG = 30.0  # seconds, for --check when READY_MAX_LAG_SECONDS is 0 (off)
WIDTH = 120  # columns of the table when stdout is no terminal (a pipe, a log)


def register(app: typer.Typer) -> None:
    app.command("status", help=HELP, short_help=SHORT)(command)


def command(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 unless all is well (see above)")
    ] = False,
    max_lag: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="the lag --check allows (default: READY_MAX_LAG_SECONDS if set, else 30)",
            show_default=False,
        ),
    ] = None,
) -> None:
    begin("status")
    finish(run(as_json, check, max_lag))


def status_view(d: dict[str, Any]) -> RenderableType:
    """The status for humans: the facts, one a line, over a table of the partitions."""
    layout = d["layout"]
    name = f"layout {layout['name']!r}, " if layout["name"] else ""
    facts = [
        f"head position:   {d['head_position']}",
        f"read model:      {d['read_model']} ({name}{layout['partitions']} partition(s))",
        f"checkpoint:      {d['checkpoint']} (the lowest of the partitions')",
        f"lag:             {d['lag_events']} event(s), {d['lag_seconds']:.3f}s",
        f"owners:          {d['owned_partitions']} of {layout['partitions']} partition(s) "
        f"owned, by {d['projectors']} projector(s)",
        f"dead letters:    {d['dead_letters']}",
        f"relay:           {_relay(d.get('relay'))}",
    ]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("partition", "owner", "epoch", "generation", "checkpoint", "lag", "note"):
        right = header in ("partition", "epoch", "checkpoint", "lag")
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    for p in d["partitions"]:
        owner = p["owner"]
        table.add_row(
            *(
                Text(cell)  # Text: a host name is never read as rich markup
                for cell in (
                    str(p["partition"]),
                    "no owner" if owner is None else f"{owner['pid']}@{owner['host']}",
                    _dash(p["epoch"]),
                    _dash(p["generation"]),
                    _dash(p["checkpoint"]),
                    _lag(p),
                    _note(p),
                )
            )
        )
    return Group(*(Text(line) for line in facts), table)


def _relay(r: dict[str, Any] | None) -> str:
    if r is None:
        return "none has run (NATS_URL unset, or `items relay` never started)"
    owner = r["owner"]
    by = "no relay holds it" if owner is None else f"held by {owner['pid']}@{owner['host']}"
    return (
        f"stream {r['stream']} at position {r['position']}, lag {r['lag_events']} event(s), "
        f"{r['lag_seconds']:.3f}s; {by}"
    )


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _lag(p: dict[str, Any]) -> str:
    seconds = p.get("lag_seconds")  # per partition: absent from older status versions
    return f"{p['lag_events']} event(s)" + ("" if seconds is None else f", {seconds:.3f}s")


def _note(p: dict[str, Any]) -> str:
    notes = [] if p["generation"] is not None else ["no live generation (missing or restoring)"]
    if p["restoring"]:
        notes.append(f"restoring {p['restore_generation']} at {p['restore_checkpoint']}")
    if p["rebuilding"]:
        notes.append(f"rebuilding {p['rebuild_generation']} at {p['rebuild_checkpoint']}")
    return "; ".join(notes)


def render_status(d: dict[str, Any], *, terminal: bool = False) -> str:
    """status_view as text: for a terminal as wide as it is and in colour, for anything
    else plain and WIDTH columns wide."""
    out = io.StringIO()
    width = shutil.get_terminal_size((WIDTH, 24)).columns if terminal else WIDTH
    console = Console(file=out, width=width, force_terminal=terminal, highlight=False)
    if not terminal:
        console.no_color = True
    console.print(status_view(d))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def problems(d: dict[str, Any], max_lag: float) -> list[str]:
    """What is not well, one line each; [] when all is."""
    found = []
    if d["lag_seconds"] > max_lag:
        found.append(
            f"lag {d['lag_seconds']:.3f}s exceeds {max_lag:g}s ({d['lag_events']} event(s) behind)"
        )
    for p in d["partitions"]:
        if p["owner"] is None:
            found.append(f"partition {p['partition']} has no owner (no projector holds it)")
    if d["dead_letters"] > 0:
        found.append(f"{d['dead_letters']} dead letter(s) wait (see `items dead-letters list`)")
    relay = d.get("relay")  # absent without NATS_URL, None until a relay first ran
    if relay is not None:
        behind = f"{relay['lag_events']} event(s) not yet on stream {relay['stream']}"
        if relay["lag_seconds"] > max_lag:
            found.append(f"relay lag {relay['lag_seconds']:.3f}s exceeds {max_lag:g}s ({behind})")
        if relay["owner"] is None and relay["lag_events"] > 0:
            found.append(f"no relay holds the stream and {behind}")
    return found


def run(as_json: bool, check: bool, max_lag: float | None) -> int:
    async def work(container: Container) -> int:
        found = await container.status()
        if as_json:
            say(json.dumps(found, default=str, indent=2))
        else:
            say(render_status(found, terminal=sys.stdout.isatty()))
        if not check:
            return OK
        ready = container.settings.ready_max_lag_seconds
        bound = max_lag if max_lag is not None else (ready if ready > 0 else DEFAULT_MAX_LAG)
        wrong = problems(found, bound)
        for line in wrong:
            complain("items status", line)
        return FOUND if wrong else OK

    return operate(work)
