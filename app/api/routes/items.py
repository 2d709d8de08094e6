"""/api/v1/items: each route turns HTTP into one command or one query, and back."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

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
from app.api.preconditions import entity_tags
from app.api.reads import ListParams, min_position, read_response
from app.api.routes.options import add_options
from app.api.schemas import ItemCreate, ItemOut, ItemPageOut, ItemPatch
from app.api.state import scope_container
from app.api.writes import (
    WriteRequest,
    create_command,
    delete_command,
    update_command,
    write,
)
from app.commands.commands import Command
from app.queries.queries import GetItem

router = APIRouter(prefix="/api/v1/items", tags=["items"])


async def _write(
    request: Request, cmd: Command, item_id: UUID, status: int, key: str | None
) -> Response:
    # The container straight from the request state, not through ContainerDep: a
    # sub-dependency is one more round of FastAPI's dependency solving on every write.
    headers = request.headers
    # The fingerprint's parts (request.url parses the whole URL) only when a key asks.
    keyed = key is not None
    asked = WriteRequest(
        request.method,
        request.url.path if keyed else "",
        await request.body() if keyed else b"",
        key,
        headers.get("if-match"),
        headers.getlist("prefer"),
    )
    return await write(scope_container(request.scope), cmd, item_id, status, asked)


@router.post(
    "",
    status_code=201,
    response_model=ItemOut,
    responses=responses(400, 409, 413, 415, 422, 503, success=(201, ("Location", *WRITE_ANSWER))),
    openapi_extra={"parameters": WRITE_HEADERS},
)
async def create_item(body: ItemCreate, request: Request, key: IdempotencyKey = None) -> Response:
    cmd = create_command(body)
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
    cmd = update_command(item_id, body, if_match)
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
    cmd = delete_command(item_id, if_match)
    return await _write(request, cmd, item_id, 204, key)


add_options(router)
