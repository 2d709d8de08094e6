"""Commands: imperative requests to change the write model, plain frozen dataclasses."""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class Command:
    pass


@dataclass(frozen=True, kw_only=True)
class CreateItem(Command):
    item_id: UUID
    name: str
    price: str | int | float | Decimal
    description: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class UpdateItem(Command):
    item_id: UUID
    # Only the fields the client sent; `None` for description clears it.
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class DeleteItem(Command):
    item_id: UUID
