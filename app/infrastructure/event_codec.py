"""Domain events to and from the JSON payload stored in the events table."""

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.domain.events import EVENT_TYPES, Event, ItemCreated, ItemDeleted, ItemUpdated


def to_payload(event: Event) -> dict[str, Any]:
    if isinstance(event, ItemCreated):
        return {
            "name": event.name,
            "description": event.description,
            "price": str(event.price),
            "tags": list(event.tags),
        }
    if isinstance(event, ItemUpdated):
        return {"changes": {k: _encode(k, v) for k, v in event.changes.items()}}
    if isinstance(event, ItemDeleted):
        return {}
    raise TypeError(f"unknown event {type(event).__name__}")


def from_record(
    *,
    type_name: str,
    payload: dict[str, Any],
    item_id: UUID,
    version: int,
    occurred_at: datetime,
    event_id: UUID,
) -> Event:
    """Rebuild a domain event; raises KeyError/TypeError/ValueError on a corrupt record."""
    cls = EVENT_TYPES[type_name]
    common: dict[str, Any] = {
        "item_id": item_id,
        "version": version,
        "occurred_at": occurred_at,
        "event_id": event_id,
    }
    if cls is ItemCreated:
        return ItemCreated(
            **common,
            name=str(payload["name"]),
            description=payload["description"],
            price=Decimal(payload["price"]),
            tags=tuple(payload["tags"]),
        )
    if cls is ItemUpdated:
        changes = payload["changes"]
        if not isinstance(changes, dict):
            raise TypeError("changes must be an object")
        return ItemUpdated(**common, changes={k: _decode(k, v) for k, v in changes.items()})
    return ItemDeleted(**common)


def _encode(name: str, value: Any) -> Any:
    if name == "price":
        return str(value)
    if name == "tags":
        return list(value)
    return value


def _decode(name: str, value: Any) -> Any:
    if name == "price":
        return Decimal(value)
    if name == "tags":
        return tuple(value)
    if name not in ("name", "description"):
        raise ValueError(f"unknown field {name!r} in ItemUpdated")
    return value
