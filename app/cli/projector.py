"""`items projector`: the projector on its own process."""

from __future__ import annotations

import argparse

from app import bootstrap
from app.bootstrap import Container
from app.cli.common import OK, Subparsers, operate


def register(sub: Subparsers) -> None:
    projector = sub.add_parser(
        "projector",
        help="run the projector on its own",
        description="Project events into Redis. Only one projector is active at a time; "
        "others wait and take over if it dies.",
    )
    projector.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(container: Container) -> int:
        await bootstrap.run_projector(container)
        return OK

    return operate(work)
