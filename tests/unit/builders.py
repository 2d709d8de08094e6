"""Helpers shared by the unit tests: fixed times, ids and random event histories.

Histories are produced by driving the real Item aggregate, so the events have exactly
the shape the write side raises.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.commands import outbox
from app.domain.events import Event
from app.domain.model import Item
from app.projection.ports import StoredEvent

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

NAMES = ("apple", "Apple", "banana", "Banana split", "cherry", "Ärger", "zeta", "éclair", "42")
TAGS = ("red", "green", "blue", "x-1", "sale")


def at(step: int) -> datetime:
    """A distinct, increasing moment per step (microsecond resolution survives views)."""
    return T0 + timedelta(milliseconds=step, microseconds=step)


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n, version=4)


def random_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


@dataclass
class History:
    """Events in commit (position) order, and the aggregates as the write side ends."""

    events: list[Event] = field(default_factory=list)
    items: dict[uuid.UUID, Item] = field(default_factory=dict)

    @property
    def live(self) -> dict[uuid.UUID, Item]:
        return {k: v for k, v in self.items.items() if not v.deleted}


def _random_changes(rng: random.Random) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if rng.random() < 0.5:
        changes["name"] = rng.choice(NAMES)
    if rng.random() < 0.3:
        changes["description"] = rng.choice([None, "", "plain", "two\nlines"])
    if rng.random() < 0.5:
        changes["price"] = str(Decimal(rng.randrange(0, 100_000)) / 100)
    if rng.random() < 0.4:
        changes["tags"] = rng.sample(TAGS, rng.randrange(0, len(TAGS) + 1))
    return changes


def random_history(rng: random.Random, commands: int) -> History:
    """A random sequence of create / update / delete commands and the events raised."""
    history = History()
    for step in range(commands):
        now = at(step)
        live = sorted(history.live)
        roll = rng.random()
        if not live or roll < 0.3:
            item = Item.create(
                item_id=random_uuid(rng),
                name=rng.choice(NAMES),
                price=str(Decimal(rng.randrange(0, 100_000)) / 100),
                description=rng.choice([None, "a description"]),
                tags=rng.sample(TAGS, rng.randrange(0, 3)),
                now=now,
            )
            history.items[item.id] = item
        else:
            item = history.items[rng.choice(live)]
            if roll < 0.85:
                item.update(_random_changes(rng), now=now)  # may change nothing
            else:
                item.delete(now=now)
        history.events += item.events
        item.events.clear()
    return history


def cut(rng: random.Random, events: list[Event]) -> list[list[Event]]:
    """Split `events` into random contiguous, non-empty batches."""
    batches: list[list[Event]] = []
    i = 0
    while i < len(events):
        size = rng.randint(1, 8)
        batches.append(events[i : i + size])
        i += size
    return batches


def stored(events: list[Event], start: int = 1) -> list[StoredEvent]:
    """The events as the event log hands them out: positions `start`, `start` + 1, ...
    and JSON payloads."""
    return [
        StoredEvent(
            position=n,
            event_id=e.event_id,
            item_id=e.item_id,
            version=e.version,
            type=type(e).__name__,
            payload=outbox.payload_text(e),
            occurred_at=e.occurred_at,
        )
        for n, e in enumerate(events, start=start)
    ]
