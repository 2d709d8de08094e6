"""What an event looks like in the outbox (the events table): its JSON payload.

The unit of work appends the events a command raised with `payload_text`, in the
command's own transaction; the projector reads them back with `decode`. Both sides of
that contract live here, so the stored form is written down once.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

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


def payload_text(event: Event) -> str:
    """The payload column's text (JSON) for an event about to be appended."""
    return orjson.dumps(to_payload(event)).decode()


def decode(
    *,
    type_name: str,
    payload: str,
    item_id: UUID,
    version: int,
    occurred_at: datetime,
    event_id: UUID,
) -> Event:
    """A domain event from its stored row; raises KeyError/TypeError/ValueError (an
    orjson.JSONDecodeError is a ValueError) on a corrupt record."""
    data: Any = orjson.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("payload must be a JSON object")
    return from_record(
        type_name=type_name,
        payload=data,
        item_id=item_id,
        version=version,
        occurred_at=occurred_at,
        event_id=event_id,
    )


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
