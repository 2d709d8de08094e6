"""The FastAPI application: built by create_app, wired in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from app import bootstrap, metrics, proctitle, tracing
from app.api import auth, lazy_graphql, openapi, problems
from app.api.edge import EdgeStack
from app.api.fast_reads import FastItemReads
from app.api.fast_writes import FastItemWrites
from app.api.lazy_graphql import GraphQLLoader, LazyGraphQL
from app.api.middleware import LimitBody, StripTrailingSlash
from app.api.observe import HttpCounts, NoteRoute, Record, Telemetry
from app.api.routes import admin, health, items, status_page
from app.api.routes import metrics as metrics_route
from app.api.routes.options import add_path_options
from app.api.state import State
from app.bootstrap.readiness import Readiness
from app.settings import Settings

log = logging.getLogger("items.api")
PURGE_EVERY = 600.0  # seconds
FLUSH_EVERY = 1.0  # seconds between two hand-overs of the counts to prometheus-client
# A child finishes its batch within child.STOP_TIMEOUT or is killed (5 s more).
PROJECTOR_STOP_WAIT = 20.0
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "Consistency-Token",
    "Prefer",
)
CORS_EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "Consistency-Token",
    "Consistency-Pending",
    "Idempotent-Replayed",
    "Preference-Applied",
    "X-Projection-Position",
    "Retry-After",
    "Allow",
)

DESCRIPTION = """
Items, with separate write and read models (CQRS).

