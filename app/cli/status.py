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
        help="projection position, lag, generation, lock holder, dead letters",
        description="Head event position, projection checkpoint, lag in events and seconds, "
        "the live generation, the projector lock holder and since when, dead-letter count.",
    )
    stat.add_argument("--json", action="store_true", help="machine-readable output")
    stat.set_defaults(func=run)


def render_status(d: dict[str, Any]) -> str:
    """The status for humans, one fact per line."""
    lines = [
        f"head position:   {d['head_position']}",
        f"read model:      {d['read_model']}",
        f"checkpoint:      {d['checkpoint']}",
        f"lag:             {d['lag_events']} event(s), {d['lag_seconds']:.3f}s",
    ]
    for p in d["partitions"]:
        live = (
            f"generation {p['generation']} at {p['checkpoint']}"
            if p["generation"] is not None
            else "no live generation (missing or being restored)"
        )
        line = f"partition {p['partition']}:     {live}"
        if p["restoring"]:
            line += f"; restoring {p['restore_generation']} at {p['restore_checkpoint']}"
        if p["rebuilding"]:
            line += f"; rebuilding {p['rebuild_generation']} at {p['rebuild_checkpoint']}"
        lines.append(line)
    holder = d["projector"]
    if holder is None:
        lines.append("projector lock:  not held (no projector running)")
    else:
        who = f"pid {holder['pid']}"
        if holder.get("application_name"):
            who += f" ({holder['application_name']})"
        if holder.get("client_addr"):
            who += f" from {holder['client_addr']}"
        lines.append(f"projector lock:  {who}, connected since {holder['since']}")
    lines.append(f"dead letters:    {d['dead_letters']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        found = await container.status()
        say(json.dumps(found, default=str, indent=2) if args.json else render_status(found))
        return OK

    return operate(work)
