"""The composition root: the one place that turns settings into connected parts.

The API's lifespan, the projector (its own process, or the API's child), the operator
commands and the tests all start here; nothing else constructs an adapter. Nothing
connects at import time: `build` creates clients that connect on first use.
"""

from app.bootstrap.container import UNREACHABLE, Container, not_ready, unreachable_store
from app.bootstrap.processes import (
    LOG_FORMAT,
    api_projector,
    configure_logging,
    embedded_servers,
    migrate,
    projector_process,
    run_projector,
    serve_relay,
    start_projector_fork_server,
    with_servers,
)
from app.bootstrap.wiring import PAGE_SHARE, build, make_redis

__all__ = [
    "LOG_FORMAT",
    "PAGE_SHARE",
    "UNREACHABLE",
    "Container",
    "api_projector",
    "build",
    "configure_logging",
    "embedded_servers",
    "make_redis",
    "migrate",
    "not_ready",
    "projector_process",
    "run_projector",
    "serve_relay",
    "start_projector_fork_server",
    "unreachable_store",
    "with_servers",
]
