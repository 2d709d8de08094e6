"""The change feed probes its subscription once every PROBE_EVERY seconds, however fast
Redis answers: it once sent the next PING as soon as the last was answered, a busy loop
of about 4,000 PINGs a second that took 90% of a core from an idle `items serve`."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from app.infrastructure.redis import change_feed
from app.infrastructure.redis.change_feed import RedisChangeFeed, _Ping


class InstantPubSub:
    """A subscription whose PINGs are answered at once."""

    def __init__(self) -> None:
        self.pings = 0
        self._queued: deque[dict[str, Any]] = deque()

    async def ping(self) -> None:
        self.pings += 1
        self._queued.append({"type": "pong", "channel": None, "data": b""})

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (redis-py's signature)
        if self._queued:
            await asyncio.sleep(0)  # a real answer yields too: a busy loop counts, not hangs
            return self._queued.popleft()
        await asyncio.sleep(timeout)
        return None


class Listener:
    def __init__(self) -> None:
        self.proven: list[float] = []

    def now(self) -> float:
        return time.monotonic()

    def current_as_of(self, sent_at: float) -> None:
        self.proven.append(sent_at)

    async def received(self, kind: str, data: Any) -> None:
        pass

    def lost(self, error: Exception | None) -> None:
        pass


async def test_one_probe_per_period_when_redis_answers_at_once() -> None:
    pubsub, listener = InstantPubSub(), Listener()
    feed = RedisChangeFeed(None, "channel")  # type: ignore[arg-type]  # _listen only
    listening = asyncio.create_task(feed._listen(pubsub, listener, _Ping(pubsub)))  # type: ignore[arg-type]
    periods = 4
    await asyncio.sleep(periods * change_feed.PROBE_EVERY + change_feed.PROBE_EVERY / 2)
    feed.stop()
    await asyncio.wait_for(listening, timeout=2 * change_feed.PROBE_EVERY)
    # One at the start and one per period: never the thousands of a busy loop.
    assert periods <= pubsub.pings <= periods + 2
    assert len(listener.proven) == pubsub.pings  # each answered probe renews the lease
    gaps = [b - a for a, b in zip(listener.proven, listener.proven[1:], strict=False)]
    assert min(gaps) >= change_feed.PROBE_EVERY * 0.9
