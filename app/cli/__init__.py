"""The `items` console script (Typer): one module per command or command group, all
output for humans here. Every command starts with common.begin(role): its name in `ps`,
then this process's logging, from the settings."""

from __future__ import annotations

import logging
import sys

import typer

from app.cli import (
    dead_letters,
    grpc,
    migrate,
    projector,
    rebuild,
    relay,
    serve,
    servers,
    status,
    verify,
)

COMMANDS = (serve, grpc, relay, projector, migrate, rebuild, verify, status, dead_letters, servers)

log = logging.getLogger("items")

app = typer.Typer(
    name="items",
    help="The items CQRS service.",
    no_args_is_help=True,
    # A failure's traceback goes through the log instead (main, below); and a traceback's
    # locals would show the settings, passwords and keys among them.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)
for command in COMMANDS:
    command.register(app)


def main(argv: list[str] | None = None) -> None:
    """The console script (`items = "app.cli:main"`); exits with the command's code."""
    try:
        app(args=argv, prog_name="items")
    except Exception:
        # Through the log handler, a traceback is redacted like any line (an error's text
        # may hold a DSN), and is one JSON record with LOG_FORMAT=json.
        log.exception("the command failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
