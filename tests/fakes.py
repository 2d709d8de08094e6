"""The one set of fakes of the suite: the write model's unit of work in memory, and an
event log that keeps dead letters in memory.

The fakes implement the ports the real adapters implement (app/commands/unit_of_work.py,
app/commands/idempotency.py, app/projection/ports.py), so the handlers, the bus and the
projection step run on them unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from app.commands.idempotency import IdempotencyStore, StoredResponse
from app.commands.unit_of_work import ItemRepository, UnitOfWork
from app.domain.events import Event
from app.domain.model import Item
from app.projection.gap_guard import Snapshot
from app.projection.ports import StoredEvent
from app.projection.step import BatchStep
from tests.unit.builders import at

# -- the write model -------------------------------------------------------------------------


def _copy(item: Item) -> Item:
    return dataclasses.replace(item, events=[])


@dataclass
class FakeDatabase:
    """What the fake transactions commit to: rows, an event log with positions,
    idempotency records, and a record of every commit and rollback."""

    rows: dict[UUID, Item] = field(default_factory=dict)  # live items
    final: dict[UUID, Item] = field(default_factory=dict)  # every item, deleted ones too
    log: list[tuple[int, Event]] = field(default_factory=list)  # committed, position order
    keys: dict[str, tuple[str, StoredResponse]] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)  # keys held by open transactions
    appends: list[list[Event]] = field(default_factory=list)  # each _append call
    commits: list[list[Event]] = field(default_factory=list)  # events of each commit
    rollbacks: int = 0
    next_position: int = 1

    @property
    def events(self) -> list[Event]:
        """The committed events, in position order."""
        return [event for _, event in self.log]


class FakeItemRepository(ItemRepository):
    """Reads committed rows; writes are staged until the unit of work commits."""

    def __init__(self, db: FakeDatabase) -> None:
        super().__init__()
        self._db = db
        self.staged: dict[UUID, Item] = {}

    async def _get(self, item_id: UUID) -> Item | None:
        row = self._db.rows.get(item_id)
        return None if row is None else _copy(row)

    async def _add(self, item: Item) -> None:
        if item.id in self._db.final:
            raise ValueError(f"duplicate id {item.id}")
        self.staged[item.id] = _copy(item)

    async def save(self, item: Item) -> None:
        self.staged[item.id] = _copy(item)

    async def last_position(self, item_id: UUID) -> int | None:
        positions = [p for p, e in self._db.log if e.item_id == item_id]
        return max(positions, default=None)


class FakeIdempotencyStore(IdempotencyStore):
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.held: set[str] = set()
        self.staged: dict[str, tuple[str, StoredResponse]] = {}

    async def lock(self, key: str) -> bool:
        if key in self._db.locked and key not in self.held:
            return False
        self._db.locked.add(key)
        self.held.add(key)
        return True

    async def get(self, key: str) -> tuple[str, StoredResponse] | None:
        return self._db.keys.get(key)

    async def save(self, key: str, fingerprint: str, response: StoredResponse) -> None:
        assert key in self.held
        self.staged[key] = (fingerprint, response)


class FakeUnitOfWork(UnitOfWork):
    """One in-memory transaction: appended events get positions at once (as the real
    outbox's identity column does) but only reach the log on commit."""

    items: FakeItemRepository
    idempotency: FakeIdempotencyStore

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.items = FakeItemRepository(db)
        self.idempotency = FakeIdempotencyStore(db)
        self.appended: list[tuple[int, Event]] = []
        self.committed = False

    async def _append(self, events: list[Event], *, last: bool) -> int:
        assert events, "nothing to append"
        self._db.appends.append(list(events))
        for event in events:
            self.appended.append((self._db.next_position, event))
            self._db.next_position += 1  # a rolled-back position leaves a hole
        return self.appended[-1][0]

    async def _commit(self) -> None:
        assert not self.committed, "a unit of work commits once"
        self.committed = True
        for item_id, item in self.items.staged.items():
            self._db.final[item_id] = item
            if item.deleted:
                self._db.rows.pop(item_id, None)
            else:
                self._db.rows[item_id] = item
        self._db.log += self.appended
        self._db.keys.update(self.idempotency.staged)
        self._db.commits.append([e for _, e in self.appended])
        self._release()

    async def rollback(self) -> None:
        if not self.committed:
            self._db.rollbacks += 1
        self._release()

    def _release(self) -> None:
        self.items.staged.clear()
        self.idempotency.staged.clear()
        self.appended = []
        self._db.locked -= self.idempotency.held
        self.idempotency.held.clear()


class Clock:
    """A command bus clock: a distinct, increasing moment per command."""

    def __init__(self) -> None:
        self.step = 0

    def __call__(self) -> datetime:
        self.step += 1
        return at(self.step)


# -- the event log ---------------------------------------------------------------------------


class MemoryLog:
    """The event log a projection step writes dead letters to, with no PostgreSQL behind
    it: the tests hand batches to the step themselves, so nothing is read from it.
    `refuse=True`: a dead letter fails the test at once."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.recorded: list[tuple[StoredEvent, str]] = []

    async def read_after(self, after: int, limit: int) -> tuple[Snapshot, list[StoredEvent]]:
        raise AssertionError("the test hands the step its batches")

    async def next_xid(self) -> int:
        raise AssertionError("the test hands the step its batches")

    async def record_dead_letters(self, dead: list[tuple[StoredEvent, str]]) -> None:
        if self.refuse:
            raise AssertionError(f"dead letters: {dead}")
        self.recorded += dead


def owning_all(step: BatchStep, partitions: int) -> BatchStep:
    """A batch step that owns every partition, as a lone projector would, without the
    leases in PostgreSQL behind ownership (epoch 0: no fence is raised or checked)."""
    step.own(dict.fromkeys(range(partitions), 0), None)
    return step
