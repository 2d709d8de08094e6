"""`items servers status [--json]|stop`: the embedded PostgreSQL and Redis of DATA_DIR."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app import bootstrap
from app.cli.common import begin, say, scrubbed
from app.settings import Settings

group = typer.Typer(
    name="servers",
    help="With DATABASE_URL / REDIS_URL unset, `items` commands start embedded PostgreSQL "
    "and Redis in DATA_DIR and share them; they stop once the last command using them has "
    "exited, or on `items servers stop`.",
    short_help="the embedded servers of DATA_DIR: who runs, who uses them; stop them",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("status", help="Show them.", short_help="servers, pids and clients")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    begin("servers")
    # A URL may carry a password: the same shape, with *** in its place.
    found = scrubbed(bootstrap.embedded_servers(Settings()).status())
    if as_json:
        say(json.dumps(found, indent=2))
        return
    pg, redis, reaper = found["postgres"], found["redis"], found["reaper"]
    say(f"data dir:    {found['data_dir']}")
    say(f"postgresql:  {_state(pg['running'], pg['pid'])}")
    say(f"redis:       {_state(redis['running'], redis['pid'])} on {redis['url']}")
    say(f"reaper:      {_state(reaper['pid'] is not None, reaper['pid'])}")
    say(f"clients:     {len(found['clients'])}")
    for client in found["clients"]:
        # A named process's command line is its title, padded with spaces (setproctitle).
        say(f"  pid {client['pid']}: {' '.join(client['command']).strip()}")


@group.command(
    "stop",
    help="Stop them, whoever still uses them (their clients then fail).",
    short_help="stop both servers now",
)
def stop() -> None:
    begin("servers")
    servers = bootstrap.embedded_servers(Settings())
    servers.stop()
    say(f"embedded servers of {servers.root} stopped")


def _state(running: bool, pid: int | None) -> str:
    return f"running (pid {pid})" if running else "not running"
