"""The read model's change notices, followed on one Redis pub/sub connection.

Every Lua step that changes a live view PUBLISHes its notice on the partition set's
channel (keys.py). This feed subscribes, hands every message to its listener in order
(app/queries/cache/watcher.py says what they mean), and PINGs on the same connection:
Redis answers a PING after every message it published before reading it, so each PONG
proves the listener current as of the PING's sending (the view cache's lease).
"""

from __future__ import annotations

import asyncio
from collections import deque

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.queries.cache.watcher import ChangeListener

# The view cache's lease is renewed by a PING on the pub/sub connection this often;
# a PONG still due after MAX_PINGS_DUE of them means the connection has stalled.
PING_EVERY = 0.25
MAX_PINGS_DUE = 4
RESUBSCRIBE_AFTER = 0.5  # seconds between a lost subscription and the next try


class RedisChangeFeed:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def follow(self, listener: ChangeListener) -> None:
        try:
            while not self._stopping:
                try:
                    async with self._redis.pubsub() as pubsub:
                        await pubsub.subscribe(self._channel)
                        await self._listen(pubsub, listener)
                except Exception as exc:
                    listener.lost(exc)
                    await asyncio.sleep(RESUBSCRIBE_AFTER)
        finally:
            listener.lost(None)

    async def _listen(self, pubsub: PubSub, listener: ChangeListener) -> None:
        """Messages in order, with a PING every PING_EVERY seconds."""
        pings: deque[float] = deque()  # send times of PINGs whose PONG is still due
        while not self._stopping:
            now = listener.now()
            if len(pings) < MAX_PINGS_DUE and (not pings or now - pings[-1] >= PING_EVERY):
                pings.append(now)
                await pubsub.ping()
            message = await pubsub.get_message(timeout=PING_EVERY)
            if message is None:
                continue
            if message["type"] == "pong":
                if pings:
                    listener.current_as_of(pings.popleft())
                continue
            if message["type"] == "subscribe":
                # PINGs sent on a connection redis-py has since replaced get no PONG.
                pings.clear()
            await listener.received(message["type"], message["data"])
