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
