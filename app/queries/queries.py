"""Queries: what a reader asks of the read model, and the answer it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from app.domain import values
from app.domain.errors import InvalidValue

# The fields a list can be sorted by (prefixed "-" for descending): the one list of them.
SORT_FIELDS = ("created_at", "updated_at", "name", "price")
DEFAULT_SORT = "-created_at"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR = 2048  # characters: an issued cursor is far shorter


@dataclass(frozen=True)
class GetItem:
    item_id: UUID
    # Read-your-writes: answer only once the projection has applied this position.
    min_position: int | None = None


@dataclass(frozen=True)
class ListItems:
    limit: int = DEFAULT_LIMIT
    sort: str = DEFAULT_SORT  # a field of SORT_FIELDS, optionally prefixed with "-"
    tag: str | None = None
    cursor: str | None = None
    min_position: int | None = None


@dataclass(frozen=True)
class ReadAnswer:
    body: bytes
    checkpoint: int  # the projection position this answer reflects
    etag: str


def item_etag(version: int) -> str:
    """The item's ETag: its version, the same on the write and the read side."""
    return f'"{version}"'


def list_query(
    *,
    limit: int | None = None,
    sort: str | None = None,
    tag: str | None = None,
    cursor: str | None = None,
    min_position: int | None = None,
    names: Mapping[str, str] | None = None,
) -> ListItems:
    """A ListItems from an entry point's parameters (None: the default), within the
    bounds REST's query parameters state; InvalidValue names a parameter as the entry
    point calls it (`names`: limit -> first, ...)."""

    def invalid(name: str, message: str) -> InvalidValue:
        return InvalidValue((names or {}).get(name, name), message)

    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"must be 1..{MAX_LIMIT}")
    sort = sort or DEFAULT_SORT
    if sort.removeprefix("-") not in SORT_FIELDS:
        raise invalid("sort", f"must be one of {', '.join(SORT_FIELDS)}, maybe prefixed with '-'")
    if tag is not None:
        try:
            tag = values.validate_tag(tag)
        except InvalidValue as exc:
            raise invalid("tag", exc.message) from None
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise invalid("cursor", f"must be at most {MAX_CURSOR} characters")
    return ListItems(limit=limit, sort=sort, tag=tag, cursor=cursor, min_position=min_position)
