"""The one Redis client of a process: its connection pool and what it does on trouble."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def make_redis(url: str, *, max_connections: int, timeout: float, client_name: str) -> Redis:
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


def not_ready(exc: BaseException) -> str | None:
    """What a failure says about Redis when it is only not ready yet (unreachable, or
    loading its data set after a restart), in a few words; None for anything else."""
    if isinstance(exc, BusyLoadingError):
        return "Redis is loading its data set into memory"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"Redis is unreachable ({exc})"
    return None
