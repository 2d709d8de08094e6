"""The PostgreSQL unit of work: one transaction on one pooled connection, one commit."""

from __future__ import annotations

from app.commands.unit_of_work import UnitOfWork
from app.domain.events import Event
from app.infrastructure.postgres.pool import Database
from app.infrastructure.postgres.repositories import (
    PgIdempotencyStore,
    PgItemRepository,
    PgWrites,
)
from app.infrastructure.postgres.transaction import Transaction


class PgUnitOfWork(UnitOfWork):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> PgUnitOfWork:
        # The connection is taken by the first statement, not here: a command that
        # fails validation in its handler never touches the pool.
        self._tx = Transaction(self._db)
        self._rows = PgItemRepository(self._tx)
        self.items = self._rows
        self._writes = PgWrites(self._tx, self._rows)
        self.idempotency = PgIdempotencyStore(self._tx)
        return self

    async def _end(self, exc: BaseException | None) -> None:
        # Rolled back if still in the transaction, or the connection cut when its state
        # is unknown (Transaction.end).
        await self._tx.end(exc)

    async def _append(self, events: list[Event], *, last: bool) -> int:
        return await self._writes.append(events, last=last)

    async def _commit(self) -> None:
        await self._rows.write_held()  # rows that raised no event (none do today)
        await self._tx.commit()

    async def rollback(self) -> None:
        await self._tx.rollback()
