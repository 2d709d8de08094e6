"""What the two write paths share: the command a request makes and the write answer.

POST, PATCH and DELETE on /api/v1/items are answered by the router (routes/items.py) or,
when the body is valid, below it (fast_writes.py). Both validate the body with the same
`ItemCreate` / `ItemPatch`, make the command here and answer through `write`, so the two
cannot disagree on what is valid, on what a retry with an Idempotency-Key replays, or
on a byte of the answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

from starlette.responses import Response

from app.api.preconditions import idempotent_request, parse_if_match, prefers
from app.api.reads import JSON, Raw, min_position
from app.api.schemas import ItemCreate, ItemPatch
from app.bootstrap import Container
from app.commands.bus import CommandResult
from app.commands.commands import Command, CreateItem, DeleteItem, UpdateItem
from app.commands.idempotency import StoredResponse
from app.queries.errors import InvalidToken
from app.queries.queries import item_etag
from app.queries.tokens import TokenCodec
from app.queries.views import item_view, render

TOKEN = "Consistency-Token"
PENDING = "Consistency-Pending"  # the write is committed; the read model may not show it yet
REPLAYED = "Idempotent-Replayed"
APPLIED = "Preference-Applied"
RESPOND_ASYNC = "respond-async"  # Prefer: respond-async (RFC 7240): answer at commit
ITEMS = "/api/v1/items"


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """What of the HTTP request a write reads besides its command: the parts an
    Idempotency-Key's fingerprint covers, and the Prefer headers."""

    method: str
    path: str
    body: bytes
    key: str | None
    if_match: str | None
    prefer: list[str]


def create_command(body: ItemCreate) -> CreateItem:
    return CreateItem(
        item_id=uuid4(),
        name=body.name,
        description=body.description,
        price=body.price,
        tags=tuple(body.tags),
    )


def update_command(item_id: UUID, body: ItemPatch, if_match: str | None) -> UpdateItem:
    """Raises InvalidEntityTags for a malformed If-Match."""
    return UpdateItem(
        item_id=item_id, changes=body.changes(), expected_versions=parse_if_match(if_match)
    )


def delete_command(item_id: UUID, if_match: str | None) -> DeleteItem:
    """Raises InvalidEntityTags for a malformed If-Match."""
    return DeleteItem(item_id=item_id, expected_versions=parse_if_match(if_match))


async def write(
    c: Container, cmd: Command, item_id: UUID, status: int, request: WriteRequest
) -> Response:
    """Runs `cmd` (once per Idempotency-Key) and answers as the contract says: the item
    with its ETag and Consistency-Token, once the read model shows it unless the client
    prefers respond-async. Raises what the command raises, for the problem handlers."""
    respond = _answer(c, status)
    if request.key is None:
        result = await c.bus.handle(cmd)
        answer, replayed, position = respond(result), False, result.position
    else:
        idempotent = idempotent_request(
            request.key, request.method, request.path, request.body, request.if_match
        )
        answered = await c.bus.handle_idempotent(cmd, idempotent, respond)
        answer, replayed = answered.response, answered.replayed
        position = _position(c.tokens, answer.headers.get(TOKEN))
    headers = dict(answer.headers)
    if prefers(request.prefer, RESPOND_ASYNC):
        if not replayed:
            headers[APPLIED] = RESPOND_ASYNC
    elif not await c.write_visible(item_id, position) and not replayed:
        headers[PENDING] = "true"
    if replayed:
        # The stored answer, byte for byte, saying what it is (Stripe's convention).
        headers[REPLAYED] = "true"
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if answer.status != 204:
        raw.append((b"content-length", str(len(answer.body)).encode()))
    return Raw(answer.status, raw, answer.body)


def _answer(c: Container, status: int) -> Callable[[CommandResult], StoredResponse]:
    def respond(result: CommandResult) -> StoredResponse:
        headers = {"ETag": item_etag(result.item.version)}
        if result.position is not None:
            headers[TOKEN] = c.tokens.issue(result.position)
        if status == 204:
            return StoredResponse(204, headers, b"")
        if status == 201:
            headers["Location"] = f"{ITEMS}/{result.item.id}"
        headers["Content-Type"] = JSON
        return StoredResponse(status, headers, render(item_view(result.item)))

    return respond


def _position(tokens: TokenCodec, token: str | None) -> int | None:
    """The position a stored answer's token names; None if this service can no longer
    read it (signed with another SECRET_KEY): the replay then does not wait."""
    with contextlib.suppress(InvalidToken):
        return min_position(tokens, token)
    return None
