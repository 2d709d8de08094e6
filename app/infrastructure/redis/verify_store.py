"""The verifier's side of Redis: what the live generations hold, read in pipelines and
scans, and the guarded repair of one item (lua/repair.lua)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from app.infrastructure.redis import scripts
from app.infrastructure.redis.client import RedisClient, get_each
from app.infrastructure.redis.keys import VIEW, KeyLayout, scan_pattern, view_suffix
from app.infrastructure.redis.projection_store import as_text


@dataclass(frozen=True)
class Stored:
    """One partition's view of some items: their views, `ver` entries and, per index
    asked about, each entry's score (None: not in the index)."""

    views: list[bytes | None]
    versions: list[bytes | None]
    scores: list[list[float | None]]


class RedisVerifyStore:
    def __init__(self, redis: RedisClient, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._repair = scripts.register(redis, "repair")

    async def positions(self) -> tuple[dict[int, str], list[int]]:
        """The live generation of every partition that has one, and their checkpoints
        (in the same order); missing partitions are left out of both."""
        partitions = range(self.layout.partitions)
        names = await get_each(self._redis, [self.layout.gen(p) for p in partitions])
        gens = {p: as_text(n) for p, n in zip(partitions, names, strict=True) if n is not None}
        if not gens:
            return gens, []
        cps = await get_each(self._redis, [self.layout.checkpoint(p, g) for p, g in gens.items()])
        return gens, [int(c or 0) for c in cps]

    async def read(
        self,
        partition: int,
        generation: str,
        ids: Sequence[str],
        entries: Sequence[tuple[str, Sequence[str]]],
    ) -> Stored:
        """Views and `ver` entries of `ids`, and the scores of (index, [entry, ...])."""
        base = self.layout.base(partition, generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            # GETs, not one MGET: a Redis Cluster pipeline refuses MGET.
            for i in ids:
                pipe.get(base + view_suffix(i))
            pipe.hmget(self.layout.versions(partition, generation), list(ids))
            for index, members in entries:
                pipe.zmscore(base + index, list(members))
            replies = await pipe.execute()
        n = len(ids)
        return Stored(replies[:n], replies[n], replies[n + 1 :])

    async def keys(self, partition: int, generation: str, batch: int) -> AsyncIterator[str]:
        """Every key of a generation, as its suffix after the generation's base."""
        base = self.layout.base(partition, generation)
        async for key in self._redis.scan_iter(match=scan_pattern(base), count=batch):
            yield as_text(key)[len(base) :]

    async def live_versions(
        self, partition: int, generation: str, batch: int
    ) -> AsyncIterator[str]:
        """Ids whose `ver` entry says live (positive)."""
        key = self.layout.versions(partition, generation)
        async for item_id, raw in self._redis.hscan_iter(key, count=batch):
            if int(raw) > 0:
                yield as_text(item_id)

    async def index_sizes(self, partition: int, generation: str, indexes: list[str]) -> list[int]:
        base = self.layout.base(partition, generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zcard(base + index)
            return [int(size) for size in await pipe.execute()]

    async def index_entries(
        self, partition: int, generation: str, index: str, batch: int
    ) -> AsyncIterator[str]:
        key = self.layout.base(partition, generation) + index
        async for member, _ in self._redis.zscan_iter(key, count=batch):
            yield as_text(member)

    async def current(
        self, partition: int, generation: str, item_id: str
    ) -> tuple[bytes | None, bytes | None]:
        """An item's view and raw `ver` entry, as a repair must find them still."""
        base = self.layout.base(partition, generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(base + view_suffix(item_id))
            pipe.hget(self.layout.versions(partition, generation), item_id)
            data, version = await pipe.execute()
        return data, version

    async def repair(
        self,
        partition: int,
        generation: str,
        item_id: str,
        seen: tuple[bytes | None, bytes | None],
        new_version: str,
        new_view: bytes,
        removes: list[tuple[str, str]],
        adds: list[tuple[str, str]],
    ) -> bool:
        """Rewrite one item if its view and `ver` entry are still `seen`; False if a
        projector moved it since (or the generation went)."""
        data, raw_version = seen
        args: list[str | bytes | int] = [
            self.layout.base(partition, generation),
            generation,
            item_id,
            b"" if raw_version is None else raw_version,
            "0" if data is None else "1",
            b"" if data is None else data,
            new_version,
            new_view,
            self.layout.checkpoint_channel,
            self.layout.label(partition),
            len(removes),
        ]
        for index, member in removes:
            args += [index, member]
        args.append(len(adds))
        for index, member in adds:
            args += [index, member]
        result = await self._repair(keys=[self.layout.gen(partition)], args=args)
        return int(result) == 1


def view_id(suffix: str) -> str | None:
    """The item id of a view key's suffix (`v:<id>`), else None."""
    return suffix[len(VIEW) :] if suffix.startswith(VIEW) else None
