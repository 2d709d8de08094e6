"""The query side's reads of Redis: one Lua call per partition (lua/get_view.lua,
lua/list_views.lua, lua/position.lua), so resolving the live generation and reading the
view (or page) happen in one round trip and one atomic step."""

from __future__ import annotations

from uuid import UUID

from redis.asyncio import Redis

from app.infrastructure.redis import scripts
from app.infrastructure.redis.keys import KeyLayout
from app.queries.errors import ReadModelUnavailable
from app.queries.read_model import IndexSlice, ViewRead
from app.queries.views import index_suffix


class RedisReadModel:
    def __init__(self, redis: Redis, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._get = scripts.register(redis, "get_view")
        self._list = scripts.register(redis, "list_views")
        self._position = scripts.register(redis, "position")

    def partition_of(self, item_id: UUID | str) -> int:
        return self.layout.partition_of(item_id)

    async def get(self, item_id: UUID | str) -> ViewRead:
        # A UUID goes straight to its partition; a string would be parsed again.
        p = self.layout.partition_of(item_id)
        reply = await self._get(
            keys=[self.layout.gen(p)],
            args=[self.layout.tag(p) + ":", str(item_id)],
        )
        if reply[0] == 0:
            raise ReadModelUnavailable()
        return ViewRead(reply[2], int(reply[1]), int(reply[3]), p, reply[4].decode())

    async def positions(self) -> list[tuple[int, str | None, int]]:
        found: list[tuple[int, str | None, int]] = []
        for p in range(self.layout.partitions):
            reply = await self._position(keys=[self.layout.gen(p)], args=[self.layout.tag(p) + ":"])
            if reply[0] == 0:
                found.append((p, None, 0))
            else:
                found.append((p, reply[2].decode(), int(reply[1])))
        return found

    async def list(
        self, *, sort_field: str, descending: bool, tag: str | None, after: bytes | None, count: int
    ) -> IndexSlice:
        suffix = index_suffix(sort_field, tag)
        if after is None:
            start = b"+" if descending else b"-"
        else:
            start = b"(" + after
        direction = "desc" if descending else "asc"
        entries: list[tuple[bytes, bytes]] = []
        total = 0
        reads: list[tuple[str, int]] = []
        for p in range(self.layout.partitions):
            reply = await self._list(
                keys=[self.layout.gen(p)],
                args=[self.layout.tag(p) + ":", suffix, direction, start, count],
            )
            if reply[0] == 0:
                raise ReadModelUnavailable()
            reads.append((reply[3].decode(), int(reply[1])))
            total += int(reply[2])
            pairs = iter(reply[4:])
            # A member whose view is missing (nil) is skipped; pairs alternate member, view.
            entries += [(m, v) for m, v in zip(pairs, pairs, strict=True) if v]
        if self.layout.partitions > 1:
            entries.sort(key=lambda e: e[0], reverse=descending)
            entries = entries[:count]
        checkpoint = min(cp for _, cp in reads)
        return IndexSlice(entries=entries, total=total, checkpoint=checkpoint, reads=tuple(reads))

    async def ready(self) -> bool:
        keys = [self.layout.gen(p) for p in range(self.layout.partitions)]
        return all(v is not None for v in await self._redis.mget(keys))
