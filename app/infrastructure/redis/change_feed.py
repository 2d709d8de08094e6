"""The read model's change notices, followed on one Redis pub/sub connection.

Every Lua step that changes a live view PUBLISHes its notice on the read model's channel
(keys.py). This feed subscribes, hands every message to its listener in order
(app/queries/cache/watcher.py says what they mean), and proves the listener current
every PROBE_EVERY seconds (the view cache's lease):

- on a single Redis, by a PING on the subscription's connection: Redis answers it after
  every message it published before reading it;
- on a Redis Cluster, plain pub/sub (PUBLISH is forwarded to every node over the cluster
  bus, so one subscription on any node hears every partition's notices) and a PING would
  only speak for the node subscribed to. So the feed PUBLISHes a probe through every
  primary on a channel of its own: each node forwards messages in the order it
  published them, so the probe from node N arrives after every notice N published
  before it, and a round is complete when the probes of all primaries have arrived.

Why plain and not sharded pub/sub (SSUBSCRIBE, Redis 7): it would need one subscription
per shard, follow slot migrations (redis-py fixed several bugs there: PRs #4038, #4044,
#4076), and the embedded Redis 6.2 has none. Notices are few (one per batch and
partition), so their crossing the cluster bus to every node costs little.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from app.infrastructure.redis.client import RedisClient
from app.queries.cache.watcher import ChangeListener

# The view cache's lease is renewed by a probe this often; a probe still due after
# MAX_PROBES_DUE of them means the subscription has stalled.
PROBE_EVERY = 0.25
MAX_PROBES_DUE = 4
RESUBSCRIBE_AFTER = 0.5  # seconds between a lost subscription and the next try


class RedisChangeFeed:
    def __init__(self, redis: RedisClient, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._stopping = False
        self._attempt = 0
        # A probe channel of this feed's own: other processes' probes never reach it.
        self._probes = f"{channel}:probe:{uuid.uuid4().hex}"

    def stop(self) -> None:
        self._stopping = True

    async def follow(self, listener: ChangeListener) -> None:
        try:
            while not self._stopping:
                try:
                    if isinstance(self._redis, RedisCluster):
                        await self._follow_cluster(self._redis, listener)
                    else:
                        async with self._redis.pubsub() as pubsub:
                            await pubsub.subscribe(self._channel)
                            await self._listen(pubsub, listener, self._ping(pubsub))
                except Exception as exc:
                    self._attempt += 1
                    listener.lost(exc)
                    await asyncio.sleep(RESUBSCRIBE_AFTER)
        finally:
            listener.lost(None)

    async def _follow_cluster(self, cluster: RedisCluster, listener: ChangeListener) -> None:
        await cluster.initialize()
        primaries = cluster.get_primaries()
        # Another node after each failure: the one subscribed to may be the one down.
        node = primaries[self._attempt % len(primaries)]
        kwargs = node.connection_kwargs
        subscriber = Redis(
            host=node.host,
            port=int(node.port),
            socket_timeout=kwargs.get("socket_timeout"),
            socket_connect_timeout=kwargs.get("socket_connect_timeout"),
            client_name=kwargs.get("client_name"),
        )
        try:
            async with subscriber.pubsub() as pubsub:
                await pubsub.subscribe(self._channel, self._probes)
                await self._listen(pubsub, listener, _ProbeRound(cluster, self._probes))
        finally:
            await subscriber.aclose()

    @staticmethod
    def _ping(pubsub: PubSub) -> _Ping:
        return _Ping(pubsub)

    async def _listen(self, pubsub: PubSub, listener: ChangeListener, probe: _Probe) -> None:
        """Messages in order, with a probe every PROBE_EVERY seconds."""
        due: deque[float] = deque()  # send times of probes not yet answered
        sent = float("-inf")  # when the last probe went; one every PROBE_EVERY, not each
        # time the last is answered: a Redis that answers at once was pinged in a busy
        # loop (about 4,000 PINGs a second and 90% of a core in an idle `items serve`).
        while not self._stopping:
            now = listener.now()
            if len(due) < MAX_PROBES_DUE and now - sent >= PROBE_EVERY:
                due.append(now)
                sent = now
                await probe.send()
            # Until the next probe is due (or a whole period when too many are due).
            wait = sent + PROBE_EVERY - now
            if len(due) >= MAX_PROBES_DUE or wait <= 0:
                wait = PROBE_EVERY
            message = await pubsub.get_message(timeout=wait)
            if message is None:
                continue
            taken = probe.take(message)
            if taken is not None:
                if taken and due:
                    listener.current_as_of(due.popleft())
                continue
            if message["type"] == "subscribe":
                # Probes sent on a connection redis-py has since replaced get no answer.
                due.clear()
                probe.restart()
                if _channel(message) != self._channel:
                    continue
            await listener.received(message["type"], message["data"])


class _Probe:
    async def send(self) -> None: ...

    def take(self, message: dict[str, Any]) -> bool | None:
        """None: not a probe's answer (a notice, a subscription); True: it completes the
        oldest probe still due; False: an answer that completes none yet."""
        return None

    def restart(self) -> None: ...


class _Ping(_Probe):
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def send(self) -> None:
        await self._pubsub.ping()

    def take(self, message: dict[str, Any]) -> bool | None:
        return True if message["type"] == "pong" else None


class _ProbeRound(_Probe):
    """One probe through every primary per round; rounds complete in order."""

    def __init__(self, cluster: RedisCluster, channel: str) -> None:
        self._cluster = cluster
        self._channel = channel
        self._round = 0
        self._waiting: deque[tuple[int, set[str]]] = deque()  # round, nodes not heard yet

    async def send(self) -> None:
        self._round += 1
        nodes = self._cluster.get_primaries()
        self._waiting.append((self._round, {n.name for n in nodes}))
        for node in nodes:
            await self._cluster.execute_command(
                "PUBLISH", self._channel, f"{self._round} {node.name}", target_nodes=node
            )

    def take(self, message: dict[str, Any]) -> bool | None:
        if message["type"] != "message" or _channel(message) != self._channel:
            return None
        number, _, name = _text(message["data"]).partition(" ")
        for round_, missing in self._waiting:
            if round_ == int(number):
                missing.discard(name)
                break
        if self._waiting and not self._waiting[0][1]:
            self._waiting.popleft()
            return True
        return False

    def restart(self) -> None:
        self._waiting.clear()


def _channel(message: dict[str, Any]) -> str:
    return _text(message.get("channel") or b"")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
