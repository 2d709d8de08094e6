"""/api/v1/items: each route turns HTTP into one command or one query, and back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request
from pydantic import WithJsonSchema
from starlette.responses import Response

from app.api.deps import ContainerDep
from app.api.preconditions import idempotent_request, none_match, parse_if_match
from app.api.problems import PROBLEM
from app.api.schemas import TAG_PATTERN, ItemCreate, ItemOut, ItemPageOut, ItemPatch, ProblemOut
from app.commands.bus import CommandResult
from app.commands.commands import Command, CreateItem, DeleteItem, UpdateItem
from app.commands.idempotency import StoredResponse
from app.infrastructure.bootstrap import Container
from app.infrastructure.views import item_view, render
from app.queries.handlers import GetItem, ListItems, ReadAnswer, item_etag

JSON = "application/json"
POSITION_HEADER = "X-Projection-Position"
# The list parameters' rules, also read by fast_reads (which answers the plainest lists
# below the router and must accept exactly what the router accepts).
SORT_PATTERN = r"^-?(created_at|updated_at|name|price)$"
MAX_LIMIT = 100
MAX_CURSOR = 2048
SortParam = Annotated[
    str,
    Query(
        pattern=SORT_PATTERN,
        description="created_at, updated_at, name or price; prefix '-' for descending.",
    ),
]
TagParam = Annotated[
    str | None, Query(pattern=TAG_PATTERN, description="Only items with this tag.")
]
# Header documentation without "null" (a header is absent, never null) and with the
# shapes the service accepts; the values themselves are checked where they are used.
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"  # 1..255 printable ASCII, no edge spaces
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{27}$"
_TOKEN_SCHEMA = {"type": "string", "pattern": TOKEN_PATTERN}
IdempotencyKey = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "pattern": KEY_PATTERN}),
    Header(
        alias="Idempotency-Key",
        description="Makes a retry safe: the same key and request get the first answer again.",
    ),
]
IfMatch = Annotated[
    str | None,
    WithJsonSchema({"type": "string"}),
    Header(alias="If-Match", description="Apply only at this version (ETag)."),
]
IfNoneMatch = Annotated[
    str | None,
    WithJsonSchema({"type": "string"}),
    Header(alias="If-None-Match", description="304 when the ETag still matches."),
]
Token = Annotated[
    str | None,
    WithJsonSchema(_TOKEN_SCHEMA),
    Header(
        alias="Consistency-Token",
        description="From a write's answer: wait until the read model includes that write.",
    ),
]

# Inline rather than a model: FastAPI would also list every problem as application/json.
_PROBLEM_SCHEMA = ProblemOut.model_json_schema()
_WHY = {
    304: "Not modified: If-None-Match names the current ETag. No body.",
    400: "Malformed JSON, or a cursor, Consistency-Token or Idempotency-Key that is not valid.",
    404: "No item with this id (never created, or deleted).",
    409: "A request with this Idempotency-Key is still in flight.",
    412: "If-Match does not name the current version; nothing changed.",
    413: "The body is larger than 64 KiB.",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    422: "Invalid fields or parameters, each listed in `errors`; or an Idempotency-Key "
    "used before for a different request.",
    503: "PostgreSQL or Redis is unreachable, the read model is being restored, or a "
    "Consistency-Token wait timed out. Retry after `Retry-After` seconds.",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of one operation, documented as problem+json."""
    return {
        code: {"description": _WHY[code]}
        if code == 304
        else {"description": _WHY[code], "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
        for code in codes
    }


_READ_HEADERS: list[dict[str, Any]] = [
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "304 when the ETag still matches.",
    },
    {
        "name": "Consistency-Token",
        "in": "header",
        "required": False,
        "schema": _TOKEN_SCHEMA,
        "description": "From a write's answer: wait until the read model includes that write.",
    },
]

router = APIRouter(prefix="/api/v1/items", tags=["items"])


def _write_answer(c: Container, status: int) -> Callable[[CommandResult], StoredResponse]:
    def respond(result: CommandResult) -> StoredResponse:
        headers = {"ETag": item_etag(result.item.version)}
        if result.position is not None:
            headers["Consistency-Token"] = c.tokens.issue(result.position)
        if status == 204:
            return StoredResponse(204, headers, b"")
        if status == 201:
            headers["Location"] = f"/api/v1/items/{result.item.id}"
        headers["Content-Type"] = JSON
        return StoredResponse(status, headers, render(item_view(result.item)))

    return respond


async def _write(request: Request, cmd: Command, status: int, key: str | None) -> Response:
    # The container straight from the app, not through ContainerDep: a sub-dependency is
    # one more round of FastAPI's dependency solving on every write.
    c: Container = request.app.state.container
    respond = _write_answer(c, status)
    if key is None:
        # The fingerprint (and request.url, which parses the whole URL) only when needed.
        answer = respond(await c.bus.handle(cmd))
    else:
        idempotent = idempotent_request(
            key,
            request.method,
            request.url.path,
            await request.body(),
            request.headers.get("if-match"),
        )
        answer = await c.bus.handle_idempotent(cmd, idempotent, respond)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


def _read_answer(answer: ReadAnswer, if_none_match: str | None) -> Response:
    headers = {"ETag": answer.etag, POSITION_HEADER: str(answer.checkpoint)}
    if none_match(if_none_match, answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type=JSON, headers=headers)


def _min_position(c: Container, token: str | None) -> int | None:
    return None if token is None else c.tokens.position(token)


@router.post(
    "",
    status_code=201,
    response_model=ItemOut,
    responses=_responses(400, 409, 413, 415, 422, 503),
)
async def create_item(body: ItemCreate, request: Request, key: IdempotencyKey = None) -> Response:
    cmd = CreateItem(
        item_id=uuid4(),
        name=body.name,
        description=body.description,
        price=body.price,
        tags=tuple(body.tags),
    )
    return await _write(request, cmd, 201, key)


@router.get(
    "/{item_id}",
    response_model=ItemOut,
    responses=_responses(304, 400, 404, 422, 503),
    openapi_extra={"parameters": _READ_HEADERS},
)
async def get_item(item_id: UUID, request: Request) -> Response:
    # The hottest route: headers are read directly instead of through FastAPI's
    # dependency machinery, which costs more than the Redis round trip (documented
    # for OpenAPI by _READ_HEADERS).
    c: Container = request.app.state.container
    headers = request.headers
    query = GetItem(item_id, _min_position(c, headers.get("consistency-token")))
    return _read_answer(await c.queries.get_item(query), headers.get("if-none-match"))


@router.get("", response_model=ItemPageOut, responses=_responses(304, 400, 422, 503))
async def list_items(
    c: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
    sort: SortParam = "-created_at",
    tag: TagParam = None,
    if_none_match: IfNoneMatch = None,
    token: Token = None,
) -> Response:
    query = ListItems(
        limit=limit, sort=sort, tag=tag, cursor=cursor, min_position=_min_position(c, token)
    )
    return _read_answer(await c.queries.list_items(query), if_none_match)


@router.patch(
    "/{item_id}",
    response_model=ItemOut,
    responses=_responses(400, 404, 409, 412, 413, 415, 422, 503),
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
    return await _write(request, cmd, 200, key)


@router.delete(
    "/{item_id}", status_code=204, responses=_responses(400, 404, 409, 412, 413, 422, 503)
)
async def delete_item(
    item_id: UUID,
    request: Request,
    key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    cmd = DeleteItem(item_id=item_id, expected_versions=parse_if_match(if_match))
    return await _write(request, cmd, 204, key)
