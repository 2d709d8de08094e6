"""The relay's broker: a JetStream stream on a NATS server (app/relay/ports.py's Broker).

The stream (NATS_STREAM) takes `<prefix>.>`; each event goes to `<prefix>.<item_id>` with
its event id as Nats-Msg-Id, and `publish` returns only once the stream acknowledged it
(a JetStream publish is a request: the PubAck is the answer). A stream the relay creates
gets NATS_DUPLICATE_WINDOW; one that exists must already take the subjects and keep Msg-Ids
at least RELAY_RETRY_HORIZON, or the relay refuses to start (a retry after the window
would store a second copy).
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from app.relay.ports import Message

CONNECT_TIMEOUT = 2.0
MSG_ID = "Nats-Msg-Id"


class StreamUnfit(Exception):
    """The stream exists but would lose or duplicate messages of the relay."""


class NatsBroker:
    def __init__(
        self, client: Client, stream: str, prefix: str, window: float, horizon: float
    ) -> None:
        self._client = client
        self._js: JetStreamContext = client.jetstream()
        self._stream = stream
        self._subjects = f"{prefix}.>"
        self._window = window
        self._horizon = horizon

    async def prepare(self) -> None:
        try:
            info = await self._js.stream_info(self._stream)
        except NotFoundError:
            config = StreamConfig(
                name=self._stream,
                subjects=[self._subjects],
                duplicate_window=self._window,
                storage=StorageType.FILE,
            )
            await self._js.add_stream(config)
            return
        subjects = info.config.subjects or []
        if self._subjects not in subjects:
            raise StreamUnfit(
                f"stream {self._stream} takes {subjects}, not {self._subjects} "
                "(NATS_SUBJECT_PREFIX)"
            )
        window = info.config.duplicate_window or 0.0
        if window < self._horizon:
            raise StreamUnfit(
                f"stream {self._stream} keeps Msg-Ids {window:g}s, less than the relay "
                f"retries a publish ({self._horizon:g}s, RELAY_RETRY_HORIZON)"
            )

    async def publish(self, message: Message, within: float) -> None:
        await self._js.publish(
            message.subject,
            message.body,
            timeout=within,
            stream=self._stream,
            headers={MSG_ID: message.msg_id},
        )

    async def stored_version(self, subject: str, within: float) -> int | None:
        try:
            async with asyncio.timeout(within):
                found = await self._js.get_last_msg(self._stream, subject)
        except NotFoundError:
            return None
        version = orjson.loads(found.data or b"{}").get("version")
        return int(version) if isinstance(version, int) else None

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # it may be gone already
            await self._client.close()


class NatsConnector:
    def __init__(self, url: str, stream: str, prefix: str, window: float, horizon: float) -> None:
        self._url = url
        self._args = (stream, prefix, window, horizon)

    async def connect(self) -> NatsBroker:
        client = await nats.connect(
            self._url,
            name="items-relay",
            connect_timeout=CONNECT_TIMEOUT,
            # The relay starts over on fresh connections itself (from its checkpoint):
            # a client reconnecting on its own would buffer publishes meanwhile.
            allow_reconnect=False,
        )
        return NatsBroker(client, *self._args)
