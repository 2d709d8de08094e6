"""GET /api/v1/items/{id} and GET /api/v1/items (list pages) answered below the router,
as a pure ASGI middleware.

Why it exists: on one 2-core machine the router path served about 2,100-2,600 rps while
one bare redis-py GET behind Starlette served about 8,600. A py-spy profile of the
router path put about two thirds of the time of a GET in FastAPI/Starlette routing,
request and dependency layers and only about a quarter in the Redis call. This is the
hottest route and the one with nothing to validate but an id, so it skips those layers.

It is not a second implementation of the route: it calls the same query handler
(`QueryHandlers.get_item`), parses the same headers with the same code (the
Consistency-Token codec, If-None-Match), answers with the headers the router's
`_read_answer` sets (a test compares both paths byte for byte), and renders every error
through the app's own exception handlers, so 4xx/5xx stay the same problem+json.
Anything it does not recognise (another path or method, a non-canonical id such as
upper case, a list query with an unknown, repeated, empty, escaped or out-of-range
parameter) goes to the wrapped app unchanged, so the router stays the one place that
words a 422. It sits innermost, inside the API-key
and CORS middleware, so those still apply to it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.items import JSON, MAX_CURSOR, MAX_LIMIT, POSITION_HEADER, SORT_PATTERN
from app.api.preconditions import none_match
from app.api.schemas import TAG_PATTERN
from app.infrastructure.bootstrap import Container
from app.queries.handlers import GetItem, ListItems, ReadAnswer

LIST_PATH = "/api/v1/items"
PREFIX = LIST_PATH + "/"
# Only the plainest query strings: no percent-escapes or '+' (the router decodes those).
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9_.~=&-]*")
_SORT = re.compile(SORT_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")  # digits only (int() would take " 5" or "+5")
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_LENGTH = 36
_POSITION = POSITION_HEADER.lower().encode()
_CONTENT_TYPE = JSON.encode()


# Parsed list query strings kept, so a hot page (a list cache hit) is not parsed again
# each time; emptied when full, since cursors make query strings unbounded.
MAX_PARSED = 512


class FastItemReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._parsed: dict[bytes, ListItems | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item_id = _item_id(scope)
        listing = self._list_query(scope) if item_id is None else None
        if item_id is None and listing is None:
            await self.app(scope, receive, send)
            return
        container: Container = scope["app"].state.container
        if_none_match = token = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"consistency-token":
                token = value.decode("latin-1")
        try:
            position = None if token is None else container.tokens.position(token)
            answer: ReadAnswer
            if item_id is not None:
                answer = await container.queries.get_item(GetItem(item_id, position))
            else:
                assert listing is not None
                if position is not None:
                    listing = dataclasses.replace(listing, min_position=position)
                answer = await container.queries.list_items(listing)
        except Exception as exc:
            await self._problem(scope, receive, send, exc)
            return
        headers = [
            (b"etag", answer.etag.encode()),
            (_POSITION, str(answer.checkpoint).encode()),
        ]
        if none_match(if_none_match, answer.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(answer.body)).encode()))
        headers.append((b"content-type", _CONTENT_TYPE))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _list_query(self, scope: Scope) -> ListItems | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        if scope["path"] != LIST_PATH:
            return None
        raw: bytes = scope["query_string"]
        try:
            return self._parsed[raw]
        except KeyError:
            pass
        if len(self._parsed) >= MAX_PARSED:
            self._parsed.clear()
        parsed = self._parsed[raw] = _list_query(raw)
        return parsed

    async def _problem(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """The answer the app's own exception handler gives for `exc` (looked up by MRO,
        as Starlette does); with no handler, the exception propagates as it would."""
        handlers = scope["app"].exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise exc
        request = Request(scope, receive)
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)


def _item_id(scope: Scope) -> UUID | None:
    """The id of a plain GET of one item by its canonical (lower-case) UUID, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if len(path) != len(PREFIX) + _ID_LENGTH or not path.startswith(PREFIX):
        return None
    tail = path[len(PREFIX) :]
    if _CANONICAL.fullmatch(tail) is None:
        return None
    return UUID(tail)


def _list_query(raw: bytes) -> ListItems | None:
    """The ListItems of a list query string whose every parameter the router would
    accept as it is, else None (the router then answers, 422s included)."""
    if _PLAIN_QUERY.fullmatch(raw) is None:
        return None
    seen: set[str] = set()
    # ListItems' own defaults, so the two paths cannot disagree on an absent parameter.
    limit, sort, tag, cursor = ListItems.limit, ListItems.sort, ListItems.tag, ListItems.cursor
    for part in raw.decode("ascii").split("&") if raw else ():
        name, eq, value = part.partition("=")
        if not eq or not value or name in seen:
            return None
        seen.add(name)
        if name == "limit" and _LIMIT.fullmatch(value) and int(value) <= MAX_LIMIT:
            limit = int(value)
        elif name == "sort" and _SORT.fullmatch(value):
            sort = value
        elif name == "tag" and _TAG.fullmatch(value):
            tag = value
        elif name == "cursor" and len(value) <= MAX_CURSOR:
            cursor = value
        else:
            return None
    return ListItems(limit=limit, sort=sort, tag=tag, cursor=cursor)
