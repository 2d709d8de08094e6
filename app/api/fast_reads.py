"""GET /api/v1/items/{id} and GET /api/v1/items (list pages) answered below the router.

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
stays the one place that words a 422.

`ItemReads` is the path itself, placed in one of two ways (app.py chooses):
- in the Edge (edge.py), in front of every middleware, when none of them would apply to
  these reads (no CORS origins, no key needed to read): the fastest;
- innermost, as the `FastItemReads` middleware, inside the API-key and CORS middleware,
  so those still apply to it.
"""

from __future__ import annotations

import dataclasses
import re
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import problems
from app.api.observe import seen
from app.api.preconditions import entity_tags
from app.api.reads import Raw, min_position, plain_list_query, read_response
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

Read = UUID | ListItems  # what a matched request asks for: one item, or a page


class ItemReads:
    def __init__(self) -> None:
        self._parsed: dict[bytes, ListItems | None] = {}

    def match(self, scope: Scope) -> Read | None:
        """What this request reads when this path answers it, else None."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if path.endswith("/"):
            # As StripTrailingSlash (middleware.py) makes it for the router: in the Edge
            # this runs before it, and /api/v1/items/?limit=20 fell to the router (3,000
            # rps against 11,000 without the slash, same run, 2026-12-08).
            path = path.rstrip("/")
        if path == LIST_PATH:
            return self._list_query(scope["query_string"])
        return item_path_id(path)

    async def response(self, scope: Scope, read: Read) -> Raw:
        """The answer to a matched read; raises what the query raises, for the caller to
        word with problems.answer."""
        container = scope_container(scope)
        if_none_match = token = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"consistency-token":
                token = value.decode("latin-1")
        tags = entity_tags(if_none_match, "If-None-Match")
        position = min_position(container.tokens, token)
        answer: ReadAnswer
        if isinstance(read, UUID):
            answer = await container.queries.get_item(GetItem(read, position))
        else:
            if position is not None:
                read = dataclasses.replace(read, min_position=position)
            answer = await container.queries.list_items(read)
        return read_response(answer, tags)

    def _list_query(self, raw: bytes) -> ListItems | None:
        try:
            return self._parsed[raw]
        except KeyError:
            pass
        if len(self._parsed) >= MAX_PARSED:
            self._parsed.clear()
        parsed = self._parsed[raw] = plain_list_query(raw)
        return parsed


def route_of(read: Read) -> str:
    """The route template a matched read counts under, as the router would name it."""
    return ITEM_ROUTE if isinstance(read, UUID) else LIST_PATH


class FastItemReads:
    """The innermost placement: a middleware just outside FastAPI's own stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reads = ItemReads()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = self.reads.match(scope)
        found = seen(scope)
        if read is None:
            await self.app(scope, receive, send)
            return
        if found is not None:
            found.route = route_of(read)
        try:
            response = await self.reads.response(scope, read)
        except Exception as exc:
            await problems.answer(scope, receive, send, exc)
            return
        await response(scope, receive, send)


def item_path_id(path: str) -> UUID | None:
    """The id in /api/v1/items/{id} when it is a canonical (lower-case) UUID, else None."""
    if len(path) != len(PREFIX) + ID_LENGTH or not path.startswith(PREFIX):
        return None
    tail = path[len(PREFIX) :]
    if _CANONICAL.fullmatch(tail) is None:
        return None
    return UUID(tail)
