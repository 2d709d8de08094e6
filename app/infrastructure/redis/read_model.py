"""The query side's reads of Redis: one Lua call per partition (lua/get_view.lua,
lua/list_views.lua, lua/position.lua), so resolving the live generation and reading the
view (or page) happen in one round trip and one atomic step.

Which layout (partition count) to read is the `{<prefix>}:layout` record's: read again
at most every LAYOUT_CHECK seconds, at once on a layout notice (`follow_layout`, called
by the watcher), and before answering that a partition has no live generation. A read
racing a repartitioning's switch reads the old layout, whose keys outlive the switch
by a grace period (app/operations/rebuild.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from app.infrastructure.redis import scripts
from app.infrastructure.redis.client import RedisClient, get_each
from app.infrastructure.redis.keys import KeyLayout, decode_layout
from app.queries.errors import ReadModelUnavailable
from app.queries.read_model import IndexSlice, ViewRead
from app.queries.views import index_suffix

LAYOUT_CHECK = 1.0  # seconds between two reads of the layout record
Replies = list[Any]  # one script reply per partition (the class's `list` shadows the type)


class RedisReadModel:
    def __init__(self, redis: RedisClient, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._get = scripts.register(redis, "get_view")
        self._list = scripts.register(redis, "list_views")
        self._position = scripts.register(redis, "position")
        self._layout_read_at = -LAYOUT_CHECK

    @property
    def layout_name(self) -> str:
        return self.layout.name

    def partition_of(self, item_id: UUID | str) -> int:
        return self.layout.partition_of(item_id)

    async def follow_layout(self) -> bool:
        """Read the layout record; True when readers follow another layout now. With no
        record (a new read model, or a Redis that lost its data) the layout stays."""
        self._layout_read_at = time.monotonic()
        raw = await self._redis.get(self.layout.root)
        if raw is None:
            return False
        followed = decode_layout(self.layout.prefix, raw)
        changed = followed != self.layout
        self.layout = followed
        return changed

    async def _current(self) -> KeyLayout:
        if time.monotonic() - self._layout_read_at >= LAYOUT_CHECK:
            await self.follow_layout()
        return self.layout

    async def get(self, item_id: UUID | str) -> ViewRead:
        layout = await self._current()
        for _ in range(2):
            # A UUID goes straight to its partition; a string would be parsed again.
            p = layout.partition_of(item_id)
            reply = await self._get(keys=[layout.gen(p)], args=[layout.tag(p) + ":", str(item_id)])
            if reply[0] != 0:
                return ViewRead(reply[2], int(reply[1]), int(reply[3]), p, reply[4].decode())
            if not await self.follow_layout():  # no other layout to read: it is missing
                break
            layout = self.layout
        raise ReadModelUnavailable()

    async def positions(self) -> list[tuple[int, str | None, int]]:
        layout = await self._current()
        replies = await asyncio.gather(
            *(
                self._position(keys=[layout.gen(p)], args=[layout.tag(p) + ":"])
                for p in range(layout.partitions)
            )
        )
        return [
            (p, None, 0) if reply[0] == 0 else (p, reply[2].decode(), int(reply[1]))
            for p, reply in enumerate(replies)
        ]

    async def list(
        self, *, sort_field: str, descending: bool, tag: str | None, after: bytes | None, count: int
    ) -> IndexSlice:
        suffix = index_suffix(sort_field, tag)
        if after is None:
            start = b"+" if descending else b"-"
        else:
            start = b"(" + after
        direction = "desc" if descending else "asc"
        layout = await self._current()
        replies = await self._list_parts(layout, suffix, direction, start, count)
        if any(reply[0] == 0 for reply in replies) and await self.follow_layout():
            layout = self.layout
            replies = await self._list_parts(layout, suffix, direction, start, count)
        entries: list[tuple[bytes, bytes]] = []
        total = 0
        reads: list[tuple[str, int]] = []
        for reply in replies:
            if reply[0] == 0:
                raise ReadModelUnavailable()
            reads.append((reply[3].decode(), int(reply[1])))
            total += int(reply[2])
            pairs = iter(reply[4:])
            # A member whose view is missing (nil) is skipped; pairs alternate member, view.
            entries += [(m, v) for m, v in zip(pairs, pairs, strict=True) if v]
        if layout.partitions > 1:
            # Each partition gave its first `count` entries after the cursor, in index
            # order; the page is the first `count` of their merge: what one partition
            # holding every item would answer, at a cost of count x partitions entries.
            entries.sort(key=lambda e: e[0], reverse=descending)
            entries = entries[:count]
        checkpoint = min(cp for _, cp in reads)
        return IndexSlice(entries=entries, total=total, checkpoint=checkpoint, reads=tuple(reads))

    async def _list_parts(
        self, layout: KeyLayout, suffix: str, direction: str, start: bytes, count: int
    ) -> Replies:
        """Every partition's part of a page, read concurrently (on a cluster, from the
        partitions' nodes at once)."""

        def args(p: int) -> list[str | bytes | int]:
            return [layout.tag(p) + ":", suffix, direction, start, count]

        if layout.partitions == 1:
            return [await self._list(keys=[layout.gen(0)], args=args(0))]
        reads = (self._list(keys=[layout.gen(p)], args=args(p)) for p in range(layout.partitions))
        return list(await asyncio.gather(*reads))

    async def ready(self) -> bool:
        layout = await self._current()
        keys = [layout.gen(p) for p in range(layout.partitions)]
        return all(v is not None for v in await get_each(self._redis, keys))
