"""One handler per command. Handlers load and change aggregates through the unit of
work; they never commit: the bus commits the unit of work once, after the handler."""

from datetime import datetime
from uuid import UUID

from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.commands.unit_of_work import UnitOfWork
from app.domain.errors import ItemNotFound, VersionMismatch
from app.domain.model import Item


async def create_item(cmd: CreateItem, uow: UnitOfWork, now: datetime) -> Item:
    item = Item.create(
        item_id=cmd.item_id,
        name=cmd.name,
        description=cmd.description,
        price=cmd.price,
        tags=cmd.tags,
        now=now,
    )
    await uow.items.add(item)
    return item


async def _load(uow: UnitOfWork, item_id: UUID, expected: frozenset[int] | None) -> Item:
    item = await uow.items.get(item_id)  # locked until commit
    if item is None:
        raise ItemNotFound(item_id)
    if expected is not None and item.version not in expected:
        raise VersionMismatch(item_id, item.version)
    return item


async def update_item(cmd: UpdateItem, uow: UnitOfWork, now: datetime) -> Item:
    item = await _load(uow, cmd.item_id, cmd.expected_versions)
    if item.update(cmd.changes, now=now):
        await uow.items.save(item)
    return item


async def delete_item(cmd: DeleteItem, uow: UnitOfWork, now: datetime) -> Item:
    item = await _load(uow, cmd.item_id, cmd.expected_versions)
    item.delete(now=now)
    await uow.items.save(item)
    return item
