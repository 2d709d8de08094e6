"""/graphql on the API's port, with Strawberry imported off the start's critical path.

Strawberry and graphql-core took about a third of the API's import time (python -X
importtime: 4.4 of 14.4 s on the loaded 2-core machine, where `items serve` then missed
the suite's 30 s start bound). So GraphQL's router is built in a thread once the API
has started (the lifespan starts it after the readiness wait), and a GraphQL request that
comes before that finishes waits for it without blocking the event loop; REST requests
never wait for any of it. Behind the same middleware as REST (body limit, CORS; API keys
GraphQL checks itself, the same way).
"""

from __future__ import annotations

import asyncio
import threading

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.state import scope_container
from app.settings import Settings

PATH = "/graphql"
METHODS = ("GET", "POST")  # OPTIONS: its own route; the rest 405, with Allow


class GraphQLLoader:
    """Strawberry's router for /graphql, imported and built once, in any thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.router: ASGIApp | None = None
        self._lock = threading.Lock()

    def load(self) -> ASGIApp:
        with self._lock:
            if self.router is None:
                from app.graphql import schema

                self.router = schema.router(self._settings, scope_container, path=PATH)
            return self.router


class LazyGraphQL:
    """The ASGI endpoint of the app's /graphql route: Strawberry's router, once built.
    A route (not a middleware), so FastAPI's per-request state and the app's exception
    handlers wrap it as they wrap every route."""

    def __init__(self, loader: GraphQLLoader) -> None:
        self._loader = loader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self._loader.router
        if router is None:  # a request before the lifespan's warm-up finished
            router = await asyncio.to_thread(self._loader.load)
        await router(scope, receive, send)
