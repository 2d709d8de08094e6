"""Domain events: facts in the past tense, plain frozen dataclasses of primitives.

Every event names its item and the item version it produced; versions start at 1 and
grow by exactly 1, which is what lets the projection detect replays.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4


@dataclass(frozen=True, kw_only=True)
class Event:
    item_id: UUID
    version: int
    occurred_at: datetime
    event_id: UUID = field(default_factory=uuid4)


@dataclass(frozen=True, kw_only=True)
class ItemCreated(Event):
    name: str
    description: str | None
    price: Decimal
    tags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ItemUpdated(Event):
    # Only the fields that changed, with their new values (price as Decimal, tags as
    # a sorted tuple). An update that changes nothing raises no event at all.
    changes: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ItemDeleted(Event):
    pass


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls for cls in (ItemCreated, ItemUpdated, ItemDeleted)
}
