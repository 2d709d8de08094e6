"""The SQLAlchemy unit of work: one session, one transaction, one commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.commands.unit_of_work import UnitOfWork
from app.domain.events import Event
from app.infrastructure.repositories import (
    SqlEventStore,
    SqlIdempotencyStore,
    SqlItemRepository,
)


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> SqlUnitOfWork:
        self._session = self._session_factory()
        self.items = SqlItemRepository(self._session)
        self._events = SqlEventStore(self._session)
        self.idempotency = SqlIdempotencyStore(self._session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.rollback()
        finally:
            await self._session.close()

    async def _append(self, events: list[Event]) -> int:
        return await self._events.append(events)

    async def _commit(self) -> None:
        await self._session.commit()

    async def rollback(self) -> None:
        await self._session.rollback()
