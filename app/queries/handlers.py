"""Query handlers: each answers one query from the read model, as ready-to-send bytes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from uuid import UUID

import orjson

from app.domain.errors import ItemNotFound
from app.queries.cache.pages import CachedPage, PageCache
from app.queries.cache.views import ViewCache
from app.queries.cache.watcher import CheckpointWatcher
from app.queries.cursor import CursorCodec
from app.queries.errors import ConsistencyTimeout
from app.queries.queries import SORT_FIELDS, GetItem, ListItems, ReadAnswer, item_etag
from app.queries.read_model import IndexSlice, ReadModel


class _Checkpointed(Protocol):
    @property
    def checkpoint(self) -> int: ...


R = TypeVar("R", bound=_Checkpointed)


class QueryHandlers:
    def __init__(
        self,
        read_model: ReadModel,
        cursors: CursorCodec,
        watcher: CheckpointWatcher,
        wait_limit: float,
        cache: ViewCache,
        pages: PageCache,
    ) -> None:
        self._read_model = read_model
        self._cursors = cursors
        self._watcher = watcher
        self._wait_limit = wait_limit
        self._cache = cache
        self._pages = pages

    async def _at_least(self, position: int | None, read: Callable[[], Awaitable[R]]) -> R:
        """Read until the answer reflects `position`, waking on published checkpoints."""
        result = await read()
        if position is None:
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_limit
        while result.checkpoint < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ConsistencyTimeout()
            # The cap only covers a missed message; normally a publish wakes us first.
            await self._watcher.changed(min(remaining, 0.5))
            result = await read()
        return result

    async def visible(self, item_id: UUID, position: int, within: float) -> bool:
        """Wait until this process has applied every change notice of the item's
        partition up to `position` (a write's last event): from then on its reads, from
        the caches or from Redis, show that write. False when `within` seconds pass
        first, or at once when the notices are not being followed (Redis or the
        subscription is down, or stalled): the read model cannot be known to catch up."""
        partition = self._read_model.partition_of(item_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            # Horizons are of the layout the notices were followed for: while a switch
            # to another is being followed, nothing can be vouched for.
            same = self._cache.layout == self._read_model.layout_name
            horizon = self._cache.horizon(partition) if same else None
            if horizon is None:
                return False
            if horizon >= position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # The cap only covers a missed wake-up; normally the notice wakes us first.
            await self._watcher.changed(min(remaining, 0.25))

    async def get_item(self, query: GetItem) -> ReadAnswer:
        # The in-process cache first (see cache/views.py for why it cannot serve a view
        # older than one already answered); it declines a position it cannot vouch for.
        hit = self._cache.lookup(query.item_id, query.min_position)
        if hit is not None:
            view, checkpoint = hit
            return ReadAnswer(view.body, checkpoint, view.etag)
        read = await self._at_least(query.min_position, lambda: self._read_model.get(query.item_id))
        etag = item_etag(read.version)
        self._cache.offer(query.item_id, read, etag)
        if read.data is None:
            raise ItemNotFound(query.item_id)
        return ReadAnswer(read.data, read.checkpoint, etag)

    async def list_items(self, query: ListItems) -> ReadAnswer:
        # Keyed by the cursor as sent: a page is only stored after its cursor was
        # decoded for this very sort and tag, so a hit needs no second check (and a
        # forged cursor can only miss).
        key = (query.limit, query.sort, query.tag, query.cursor)
        hit = self._pages.lookup(key, query.min_position)
        if hit is not None:
            return ReadAnswer(hit.body, hit.checkpoint, hit.etag)
        found, page, next_cursor = await self._slice(query)
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
        # The page's ETag is a digest of its bytes: it changes whenever an item on the
        # page, the next cursor or the total does.
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        self._pages.offer(key, CachedPage(body, etag, found.checkpoint, found.reads))
        return ReadAnswer(body, found.checkpoint, etag)

    async def page(self, query: ListItems) -> Page:
        """A list page as its entries, each with a cursor of its own (GraphQL's Relay
        connections): the same read as list_items, past the page cache, which holds whole
        answers."""
        found, page, next_cursor = await self._slice(query)
        return Page(
            entries=[
                (self._cursors.encode(sort=query.sort, tag=query.tag, after=entry), view)
                for entry, view in page
            ],
            has_next=next_cursor is not None,
            total=found.total,
            checkpoint=found.checkpoint,
        )

    async def _slice(
        self, query: ListItems
    ) -> tuple[IndexSlice, list[tuple[bytes, bytes]], str | None]:
        """The index entries of a page (with their views), and the next page's cursor."""
        descending = query.sort.startswith("-")
        field = query.sort.lstrip("-")
        if field not in SORT_FIELDS:
            raise ValueError(f"unknown sort {query.sort!r}")
        after = None
        if query.cursor is not None:
            after = self._cursors.decode(query.cursor, sort=query.sort, tag=query.tag)
        # One entry more than the page tells whether another page follows.
        found = await self._at_least(
            query.min_position,
            lambda: self._read_model.list(
                sort_field=field,
                descending=descending,
                tag=query.tag,
                after=after,
                count=query.limit + 1,
            ),
        )
        page = found.entries[: query.limit]
        next_cursor = None
        if len(found.entries) > query.limit:
            next_cursor = self._cursors.encode(sort=query.sort, tag=query.tag, after=page[-1][0])
        return found, page, next_cursor


@dataclass(frozen=True)
class Page:
    entries: list[tuple[str, bytes]]  # (the entry's cursor, its view), in page order
    has_next: bool
    total: int
    checkpoint: int
