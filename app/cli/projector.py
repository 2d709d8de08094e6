"""`items projector`: the projector on its own process."""

from __future__ import annotations

import typer

from app import bootstrap
from app.bootstrap import Container
from app.cli.common import OK, begin, finish, operate

SHORT = "run the projector on its own"
HELP = (
    "Project events into Redis. Projectors divide the partitions between them, each "
    "owning a fair share, and take over a dead or stuck one's; SIGTERM finishes the batch "
    "in hand and gives its partitions up at once."
)


def register(app: typer.Typer) -> None:
    app.command("projector", help=HELP, short_help=SHORT)(command)


def command() -> None:
    begin("projector")

    async def work(container: Container) -> int:
        await bootstrap.run_projector(container)
        return OK

    finish(operate(work))
