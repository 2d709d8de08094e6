"""NATS JetStream for the relay's tests: the server the machine (and CI) runs at
127.0.0.1:4222, a stream and subject prefix of a test's own, and a consumer that reads
back everything the stream holds. A test that needs it is skipped, saying why, when
nothing answers there."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats
import orjson
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


def reachable(url: str = URL) -> bool:
    host_port = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 4222)), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Delivered:
    """One message the stream holds, in stream order."""

    sequence: int
    subject: str
    msg_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Stream:
    url: str
    name: str
    prefix: str

    def env(self) -> dict[str, str]:
        return {"NATS_URL": self.url, "NATS_STREAM": self.name, "NATS_SUBJECT_PREFIX": self.prefix}

    async def read_all(self) -> list[Delivered]:
        """Everything the stream holds now, in order (an ordered consumer from the start)."""
        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            try:
                info = await js.stream_info(self.name)
            except NotFoundError:
                return []
            total = info.state.messages
            sub = await js.subscribe(
                f"{self.prefix}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            found: list[Delivered] = []
            while len(found) < total:
                msg = await sub.next_msg(timeout=5)
                headers = msg.headers or {}
                found.append(
                    Delivered(
                        msg.metadata.sequence.stream,
                        msg.subject,
                        headers.get("Nats-Msg-Id", ""),
                        orjson.loads(msg.data),
                    )
                )
            await sub.unsubscribe()
            return found
        finally:
            await client.close()


@asynccontextmanager
async def own_stream(url: str = URL) -> AsyncIterator[Stream]:
    """A stream name and subject prefix no other test uses; the stream is deleted after."""
    tag = uuid.uuid4().hex[:10]
    stream = Stream(url, f"T{tag}", f"t{tag}.events")
    try:
        yield stream
    finally:
        client = await nats.connect(url)
        try:
            try:
                await client.jetstream().delete_stream(stream.name)
            except NotFoundError:
                pass
        finally:
            await client.close()
