"""The one Redis client of a process: a single Redis or a Redis Cluster, its connection
pool, and what it does on trouble.

A Redis Cluster is used through redis-py's asyncio `RedisCluster`: it learns the slot
map from any node REDIS_URL names, follows MOVED and ASK, and refreshes the map when a
node fails or comes back. Every key of a partition shares one hash tag (keys.py), so
each Lua script and each pipeline of one partition runs on one node; the few reads that
span partitions (`get_each`) go per node.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MaxConnectionsError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("items")

# Either kind of client: every adapter here takes this.
RedisClient: TypeAlias = Redis | RedisCluster

# redis-py's cluster pool raises when a node's connections are all busy rather than
# queueing the caller (redis-py #3135), so a node gets more than a single Redis would.
CLUSTER_CONNECTIONS_FACTOR = 4


def make_redis(
    url: str, *, max_connections: int, timeout: float, client_name: str, cluster: str = "auto"
) -> RedisClient:
    """A client for REDIS_URL. `cluster`: "true", "false", or "auto" (ask the server)."""
    if cluster == "true" or (cluster == "auto" and is_cluster(url, timeout)):
        return RedisCluster.from_url(
            url,
            max_connections=max_connections * CLUSTER_CONNECTIONS_FACTOR,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            client_name=client_name,
            # A node that restarts or fails over is retried, on a refreshed slot map,
            # a few times within about a second, then the call fails like a down Redis.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        )
    # A blocking pool queues callers when every connection is busy instead of failing
    # them; the timeouts turn an unreachable Redis into a quick error, not a hang.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # After a Redis restart every pooled connection is dead; one immediate retry on
        # a fresh connection keeps that from failing a request per pooled connection.
        # Not on timeouts: a hung Redis must cost a request one timeout, not two.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        # Named, so an operator (or a test) can find this process's connections, among
        # them the pub/sub one the view cache depends on.
        client_name=client_name,
    )
    return Redis(connection_pool=pool)


def is_cluster(url: str, timeout: float) -> bool:
    """Whether the server at `url` is a Redis Cluster node. A Unix socket never is (the
    embedded Redis); a server that cannot be asked is taken for a single Redis, with a
    warning, since REDIS_CLUSTER=true says so for certain."""
    if url.startswith("unix:"):
        return False
    probe = sync_redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    except RedisError as exc:
        log.warning(
            "could not ask %s whether it is a Redis Cluster (%s); taking it for a single "
            "Redis (REDIS_CLUSTER=true|false says for certain)", url, exc,
        )  # fmt: skip
        return False
    finally:
        probe.close()


async def get_each(redis: RedisClient, keys: list[str]) -> list[bytes | None]:
    """GET of several keys, in order. One MGET on a single Redis; on a cluster, where
    keys of several partitions live in several slots, one MGET per slot (not atomic
    across them, which no caller needs)."""
    if not keys:
        return []
    if isinstance(redis, RedisCluster):
        values: list[Any] = await redis.mget_nonatomic(keys)
        return values
    single: list[Any] = await redis.mget(keys)
    return single


def moving(exc: BaseException) -> bool:
    """A slot moving between Redis Cluster nodes: over once its keys have moved, in
    moments, unlike a node that is down."""
    return isinstance(exc, TryAgainError)


def not_ready(exc: BaseException) -> str | None:
    """What a failure says about Redis when it is only not ready yet (unreachable, or
    loading its data set after a restart), in a few words; None for anything else."""
    if isinstance(exc, BusyLoadingError):
        return "Redis is loading its data set into memory"
    if isinstance(exc, MaxConnectionsError):  # a ConnectionError, but not a down server
        return "every connection to a Redis Cluster node is busy"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"Redis is unreachable ({exc})"
    if isinstance(exc, ClusterDownError):
        return f"Redis Cluster is not serving every slot ({exc})"
    if isinstance(exc, TryAgainError):
        return "a Redis Cluster slot is moving between nodes"
    return None
