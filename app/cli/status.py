"""`items status [--json]`: where the projection stands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.bootstrap import Container
from app.cli.common import OK, Subparsers, operate, say


def register(sub: Subparsers) -> None:
    stat = sub.add_parser(
        "status",
        help="projection position, lag, partitions and their owners, dead letters",
        description="Head event position; per partition its owner (projector pid and host), "
        "epoch, generation, checkpoint and lag; totals; the dead-letter count.",
    )
    stat.add_argument("--json", action="store_true", help="machine-readable output")
    stat.set_defaults(func=run)


def render_status(d: dict[str, Any]) -> str:
    """The status for humans, one fact per line."""
    layout = d["layout"]
    name = f"layout {layout['name']!r}, " if layout["name"] else ""
    lines = [
        f"head position:   {d['head_position']}",
        f"read model:      {d['read_model']} ({name}{layout['partitions']} partition(s))",
        f"checkpoint:      {d['checkpoint']} (the lowest of the partitions')",
        f"lag:             {d['lag_events']} event(s), {d['lag_seconds']:.3f}s",
        f"owners:          {d['owned_partitions']} of {layout['partitions']} partition(s) "
        f"owned, by {d['projectors']} projector(s)",
    ]
    for p in d["partitions"]:
        live = (
            f"generation {p['generation']} at {p['checkpoint']}, lag {p['lag_events']}"
            if p["generation"] is not None
            else "no live generation (missing or being restored)"
        )
        owner = p["owner"]
        who = "no owner" if owner is None else f"pid {owner['pid']} on {owner['host']}"
        line = f"partition {p['partition']}:     {live}; {who}, epoch {p['epoch']}"
        if p["restoring"]:
            line += f"; restoring {p['restore_generation']} at {p['restore_checkpoint']}"
        if p["rebuilding"]:
            line += f"; rebuilding {p['rebuild_generation']} at {p['rebuild_checkpoint']}"
        lines.append(line)
    lines.append(f"dead letters:    {d['dead_letters']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        found = await container.status()
        say(json.dumps(found, default=str, indent=2) if args.json else render_status(found))
        return OK

    return operate(work)
