"""`items migrate [revision]`: apply the Alembic migrations, and say where they got to."""

from __future__ import annotations

from typing import Annotated

import typer

from app import bootstrap
from app.cli.common import OK, begin, finish, outage, say, settings, unreachable


def register(app: typer.Typer) -> None:
    app.command(
        "migrate",
        help="Apply the Alembic migrations up to REVISION (alembic upgrade); print the "
        "revision the database is at then.",
        short_help="apply database migrations",
    )(command)


def command(
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="the revision to upgrade to")
    ] = "head",
) -> None:
    begin("migrate")
    finish(run(revision))


def run(revision: str) -> int:
    configured = settings()
    try:
        reached = bootstrap.migrate(configured, revision)
    except Exception as exc:
        cause = outage(exc)
        if cause is None:
            raise
        return unreachable(cause)
    say(f"database at revision {reached}" if reached else "database has no revision")
    return OK
