"""What the projection needs from the event log and from the read model: the ports that
app/infrastructure/postgres/event_log.py and app/infrastructure/redis/projection_store.py
implement, and the values that cross them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from app.commands import outbox
from app.domain.events import Event
from app.projection.fold import ItemState, ViewOp
from app.projection.gap_guard import Snapshot

# -- the event log --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it: decoded only when it is folded, so a corrupt record
    fails where a failure can be counted and dead-lettered (step.py)."""

    position: int
    event_id: UUID
    item_id: UUID
    version: int
    type: str
    payload: str
    occurred_at: datetime
    held: bool = False  # behind an unresolved dead letter of the same item
    trace_context: str | None = None  # the write's traceparent (tracing on)

    def decode(self) -> Event:
        return outbox.decode(
            type_name=self.type,
            payload=self.payload,
            item_id=self.item_id,
            version=self.version,
            occurred_at=self.occurred_at,
            event_id=self.event_id,
        )


class EventLog(Protocol):
    """Reads of the log on one connection, and the dead letters kept beside it."""

    async def read_after(self, after: int, limit: int) -> tuple[Snapshot, list[StoredEvent]]:
        """Events after a position in position order, and the snapshot they were read in."""

    async def next_xid(self) -> int:
        """A transaction id handed out now: above every id handed out before the call."""

    async def record_dead_letters(self, dead: list[tuple[StoredEvent, str]]) -> None:
        """Keep events that could not be applied, with their error (durably)."""


class LeaderSession(EventLog, Protocol):
    """The projector's own connection to the log, on which it is woken."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` on every new event (NOTIFY) and when the connection ends."""

    def is_closed(self) -> bool: ...

    async def close(self) -> None: ...


class LogConnector(Protocol):
    async def connect(self) -> LeaderSession: ...


# -- partition ownership ------------------------------------------------------------------


class Leases(Protocol):
    """This process's leases on partitions, kept in the database on a connection of its
    own (app/infrastructure/postgres/leases.py)."""

    async def partitions(self, default: int) -> int:
        """The partition count the database keeps (`default` becomes it when none is)."""

    async def tick(self, layout: str, partitions: int) -> dict[int, int]:
        """Heartbeat, renew this process's leases, give up what exceeds its fair share
        and acquire free or lapsed partitions up to it: partition -> epoch of each one
        owned now. A lease lasts from before the call for the lease time."""

    async def release(self) -> None:
        """Give every partition up at once (a clean stop: others take over now)."""

    async def close(self) -> None: ...


class LeaseConnector(Protocol):
    async def connect(self) -> Leases: ...


# -- the read model ---------------------------------------------------------------------------


class Fenced(Exception):
    """The target generation or checkpoint moved under us: another projector, a rebuild
    or a Redis restart. The caller must reload its position from the read model."""


class BaseMoved(Exception):
    """A view changed between loading and applying; reload and fold again."""


@dataclass(frozen=True)
class Target:
    """Where a projector writes: one generation of one partition."""

    partition: int
    generation: str
    building: bool  # True while the generation is being restored, not yet live
    rebuild: bool = False  # True for a generation `items rebuild` fills beside the live one
    # The owner epoch the writes go under (Redis refuses it once a later owner claimed
    # the partition); 0 for writers that own nothing: a rebuild, a dead-letter retry.
    epoch: int = 0


class ProjectionStore(Protocol):
    @property
    def partitions(self) -> int: ...

    @property
    def layout_name(self) -> str: ...

    def partition_of(self, item_id: UUID | str) -> int: ...

    async def followed_layout(self) -> tuple[str, int] | None:
        """(name, partition count) of the layout readers follow; None when there is none
        (a new read model, or a Redis that lost its data)."""

    async def create_layout(self, partitions: int) -> tuple[str, int]:
        """Make the first layout (named ''), unless another process just did: the one
        that is followed now."""

    def follow(self, name: str, partitions: int) -> None:
        """Write to this layout from now on."""

    async def claim(self, partition: int, epoch: int) -> bool:
        """Raise the partition's fence to `epoch` (an owner just acquired it); False
        when a later owner raised it already."""

    async def resolve(self, partition: int) -> tuple[Target, int]:
        """The generation to write to and its checkpoint; starts a restore when the
        partition has no live generation (a fresh Redis, or one that lost its data)."""

    async def live(self, partition: int) -> Target | None:
        """The generation readers follow, or None while the read model is missing."""

    async def checkpoint(self, target: Target) -> int: ...

    async def still_current(self, targets: list[Target]) -> bool:
        """Whether every target is still what its pointer names."""

    async def load(self, target: Target, item_ids: list[str]) -> dict[str, ItemState]:
        """The items' versions and views in the target's generation; raises Fenced when
        its pointer no longer names it (a rebuild switched and dropped it meanwhile)."""

    async def apply(self, target: Target, expected: int, new: int, ops: list[ViewOp]) -> int:
        """Apply ops and move the checkpoint from `expected` to `new`, atomically; raises
        Fenced or BaseMoved (and then writes nothing). Returns the ops applied."""

    async def activate(self, target: Target) -> str | None:
        """Make a restored generation live; returns the one it replaced, if any."""

    async def drop_generation(self, partition: int, generation: str) -> int: ...
