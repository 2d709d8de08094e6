"""The `items` console script: one module per command group, all output for humans here."""

from __future__ import annotations

import argparse
import sys

from app import bootstrap
from app.cli import dead_letters, migrate, projector, rebuild, serve, servers, status, verify
from app.settings import Settings

COMMANDS = (serve, projector, migrate, rebuild, verify, status, dead_letters, servers)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="items", description="The items CQRS service.")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    bootstrap.configure_logging(Settings().log_level)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
