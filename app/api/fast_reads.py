"""GET /api/v1/items/{id} and GET /api/v1/items (list pages) answered below the router,
as a pure ASGI middleware.

Why it exists: on one 2-core machine the router path served about 2,100-2,600 rps while
one bare redis-py GET behind Starlette served about 8,600. A py-spy profile of the
router path put about two thirds of the time of a GET in FastAPI/Starlette routing,
request and dependency layers and only about a quarter in the Redis call. These are the
hottest routes and have nothing to validate but an id or a few parameters, so they skip
those layers.

It is not a second implementation of the routes: it calls the same query handlers,
takes a list query's parameters through the router's own `ListParams` and answers with
the router's own `read_response` (reads.py; a test compares both paths byte for byte),
and renders every error through the app's own exception handlers, so 4xx/5xx stay the
same problem+json. Anything it does not recognise (another path or method, a
non-canonical id such as upper case, a list query not in canonical form or with a
parameter the router would refuse) goes to the wrapped app unchanged, so the router
stays the one place that words a 422. It sits innermost, inside the API-key and CORS
middleware, so those still apply to it.
"""

from __future__ import annotations

import dataclasses
import re
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import problems
from app.api.observe import seen
from app.api.preconditions import entity_tags
from app.api.reads import min_position, plain_list_query, read_response
from app.api.state import scope_container
from app.queries.queries import GetItem, ListItems, ReadAnswer
from app.queries.views import ID_LENGTH

LIST_PATH = "/api/v1/items"
PREFIX = LIST_PATH + "/"
ITEM_ROUTE = PREFIX + "{item_id}"  # the route template, as the router names it
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

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
        found = seen(scope)
        if item_id is None and listing is None:
            try:
                await self.app(scope, receive, send)
            finally:
                # The router left the route it matched in this very scope dict.
                route = scope.get("route")
                if found is not None and route is not None:
                    found.route = getattr(route, "path", None)
            return
        if found is not None:
            found.route = ITEM_ROUTE if item_id is not None else LIST_PATH
        container = scope_container(scope)
        if_none_match = token = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"consistency-token":
                token = value.decode("latin-1")
        try:
            tags = entity_tags(if_none_match, "If-None-Match")
            position = min_position(container.tokens, token)
            answer: ReadAnswer
            if item_id is not None:
                answer = await container.queries.get_item(GetItem(item_id, position))
            else:
                assert listing is not None
                if position is not None:
                    listing = dataclasses.replace(listing, min_position=position)
                answer = await container.queries.list_items(listing)
        except Exception as exc:
            await problems.answer(scope, receive, send, exc)
            return
        await read_response(answer, tags)(scope, receive, send)

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
        parsed = self._parsed[raw] = plain_list_query(raw)
        return parsed


def _item_id(scope: Scope) -> UUID | None:
    """The id of a plain GET of one item by its canonical (lower-case) UUID, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    return item_path_id(scope["path"])


def item_path_id(path: str) -> UUID | None:
    """The id in /api/v1/items/{id} when it is a canonical (lower-case) UUID, else None."""
    if len(path) != len(PREFIX) + ID_LENGTH or not path.startswith(PREFIX):
        return None
    tail = path[len(PREFIX) :]
    if _CANONICAL.fullmatch(tail) is None:
        return None
    return UUID(tail)
