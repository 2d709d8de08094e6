"""The `items` console script: serve, run the projector, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def _servers(settings: Settings) -> Settings:
    """Start embedded servers for whatever URL is unset, then re-read the settings."""
    if settings.database_url and settings.redis_url:
        return settings
    from app.infrastructure.embedded import ensure_servers

    ensure_servers(settings.data_dir)
    logging.getLogger("items").info(
        "embedded servers, data in %s: DATABASE_URL=%s REDIS_URL=%s",
        Path(settings.data_dir).resolve(),
        os.environ["DATABASE_URL"],
        os.environ["REDIS_URL"],
    )
    return Settings()


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.api.app import create_app

    settings = _servers(Settings())
    database_url, _ = settings.require_urls()
    migrate(database_url)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; with Python's
    # default handler that would end the process before atexit stops the embedded
    # servers, so turn the re-raised signal into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level,
        access_log=args.access_log,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


def cmd_projector(args: argparse.Namespace) -> None:
    from app.infrastructure import bootstrap

    settings = _servers(Settings())

    async def run() -> None:
        container = bootstrap.build(settings)
        projector = container.projector()
        loop = asyncio.get_running_loop()
        # SIGTERM/SIGINT finish the batch in hand and release the lock, so a standby
        # projector takes over at once instead of after a connection timeout.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stop)
        try:
            await projector.run()
        finally:
            await container.close()

    asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _servers(Settings())
    database_url, _ = settings.require_urls()
    migrate(database_url, args.revision)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="items", description="The items CQRS service.")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="migrate, then serve the API with the in-process projector",
        description="Serve the HTTP API (uvicorn). Reads HOST, PORT, DATABASE_URL and "
        "REDIS_URL; starts embedded PostgreSQL/Redis for any URL that is unset.",
    )
    serve.add_argument("--host", help="overrides HOST")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    projector = sub.add_parser(
        "projector",
        help="run the projector on its own",
        description="Project events into Redis. Only one projector is active at a time; "
        "others wait and take over if it dies.",
    )
    projector.set_defaults(func=cmd_projector)

    mig = sub.add_parser("migrate", help="apply database migrations", description="alembic upgrade")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=cmd_migrate)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)


if __name__ == "__main__":
    main()
