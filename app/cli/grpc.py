"""`items grpc [--host] [--port]`: migrate, then serve ItemsService over gRPC (with its
projector, under the same PROJECTOR_IN_PROCESS rule as `items serve`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app import bootstrap
from app.cli.common import begin, finish, outage, settings, unreachable

SHORT = "migrate, then serve the gRPC API (items.v1.ItemsService) with its projector"
HELP = (
    "Serve items.v1.ItemsService over gRPC on HOST:GRPC_PORT (default 50051), with the "
    "standard health service and server reflection; writes need `authorization: Bearer "
    "<key>` metadata when API_KEYS is set. SIGTERM drains calls in flight."
)


def register(app: typer.Typer) -> None:
    app.command("grpc", help=HELP, short_help=SHORT)(command)


def command(
    host: Annotated[str | None, typer.Option(help="overrides HOST", show_default=False)] = None,
    port: Annotated[
        int | None, typer.Option(help="overrides GRPC_PORT", show_default=False)
    ] = None,
) -> None:
    begin("grpc")
    finish(run(host, port))


def run(host: str | None, port: int | None) -> int:
    from app.grpc import server

    configured = settings()
    try:
        bootstrap.migrate(configured)
    except Exception as exc:
        if (cause := outage(exc)) is None:
            raise
        return unreachable(cause)

    async def serve() -> None:
        container = bootstrap.build(configured)
        try:
            await server.run(container, host or configured.host, port or configured.grpc_port)
        finally:
            await container.close()

    try:
        asyncio.run(serve())
    except bootstrap.UNREACHABLE as exc:
        return unreachable(exc)
    return 0
