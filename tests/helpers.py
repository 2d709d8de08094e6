"""Helpers for tests that talk to the service: the app with its lifespan run, waiting
for the projection, problem answers, API keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.edge import EdgeStack
from app.api.fast_reads import FastItemReads
from app.api.state import State
from app.bootstrap import Container
from app.infrastructure.postgres import leases
from app.settings import Settings

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool] = bool,
    within: float = 5.0,
) -> T:
    """Poll `probe` until `check` accepts its result; fail with the last result."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if check(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s; last: {result!r}")
        await asyncio.sleep(0.02)


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "thing", "price": "1.00", **fields}
    response = await client.post("/api/v1/items", json=body)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def visible(client: httpx.AsyncClient, item: dict[str, Any]) -> dict[str, Any]:
    """Wait until GET shows this version of the item (the projection is asynchronous)."""

    async def get() -> httpx.Response:
        return await client.get(f"/api/v1/items/{item['id']}")

    response = await eventually(
        get, lambda r: r.status_code == 200 and r.json()["version"] >= item["version"]
    )
    result: dict[str, Any] = response.json()
    return result


Seen = list[tuple[str, int]]  # (item id, version) pairs one answer showed


async def race_readers_with_writes(
    client: httpx.AsyncClient,
    items: list[dict[str, Any]],
    read: Callable[[], Awaitable[Seen]],
    rounds: int = 25,
    readers: int = 8,
) -> list[tuple[str, int, int]]:
    """Readers call `read` while every item is patched `rounds` times (name n0, n1, ...).

    The highest version of each item any answer has shown, once that answer was
    received, is a floor for every read started afterwards, whichever reader made
    it: the (id, floor, version) triples that went below it are returned.
    """
    done = asyncio.Event()
    shown: dict[str, int] = {}
    regressions: list[tuple[str, int, int]] = []

    async def reader() -> None:
        while not done.is_set():
            floor = dict(shown)
            for item_id, version in await read():
                if version < floor.get(item_id, 0):
                    regressions.append((item_id, floor[item_id], version))
                shown[item_id] = max(version, shown.get(item_id, 0))
            # A cache hit never waits on I/O: without this the readers starve the rest.
            await asyncio.sleep(0)

    async def writer() -> None:
        for n in range(rounds):
            for item in items:
                patched = await client.patch(f"/api/v1/items/{item['id']}", json={"name": f"n{n}"})
                assert patched.status_code == 200, patched.text
            await asyncio.sleep(0.005)
        done.set()

    await asyncio.gather(writer(), *(reader() for _ in range(readers)))
    return regressions


async def caches_enabled(app: Running) -> None:
    """Wait until the app's view cache (and so its page cache) follows the projection."""

    async def probe() -> bool:
        return app.container.view_cache.enabled

    await eventually(probe)


async def get_until_hit(
    client: httpx.AsyncClient, path: str, hits: Callable[[], int]
) -> httpx.Response:
    """GET `path` until `hits` (a cache's hit counter) grows: that answer came from the
    cache, and is returned."""
    for _ in range(250):
        before = hits()
        response = await client.get(path)
        if hits() > before:
            return response
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was never served from the cache")


# -- the app, running -------------------------------------------------------------------------


@dataclass
class Running:
    """An app whose lifespan has run: what it built, and the ASGI callable a transport
    calls (the app with the lifespan's state in every scope, as a server passes it)."""

    fastapi: FastAPI
    state: State

    @property
    def container(self) -> Container:
        return self.state["container"]

    def asgi(self, inner: ASGIApp | None = None) -> ASGIApp:
        """`inner` (by default the whole app) as a server would call it."""
        target: ASGIApp = inner if inner is not None else self.fastapi

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                scope["state"] = dict(self.state)
            await target(scope, receive, send)

        return call

    def client(self, inner: ASGIApp | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.asgi(inner))
        return httpx.AsyncClient(transport=transport, base_url="http://test")


def without(app: Running, *skipped: type) -> ASGIApp:
    """The same app, state and routes, with every middleware but `skipped`: the router
    answering what a path below it (fast_reads.py, fast_writes.py) would."""
    fastapi = app.fastapi
    edge = fastapi.middleware_stack
    assert isinstance(edge, EdgeStack)
    kept = fastapi.user_middleware
    fastapi.user_middleware = [m for m in kept if m.cls not in skipped]  # type: ignore[comparison-overlap]
    try:
        # The Edge answers the same reads as FastItemReads when no middleware applies.
        stack = edge.build(fast_reads=FastItemReads not in skipped)
    finally:
        fastapi.user_middleware = kept

    async def router_only(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = fastapi  # what Starlette.__call__ sets before its own stack
        await stack(scope, receive, send)

    return router_only


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, within: float = 5.0) -> AsyncIterator[Running]:
    """The app's lifespan, until the block ends; first, the read model goes live (the
    projector makes a fresh one live on its first step; until then reads answer 503, as
    they should, which no test using this is about)."""
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        started = Running(app, cast(State, dict(state)))
        await eventually(started.container.read_model.ready, within=within)
        yield started


@contextlib.asynccontextmanager
async def client_of(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a running app built from `settings`."""
    from app.api.app import create_app

    async with running(create_app(settings)) as app, app.client() as c:
        yield c


# -- answers ------------------------------------------------------------------------------------

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["detail"]
    return body


# -- API keys -----------------------------------------------------------------------------------

KEY = "key-one-7f3a9c2e41b8d6f0"
OTHER_KEY = "key-two-0b5c7a3e4d8f4c1a"
UNKNOWN_KEY = "key-bad-e5b2f6d8a1c3e9ab"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def with_keys(settings: Settings, **update: Any) -> Settings:
    keys = (SecretStr(KEY), SecretStr(OTHER_KEY))
    return settings.model_copy(update={"api_keys": keys, **update})


async def owners(db: asyncpg.Connection, prefix: str, layout: str = "") -> dict[int, int]:
    """Partition -> pid of the projector holding its lease now (lapsed leases left out)."""
    rows = await leases.owners(db, prefix, layout)
    return {int(r["partition"]): int(r["owner_pid"]) for r in rows if r["held"]}


async def epochs(db: asyncpg.Connection, prefix: str, layout: str = "") -> dict[int, int]:
    """Partition -> epoch of its latest acquisition."""
    rows = await leases.owners(db, prefix, layout)
    return {int(r["partition"]): int(r["epoch"]) for r in rows}


# -- gRPC ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def grpc_serving(container: Container) -> AsyncIterator[Any]:
    """ItemsService on a free port over `container` (an in-process grpc.aio server), and
    an asyncio stub (items_pb2_grpc.ItemsServiceAsyncStub) on a channel to it."""
    import grpc

    from app.grpc.generated.items.v1 import items_pb2_grpc
    from app.grpc.server import build_server

    server, port, _ = build_server(container, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield items_pb2_grpc.ItemsServiceStub(channel)
    finally:
        await server.stop(None)
