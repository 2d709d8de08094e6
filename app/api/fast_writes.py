"""POST /api/v1/items, PATCH and DELETE /api/v1/items/{id} answered below the router, as
a pure ASGI middleware, whenever their body is valid.

Why it exists: a py-spy profile of POST through the router (2026-12-05, about 820 us
of API CPU per POST) put 35% in Starlette's request_response and 10% in FastAPI's
dependency solving, against 10% in asyncpg's execute: the write went through the layers
the read side already skips (fast_reads.py), and POST reached 0.13-0.17x of what
PostgreSQL commits of the same statement (issue 20).

It is not a second implementation of the routes: the body is validated by the router's
own models (`ItemCreate` / `ItemPatch`, in pydantic's Python mode on orjson's parse, as
FastAPI validates json.loads' result), the command is made and answered by writes.py
(the router calls the same), and every error the command raises goes through the app's
own exception handlers. A body that does not parse or validate, a path that is not the
canonical one, anything else: the request goes on to the router unchanged, its body
replayed, so the router stays the one place that words a 422 (a test compares the two
paths byte for byte). Like fast_reads.py it sits inside the API-key, CORS and body-limit
middleware, so those still apply: LimitBody has refused a body that is too large or not
JSON before this sees it.
"""

from __future__ import annotations

from uuid import UUID

import orjson
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import problems
from app.api.fast_reads import ITEM_ROUTE, LIST_PATH, item_path_id
from app.api.observe import seen
from app.api.schemas import ItemCreate, ItemPatch
from app.api.state import scope_container
from app.api.writes import (
    WriteRequest,
    create_command,
    delete_command,
    update_command,
    write,
)
from app.commands.commands import CreateItem, DeleteItem, UpdateItem

WRITES = frozenset({"POST", "PATCH", "DELETE"})


class FastItemWrites:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        item_id = None if method == "POST" else item_path_id(path)
        ours = path == LIST_PATH if method == "POST" else item_id is not None
        if not ours:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:
            return  # the client went away
        key = if_match = None
        prefer: list[str] = []
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value.decode("latin-1") if key is None else key
            elif name == b"if-match":
                if_match = value.decode("latin-1") if if_match is None else if_match
            elif name == b"prefer":
                prefer.append(value.decode("latin-1"))
        valid = _valid(ItemPatch if item_id is not None else ItemCreate, body, method)
        if valid is _INVALID:
            await self.app(scope, _replay(body, receive), send)
            return
        found = seen(scope)
        if found is not None:
            found.route = LIST_PATH if item_id is None else ITEM_ROUTE
        asked = WriteRequest(method, path, body, key, if_match, prefer)
        try:
            cmd, status = _command(item_id, valid, if_match)
            response = await write(scope_container(scope), cmd, cmd.item_id, status, asked)
        except Exception as exc:
            await problems.answer(scope, receive, send, exc)
            return
        await response(scope, receive, send)


def _command(
    item_id: UUID | None, valid: object, if_match: str | None
) -> tuple[CreateItem | UpdateItem | DeleteItem, int]:
    """The command and its success status; raises InvalidEntityTags for a bad If-Match."""
    if item_id is None:
        assert isinstance(valid, ItemCreate)
        return create_command(valid), 201
    if isinstance(valid, ItemPatch):
        return update_command(item_id, valid, if_match), 200
    return delete_command(item_id, if_match), 204


_INVALID = object()


def _valid(model: type[BaseModel], body: bytes, method: str) -> object:
    """The body as `model` (None for a DELETE, which has none to read), or _INVALID
    when the router should word why not: empty, not JSON, or not the model."""
    if method == "DELETE":
        return None
    if not body:
        return _INVALID
    try:
        return model.model_validate(orjson.loads(body))
    except ValueError:  # orjson's JSONDecodeError and pydantic's ValidationError both
        return _INVALID


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
