"""The rebuild's side of Redis: a new generation beside the live one, seeded from item
rows as cheaply as possible.

`items rebuild` writes every view, version and list-index entry of the read model, about
twenty Redis arguments per item. Through redis-py's generic command packing that alone
was a third of the rebuild's CPU, and formatting the rows' times another tenth, so:

- PostgreSQL renders the ids, prices and times as the view's text (the same text
  `views.item_view` makes; verify and the tests compare the bytes), in the server
  process, not ours (app/infrastructure/postgres/items_reader.py, ITEM_ROWS);
- the commands are packed to RESP directly, each index entry once per item however
  many indexes it goes to, and sent as one write per batch on one pooled connection
  (on a Redis Cluster, one per node: a partition's commands all go to its slot's node).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from redis.asyncio.cluster import RedisCluster

from app.infrastructure.redis.client import RedisClient
from app.infrastructure.redis.keys import KeyLayout, view_suffix
from app.infrastructure.redis.projection_store import RedisProjectionStore, as_text
from app.queries import views
from app.queries.queries import SORT_FIELDS
from app.queries.views import index_suffix, sort_keys

_ZERO = b"$1\r\n0\r\n"  # the score of every index member (the indexes sort by bytes)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(head: Sequence[bytes], body: list[bytes], args_per_entry: int) -> bytes:
    """One RESP command: `head` arguments, then entries already packed as bulk strings."""
    count = len(head) + args_per_entry * len(body)
    return b"*%d\r\n%b%b" % (count, b"".join(map(_bulk, head)), b"".join(body))


class _Partition:
    def __init__(self, layout: KeyLayout, partition: int, generation: str) -> None:
        self.base = layout.base(partition, generation)
        self.versions_key = layout.versions(partition, generation).encode()
        self.views: list[bytes] = []
        self.versions: list[bytes] = []
        # tag (None: the unfiltered indexes) -> one member list per sort field
        self.index: dict[str | None, list[list[bytes]]] = defaultdict(
            lambda: [[] for _ in SORT_FIELDS]
        )

    def add(self, row: Sequence[Any]) -> None:
        item_id, name, description, price, tags, version, created_at, updated_at = row
        view = views.make_view(
            item_id=item_id,
            name=name,
            description=description,
            price=price,
            tags=list(tags),
            version=version,
            created_at=created_at,
            updated_at=updated_at,
        )
        raw_id = item_id.encode()
        key = (self.base + view_suffix(item_id)).encode()
        data = views.render(view)
        self.views.append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(data), data))
        digits = b"%d" % version
        self.versions.append(b"$36\r\n%b\r\n$%d\r\n%b\r\n" % (raw_id, len(digits), digits))
        tail = b"\x00" + raw_id
        members = [_ZERO + _bulk(k.encode() + tail) for k in sort_keys(view)]
        for tag in (None, *tags):
            for entries, member in zip(self.index[tag], members, strict=True):
                entries.append(member)

    def commands(self) -> Iterable[bytes]:
        if not self.views:
            return
        yield _command([b"MSET"], self.views, 2)
        yield _command([b"HSET", self.versions_key], self.versions, 2)
        for tag, lists in self.index.items():
            for field, entries in zip(SORT_FIELDS, lists, strict=True):
                key = (self.base + index_suffix(field, tag)).encode()
                yield _command([b"ZADD", key], entries, 2)


# The packed commands of one batch, by partition.
Commands = dict[int, list[bytes]]


def seed_commands(layout: KeyLayout, generation: str, rows: Iterable[Sequence[Any]]) -> Commands:
    """The RESP commands that write these item rows (ITEM_ROWS) into a generation."""
    parts: dict[int, _Partition] = {}
    for row in rows:
        p = layout.partition_of(row[0])
        part = parts.get(p)
        if part is None:
            part = parts[p] = _Partition(layout, p, generation)
        part.add(row)
    return {p: list(part.commands()) for p, part in parts.items()}


class RedisRebuildStore:
    """A rebuild's generation: named beside the live one, seeded, then switched live by
    the projection store (RedisProjectionStore.switch)."""

    def __init__(self, redis: RedisClient, layout: KeyLayout, store: RedisProjectionStore) -> None:
        self._redis = redis
        self.layout = layout
        self._store = store

    async def clear_stale(self) -> None:
        """Remove what an interrupted rebuild left, so this one starts clean."""
        for p in range(self.layout.partitions):
            stale = await self._redis.get(self.layout.rebuild(p))
            if stale is not None:
                await self._store.drop_generation(p, as_text(stale))
                await self._redis.delete(self.layout.rebuild(p))

    async def begin(self, generation: str) -> None:
        """Name `generation` as the one being rebuilt, in every partition."""
        for p in range(self.layout.partitions):
            await self._redis.set(self.layout.rebuild(p), generation)

    async def tombstones(self, generation: str, deleted: list[tuple[UUID, int]]) -> None:
        """Deleted items' last versions (negative), so a replayed event cannot bring them back."""
        groups: dict[int, list[tuple[UUID, int]]] = defaultdict(list)
        for item_id, version in deleted:
            groups[self.layout.partition_of(item_id)].append((item_id, version))
        for p, rows in groups.items():
            key = self.layout.versions(p, generation)
            await self._redis.hset(key, mapping={str(i): -v for i, v in rows})

    def commands(self, generation: str, rows: Iterable[Sequence[Any]]) -> Commands:
        return seed_commands(self.layout, generation, rows)

    async def send(self, commands: Commands) -> None:
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()
            by_node: dict[str, list[bytes]] = defaultdict(list)
            nodes = {}
            for p, packed in commands.items():
                node = self._redis.get_node_from_key(self.layout.tag(p))
                if node is None:
                    raise RuntimeError(f"no Redis Cluster node serves partition {p}")
                nodes[node.name] = node
                by_node[node.name] += packed
            for name, packed in by_node.items():
                await send_to_node(nodes[name], packed)
            return
        await send_commands(self._redis, [c for packed in commands.values() for c in packed])

    async def set_checkpoint(self, generation: str, checkpoint: int) -> None:
        for p in range(self.layout.partitions):
            await self._redis.set(self.layout.checkpoint(p, generation), checkpoint)


async def send_to_node(node: Any, commands: list[bytes]) -> None:
    """send_commands for one node of a Redis Cluster (a ClusterNode)."""
    conn = node.acquire_connection()
    try:
        await conn.send_packed_command(commands, check_health=False)
        for _ in commands:
            reply = await conn.read_response()
            if isinstance(reply, Exception):
                raise reply
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        node.release(conn)


async def send_commands(redis: RedisClient, commands: list[bytes]) -> None:
    """Send packed commands in one write on one pooled connection and read every reply;
    an error reply raises (and the connection, its replies unread, is dropped)."""
    if not commands:
        return
    assert not isinstance(redis, RedisCluster)
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(commands, check_health=False)
        for _ in commands:
            await conn.read_response()
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
