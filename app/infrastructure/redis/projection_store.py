"""The projector's side of Redis: load current states, apply a batch atomically, and
move generations (restore, rebuild switch) with their change notices.

One Lua script (lua/apply.lua) applies a whole batch of one partition: the views, their
index entries and the checkpoint move together or not at all, so a crash can never
leave the checkpoint ahead of (or behind) the views it covers.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from app.infrastructure.redis import scripts
from app.infrastructure.redis.client import RedisClient, get_each
from app.infrastructure.redis.keys import (
    LAYOUT_VERSION,
    KeyLayout,
    decode_layout,
    scan_pattern,
)
from app.projection.fold import ItemState, ViewOp
from app.projection.ports import BaseMoved, Fenced, Target
from app.queries import views
from app.queries.notices import ChangeNotice, LayoutChanged

DROP_BATCH = 1000  # keys per SCAN page and per UNLINK when a generation is dropped


class RedisProjectionStore:
    def __init__(self, redis: RedisClient, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._apply = scripts.register(redis, "apply")
        self._activate = scripts.register(redis, "activate")
        self._start_restore = scripts.register(redis, "start_restore")
        self._claim = scripts.register(redis, "claim")
        self._switch_layout = scripts.register(redis, "switch_layout")
        self._load = scripts.register(redis, "load")

    @property
    def partitions(self) -> int:
        return self.layout.partitions

    @property
    def layout_name(self) -> str:
        return self.layout.name

    # -- layouts ------------------------------------------------------------------------

    async def followed_layout(self) -> tuple[str, int] | None:
        followed = await self.followed_record()
        return None if followed is None else (followed.name, followed.partitions)

    async def followed_record(self) -> KeyLayout | None:
        """The layout record as readers follow it, version included."""
        raw = await self._redis.get(self.layout.root)
        return None if raw is None else decode_layout(self.layout.prefix, raw)

    async def create_layout(self, partitions: int) -> tuple[str, int]:
        first = KeyLayout(self.layout.prefix, partitions)
        await self._redis.set(first.root, first.encode(), nx=True)
        return await self.followed_layout() or (first.name, first.partitions)

    def follow(self, name: str, partitions: int, version: int = LAYOUT_VERSION) -> None:
        self.layout = KeyLayout(self.layout.prefix, partitions, name, version)

    async def switch_layout(self, to: KeyLayout) -> bool:
        """Make readers follow `to` instead of this store's layout, in one step; False
        when the record no longer names this store's layout."""
        notice = LayoutChanged(to.name, to.partitions).encode()
        switched = await self._switch_layout(
            keys=[self.layout.root],
            args=[
                self.layout.name,
                self.layout.partitions,
                to.encode(),
                self.layout.checkpoint_channel,
                notice,
            ],
        )
        return int(switched) == 1

    async def drop_layout(self) -> int:
        """Delete every key of this store's layout (one no reader follows any more)."""
        removed = 0
        for p in range(self.layout.partitions):
            removed += await self._drop_matching(scan_pattern(self.layout.tag(p) + ":"))
        return removed

    async def claim(self, partition: int, epoch: int) -> bool:
        result = await self._claim(
            keys=[self.layout.epoch(partition), self.layout.gen(partition)], args=[epoch]
        )
        return int(result[0]) == 1

    def partition_of(self, item_id: UUID | str) -> int:
        return self.layout.partition_of(item_id)

    def _pointer(self, target: Target) -> str:
        p = target.partition
        if target.rebuild:
            return self.layout.rebuild(p)
        return self.layout.building(p) if target.building else self.layout.gen(p)

    async def resolve(self, partition: int) -> tuple[Target, int]:
        """The generation to write to and its checkpoint; starts a restore when the
        partition has no live generation (a fresh Redis, or one that lost its data)."""
        target = await self.live(partition)
        if target is None:
            # One step: if another projector raced us here, follow its choice.
            live, name = await self._start_restore(
                keys=[self.layout.gen(partition), self.layout.building(partition)],
                args=[
                    f"g{time.time_ns() // 1000}",
                    self.layout.checkpoint_channel,
                    self.layout.label(partition),
                ],
            )
            target = Target(partition, as_text(name), building=live == 0)
        return target, await self.checkpoint(target)

    async def live(self, partition: int) -> Target | None:
        """The generation readers follow, or None while the read model is missing."""
        name = await self._redis.get(self.layout.gen(partition))
        return None if name is None else Target(partition, as_text(name), building=False)

    async def checkpoint(self, target: Target) -> int:
        key = self.layout.checkpoint(target.partition, target.generation)
        return int(await self._redis.get(key) or 0)

    async def still_current(self, targets: list[Target]) -> bool:
        """Whether every target is still what its pointer names. False after Redis lost
        its data (or a rebuild switched generations): the caller must resolve again."""
        names = await get_each(self._redis, [self._pointer(t) for t in targets])
        pairs = zip(names, targets, strict=True)
        return all(n is not None and as_text(n) == t.generation for n, t in pairs)

    async def load(self, target: Target, item_ids: list[str]) -> dict[str, ItemState]:
        if not item_ids:
            return {}  # HMGET/MGET with no keys is an error in Redis
        base = self.layout.base(target.partition, target.generation)
        versions_key = self.layout.versions(target.partition, target.generation)
        reply = await self._load(
            keys=[versions_key, self._pointer(target)], args=[base, target.generation, *item_ids]
        )
        if reply[0] == -1:
            raise Fenced(f"partition {target.partition}: {reply[1:]!r}")
        versions, datas = reply[1 : len(item_ids) + 1], reply[len(item_ids) + 1 :]
        states = {}
        for item_id, version, data in zip(item_ids, versions, datas, strict=True):
            states[item_id] = ItemState(
                version=abs(int(version or 0)),
                view=None if data is None else views.parse(data),
            )
        return states

    async def apply(self, target: Target, expected: int, new: int, ops: list[ViewOp]) -> int:
        base = self.layout.base(target.partition, target.generation)
        args: list[str | bytes | int] = [
            base,
            target.generation,
            expected,
            new,
            self.layout.checkpoint_channel,
            # Wakes readers waiting for a position, and drops these ids from view caches.
            ChangeNotice(
                target.partition,
                new,
                target.generation,
                tuple(op.item_id for op in ops),
                layout=self.layout.name,
            ).encode(),
            target.epoch,
            len(ops),
        ]
        for op in ops:
            args += [op.item_id, op.from_version, op.to_version, op.data or b""]
            args.append(len(op.removes))
            for suffix, member in op.removes:
                args += [suffix, member]
            args.append(len(op.adds))
            for suffix, member in op.adds:
                args += [suffix, member]
        checkpoint = self.layout.checkpoint(target.partition, target.generation)
        fence = self.layout.epoch(target.partition)
        result = await self._apply(keys=[checkpoint, self._pointer(target), fence], args=args)
        if result[0] == -1:
            raise Fenced(f"partition {target.partition}: {result[1:]!r}")
        if result[0] == -2:
            raise BaseMoved(f"item {result[1]!r} is at version {result[2]}")
        return int(result[1])

    async def activate(self, target: Target) -> str | None:
        """Make a restored generation live; returns the one it replaced, if any."""
        result = await self._make_live(target, require_caught_up=False)
        if result[0] != 1:
            p, generation = target.partition, target.generation
            raise Fenced(f"partition {p}: restore of {generation} was taken over")
        return as_text(result[1]) or None

    async def switch(self, target: Target) -> tuple[bool, str | None]:
        """Make a rebuilt generation live, if its checkpoint has reached the live one's:
        (switched, the generation it replaced). Fenced if the rebuild pointer moved."""
        result = await self._make_live(target, require_caught_up=True)
        if result[0] == -1:
            raise Fenced(f"partition {target.partition}: the rebuild generation was removed")
        if result[0] == 0:
            return False, None
        return True, as_text(result[1]) or None

    async def _make_live(self, target: Target, *, require_caught_up: bool) -> Any:
        p = target.partition
        return await self._activate(
            keys=[self.layout.gen(p), self._pointer(target), self.layout.epoch(p)],
            args=[
                target.generation,
                self.layout.tag(p) + ":",
                self.layout.checkpoint_channel,
                self.layout.label(p),
                "1" if require_caught_up else "0",
                target.epoch,
            ],
        )

    async def drop_generation(self, partition: int, generation: str) -> int:
        """Delete every key of a generation that no reader follows any more."""
        return await self._drop_matching(scan_pattern(self.layout.base(partition, generation)))

    async def _drop_matching(self, pattern: str) -> int:
        removed = 0
        doomed: list[bytes] = []
        # One UNLINK per thousand keys, not per key: a generation has millions of them.
        async for key in self._redis.scan_iter(match=pattern, count=DROP_BATCH):
            doomed.append(key)
            if len(doomed) >= DROP_BATCH:
                removed += await self._redis.unlink(*doomed)
                doomed = []
        if doomed:
            removed += await self._redis.unlink(*doomed)
        return removed

    async def describe(self) -> list[dict[str, Any]]:
        """Each partition's live, restoring and rebuilding generations with their
        checkpoints (None where there is none), for operators."""
        layout = self.layout
        pointers: list[str] = []
        for p in range(layout.partitions):
            pointers += [layout.gen(p), layout.building(p), layout.rebuild(p)]
        names = [None if n is None else as_text(n) for n in await get_each(self._redis, pointers)]
        # A pointer that names nothing reads its own key again: MGET wants one key each.
        cp_keys = [
            layout.checkpoint(i // 3, n) if n is not None else layout.gen(i // 3)
            for i, n in enumerate(names)
        ]
        cps = await get_each(self._redis, cp_keys)
        result: list[dict[str, Any]] = []
        for p in range(layout.partitions):
            (gen, building, rebuild), raw = names[3 * p : 3 * p + 3], cps[3 * p : 3 * p + 3]

            def checkpoint(name: str | None, value: Any) -> int | None:
                return None if name is None else int(value or 0)

            result.append(
                {
                    "partition": p,
                    "generation": gen,
                    "checkpoint": checkpoint(gen, raw[0]),
                    "restoring": building is not None,
                    "restore_generation": building,
                    "restore_checkpoint": checkpoint(building, raw[1]),
                    "rebuilding": rebuild is not None,
                    "rebuild_generation": rebuild,
                    "rebuild_checkpoint": checkpoint(rebuild, raw[2]),
                }
            )
        return result


def as_text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
