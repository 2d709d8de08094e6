"""`items serve`: migrate, then serve the API (uvicorn) with its projector."""

from __future__ import annotations

import argparse
import signal
import sys

from app import bootstrap
from app.cli.common import Subparsers, settings

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
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    configured = settings()
    bootstrap.migrate(configured)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; with Python's
    # default handler that would end the process before atexit stops the embedded
    # servers, so turn the re-raised signal into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=args.host or configured.host,
        port=args.port or configured.port,
        log_level=configured.log_level,
        access_log=args.access_log,
        loop="uvloop",
        http=HTTP_PROTOCOL,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    return 0
