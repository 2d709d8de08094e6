"""Query handlers: each answers one query from the read model, as ready-to-send bytes."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson

from app.domain.errors import ItemNotFound
from app.queries.cursor import CursorCodec
from app.queries.read_model import ReadModel

SORTS = ("created_at", "updated_at", "name", "price")
DEFAULT_SORT = "-created_at"


@dataclass(frozen=True)
class GetItem:
    item_id: UUID


@dataclass(frozen=True)
class ListItems:
    limit: int = 20
    sort: str = DEFAULT_SORT  # a field of SORTS, optionally prefixed with "-"
    tag: str | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class ReadAnswer:
    body: bytes
    checkpoint: int  # the projection position this answer reflects


class QueryHandlers:
    def __init__(self, read_model: ReadModel, cursors: CursorCodec) -> None:
        self._read_model = read_model
        self._cursors = cursors

    async def get_item(self, query: GetItem) -> ReadAnswer:
        read = await self._read_model.get(str(query.item_id))
        if read.data is None:
            raise ItemNotFound(query.item_id)
        return ReadAnswer(read.data, read.checkpoint)

    async def list_items(self, query: ListItems) -> ReadAnswer:
        descending = query.sort.startswith("-")
        field = query.sort.lstrip("-")
        if field not in SORTS:
            raise ValueError(f"unknown sort {query.sort!r}")
        after = None
        if query.cursor is not None:
            after = self._cursors.decode(query.cursor, sort=query.sort, tag=query.tag)
        # One entry more than the page tells whether another page follows.
        found = await self._read_model.list(
            sort_field=field,
            descending=descending,
            tag=query.tag,
            after=after,
            count=query.limit + 1,
        )
        page = found.entries[: query.limit]
        next_cursor = None
        if len(found.entries) > query.limit:
            next_cursor = self._cursors.encode(sort=query.sort, tag=query.tag, after=page[-1][0])
        # The stored views are spliced in as they are: no parse, no re-serialisation.
        body = b"".join(
            (
                b'{"items":[',
                b",".join(view for _, view in page),
                b'],"next_cursor":',
                orjson.dumps(next_cursor),
                b',"total":',
                str(found.total).encode(),
                b"}",
            )
        )
        return ReadAnswer(body, found.checkpoint)