Writes (POST, PATCH, DELETE) change the item in PostgreSQL and record the event in the
same transaction. A projector applies the events, in order, to item views in Redis, and
every GET is answered from Redis alone. Errors are `application/problem+json`.
"""


def create_app(settings: Settings | None = None, *, freeze_startup_heap: bool = False) -> FastAPI:
    """`freeze_startup_heap`: for a serving process (`items serve`), see _freeze_heap."""
    settings = settings or Settings()
    counts = HttpCounts(metrics.instance()) if settings.metrics_enabled else None
    telemetry = Telemetry(counts, None)
    graphql = GraphQLLoader(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        auth.announce(settings)
        container = bootstrap.build(settings)
        telemetry.watch(container)
        projection = bootstrap.api_projector(container)
        task = asyncio.create_task(projection.run(), name="projector") if projection else None
        relay = bootstrap.serve_relay(container)  # RELAY_IN_SERVE with NATS_URL: else None
        relaying = asyncio.create_task(relay.run(), name="relay") if relay else None
        watcher = asyncio.create_task(container.watcher.run(), name="checkpoint-watcher")
        stopping = asyncio.Event()
        purge = asyncio.create_task(_purge_keys(container, stopping), name="purge-keys")
        flushing = asyncio.create_task(_flush(telemetry, stopping), name="flush-metrics")
        readiness = Readiness(container)
        try:
            # uvicorn accepts connections (and says "startup complete") only after this.
            missing = await readiness.wait(settings.startup_ready_timeout)
            if missing:
                log.warning("serving before ready (STARTUP_READY_TIMEOUT): %s", missing)
            if freeze_startup_heap:
                _freeze_heap()
            # Strawberry's import after the start, not before it (lazy_graphql.py).
            warming = asyncio.ensure_future(asyncio.to_thread(graphql.load))
            warming.add_done_callback(_said_if_failed)
            yield State(container=container, readiness=readiness, telemetry=telemetry)
        finally:
            stopping.set()
            container.watcher.stop()
            # The flags end both loops even if a library swallows the cancellation;
            # cancelling just saves waiting out their current read.
            watcher.cancel()
            purge.cancel()
            flushing.cancel()
            await asyncio.wait([watcher, purge, flushing], timeout=5)
            telemetry.flush()
            if relay is not None and relaying is not None:
                relay.stop()  # the event in hand, the checkpoint, the lease given up
                await asyncio.wait([relaying], timeout=PROJECTOR_STOP_WAIT)
            if projection is not None and task is not None:
                projection.stop()
                done, _ = await asyncio.wait([task], timeout=PROJECTOR_STOP_WAIT)
                if not done:
                    task.cancel()
                    log.warning("projector did not stop within %.0fs; cancelled",
                                PROJECTOR_STOP_WAIT)  # fmt: skip
            await container.close()

    # FastAPIOffline: /docs and /redoc serve their scripts and styles from the service
    # itself (the fastapi-offline package ships them), not from a CDN: they work on a
    # machine or network with no way out.
    app = FastAPIOffline(
        title="Items (CQRS)",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        generate_unique_id_function=openapi.operation_id,
        # No OpenTelemetry provider is configured here; left on, FastAPI's native
        # telemetry looks the global providers up on every request (about 6% of the
        # samples of a GET by id in a py-spy profile).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.include_router(items.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(status_page.router)
    if settings.metrics_enabled:
        app.include_router(metrics_route.router)
    # GraphQL on the same port and container: the same commands, queries and errors.
    endpoint = LazyGraphQL(graphql)  # an ASGI app: Route hands it the scope as it is
    methods = list(lazy_graphql.METHODS)
    app.router.routes.append(Route(lazy_graphql.PATH, endpoint, methods=methods))
    add_path_options(app.router, lazy_graphql.PATH, set(lazy_graphql.METHODS))
    openapi.install(app, settings)
    problems.install(app)
    # Reads in the Edge (edge.py), in front of every middleware, unless one applies
    # to reads: CORS, or a key needed to read.
    edge_reads = not settings.cors_origins and not auth.reads_need_key(settings)
    # Innermost: the route the router matched, for the counts and the access line.
    app.add_middleware(NoteRoute)
    if not edge_reads:
        # GET by id and list pages skip the router (see fast_reads.py for the
        # profile), while the API-key and CORS middleware outside them still apply.
        app.add_middleware(FastItemReads)
    # The writes with a valid body skip the router the same way (fast_writes.py).
    app.add_middleware(FastItemWrites)
    app.add_middleware(LimitBody)
    # Outside LimitBody: a request without a valid key is refused before its body is read.
    auth.install(app, settings)
    if settings.cors_origins:
        # Outside auth, so preflights pass and 401/403 answers carry CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
        )
    # So the router only ever sees canonical paths.
    app.add_middleware(StripTrailingSlash)
    # Outermost, in front of FastAPI's own middleware: every answer, refusals and
    # unexpected 500s included, gets its request id, is counted and (ACCESS_LOG)
    # logged; the reads are answered there when no middleware applies to them. Set
    # here, it makes a later add_middleware fail loudly, as after the app has started.
    app.middleware_stack = EdgeStack(
        app,
        record=Record(counts, settings.access_log),
        edge_reads=edge_reads,
        traced=tracing.configure("items-api"),  # OTEL_EXPORTER_OTLP_ENDPOINT: else off
    )
    return app


def serving_app() -> FastAPI:
    """The app `items serve` runs (uvicorn calls this factory by name, in each worker
    process with --workers N): settings from the environment, logging as they say (a
    spawned worker starts with none), the startup heap frozen."""
    settings = Settings()
    bootstrap.configure_logging(settings)
    if settings.projector_supervised:
        proctitle.name("api worker")
    return create_app(settings, freeze_startup_heap=True)


def _said_if_failed(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("GraphQL could not be loaded", exc_info=done.exception())


def _freeze_heap() -> None:
    """Take everything built so far out of the cyclic garbage collector's walks.

    Imports and startup leave about 100,000 tracked objects (modules, classes, FastAPI,
    pydantic and SQLAlchemy structures, the container) that live as long as the process.
    Every full collection walked them all: 90-190 ms on the 2-core bench machine, about
    once a second under load, with every request in flight waiting; that was the p99
    of GET by id. Frozen, a full collection walks only what requests built since (under
    10 ms there). Not for tests, which build many apps: frozen objects are never freed.
    """
    gc.collect()
    gc.freeze()


async def _flush(telemetry: Telemetry, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        await asyncio.sleep(FLUSH_EVERY)
        telemetry.flush()


async def _purge_keys(container: bootstrap.Container, stopping: asyncio.Event) -> None:
    """Expired Idempotency-Key records go in small batches, every few minutes."""
    while not stopping.is_set():
        try:
            removed = await container.purge_idempotency_keys()
            if removed:
                log.info("purged %d expired idempotency keys", removed)
        except Exception as exc:
            log.warning("purging idempotency keys failed: %s", exc)
        await asyncio.wait([asyncio.ensure_future(stopping.wait())], timeout=PURGE_EVERY)
