"""`items migrate [revision]`: apply the Alembic migrations."""

from __future__ import annotations

import argparse

from app import bootstrap
from app.cli.common import OK, Subparsers, settings


def register(sub: Subparsers) -> None:
    mig = sub.add_parser("migrate", help="apply database migrations", description="alembic upgrade")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bootstrap.migrate(settings(), args.revision)
    return OK
