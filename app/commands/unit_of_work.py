"""The contract the handlers need from storage; SQL lives behind it, in
app/infrastructure/postgres."""

from __future__ import annotations

import abc
from types import TracebackType
from uuid import UUID

from app import metrics
from app.commands.idempotency import IdempotencyStore
from app.domain.events import Event
from app.domain.model import Item


class WriteModelBusy(Exception):
    """Every connection to the write model stayed busy for as long as a command may wait
    for one: nothing was written, and the command is worth a retry (503)."""


class ItemRepository(abc.ABC):
    """Loads and stores Item aggregates, and remembers which ones it handed out so the
    unit of work can collect the events they raised."""

    def __init__(self) -> None:
        self.seen: dict[UUID, Item] = {}

    async def get(self, item_id: UUID) -> Item | None:
        """Load a live item and lock it until the unit of work ends."""
        item = await self._get(item_id)
        if item is not None:
            self.seen[item.id] = item
        return item

    async def add(self, item: Item) -> None:
        await self._add(item)
        self.seen[item.id] = item

    @abc.abstractmethod
    async def _get(self, item_id: UUID) -> Item | None: ...

    @abc.abstractmethod
    async def _add(self, item: Item) -> None: ...

    @abc.abstractmethod
    async def save(self, item: Item) -> None:
        """Write a changed (or deleted) item back."""

    @abc.abstractmethod
    async def last_position(self, item_id: UUID) -> int | None:
        """Position of the item's latest event, for answers to writes that changed nothing."""


class UnitOfWork(abc.ABC):
    """One transaction: the item rows, the events they raised (and an idempotency
    record) commit together or not at all. Created per command; never shared between
    concurrent tasks."""

    items: ItemRepository
    idempotency: IdempotencyStore

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end(exc)

    async def _end(self, exc: BaseException | None) -> None:
        """Leave the unit of work (after commit, or on `exc`): what is not committed is
        rolled back."""
        await self.rollback()

    async def flush(self) -> int | None:
        """Append the events raised so far to the outbox (in this transaction) and
        return the position of the last one (None when nothing was raised)."""
        return await self._flush(last=False)

    async def _flush(self, *, last: bool) -> int | None:
        events = [event for item in self.items.seen.values() for event in item.events]
        if not events:
            return None
        position = await self._append(events, last=last)
        for item in self.items.seen.values():
            item.events.clear()
        self._appended = getattr(self, "_appended", 0) + len(events)
        return position

    async def commit(self) -> int | None:
        """Append what is left to append, commit, and return the position of the last
        event this call appended (None when there was none left)."""
        position = await self._flush(last=True)
        await self._commit()
        appended = getattr(self, "_appended", 0)
        if appended:  # counted once they are committed, not when they were raised
            metrics.instance().events_appended.inc(appended)
            self._appended = 0
        return position

    @abc.abstractmethod
    async def _append(self, events: list[Event], *, last: bool) -> int:
        """Write the events (and the rows the repository holds back for them); `last`:
        only the commit follows, so a store may write all of it as one statement in a
        transaction of its own when nothing else has run yet."""

    @abc.abstractmethod
    async def _commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None: ...
