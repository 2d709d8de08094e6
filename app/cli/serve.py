"""`items serve [--host] [--port] [--access-log] [--workers N]`: migrate, then serve the
API (uvicorn) with its projector.

With one worker the API process runs the projector's supervisor itself (its lifespan,
app/api/app.py). With N workers uvicorn's supervising process binds the port and starts
N worker processes (restarting any that dies); the projector then runs in one child of
the supervising process, supervised from a thread of it, and no worker starts one. The
embedded servers (when no URL is set) are started before any worker, here.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from app import bootstrap, metrics, proctitle
from app.cli.common import UNREACHABLE, begin, complain, finish, outage, settings, unreachable
from app.projection.child import ChildInThread

# uvicorn loads these by name: the CLI starts the web stack without importing it.
APP_FACTORY = "app.api.app:serving_app"
HTTP_PROTOCOL = "app.api.http_protocol:ProblemHttpToolsProtocol"  # problem+json 400s
GRACEFUL_SHUTDOWN = 10  # seconds uvicorn lets requests in flight finish on SIGTERM

SHORT = "migrate, then serve the API with the in-process projector"
HELP = (
    "Serve the HTTP API (uvicorn). Reads HOST, PORT, DATABASE_URL and REDIS_URL; starts "
    "embedded PostgreSQL/Redis for any URL that is unset."
)


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP, short_help=SHORT)(command)


def command(
    host: Annotated[str | None, typer.Option(help="overrides HOST", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="overrides PORT", show_default=False)] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="log every request (sets ACCESS_LOG)")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="overrides WORKERS: API processes on the one port (default 1); the "
            "projector runs once beside them",
            show_default=False,
        ),
    ] = None,
) -> None:
    begin("api")
    finish(run(host, port, access_log, workers))


def run(host: str | None, port: int | None, access_log: bool, workers: int | None) -> int:
    import uvicorn

    configured = settings()
    count = configured.workers if workers is None else workers
    if count < 1:
        complain("items serve", "--workers must be at least 1")
        return UNREACHABLE
    if count > 1 and configured.random_signing_key:
        # Each worker would sign with a key of its own: a cursor, token or ETag-bearing
        # answer from one would be refused by the next.
        complain(
            "items serve",
            "--workers > 1 needs SECRET_KEY (the same for every process): with a random "
            "key per process, a cursor or Consistency-Token from one worker is refused by "
            "the others",
        )
        return UNREACHABLE
    if count > 1:
        proctitle.name("api supervisor")  # the workers are `items: api worker`
    try:
        bootstrap.migrate(configured)
    except Exception as exc:
        if (cause := outage(exc)) is None:
            raise
        return unreachable(cause)
    if access_log:
        # The service writes its own access lines (with the request id); every worker
        # reads its settings from the environment, so that is where the flag goes.
        os.environ["ACCESS_LOG"] = "true"
    # Every process of this serve (workers, projector child) counts into files of one
    # folder, and a scrape of any worker sums them (app/metrics.py). Named before any of
    # them starts, so that each inherits it; an operator's own folder is kept.
    folder = None if metrics.multiprocess() else metrics.prepare_multiprocess()
    # After the folder is named: the fork server hands its environment to the child.
    bootstrap.start_projector_fork_server(configured)
    projector = None
    if count > 1 and configured.projector_in_process:
        os.environ["PROJECTOR_SUPERVISED"] = "true"  # the workers read it: none starts one
        projector = ChildInThread(
            bootstrap.projector_process,
            (configured,),
            stalled_after=configured.projector_stalled_after,
        )
        projector.start()
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; with Python's
    # default handler that would end the process before atexit stops the embedded
    # servers, so turn the re-raised signal into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host or configured.host,
            port=port or configured.port,
            workers=count,
            log_level=configured.log_level,
            # Logging is this service's own (app/logs.py: text or JSON, secrets redacted),
            # and so is the access log (ACCESS_LOG, above): uvicorn configures neither.
            log_config=None,
            access_log=False,
            loop="uvloop",
            http=HTTP_PROTOCOL,
            # No route speaks WebSocket: an Upgrade is an ordinary request, answered by the
            # app (with "auto", uvicorn's own WebSocket code answers a bare 403 instead).
            ws="none",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
    finally:
        if projector is not None:
            projector.stop()  # after the workers have drained
        if folder is not None:
            metrics.cleanup_multiprocess(folder)
    return 0
