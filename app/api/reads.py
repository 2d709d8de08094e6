"""What the two read paths share: the list parameters' rules and the read answer.

GET requests are answered by the router (routes/items.py) or, for the plainest ones,
below it (fast_reads.py); both take a list query's parameters through `ListParams` (the
router as FastAPI's query model, the fast path on a query string in canonical form) and
answer with `read_response`, so the two cannot disagree on what is valid or on a byte
of the answer.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from app.api.preconditions import EntityTags, none_match
from app.api.schemas import TAG_PATTERN
from app.queries.queries import (
    DEFAULT_LIMIT,
    DEFAULT_SORT,
    MAX_CURSOR,
    MAX_LIMIT,
    SORT_FIELDS,
    ListItems,
    ReadAnswer,
)
from app.queries.tokens import TokenCodec

JSON = "application/json"
POSITION_HEADER = "X-Projection-Position"
SORT_PATTERN = f"^-?({'|'.join(SORT_FIELDS)})$"
SORT_DESCRIPTION = f"{', '.join(SORT_FIELDS[:-1])} or {SORT_FIELDS[-1]}; prefix '-' for descending."

_POSITION = POSITION_HEADER.lower().encode()
_CONTENT_TYPE = JSON.encode()
# The fast path takes only the canonical spelling of a query (no percent-escapes or '+',
# which the router decodes; each parameter once, with a value; digits of a limit without
# a sign or leading zero): anything else goes to the router, which words the 422s.
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9_.~=&-]*")
_CANONICAL_LIMIT = re.compile(r"[1-9][0-9]*")


class ListParams(BaseModel):
    """The query parameters of GET /api/v1/items."""

    model_config = ConfigDict(frozen=True)

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: Annotated[str | None, Field(max_length=MAX_CURSOR)] = None
    sort: Annotated[
        str,
        Field(
            pattern=SORT_PATTERN,
            description=SORT_DESCRIPTION,
        ),
    ] = DEFAULT_SORT
    tag: Annotated[
        str | None, Field(pattern=TAG_PATTERN, description="Only items with this tag.")
    ] = None

    def query(self, min_position: int | None = None) -> ListItems:
        return ListItems(
            limit=self.limit,
            sort=self.sort,
            tag=self.tag,
            cursor=self.cursor,
            min_position=min_position,
        )


def plain_list_query(raw: bytes) -> ListItems | None:
    """The ListItems of a query string in canonical form whose every parameter is valid,
    else None (the router then answers, 422s included)."""
    if _PLAIN_QUERY.fullmatch(raw) is None:
        return None
    values: dict[str, str] = {}
    for part in raw.decode("ascii").split("&") if raw else ():
        name, eq, value = part.partition("=")
        if not eq or not value or name in values or name not in ListParams.model_fields:
            return None
        values[name] = value
    if "limit" in values and _CANONICAL_LIMIT.fullmatch(values["limit"]) is None:
        return None
    try:
        return ListParams.model_validate(values).query()
    except ValidationError:
        return None


def min_position(tokens: TokenCodec, token: str | None) -> int | None:
    """The position a Consistency-Token names (None without one); raises InvalidToken."""
    return None if token is None else tokens.position(token)


def read_response(answer: ReadAnswer, if_none_match: EntityTags | None) -> Raw:
    """The answer to a read: the stored bytes with their ETag and position, or 304."""
    headers = [(b"etag", answer.etag.encode()), (_POSITION, str(answer.checkpoint).encode())]
    if none_match(if_none_match, answer.etag):
        return Raw(304, headers, b"")
    headers.append((b"content-length", str(len(answer.body)).encode()))
    headers.append((b"content-type", _CONTENT_TYPE))
    return Raw(200, headers, answer.body)


class Raw(Response):
    """A Response whose headers are given as sent: nothing computed again per answer."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body
        self.background = None
