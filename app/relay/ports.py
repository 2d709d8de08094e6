"""What the relay needs from PostgreSQL (its checkpoint and lease) and from the broker,
and the message that crosses to the broker. The event log itself is the projection's
port (app/projection/ports.py): the relay reads it the same way, gap guard included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    subject: str  # <prefix>.<item_id>
    msg_id: str  # the event id: JetStream drops a second copy within its duplicate window
    body: bytes  # JSON: event_id, type, item_id, version, position, occurred_at, data
    version: int  # the item version the event produced, to tell whether it is stored


@dataclass(frozen=True)
class Held:
    position: int  # the checkpoint stored now
    # When this holder took the lease: another value than the last one seen means it was
    # lost and taken again meanwhile (another relay may have published in between).
    since: str


class Checkpoint(Protocol):
    """The relay's row for its stream, on a connection of its own. Every call that holds
    the lease renews it for the lease's length."""

    async def acquire(self) -> Held | None:
        """Take the lease if it is free, lapsed or held by a process of this host that is
        gone; renew it if held. None when another relay holds it (a standby)."""

    async def save(self, position: int) -> bool:
        """Move the checkpoint and renew the lease; False when the lease was lost."""

    async def release(self) -> None:
        """Give the lease up (at a stop): a standby takes over at once."""

    async def close(self) -> None: ...


class CheckpointConnector(Protocol):
    async def connect(self) -> Checkpoint: ...


class Broker(Protocol):
    async def prepare(self) -> None:
        """Make sure the stream exists (create it if missing) and takes the subjects, with
        a duplicate window no shorter than the relay's retry horizon."""

    async def publish(self, message: Message, within: float) -> None:
        """Publish and wait for the stream's acknowledgement; raises on anything else
        (no acknowledgement within `within` seconds, a lost connection, no stream)."""

    async def stored_version(self, subject: str, within: float) -> int | None:
        """The version of the last message the stream holds on `subject` (None: none)."""

    async def close(self) -> None: ...


class BrokerConnector(Protocol):
    async def connect(self) -> Broker: ...
