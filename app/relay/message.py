"""An event of the log as the relay publishes it: subject, Nats-Msg-Id and JSON body."""

from __future__ import annotations

import orjson

from app.projection.ports import StoredEvent
from app.queries.views import format_time
from app.relay.ports import Message


def message(event: StoredEvent, prefix: str) -> Message:
    body = orjson.dumps(
        {
            "event_id": str(event.event_id),
            "type": event.type,
            "item_id": str(event.item_id),
            "version": event.version,
            "position": event.position,
            "occurred_at": format_time(event.occurred_at),
            # The payload exactly as the outbox stores it (app/commands/outbox.py): JSON
            # text from PostgreSQL, spliced in rather than parsed and written again.
            "data": orjson.Fragment(event.payload),
        }
    )
    return Message(
        subject=f"{prefix}.{event.item_id}",
        msg_id=str(event.event_id),
        body=body,
        version=event.version,
    )
