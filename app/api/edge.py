"""The Edge: the app's outermost ASGI callable, in front of FastAPI's own middleware.

Every request gets its id, its counts and its access line here (observe.py says what
each is); the plainest reads (fast_reads.py) are answered here too, when no middleware
would apply to them (app.py decides: no CORS origins, no key needed to read).

Why in front of FastAPI's stack rather than as the outermost `add_middleware`: FastAPI
0.165 wraps every request in ServerErrorMiddleware, ExceptionTelemetryMiddleware and
AppBodyLimitMiddleware before any user middleware, even with its telemetry off, and a
GET by id then passed seven layers to reach the fast read path. Measured on the 2-core
bench machine (service on one CPU, wrk on the other, 64 connections, view-cache hits),
against the bare ceiling (../shared/bench/ceiling.py) in the same rounds: a prototype
with the fast read path alone in front of the stack, 0.93x; behind those seven layers,
a median 0.63x; from the Edge, with its id, counts and access line, 0.72x. On this path
the request id is appended to the answer's own header list, so there is no send wrapper
and no copy of the start message.

Being outside ServerErrorMiddleware also gives an unexpected 500 its X-Request-ID, and
the id on the error's log line and in its problem body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs, tracing
from app.api import problems
from app.api.fast_reads import ItemReads, route_of
from app.api.observe import HEADER, SEEN, UNMATCHED, Record, RequestIds, Seen, incoming_id


class EdgeStack:
    """The app's `middleware_stack`: the Edge in front of the stack FastAPI builds, itself
    built on the first request, as Starlette builds its own (so what is added to the app
    before then still counts). Traced, OpenTelemetry's server span wraps the Edge."""

    def __init__(self, app: FastAPI, *, record: Record, edge_reads: bool, traced: bool) -> None:
        self._app = app
        self._record = record
        self._edge_reads = edge_reads
        self._traced = traced
        self._stack: ASGIApp | None = None

    def build(self, *, fast_reads: bool = True) -> ASGIApp:
        """`fast_reads=False`: without the Edge's reads (tests compare them with the
        router's answers)."""
        reads = ItemReads() if fast_reads and self._edge_reads else None
        edge = Edge(self._app.build_middleware_stack(), record=self._record, reads=reads)
        if self._traced:
            traced: ASGIApp = tracing.asgi_middleware()(edge)
            return traced
        return edge

    # Not async: it hands the stack's own coroutine on, one call and no extra frame.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        stack = self._stack
        if stack is None:
            stack = self._stack = self.build()
        return stack(scope, receive, send)


class Edge:
    def __init__(self, app: ASGIApp, *, record: Record, reads: ItemReads | None) -> None:
        self.app = app
        self._record = record
        self._reads = reads
        self._ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope["headers"]:  # a loop: no generator made per request
            if name == HEADER:
                raw = value
                break
        rid = incoming_id(raw) or self._ids.next()
        encoded = rid.encode("ascii")
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        found = Seen()
        try:
            reads = self._reads
            read = None if reads is None else reads.match(scope)
            if reads is None or read is None:
                scope[SEEN] = found
                await self.app(scope, receive, _with_id(send, encoded, found))
                return
            found.route = route_of(read)
            try:
                response = await reads.response(scope, read)
            except Exception as exc:
                await problems.answer(scope, receive, _with_id(send, encoded, found), exc)
                return
            found.status = response.status_code
            response.raw_headers.append((HEADER, encoded))
            await response(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, found.route or UNMATCHED, found.status, elapsed)
            logs.request_id.reset(token)


def _with_id(send: Send, encoded: bytes, found: Seen) -> Send:
    """`send`, adding the request id to the answer's headers and noting its status."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            found.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), (HEADER, encoded)]}
        await send(message)

    return sending
