"""The Redis key layout of the read model, in one place.

Every key of a partition carries the partition's hash tag, so a partition lives in one
Redis Cluster slot and one Lua script may touch all of its keys:

    {<prefix>:<p>}:gen                 active generation of partition p
    {<prefix>:<p>}:<g>:cp              checkpoint: last event position applied in g
    {<prefix>:<p>}:<g>:ver             hash item id -> version (negative: deleted)
    {<prefix>:<p>}:<g>:v:<item id>     the item view, as the JSON bytes a GET sends
    {<prefix>:<p>}:<g>:ix:<sort>       list index of live items, one per sort field
    {<prefix>:<p>}:<g>:tx:<tag>:<sort> the same, restricted to one tag

A generation is a complete copy of the views; readers follow `gen`, so a rebuild can
fill a new generation beside the live one and switch with one SET.

List indexes are sorted sets whose members all score 0 and sort by their bytes
(ZRANGE BYLEX): "<sort key>\\x00<item id>". The sort key is fixed-width for times and
prices and the case-folded name for names, so the member order is the page order, ties
fall to the id in the same direction, and a cursor is just the last member seen.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from uuid import UUID

SORT_FIELDS = ("created_at", "updated_at", "name", "price")
ID_LENGTH = 36


@dataclass(frozen=True)
class KeyLayout:
    prefix: str
    partitions: int

    def partition_of(self, item_id: UUID | str) -> int:
        raw = item_id.bytes if isinstance(item_id, UUID) else UUID(item_id).bytes
        return zlib.crc32(raw) % self.partitions

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def gen(self, partition: int) -> str:
        return f"{self.tag(partition)}:gen"

    def base(self, partition: int, generation: str) -> str:
        """Prefix of every key of one generation of one partition."""
        return f"{self.tag(partition)}:{generation}:"

    def building(self, partition: int) -> str:
        """Generation being restored from the event log, before it becomes active."""
        return f"{self.tag(partition)}:building"

    def rebuild(self, partition: int) -> str:
        """Generation `items rebuild` is filling beside the live one."""
        return f"{self.tag(partition)}:rebuild"

    @property
    def checkpoint_channel(self) -> str:
        return f"{self.prefix}:checkpoints"


@dataclass(frozen=True)
class ChangeNotice:
    """What one Redis step changed, published on `checkpoint_channel` by the very Lua
    script that made the change (so the two are atomic, and notices come in Redis's
    order):

        "<partition>:<checkpoint>:<generation>:<id>,<id>,..."  a batch applied
        "<partition>:<checkpoint>:<generation>:!<id>"          a view repaired in place
        "<partition>:<checkpoint>:<generation>:*"              the partition replaced as a
                                                               whole (generation '' when
                                                               none is live)

    The first two fields are all a checkpoint waiter needs."""

    partition: int
    checkpoint: int
    generation: str
    ids: tuple[str, ...] = ()
    reset: bool = False
    repair: bool = False

    def encode(self) -> str:
        if self.reset:
            tail = "*"
        else:
            tail = ("!" if self.repair else "") + ",".join(self.ids)
        return f"{self.partition}:{self.checkpoint}:{self.generation}:{tail}"

    @classmethod
    def parse(cls, message: bytes | str) -> ChangeNotice:
        text = message.decode() if isinstance(message, bytes) else message
        partition, checkpoint, generation, tail = text.split(":", 3)
        header = (int(partition), int(checkpoint), generation)
        if tail == "*":
            return cls(*header, reset=True)
        repair = tail.startswith("!")
        ids = tail[1:] if repair else tail
        return cls(*header, ids=tuple(ids.split(",")) if ids else (), repair=repair)


def scan_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key starting with `prefix`: hash-tag braces and
    other glob characters in it are escaped."""
    escaped = "".join("\\" + c if c in "[]{}*?\\" else c for c in prefix)
    return escaped + "*"


def index_suffix(sort_field: str, tag: str | None = None) -> str:
    return f"tx:{tag}:{sort_field}" if tag else f"ix:{sort_field}"


def view_suffix(item_id: str) -> str:
    return f"v:{item_id}"


def sort_key(view: dict[str, object], sort_field: str) -> str:
    value = view[sort_field]
    if sort_field == "price":
        return price_key(str(value))
    if sort_field == "name":
        return str(value).casefold()
    # RFC 3339 UTC with microseconds is fixed-width, so its text sorts as its time.
    return str(value)


def price_key(price: str) -> str:
    """Price text "123.45" -> 12 zero-padded digits of cents; prices are below 10^9 so this fits."""
    whole, _, cents = price.partition(".")
    return f"{int(whole) * 100 + int(cents or 0):012d}"


def sort_keys(view: dict[str, object]) -> tuple[str, str, str, str]:
    """The sort keys of a view, in SORT_FIELDS order."""
    return (
        str(view["created_at"]),
        str(view["updated_at"]),
        str(view["name"]).casefold(),
        price_key(str(view["price"])),
    )


def index_members(view: dict[str, object]) -> dict[str, str]:
    """Every list-index entry a live view needs: index suffix -> member."""
    tail = "\x00" + str(view["id"])
    keys = list(zip(SORT_FIELDS, sort_keys(view), strict=True))
    members = {index_suffix(f): k + tail for f, k in keys}
    tags = view["tags"]
    assert isinstance(tags, list)
    for tag in tags:
        for f, k in keys:
            members[index_suffix(f, tag)] = k + tail
    return members
