"""The projector's side of Redis: load current states, apply a batch atomically.

One Lua script applies a whole batch of one partition: the views, their index entries
and the checkpoint move together or not at all, so a crash can never leave the
checkpoint ahead of (or behind) the views it covers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from app.infrastructure import views
from app.infrastructure.projection import ItemState, ViewOp
from app.infrastructure.redis_keys import ChangeNotice, KeyLayout, scan_pattern, view_suffix

# KEYS[1] checkpoint key of the target generation, KEYS[2] the pointer that must name
# that generation (`gen` for the live one, `building` while restoring).
# ARGV: base, generation, expected checkpoint, new checkpoint, channel, ChangeNotice, op count,
# then per op: id, from, to, view ('' = deleted), n removes, (suffix, member)..., n adds, ...
# Checks everything before it writes anything: a script that fails half-way keeps its
# earlier writes, so the only error path is before the first write.
APPLY = """
local base = ARGV[1]
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-1, 'generation'} end
local cp = tonumber(redis.call('GET', KEYS[1]) or '0')
if cp ~= tonumber(ARGV[3]) then return {-1, 'checkpoint', cp} end
local verkey = base .. 'ver'
local ops = {}
local i = 8
for k = 1, tonumber(ARGV[7]) do
  local op = {id = ARGV[i], from = tonumber(ARGV[i + 1]), to = tonumber(ARGV[i + 2]),
              view = ARGV[i + 3], rem = i + 5, nrem = tonumber(ARGV[i + 4])}
  i = i + 5 + 2 * op.nrem
  op.nadd = tonumber(ARGV[i]); op.add = i + 1
  i = i + 1 + 2 * op.nadd
  local have = math.abs(tonumber(redis.call('HGET', verkey, op.id) or '0'))
  if have >= op.to then
    op.skip = true
  elseif have ~= op.from then
    return {-2, op.id, have}
  end
  ops[k] = op
end
local applied = 0
for _, op in ipairs(ops) do
  if not op.skip then
    applied = applied + 1
    if op.view == '' then
      redis.call('DEL', base .. 'v:' .. op.id)
      redis.call('HSET', verkey, op.id, -op.to)
    else
      redis.call('SET', base .. 'v:' .. op.id, op.view)
      redis.call('HSET', verkey, op.id, op.to)
    end
    for j = 0, op.nrem - 1 do
      redis.call('ZREM', base .. ARGV[op.rem + 2 * j], ARGV[op.rem + 2 * j + 1])
    end
    for j = 0, op.nadd - 1 do
      redis.call('ZADD', base .. ARGV[op.add + 2 * j], 0, ARGV[op.add + 2 * j + 1])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {1, applied}
"""

# Makes a restored generation the live one and forgets the previous one's name; the
# reset notice tells in-process view caches that the partition was replaced.
# ARGV: generation, channel, partition, partition tag + ':'.
ACTIVATE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
local cp = redis.call('GET', ARGV[4] .. ARGV[1] .. ':cp') or '0'
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ':' .. cp .. ':' .. ARGV[1] .. ':*')
return old or ''
"""

# The partition has no live generation (a fresh Redis, or one that lost its data):
# name the generation to restore (or follow one named already) and announce that the
# partition's views are gone. KEYS: gen, building. ARGV: new name, channel, partition.
START_RESTORE = """
local live = redis.call('GET', KEYS[1])
if live then return {1, live} end
local building = redis.call('GET', KEYS[2])
if not building then
  building = ARGV[1]
  redis.call('SET', KEYS[2], building)
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ':0::*')
return {0, building}
"""


class Fenced(Exception):
    """The target generation or checkpoint moved under us: another projector, a rebuild
    or a Redis restart. The caller must reload its position from Redis."""


class BaseMoved(Exception):
    """A view changed between loading and applying; reload and fold again."""


@dataclass(frozen=True)
class Target:
    """Where a projector writes: one generation of one partition."""

    partition: int
    generation: str
    building: bool  # True while the generation is being restored, not yet live
    rebuild: bool = False  # True for a generation `items rebuild` fills beside the live one


class ProjectionStore:
    def __init__(self, redis: Redis, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._apply = redis.register_script(APPLY)
        self._activate = redis.register_script(ACTIVATE)
        self._start_restore = redis.register_script(START_RESTORE)

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
                args=[f"g{time.time_ns() // 1000}", self.layout.checkpoint_channel, partition],
            )
            target = Target(partition, as_text(name), building=live == 0)
        return target, await self.checkpoint(target)

    async def live(self, partition: int) -> Target | None:
        """The generation readers follow, or None while the read model is missing."""
        name = await self._redis.get(self.layout.gen(partition))
        return None if name is None else Target(partition, as_text(name), building=False)

    async def checkpoint(self, target: Target) -> int:
        base = self.layout.base(target.partition, target.generation)
        return int(await self._redis.get(base + "cp") or 0)

    async def still_current(self, targets: list[Target]) -> bool:
        """Whether every target is still what its pointer names. False after Redis lost
        its data (or a rebuild switched generations): the caller must resolve again."""
        names = await self._redis.mget([self._pointer(t) for t in targets])
        pairs = zip(names, targets, strict=True)
        return all(n is not None and as_text(n) == t.generation for n, t in pairs)

    async def load(self, target: Target, item_ids: list[str]) -> dict[str, ItemState]:
        if not item_ids:
            return {}  # HMGET/MGET with no keys is an error in Redis
        base = self.layout.base(target.partition, target.generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(base + "ver", item_ids)
            pipe.mget([base + view_suffix(i) for i in item_ids])
            versions, datas = await pipe.execute()
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
                target.partition, new, target.generation, tuple(op.item_id for op in ops)
            ).encode(),
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
        result = await self._apply(keys=[base + "cp", self._pointer(target)], args=args)
        if result[0] == -1:
            raise Fenced(f"partition {target.partition}: {result[1:]!r}")
        if result[0] == -2:
            raise BaseMoved(f"item {result[1]!r} is at version {result[2]}")
        return int(result[1])

    async def activate(self, target: Target) -> str | None:
        """Make a restored generation live; returns the one it replaced, if any."""
        p = target.partition
        old = await self._activate(
            keys=[self.layout.gen(p), self.layout.building(p)],
            args=[target.generation, self.layout.checkpoint_channel, p, self.layout.tag(p) + ":"],
        )
        if old == 0:
            raise Fenced(f"partition {p}: restore of {target.generation} was taken over")
        return as_text(old) or None

    async def drop_generation(self, partition: int, generation: str) -> int:
        """Delete every key of a generation that no reader follows any more."""
        pattern = scan_pattern(self.layout.base(partition, generation))
        removed = 0
        doomed: list[bytes] = []
        # One UNLINK per thousand keys, not per key: a generation has millions of them.
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            doomed.append(key)
            if len(doomed) >= 1000:
                removed += await self._redis.unlink(*doomed)
                doomed = []
        if doomed:
            removed += await self._redis.unlink(*doomed)
        return removed


def as_text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
