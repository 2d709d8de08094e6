"""Seeding a rebuild generation: item rows in, Redis commands out, as cheaply as possible.

`items rebuild` writes every view, version and list-index entry of the read model, about
twenty Redis arguments per item. Through redis-py's generic command packing that alone
was a third of the rebuild's CPU, and formatting the rows' times another tenth, so here:

- PostgreSQL renders the ids, prices and times as the view's text (the same text
  `views.item_view` makes; verify and the tests compare the bytes), in the server
  process, not ours;
- the commands are packed to RESP directly, each index member once per item however
  many indexes it goes to, and sent as one write per batch on one pooled connection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from app.infrastructure import views
from app.infrastructure.redis_keys import SORT_FIELDS, KeyLayout, index_suffix, sort_keys

_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# price is numeric(11,2): its text always has two decimals, like views.format_price.
ITEM_ROWS = (
    "SELECT id::text, name, description, price::text, tags, version, "
    f"{_TIME.format('created_at')}, {_TIME.format('updated_at')} FROM items"
)

_ZERO = b"$1\r\n0\r\n"  # the score of every index member (the indexes sort by bytes)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(head: Sequence[bytes], body: list[bytes], args_per_entry: int) -> bytes:
    """One RESP command: `head` arguments, then entries already packed as bulk strings."""
    count = len(head) + args_per_entry * len(body)
    return b"*%d\r\n%b%b" % (count, b"".join(map(_bulk, head)), b"".join(body))


class _Partition:
    def __init__(self, base: str) -> None:
        self.base = base
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
        key = (self.base + "v:").encode() + raw_id
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
        yield _command([b"HSET", (self.base + "ver").encode()], self.versions, 2)
        for tag, lists in self.index.items():
            for field, entries in zip(SORT_FIELDS, lists, strict=True):
                key = (self.base + index_suffix(field, tag)).encode()
                yield _command([b"ZADD", key], entries, 2)


def seed_commands(layout: KeyLayout, generation: str, rows: Iterable[Sequence[Any]]) -> list[bytes]:
    """The RESP commands that write these item rows (ITEM_ROWS) into a generation."""
    parts: dict[int, _Partition] = {}
    for row in rows:
        p = layout.partition_of(row[0]) if layout.partitions > 1 else 0
        part = parts.get(p)
        if part is None:
            part = parts[p] = _Partition(layout.base(p, generation))
        part.add(row)
    return [c for part in parts.values() for c in part.commands()]


async def send_commands(redis: Redis, commands: list[bytes]) -> None:
    """Send packed commands in one write on one pooled connection and read every reply;
    an error reply raises (and the connection, its replies unread, is dropped)."""
    if not commands:
        return
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
