"""Queries: what a reader asks of the read model, and the answer it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

# The fields a list can be sorted by (prefixed "-" for descending): the one list of them.
SORT_FIELDS = ("created_at", "updated_at", "name", "price")
DEFAULT_SORT = "-created_at"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


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
