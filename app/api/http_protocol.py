"""uvicorn's httptools protocol, with its own refusals worded as problem+json.

Why: a request the HTTP parser cannot read (a Content-Length that is no number, both
Content-Length and chunked, a NUL in a header, ...) never reaches the app; uvicorn
answers it itself with a plain-text 400. Every other error of this service is RFC 9457
problem+json, and a client should not need a second error format for these. Only the
answer's format changes: the status, `connection: close` and uvicorn's default headers
(date, server) stay as uvicorn sends them.

It overrides one method of uvicorn's protocol (`send_400_response`), so a uvicorn
upgrade could move it: tests/api/test_hostile_http.py checks the answers on a socket.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.problems import problem


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        answer = problem(400, f"the HTTP request could not be parsed: {msg}", slug="malformed-http")
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        # uvicorn's own (date, server), then the answer's (content-type, -length).
        for name, value in [*self.server_state.default_headers, *answer.raw_headers]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"connection: close\r\n\r\n", bytes(answer.body)])
        self.transport.write(b"".join(content))
        self.transport.close()
