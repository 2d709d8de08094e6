"""Change notices: what one step of the read model changed, as its readers learn it.

Every Redis step that changes a live view publishes one from inside the same Lua script
that made the change (app/infrastructure/redis/lua/), so a notice and its change are one
atomic step, and notices arrive in the read model's own order. Readers waiting for a
position wake on them, and the in-process caches (app/queries/cache/) stay consistent by
them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeNotice:
    """One notice, in its wire form:

        "<partition>:<checkpoint>:<generation>:<id>,<id>,..."  a batch applied
        "<partition>:<checkpoint>:<generation>:!<id>"          a view repaired in place
        "<partition>:<checkpoint>:<generation>:*"              the partition replaced as a
                                                               whole (generation '' when
                                                               none is live)

    where <partition> is `<p>` in the first layout (named '') and `<layout>/<p>` in a
    later one, so a reader tells the notices of the layout it follows from those of one
    being filled or retired. The first two fields are all a checkpoint waiter needs."""

    partition: int
    checkpoint: int
    generation: str
    ids: tuple[str, ...] = ()
    reset: bool = False
    repair: bool = False
    layout: str = ""

    def encode(self) -> str:
        if self.reset:
            tail = "*"
        else:
            tail = ("!" if self.repair else "") + ",".join(self.ids)
        label = f"{self.layout}/{self.partition}" if self.layout else str(self.partition)
        return f"{label}:{self.checkpoint}:{self.generation}:{tail}"

    @classmethod
    def parse(cls, message: bytes | str) -> ChangeNotice:
        text = message.decode() if isinstance(message, bytes) else message
        label, checkpoint, generation, tail = text.split(":", 3)
        layout, _, partition = label.rpartition("/")
        header = (int(partition), int(checkpoint), generation)
        if tail == "*":
            return cls(*header, reset=True, layout=layout)
        repair = tail.startswith("!")
        ids = tail[1:] if repair else tail
        return cls(*header, ids=tuple(ids.split(",")) if ids else (), repair=repair, layout=layout)


LAYOUT_NOTICE = "layout:"


@dataclass(frozen=True)
class LayoutChanged:
    """`layout:<name>:<partitions>`: readers follow another layout from now on (`items
    rebuild --partitions N` switched it). Every position known of the old one is void."""

    name: str
    partitions: int

    def encode(self) -> str:
        return f"{LAYOUT_NOTICE}{self.name}:{self.partitions}"

    @classmethod
    def parse(cls, text: str) -> LayoutChanged:
        name, _, partitions = text[len(LAYOUT_NOTICE) :].rpartition(":")
        return cls(name, int(partitions))


def parse_notice(message: bytes | str) -> ChangeNotice | LayoutChanged:
    """Either kind of notice; ValueError for anything else."""
    text = message.decode() if isinstance(message, bytes) else message
    if text.startswith(LAYOUT_NOTICE):
        return LayoutChanged.parse(text)
    return ChangeNotice.parse(text)
