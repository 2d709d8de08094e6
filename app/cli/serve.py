"""`items serve [--workers N]`: migrate, then serve the API (uvicorn) with its projector.

With one worker the API process runs the projector's supervisor itself (its lifespan,
app/api/app.py). With N workers uvicorn's supervising process binds the port and starts
N worker processes (restarting any that dies); the projector then runs in one child of
the supervising process, supervised from a thread of it, and no worker starts one. The
embedded servers (when no URL is set) are started before any worker, here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from app import bootstrap
from app.cli.common import UNREACHABLE, Subparsers, complain, settings
from app.projection.child import ChildInThread

# uvicorn loads these by name: the CLI starts the web stack without importing it.
APP_FACTORY = "app.api.app:serving_app"
HTTP_PROTOCOL = "app.api.http_protocol:ProblemHttpToolsProtocol"  # problem+json 400s
GRACEFUL_SHUTDOWN = 10  # seconds uvicorn lets requests in flight finish on SIGTERM


def register(sub: Subparsers) -> None:
    serve = sub.add_parser(
        "serve",
        help="migrate, then serve the API with the in-process projector",
        description="Serve the HTTP API (uvicorn). Reads HOST, PORT, DATABASE_URL and "
        "REDIS_URL; starts embedded PostgreSQL/Redis for any URL that is unset.",
    )
    serve.add_argument("--host", help="overrides HOST")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--workers",
        type=int,
        help="overrides WORKERS: API processes on the one port (default 1); the projector "
        "runs once beside them",
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    configured = settings()
    workers = args.workers or configured.workers
    if workers < 1:
        complain("items serve", "--workers must be at least 1")
        return UNREACHABLE
    if workers > 1 and configured.random_signing_key:
        # Each worker would sign with a key of its own: a cursor, token or ETag-bearing
        # answer from one would be refused by the next.
        complain(
            "items serve",
            "--workers > 1 needs SECRET_KEY (the same for every process): with a random "
            "key per process, a cursor or Consistency-Token from one worker is refused by "
            "the others",
        )
        return UNREACHABLE
    bootstrap.migrate(configured)
    projector = None
    if workers > 1 and configured.projector_in_process:
        os.environ["PROJECTOR_SUPERVISED"] = "true"  # the workers read it: none starts one
        projector = ChildInThread(bootstrap.projector_process, (configured,))
        projector.start()
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; with Python's
    # default handler that would end the process before atexit stops the embedded
    # servers, so turn the re-raised signal into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=args.host or configured.host,
            port=args.port or configured.port,
            workers=workers,
            log_level=configured.log_level,
            access_log=args.access_log,
            loop="uvloop",
            http=HTTP_PROTOCOL,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
    finally:
        if projector is not None:
            projector.stop()  # after the workers have drained
    return 0
