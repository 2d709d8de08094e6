"""`items servers status|stop`: the embedded PostgreSQL and Redis of DATA_DIR."""

from __future__ import annotations

import argparse
import json

from app import bootstrap
from app.cli.common import OK, Subparsers, say
from app.settings import Settings


def register(sub: Subparsers) -> None:
    servers = sub.add_parser(
        "servers",
        help="the embedded servers of DATA_DIR: who runs, who uses them; stop them",
        description="With DATABASE_URL / REDIS_URL unset, `items` commands start embedded "
        "PostgreSQL and Redis in DATA_DIR and share them; they stop once the last command "
        "using them has exited, or on `items servers stop`.",
    )
    actions = servers.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status", help="servers, pids and clients", description="Show them."
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    actions.add_parser(
        "stop",
        help="stop both servers now",
        description="Stop them, whoever still uses them (their clients then fail).",
    )
    servers.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    servers = bootstrap.embedded_servers(Settings())
    if args.action == "stop":
        servers.stop()
        say(f"embedded servers of {servers.root} stopped")
        return OK
    found = servers.status()
    if args.json:
        say(json.dumps(found, indent=2))
        return OK
    pg, redis, reaper = found["postgres"], found["redis"], found["reaper"]
    say(f"data dir:    {found['data_dir']}")
    say(f"postgresql:  {_state(pg['running'], pg['pid'])}")
    say(f"redis:       {_state(redis['running'], redis['pid'])} on {redis['url']}")
    say(f"reaper:      {_state(reaper['pid'] is not None, reaper['pid'])}")
    say(f"clients:     {len(found['clients'])}")
    for client in found["clients"]:
        say(f"  pid {client['pid']}: {' '.join(client['command'])}")
    return OK


def _state(running: bool, pid: int | None) -> str:
    return f"running (pid {pid})" if running else "not running"
