"""The Item aggregate: the only place where an item's state changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.domain import values
from app.domain.errors import InvalidValue, ItemNotFound
from app.domain.events import Event, ItemCreated, ItemDeleted, ItemUpdated

UPDATABLE_FIELDS = ("name", "description", "price", "tags")


@dataclass(eq=False, kw_only=True)
class Item:
    id: UUID
    name: str
    description: str | None
    price: Decimal
    tags: tuple[str, ...]
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False
    # Events raised since the aggregate was loaded; the unit of work collects them and
    # stores them in the same transaction as the item row.
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def create(
        cls,
        *,
        item_id: UUID,
        name: str,
        price: str | int | float | Decimal,
        now: datetime,
        description: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
    ) -> Item:
        item = cls(
            id=item_id,
            name=values.normalize_name(name),
            description=values.normalize_description(description),
            price=values.parse_price(price),
            tags=values.normalize_tags(tags),
            version=1,
            created_at=now,
            updated_at=now,
        )
        item.events.append(
            ItemCreated(
                item_id=item.id,
                version=1,
                occurred_at=now,
                name=item.name,
                description=item.description,
                price=item.price,
                tags=item.tags,
            )
        )
        return item

    def update(self, changes: dict[str, Any], *, now: datetime) -> bool:
        """Apply a partial change; return whether anything actually changed.

        `changes` holds raw values for any of the updatable fields. A value equal to the
        current one is not a change, so a PATCH that changes nothing raises no event
        and keeps the version.
        """
        self._require_live()
        unknown = set(changes) - set(UPDATABLE_FIELDS)
        if unknown:
            raise InvalidValue(sorted(unknown)[0], "field cannot be updated")
        normalized = {name: _normalize(name, raw) for name, raw in changes.items()}
        changed = {k: v for k, v in normalized.items() if getattr(self, k) != v}
        if not changed:
            return False
        for name, value in changed.items():
            setattr(self, name, value)
        self.version += 1
        self.updated_at = now
        self.events.append(
            ItemUpdated(item_id=self.id, version=self.version, occurred_at=now, changes=changed)
        )
        return True

    def delete(self, *, now: datetime) -> None:
        self._require_live()
        self.deleted = True
        self.version += 1
        self.updated_at = now
        self.events.append(ItemDeleted(item_id=self.id, version=self.version, occurred_at=now))

    def _require_live(self) -> None:
        # A deleted item has no further history: an event after ItemDeleted would be
        # one the projection must refuse.
        if self.deleted:
            raise ItemNotFound(self.id)


def _normalize(name: str, raw: Any) -> Any:
    if name == "name":
        return values.normalize_name(raw)
    if name == "description":
        return values.normalize_description(raw)
    if name == "price":
        return values.parse_price(raw)
    return values.normalize_tags(raw)
