"""All SQL of the write side: items rows and the event outbox."""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.commands.idempotency import IdempotencyStore, StoredResponse
from app.commands.unit_of_work import ItemRepository
from app.domain.events import Event
from app.domain.model import Item
from app.infrastructure import event_codec
from app.infrastructure.tables import events, idempotency_keys, items

IDEMPOTENCY_LOCK_SPACE = 0x1D3  # first half of the two-int advisory lock key
KEY_TTL = timedelta(hours=24)  # keys are kept (at least) this long


class SqlItemRepository(ItemRepository):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__()
        self._session = session

    async def _get(self, item_id: UUID) -> Item | None:
        # FOR UPDATE: concurrent commands on one item queue here, so each one sees the
        # version the previous one committed and versions grow 1, 2, 3 with no gaps.
        stmt = select(items).where(items.c.id == item_id).with_for_update()
        row = (await self._session.execute(stmt)).mappings().first()
        return None if row is None else item_from_row(row)

    async def _add(self, item: Item) -> None:
        await self._session.execute(insert(items).values(**_to_row(item)))

    async def save(self, item: Item) -> None:
        if item.deleted:
            await self._session.execute(delete(items).where(items.c.id == item.id))
            return
        row = _to_row(item)
        del row["id"], row["created_at"]
        await self._session.execute(update(items).where(items.c.id == item.id).values(**row))

    async def last_position(self, item_id: UUID) -> int | None:
        stmt = select(func.max(events.c.position)).where(events.c.item_id == item_id)
        position = (await self._session.execute(stmt)).scalar()
        return None if position is None else int(position)


class SqlEventStore:
    """Appends events to the outbox inside the caller's transaction.

    The caller has already written the item row, so the transaction holds a
    transaction id before it takes positions: the projector's gap check relies on it.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(self, new_events: list[Event]) -> int:
        rows = [
            {
                "event_id": e.event_id,
                "item_id": e.item_id,
                "item_version": e.version,
                "type": type(e).__name__,
                "payload": event_codec.to_payload(e),
                "occurred_at": e.occurred_at,
            }
            for e in new_events
        ]
        result = await self._session.execute(insert(events).returning(events.c.position), rows)
        return int(max(result.scalars().all()))


class SqlIdempotencyStore(IdempotencyStore):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock(self, key: str) -> bool:
        # A transaction-scoped advisory lock on the key: a concurrent request with the
        # same key learns at once that the first is still in flight (409) instead of
        # queueing behind it. The two-int form keeps these apart from other locks.
        stmt = select(func.pg_try_advisory_xact_lock(IDEMPOTENCY_LOCK_SPACE, func.hashtext(key)))
        return bool((await self._session.execute(stmt)).scalar())

    async def get(self, key: str) -> tuple[str, StoredResponse] | None:
        t = idempotency_keys
        stmt = select(t.c.fingerprint, t.c.status, t.c.headers, t.c.body).where(
            t.c.key == key, t.c.created_at > func.now() - KEY_TTL
        )
        row = (await self._session.execute(stmt)).first()
        if row is None:
            return None
        return row.fingerprint, StoredResponse(row.status, dict(row.headers), bytes(row.body))

    async def save(self, key: str, fingerprint: str, response: StoredResponse) -> None:
        t = idempotency_keys
        values = {
            "fingerprint": fingerprint,
            "status": response.status,
            "headers": response.headers,
            "body": response.body,
            "created_at": func.now(),
        }
        # An expired record that the purge has not reached yet is simply replaced.
        stmt = pg_insert(t).values(key=key, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key], set_=values)
        await self._session.execute(stmt)

    async def purge_expired(self, batch: int = 1000) -> int:
        """Delete a batch of expired keys; small batches keep locks short."""
        t = idempotency_keys
        doomed = select(t.c.key).where(t.c.created_at <= func.now() - KEY_TTL).limit(batch)
        result = await self._session.execute(delete(t).where(t.c.key.in_(doomed.scalar_subquery())))
        return int(result.rowcount)  # type: ignore[attr-defined]


def _to_row(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "price": item.price,
        "tags": list(item.tags),
        "version": item.version,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


def item_from_row(row: Mapping[Any, Any]) -> Item:
    """An Item from an items row (SQLAlchemy mapping or asyncpg record alike)."""
    return Item(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        price=row["price"],
        tags=tuple(row["tags"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
