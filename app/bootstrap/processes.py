"""Processes: logging, the embedded servers, migrations, and the projector's entry points
(`items projector`, the API's child, the supervisor's child with --workers)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from app import logs, metrics, proctitle, tracing
from app.bootstrap import safety
from app.bootstrap.container import Container
from app.bootstrap.wiring import build
from app.infrastructure.postgres import migrations
from app.projection import child
from app.projection.child import ProjectorChild
from app.projection.runner import Projector
from app.relay.runner import Relay
from app.settings import Settings

log = logging.getLogger("items")
LOG_FORMAT = logs.TEXT_FORMAT


def configure_logging(settings: Settings) -> None:
    """This process's logging: LOG_LEVEL, LOG_FORMAT (text or json), secrets redacted."""
    logs.configure(settings.log_level, settings.log_format)


def with_servers(settings: Settings) -> Settings:
    """Start (or join) the embedded servers for whatever store URL is unset, then read
    the settings again: from here on the servers' URLs are in the environment, for child
    processes too. With the embedded servers, and no SECRET_KEY, the key kept in
    DATA_DIR signs cursors and tokens, so that they survive a restart. With
    ENVIRONMENT=production, unsafe settings end the process here (safety.py)."""
    safety.refuse_if_unsafe(settings)
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


def migrate(settings: Settings, revision: str = "head") -> str | None:
    """Apply the migrations up to `revision`; the revision the database is at now."""
    database_url, _ = settings.require_urls()
    return migrations.migrate(database_url, revision)


async def run_projector(container: Container, parent: int | None = None, beat: Any = None) -> None:
    """A projector until SIGTERM/SIGINT (which finish the batch in hand and give its
    partitions up, so another takes over at once), or until `parent` is gone. `beat`: a
    shared double set at every round of its loop, for the supervisor (child.py). With
    METRICS_PORT set, its own /metrics is served there (not by a child of `items serve`)."""
    tracing.configure("items-projector")  # OTEL_EXPORTER_OTLP_ENDPOINT: else nothing
    projector = container.projector()
    if beat is not None:

        def round_done() -> None:
            beat.value = time.monotonic()

        projector.on_round = round_done
    if container.settings.metrics_port and parent is None:
        # `items projector`'s own; a child's metrics reach its parent's /metrics instead
        # (multiprocess mode), and the port would clash with each restart of the child.
        metrics.serve_http(container.settings.metrics_port)
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


def projector_process(settings: Settings, beat: Any = None) -> None:
    """The projector child's entry point (app/projection/child.py spawns it by name)."""
    parent = os.getppid()
    child.die_with_parent()
    configure_logging(settings)
    proctitle.name("projector child")
    import uvloop

    async def project() -> None:
        container = build(settings)
        try:
            await run_projector(container, parent, beat)
        finally:
            await container.close()

    uvloop.run(project())


def uses_projector_child(settings: Settings) -> bool:
    """Whether this process (an API's, not a supervised worker's) runs its projector in a
    child process."""
    return (
        settings.projector_in_process
        and settings.projector_in_child
        and not settings.projector_supervised
    )


def start_projector_fork_server(settings: Settings) -> None:
    """Called by `items serve` once its environment is final (the metrics folder named):
    if a projector child will be started, its fork server imports the child's modules
    while the API imports its app and starts uvicorn."""
    if uses_projector_child(settings):
        child.start_fork_server(projector_process)


def api_projector(container: Container) -> ProjectorChild | Projector | None:
    """The API's own projector: in a child process (the default), on this loop, or
    none (PROJECTOR_IN_PROCESS=false: `items projector` runs it elsewhere; with
    `items serve --workers N`, a child of the supervising process runs it)."""
    settings = container.settings
    if not settings.projector_in_process or settings.projector_supervised:
        return None
    if settings.projector_in_child:
        return ProjectorChild(
            projector_process, (settings,), stalled_after=settings.projector_stalled_after
        )
    return container.projector()


def serve_relay(container: Container) -> Relay | None:
    """The relay `items serve` runs beside the API with RELAY_IN_SERVE (and NATS_URL):
    on the API's loop, each worker's standing by while another holds the lease."""
    settings = container.settings
    if not (settings.relay_in_serve and settings.nats_url):
        return None
    return container.relay()
