"""uvicorn's httptools protocol, with bounds at the HTTP edge and its refusals worded as
problem+json.

Why: what reaches the app is bounded by the app (LimitBody, the routes), but uvicorn's
protocol itself bounds nothing. Measured on main before this: 10 sockets sending 20 MB
of unterminated headers took the API from 98 to 318 MB of RSS (271 MB still held after
they closed) and /healthz took 2 s meanwhile; a socket that trickled its headers or
sent a short body was never closed (slowloris); a GET took a 10 MB chunked body. So
here, per connection:

- the header block (request line and headers) is at most MAX_HEAD bytes (414 for a
  request line past it, else 431) and must arrive within HEAD_TIMEOUT seconds of its
  first byte (408);
- a body is at most MAX_BODY bytes whatever its framing (413; the app's own limit,
  so the app's 413 usually comes first), must arrive within BODY_TIMEOUT (408), and a
  GET, HEAD or OPTIONS has none (413);
- a connection that sends nothing is closed after uvicorn's keep-alive timeout (it
  was only armed after a first answer), and one whose client stops reading our answer
  for SEND_TIMEOUT is dropped;
- HTTP/1.1 without exactly one Host is 400 (RFC 9112, 3.2);
- bytes the parser cannot read after a valid request in the same packet do not cost
  that request its answer: the 400 follows it, then the connection closes;
- a close while the client may still be sending (an answer before the body was read,
  such as a 413 on the declared Content-Length, or a refusal mid-header) lingers, as
  nginx's lingering_close does: our side is shut for writing, and what still arrives is
  read and dropped, up to LINGER_BYTES or LINGER_TIME, before the socket is closed.
  Closing with unread bytes makes the kernel send RST, and a client still sending its
  body then loses the answer (seen in CI: a 70 KB PATCH got ConnectionResetError, not
  its 413).

The refusals, like the parser's own (a Content-Length that is no number, a NUL in a
header, ...), are RFC 9457 problem+json as every other error of this service, with
`connection: close` and uvicorn's default headers (date, server). Bytes are counted as
they arrive, before the parser buffers them; the common request (one packet, no body)
arms no timer. It overrides methods of uvicorn's protocol, so a uvicorn upgrade could
move them: tests/api/test_hostile_http.py and test_http_edge.py check the answers on a
socket against a real `items serve`.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.http_transport import LINGER_BYTES, LINGER_TIME, Transport
from app.api.middleware import MAX_BODY
from app.api.problems import problem

MAX_HEAD = 64 * 1024  # nginx allows 4 x 8 KiB header lines; 64 KiB in all is generous
HEAD_TIMEOUT = 5.0
BODY_TIMEOUT = 10.0  # 64 KiB in 10 s is 6.5 KB/s: slower than any real client
SEND_TIMEOUT = 30.0
NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class _Refuse(Exception):
    def __init__(self, status: int, detail: str, slug: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.slug = status, detail, slug


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between two requests, or inside a header block
        self._head_bytes = 0
        self._body_bytes = 0
        self._timer: asyncio.TimerHandle | None = None  # the head's or the body's deadline
        self._send_timer: asyncio.TimerHandle | None = None
        self._refusal: _Refuse | None = None  # to send once the answers in hand are sent
        self._done = False  # refused: nothing more is read
        self._linger: asyncio.TimerHandle | None = None  # the deadline of a lingering close
        self._linger_left = LINGER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        super().connection_made(cast(asyncio.Transport, Transport(transport, self)))
        # uvicorn arms its keep-alive timeout only after an answer: a socket that
        # never sends a byte would be held forever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:  # answered and shut: dropped, within the bound
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self._raw.close()
            return
        self._unset_keepalive_if_required()
        while data and not self._done:
            if self._in_head:
                room = MAX_HEAD - self._head_bytes
                if room <= 0:
                    self._refuse_head()
                    return
                if len(data) <= room:  # the common case: no copies
                    piece, data = data, b""
                else:
                    piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError as exc:
                cause = exc.__context__
                if isinstance(cause, _Refuse):
                    self._refuse(cause)
                else:
                    self.logger.warning("Invalid HTTP request received.")
                    self._refuse(_Refuse(400, str(exc) or "invalid HTTP", "malformed-http"))
                return
        if self._done or self._timer is not None:
            return
        if self._in_head and self._head_bytes:
            self._arm(HEAD_TIMEOUT, 408, "the request's headers did not arrive in time")
        elif not self._in_head:
            self._arm(BODY_TIMEOUT, 408, "the request's body did not arrive in time")

    def on_headers_complete(self) -> None:
        hosts = 0
        has_body = False
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                has_body = has_body or value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
        if hosts != 1 and self.parser.get_http_version() == "1.1":
            raise _Refuse(400, "an HTTP/1.1 request needs exactly one Host header", "missing-host")
        method = self.parser.get_method().decode("ascii", "replace")
        if has_body and method in NO_BODY:
            raise _Refuse(413, f"a {method} request carries no body here", "body-too-large")
        self._in_head, self._head_bytes, self._body_bytes = False, 0, 0
        self._cancel_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY:
            raise _Refuse(413, f"the request body is larger than {MAX_BODY} bytes",
                          "body-too-large")  # fmt: skip
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._refusal is not None and not self.pipeline:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            if self._in_head:
                self._send_problem(self._refusal)  # the bytes after the answered requests
            else:
                self.transport.close()  # the refused request is the one just answered
            return
        super().on_response_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(SEND_TIMEOUT, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def shutdown(self) -> None:
        if self._linger is not None:
            self._raw.close()  # the server stops: no more waiting for this client
        else:
            super().shutdown()

    def send_400_response(self, msg: str) -> None:
        self._refuse(_Refuse(400, f"the HTTP request could not be parsed: {msg}",
                             "malformed-http"))  # fmt: skip

    # -- closing -------------------------------------------------------------------------

    @property
    def lingering(self) -> bool:
        return self._linger is not None

    def close(self) -> None:
        """Close the connection; lingering if the client may still be sending: inside a
        request (its head or body not all read), or after a refusal."""
        raw = self._raw
        if self._linger is not None or raw.is_closing():
            return
        between_requests = self._in_head and not self._head_bytes and not self._done
        if between_requests or not raw.can_write_eof():
            raw.close()
            return
        self._cancel_timer()
        self._linger = self.loop.call_later(LINGER_TIME, raw.close)
        raw.write_eof()  # the answer goes out, then our FIN: the client sees its end
        self.flow.resume_reading()

    # -- refusals ------------------------------------------------------------------------

    def _refuse_head(self) -> None:
        if self.headers is None or not self.headers:
            self._refuse(_Refuse(414, f"the request line is longer than {MAX_HEAD} bytes",
                                 "uri-too-long"))  # fmt: skip
        else:
            self._refuse(_Refuse(431, f"the header block is larger than {MAX_HEAD} bytes",
                                 "headers-too-large"))  # fmt: skip

    def _refuse(self, refusal: _Refuse) -> None:
        """Answer `refusal` and close; after the answers still owed, if any (a valid
        request before the bad bytes keeps its answer)."""
        self._done = True
        self._cancel_timer()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self._in_head or cycle is None:
                self._send_problem(refusal)
            else:
                self.transport.close()  # its request was answered already (say, a 413)
            return
        if cycle.response_started or not cycle.more_body or self.pipeline:
            self._refusal = refusal  # sent by on_response_complete, after the answers
            self.flow.pause_reading()
            return
        # The app still waits for this request's body: it gets a disconnect, and
        # whatever it answers after that is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        self._send_problem(refusal)

    def _send_problem(self, refusal: _Refuse) -> None:
        status = refusal.status
        answer = problem(status, refusal.detail, slug=refusal.slug)
        content = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        # uvicorn's own (date, server), then the answer's (content-type, -length).
        for name, value in [*self.server_state.default_headers, *answer.raw_headers]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"connection: close\r\n\r\n", bytes(answer.body)])
        self.transport.write(b"".join(content))
        self.transport.close()

    # -- timers --------------------------------------------------------------------------

    def _arm(self, seconds: float, status: int, detail: str) -> None:
        def expired() -> None:
            self._timer = None
            if self.flow.read_paused:  # we stopped reading, not the client sending
                self._arm(seconds, status, detail)
            elif not self._done and not self.transport.is_closing():
                self._refuse(_Refuse(status, detail, "request-timeout"))

        self._timer = self.loop.call_later(seconds, expired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_timers(self) -> None:
        self._cancel_timer()
        for timer in (self._send_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._send_timer = None
