"""/api/v1/items: each route turns HTTP into one command or one query, and back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.openapi import (
    READ_ANSWER,
    READ_HEADERS,
    WRITE_ANSWER,
    WRITE_HEADERS,
    IdempotencyKey,
    IfMatch,
    responses,
)
from app.api.preconditions import entity_tags, idempotent_request, parse_if_match, prefers
from app.api.reads import JSON, ListParams, min_position, read_response
from app.api.routes.options import add_options
from app.api.schemas import ItemCreate, ItemOut, ItemPageOut, ItemPatch
from app.api.state import scope_container
from app.bootstrap import Container
from app.commands.bus import CommandResult
from app.commands.commands import Command, CreateItem, DeleteItem, UpdateItem
from app.commands.idempotency import StoredResponse
from app.queries.errors import InvalidToken
from app.queries.queries import GetItem, item_etag
from app.queries.tokens import TokenCodec
from app.queries.views import item_view, render

router = APIRouter(prefix="/api/v1/items", tags=["items"])

TOKEN = "Consistency-Token"
PENDING = "Consistency-Pending"  # the write is committed; the read model may not show it yet
REPLAYED = "Idempotent-Replayed"
APPLIED = "Preference-Applied"
RESPOND_ASYNC = "respond-async"  # Prefer: respond-async (RFC 7240): answer at commit


def _write_answer(c: Container, status: int) -> Callable[[CommandResult], StoredResponse]:
    def respond(result: CommandResult) -> StoredResponse:
        headers = {"ETag": item_etag(result.item.version)}
        if result.position is not None:
            headers[TOKEN] = c.tokens.issue(result.position)
        if status == 204:
            return StoredResponse(204, headers, b"")
        if status == 201:
            headers["Location"] = f"/api/v1/items/{result.item.id}"
        headers["Content-Type"] = JSON
        return StoredResponse(status, headers, render(item_view(result.item)))

    return respond


async def _write(
    request: Request, cmd: Command, item_id: UUID, status: int, key: str | None
) -> Response:
    # The container straight from the request state, not through ContainerDep: a
    # sub-dependency is one more round of FastAPI's dependency solving on every write.
    c = scope_container(request.scope)
    respond = _write_answer(c, status)
    if key is None:
        # The fingerprint (and request.url, which parses the whole URL) only when needed.
        result = await c.bus.handle(cmd)
        answer, replayed, position = respond(result), False, result.position
    else:
        idempotent = idempotent_request(
            key,
            request.method,
            request.url.path,
            await request.body(),
            request.headers.get("if-match"),
        )
        answered = await c.bus.handle_idempotent(cmd, idempotent, respond)
        answer, replayed = answered.response, answered.replayed
        position = _position(c.tokens, answer.headers.get(TOKEN))
    headers = dict(answer.headers)
    if prefers(request.headers.getlist("prefer"), RESPOND_ASYNC):
        if not replayed:
            headers[APPLIED] = RESPOND_ASYNC
    elif not await c.write_visible(item_id, position) and not replayed:
        headers[PENDING] = "true"
    if replayed:
        # The stored answer, byte for byte, saying what it is (Stripe's convention).
        headers[REPLAYED] = "true"
    return Response(answer.body, status_code=answer.status, headers=headers)


def _position(tokens: TokenCodec, token: str | None) -> int | None:
    """The position a stored answer's token names; None if this service can no longer
    read it (signed with another SECRET_KEY): the replay then does not wait."""
    with contextlib.suppress(InvalidToken):
        return min_position(tokens, token)
    return None


@router.post(
    "",
    status_code=201,
    response_model=ItemOut,
    responses=responses(400, 409, 413, 415, 422, 503, success=(201, ("Location", *WRITE_ANSWER))),
    openapi_extra={"parameters": WRITE_HEADERS},
)
async def create_item(body: ItemCreate, request: Request, key: IdempotencyKey = None) -> Response:
    cmd = CreateItem(
        item_id=uuid4(),
        name=body.name,
        description=body.description,
        price=body.price,
        tags=tuple(body.tags),
    )
    return await _write(request, cmd, cmd.item_id, 201, key)


# The reads take their headers straight from the request: FastAPI's dependency
# machinery costs more than the Redis round trip (documented by READ_HEADERS). Most
# reads never get here: fast_reads.py answers them below the router, the same way.
@router.get(
    "/{item_id}",
    response_model=ItemOut,
    responses=responses(304, 400, 404, 422, 503, success=(200, READ_ANSWER)),
    openapi_extra={"parameters": READ_HEADERS},
)
async def get_item(item_id: UUID, request: Request) -> Response:
    c = scope_container(request.scope)
    headers = request.headers
    tags = entity_tags(headers.get("if-none-match"), "If-None-Match")
    query = GetItem(item_id, min_position(c.tokens, headers.get("consistency-token")))
    return read_response(await c.queries.get_item(query), tags)


@router.get(
    "",
    response_model=ItemPageOut,
    responses=responses(304, 400, 422, 503, success=(200, READ_ANSWER)),
    openapi_extra={"parameters": READ_HEADERS},
)
async def list_items(params: Annotated[ListParams, Query()], request: Request) -> Response:
    c = scope_container(request.scope)
    headers = request.headers
    tags = entity_tags(headers.get("if-none-match"), "If-None-Match")
    query = params.query(min_position(c.tokens, headers.get("consistency-token")))
    return read_response(await c.queries.list_items(query), tags)


@router.patch(
    "/{item_id}",
    response_model=ItemOut,
    responses=responses(400, 404, 409, 412, 413, 415, 422, 503, success=(200, WRITE_ANSWER)),
    openapi_extra={"parameters": WRITE_HEADERS},
)
async def update_item(
    item_id: UUID,
    body: ItemPatch,
    request: Request,
    key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    cmd = UpdateItem(
        item_id=item_id, changes=body.changes(), expected_versions=parse_if_match(if_match)
    )
    return await _write(request, cmd, item_id, 200, key)


@router.delete(
    "/{item_id}",
    status_code=204,
    responses=responses(400, 404, 409, 412, 413, 422, 503, success=(204, WRITE_ANSWER)),
    openapi_extra={"parameters": WRITE_HEADERS},
)
async def delete_item(
    item_id: UUID,
    request: Request,
    key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    cmd = DeleteItem(item_id=item_id, expected_versions=parse_if_match(if_match))
    return await _write(request, cmd, item_id, 204, key)


add_options(router)
