"""`tests.redis_cluster.LocalRedisCluster` gives a working Redis Cluster.

Three real masters, driven by redis-py's asyncio `RedisCluster` as the app would: keys
with different hash tags spread over every node, a Lua script on two keys of one hash
tag runs on their node, and a master killed and restarted serves its slots again (empty,
nothing is persisted) to the client that saw it die and to a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from tests.redis_cluster import LocalRedisCluster, available

if (_reason := available()) is not None:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.slow

# Two keys of one hash tag share a slot, hence a node, hence may meet in one script.
SWAP = """
local a = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], redis.call('GET', KEYS[2]))
redis.call('SET', KEYS[2], a)
return {redis.call('GET', KEYS[1]), redis.call('INCRBY', KEYS[3], ARGV[1])}
"""
BUMP = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(tmp_path / "cluster") as started:
        yield started


@pytest.fixture
async def client(cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    connected = RedisCluster.from_url(cluster.url, decode_responses=True)
    yield connected
    await connected.aclose()


def _key_on(cluster: LocalRedisCluster, node: int, tag: str) -> str:
    return next(k for k in (f"{{{tag}:{i}}}:k" for i in range(1000)) if cluster.node_of(k) == node)


async def test_keys_with_different_hash_tags_spread_over_every_node(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    keys = [f"{{t:{i}}}:k" for i in range(300)]
    for i, key in enumerate(keys):
        await client.set(key, i)
    await client.set("other", 1)  # Outside the pattern: not counted.

    counts = cluster.keys_per_node(r"\{t:*")
    assert sum(counts) == 300
    assert all(n > 0 for n in counts), counts
    # node_of agrees with where the client actually wrote them.
    by_node = Counter(cluster.node_of(key) for key in keys)
    assert counts == [by_node[i] for i in range(len(cluster.ports))]
    assert len(cluster.urls) == len(cluster.ports) == 3


async def test_a_lua_script_on_keys_of_one_hash_tag(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    a, b, n = "{acct:7}:a", "{acct:7}:b", "{acct:7}:n"
    await client.mset_nonatomic({a: "x", b: "y"})
    swap = client.register_script(SWAP)

    assert await swap(keys=[a, b, n], args=[5]) == ["y", 5]
    assert await swap(keys=[a, b, n], args=[5]) == ["x", 10]
    assert cluster.keys_per_node(r"\{acct:7\}:*")[cluster.node_of(a)] == 3
    # Keys of different slots may not meet in a script: redis-py refuses before sending.
    with pytest.raises(RedisClusterException, match="same key slot"):
        await swap(keys=["{p}:a", "{q}:b", "{p}:n"], args=[1])


async def test_a_killed_master_serves_its_slots_again_after_a_restart(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    key = _key_on(cluster, 1, "r")
    counter = _key_on(cluster, 1, "s")
    bump = client.register_script(BUMP)
    await client.set(key, "before")
    assert await bump(keys=[counter], args=[1]) == 1  # The script is now cached on node 1.

    await asyncio.to_thread(cluster.kill_node, 1, wait_down=True)
    with pytest.raises(RedisError):  # Connection refused on node 1, whatever the retries.
        await client.get(key)

    await asyncio.to_thread(cluster.restart_node, 1)
    assert cluster.node_of(key) == 1  # Same id, same slots, from its nodes.conf.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await client.get(key) is None  # No persistence: the data is gone.
            await client.set(key, "after")
            break
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert await client.get(key) == "after"
    # The restarted node lost its script cache too: redis-py loads the script again.
    assert await bump(keys=[counter], args=[1]) == 1

    fresh = RedisCluster.from_url(cluster.url, decode_responses=True)
    try:
        assert await fresh.get(key) == "after"
        assert await fresh.set(_key_on(cluster, 1, "u"), "new")
    finally:
        await fresh.aclose()
