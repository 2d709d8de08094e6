"""The Redis key layout of the read model, in one place.

Every key of a partition carries the partition's hash tag, so a partition lives in one
Redis Cluster slot and one Lua script may touch all of its keys. The tag names the
layout too (`{<prefix>:<layout>/<p>}`), except for the first layout, named '', whose
tags are `{<prefix>:<p>}`, as they were before layouts had names:

    {<prefix>}:layout                  the layout readers follow: name, partition count
    {<prefix>:<p>}:gen                 active generation of partition p
    {<prefix>:<p>}:epoch               fence: the highest owner epoch that wrote here
    {<prefix>:<p>}:building            generation being restored from the event log
    {<prefix>:<p>}:rebuild             generation `items rebuild` is filling
    {<prefix>:<p>}:<g>:cp              checkpoint: last event position applied in g
    {<prefix>:<p>}:<g>:ver             hash item id -> version (negative: deleted)
    {<prefix>:<p>}:<g>:v:<item id>     the item view, as the JSON bytes a GET sends
    {<prefix>:<p>}:<g>:ix:<sort>       list index of live items, one per sort field
    {<prefix>:<p>}:<g>:tx:<tag>:<sort> the same, restricted to one tag

A generation is a complete copy of the views; readers follow `gen`, so a rebuild can
fill a new generation beside the live one and switch with one step. A layout is a set of
partitions; `items rebuild --partitions N` fills a new layout beside the live one and
switches `{<prefix>}:layout` to it, so the partition count changes without downtime.
The list indexes' names and entries are the read model's schema (app/queries/views.py);
they are sorted sets whose members all score 0 and sort by their bytes (ZRANGE BYLEX).
The Lua scripts in lua/ spell the same suffixes (`cp`, `ver`, `v:`): they are the only
other place.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from uuid import UUID

# The version of this key layout. A release that changes it (what a key holds, or how it
# is named) bumps it; `items rebuild` then builds a new layout beside the live one and
# switches readers to it, as it does for a new partition count, so a live deployment
# moves without downtime (the release must still read the version before it).
LAYOUT_VERSION = 1

CHECKPOINT = "cp"
VERSIONS = "ver"
VIEW = "v:"


@dataclass(frozen=True)
class KeyLayout:
    prefix: str
    partitions: int
    name: str = ""  # the layout: '' for the first one, then one per repartitioning
    version: int = LAYOUT_VERSION

    def partition_of(self, item_id: UUID | str) -> int:
        if self.partitions == 1:
            return 0
        raw = item_id.bytes if isinstance(item_id, UUID) else UUID(item_id).bytes
        return zlib.crc32(raw) % self.partitions

    def label(self, partition: int) -> str:
        """A partition as change notices name it: `<p>`, or `<layout>/<p>`."""
        return f"{self.name}/{partition}" if self.name else str(partition)

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{self.label(partition)}}}"

    @property
    def root(self) -> str:
        """The key naming the layout readers follow (in a slot of its own)."""
        return layout_key(self.prefix)

    def encode(self) -> str:
        record = {"name": self.name, "partitions": self.partitions, "version": self.version}
        return json.dumps(record)

    def gen(self, partition: int) -> str:
        return f"{self.tag(partition)}:gen"

    def epoch(self, partition: int) -> str:
        """The fence of the partition's owners: apply.lua refuses a lower epoch."""
        return f"{self.tag(partition)}:epoch"

    def base(self, partition: int, generation: str) -> str:
        """Prefix of every key of one generation of one partition."""
        return f"{self.tag(partition)}:{generation}:"

    def building(self, partition: int) -> str:
        """Generation being restored from the event log, before it becomes active."""
        return f"{self.tag(partition)}:building"

    def rebuild(self, partition: int) -> str:
        """Generation `items rebuild` is filling beside the live one."""
        return f"{self.tag(partition)}:rebuild"

    def checkpoint(self, partition: int, generation: str) -> str:
        return self.base(partition, generation) + CHECKPOINT

    def versions(self, partition: int, generation: str) -> str:
        return self.base(partition, generation) + VERSIONS

    @property
    def checkpoint_channel(self) -> str:
        """Where every change notice of this read model is published."""
        return f"{self.prefix}:checkpoints"


def layout_key(prefix: str) -> str:
    return f"{{{prefix}}}:layout"


def decode_layout(prefix: str, raw: bytes | str) -> KeyLayout:
    record = json.loads(raw)
    version = int(record.get("version", 1))
    return KeyLayout(prefix, int(record["partitions"]), str(record["name"]), version)


def view_suffix(item_id: str) -> str:
    return VIEW + item_id


def scan_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key starting with `prefix`: hash-tag braces and
    other glob characters in it are escaped."""
    escaped = "".join("\\" + c if c in "[]{}*?\\" else c for c in prefix)
    return escaped + "*"
