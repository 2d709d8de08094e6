"""The SQLAlchemy unit of work: one session, one transaction, one commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.commands.unit_of_work import UnitOfWork
from app.domain.events import Event
from app.infrastructure.repositories import SqlEventStore, SqlItemRepository


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> SqlUnitOfWork:
        self._session = self._session_factory()
        self.items = SqlItemRepository(self._session)
        self._events = SqlEventStore(self._session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.rollback()
        finally:
            await self._session.close()

    async def _commit(self, events: list[Event]) -> int | None:
        position = await self._events.append(events)
        await self._session.commit()
        return position

    async def rollback(self) -> None:
        await self._session.rollback()
