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
    """The projector's own connection: it holds the one-active-projector lock."""

    async def try_lock(self) -> bool: ...

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` on every new event (NOTIFY) and when the connection ends."""

    def is_closed(self) -> bool: ...

    async def close(self) -> None: ...


class LogConnector(Protocol):
    async def connect(self) -> LeaderSession: ...


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


class ProjectionStore(Protocol):
    @property
    def partitions(self) -> int: ...

    def partition_of(self, item_id: UUID | str) -> int: ...

    async def resolve(self, partition: int) -> tuple[Target, int]:
        """The generation to write to and its checkpoint; starts a restore when the
        partition has no live generation (a fresh Redis, or one that lost its data)."""

    async def live(self, partition: int) -> Target | None:
        """The generation readers follow, or None while the read model is missing."""

    async def checkpoint(self, target: Target) -> int: ...

    async def still_current(self, targets: list[Target]) -> bool:
        """Whether every target is still what its pointer names."""

    async def load(self, target: Target, item_ids: list[str]) -> dict[str, ItemState]: ...

    async def apply(self, target: Target, expected: int, new: int, ops: list[ViewOp]) -> int:
        """Apply ops and move the checkpoint from `expected` to `new`, atomically; raises
        Fenced or BaseMoved (and then writes nothing). Returns the ops applied."""

    async def activate(self, target: Target) -> str | None:
        """Make a restored generation live; returns the one it replaced, if any."""

    async def drop_generation(self, partition: int, generation: str) -> int: ...
