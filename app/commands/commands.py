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
    # If-Match: the versions the client expects (None: no precondition). Checked under
    # the row lock, so the check and the write are one atomic step.
    expected_versions: frozenset[int] | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteItem(Command):
    item_id: UUID
    expected_versions: frozenset[int] | None = None
