"""The transport of a connection as uvicorn's protocol sees it (app/api/http_protocol.py):
the socket's own, but for close(), which the protocol decides, since it may linger.

uvicorn closes the transport itself from several places (the end of an answer to a
`Connection: close` request, the keep-alive timeout, shutdown): this is where they all
meet. A close while the client may still be sending lingers, as nginx's lingering_close
does: closing a socket with unread bytes makes the kernel send RST, and a client still
sending its body then loses the answer it was sent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

LINGER_BYTES = 1024 * 1024  # what a refused client may still send before it is reset
LINGER_TIME = 2.0  # nginx lingers up to 30 s; a client on any real link sends 1 MiB in 2


class Closer(Protocol):
    """What decides the close: the protocol."""

    @property
    def lingering(self) -> bool: ...

    def close(self) -> None: ...


class Transport:
    """`transport`, whose close() is `protocol`'s. The calls of every request are the
    transport's own, bound once: no extra frame on the hot path; the rest pass through
    __getattr__."""

    def __init__(self, transport: asyncio.Transport, protocol: Closer) -> None:
        self._transport = transport
        self._protocol = protocol
        self.write = transport.write
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, abort, set_protocol, ...
        return getattr(self._transport, name)
