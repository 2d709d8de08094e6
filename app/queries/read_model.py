"""The one module through which the read side touches Redis.

Each read is one Lua script per partition, so resolving the live generation and
reading the view (or page) happen in one round trip and one atomic step: a read racing
a generation switch sees the old or the new generation, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.infrastructure.redis_keys import ChangeNotice, KeyLayout, index_suffix
from app.queries.errors import ReadModelUnavailable

if TYPE_CHECKING:
    from app.queries.view_cache import ViewCache

# The view cache's lease is renewed by a PING on the pub/sub connection this often;
# a PONG still due after MAX_PINGS_DUE of them means the connection has stalled.
PING_EVERY = 0.25
MAX_PINGS_DUE = 4

GET_VIEW = """
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local b = ARGV[1] .. g .. ':'
return {1, redis.call('GET', b .. 'cp') or '0', redis.call('GET', b .. 'v:' .. ARGV[2]),
        redis.call('HGET', b .. 'ver', ARGV[2]) or '0', g}
"""

# The live generation and its checkpoint: where a view cache starts from.
POSITION = """
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
return {1, redis.call('GET', ARGV[1] .. g .. ':cp') or '0', g}
"""

LIST_VIEWS = """
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local b = ARGV[1] .. g .. ':'
local ix = b .. ARGV[2]
local members
if ARGV[3] == 'desc' then
  members = redis.call('ZRANGE', ix, ARGV[4], '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[5])
else
  members = redis.call('ZRANGE', ix, ARGV[4], '+', 'BYLEX', 'LIMIT', 0, ARGV[5])
end
local out = {1, redis.call('GET', b .. 'cp') or '0', redis.call('ZCARD', ix), g}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('GET', b .. 'v:' .. string.sub(m, -36))
end
return out
"""


@dataclass(frozen=True, slots=True)
class ViewRead:
    data: bytes | None
    checkpoint: int
    version: int  # negative when deleted, 0 when never seen
    partition: int = 0
    generation: str = ""  # the live generation the view was read from


@dataclass(frozen=True)
class IndexSlice:
    entries: list[tuple[bytes, bytes]]  # (index member, view bytes), in page order
    total: int
    checkpoint: int  # the lowest of `reads`' checkpoints
    # (live generation, checkpoint) each partition was read at, in partition order:
    # what the page cache needs to judge the read (page_cache.py).
    reads: tuple[tuple[str, int], ...] = ()


class ReadModel:
    def __init__(self, redis: Redis, layout: KeyLayout) -> None:
        self._redis = redis
        self.layout = layout
        self._get = redis.register_script(GET_VIEW)
        self._list = redis.register_script(LIST_VIEWS)
        self._position = redis.register_script(POSITION)

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
        """(partition, live generation or None, its checkpoint) for every partition."""
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
        """Up to `count` entries after `after`, merged across partitions."""
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
        """Every partition has a live generation."""
        keys = [self.layout.gen(p) for p in range(self.layout.partitions)]
        return all(v is not None for v in await self._redis.mget(keys))


class CheckpointWatcher:
    """Listens to the projector's change notices (Redis pub/sub): wakes readers waiting
    for a position, so read-your-writes waits are not busy polling, and keeps the view
    cache consistent (see view_cache.py): the cache is enabled only while this one
    connection is subscribed, and every notice reaches it in order."""

    def __init__(self, redis: Redis, channel: str, read_model: ReadModel, cache: ViewCache) -> None:
        self._redis = redis
        self._channel = channel
        self._read_model = read_model
        self._cache = cache
        self._changed = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        try:
            while not self._stopping:
                try:
                    async with self._redis.pubsub() as pubsub:
                        await pubsub.subscribe(self._channel)
                        await self._listen(pubsub)
                except Exception as exc:
                    # The subscription is lost: notices may be too, so the cache goes.
                    self._cache.disable()
                    logging.getLogger("items.read").warning("checkpoint watcher: %s", exc)
                    self._notify()  # waiters re-read (and find out Redis is down)
                    await asyncio.sleep(0.5)
        finally:
            self._cache.disable()

    async def _listen(self, pubsub: PubSub) -> None:
        """Messages in order; a PING every PING_EVERY seconds keeps the cache's lease
        (view_cache.py): its PONG comes after every notice published before it."""
        pings: deque[float] = deque()  # send times of PINGs whose PONG is still due
        while not self._stopping:
            now = self._cache.now()
            if len(pings) < MAX_PINGS_DUE and (not pings or now - pings[-1] >= PING_EVERY):
                pings.append(now)
                await pubsub.ping()
            message = await pubsub.get_message(timeout=PING_EVERY)
            if message is None:
                continue
            if message["type"] == "pong":
                if pings:
                    self._cache.current_as_of(pings.popleft())
                continue
            if message["type"] == "subscribe":
                # PINGs sent on a connection redis-py has since replaced get no PONG.
                pings.clear()
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        notice = None
        if message["type"] == "message":
            try:
                notice = ChangeNotice.parse(message["data"])
            except ValueError:
                # Not a notice (a projector of an older release?): what changed is
                # unknown, so the cache starts again, as after a new subscription.
                logging.getLogger("items.read").warning("not a change notice on %s", self._channel)
        if notice is not None:
            self._cache.apply(notice)
        elif message["type"] in ("subscribe", "message"):
            # The first confirmation, or redis-py re-subscribing after it reconnected by
            # itself: notices may have been lost, so start again from what Redis holds.
            self._cache.disable()
            read_at = self._cache.now()
            self._cache.enable(await self._read_model.positions(), read_at)
        self._notify()

    def stop(self) -> None:
        self._stopping = True

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, within: float) -> None:
        """Return on the next published checkpoint, or after `within` seconds."""
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait([waiter], timeout=within)
        finally:
            waiter.cancel()
