"""The FastAPI application: built by create_app, wired in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.api import health, items, problems
from app.api.middleware import LimitBody, StripTrailingSlash
from app.infrastructure import bootstrap
from app.infrastructure.settings import Settings

log = logging.getLogger("items.api")

DESCRIPTION = """
Items, with separate write and read models (CQRS).

Writes (POST, PATCH, DELETE) change the item in PostgreSQL and record the event in the
same transaction. A projector applies the events, in order, to item views in Redis, and
every GET is answered from Redis alone. Errors are `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = bootstrap.build(settings)
        app.state.container = container
        projector = container.projector() if settings.projector_in_process else None
        task = asyncio.create_task(projector.run(), name="projector") if projector else None
        try:
            yield
        finally:
            if projector is not None and task is not None:
                projector.stop()
                done, _ = await asyncio.wait([task], timeout=10)
                if not done:
                    task.cancel()
                    log.warning("projector did not stop within 10s; cancelled")
            await container.close()

    app = FastAPI(
        title="Items (CQRS)",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.include_router(items.router)
    app.include_router(health.router)
    problems.install(app)
    app.add_middleware(LimitBody)
    # Outermost, so the router only ever sees canonical paths.
    app.add_middleware(StripTrailingSlash)
    return app
