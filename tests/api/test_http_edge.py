"""The HTTP edge, on raw sockets against a real `items serve` (app/api/http_protocol.py).

What a client can do to a server before any route runs: send an endless header block,
trickle it, stall a body, send a body with a GET, leave out Host, put garbage after a
valid request, or connect and say nothing. Each is answered with a 4xx problem+json and
a close, or just closed, within its bound; meanwhile the server answers everyone else
at once.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.api import http_protocol as edge
from app.api.http_transport import LINGER_BYTES, LINGER_TIME
from tests.servers import LiveServer, own_database, serving

PROBLEM = b"application/problem+json"
GET = b"GET /api/v1/items HTTP/1.1\r\nHost: test\r\n"
KEEP_ALIVE = 5.0  # uvicorn's default timeout_keep_alive


def _socket_buffers() -> int:
    """The most the two kernels hold in flight: the client's send buffer and the
    server's receive buffer, each at the size autotuning may grow it to."""
    try:
        return sum(int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
                   for name in ("tcp_wmem", "tcp_rmem"))  # fmt: skip
    except (OSError, IndexError, ValueError):
        return 32 * 1024 * 1024


# What an endless sender gets out before it is reset: the bound itself, what the server
# drops while it lingers, and what the socket buffers took. ENDLESS is what it tries.
SENT_AT_MOST = edge.MAX_HEAD + LINGER_BYTES + _socket_buffers()
ENDLESS = 4 * SENT_AT_MOST


@pytest.fixture(scope="module")
def live(server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    admin_url, redis_url = server_urls
    with own_database(admin_url) as database_url, serving(database_url, redis_url) as server:
        yield server


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    answer = b""
    try:
        while chunk := s.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def send_until_closed(s: socket.socket, piece: bytes, most: int) -> int:
    """Send `piece` again and again, up to `most` bytes or until the server closes; how
    many bytes went out."""
    sent = 0
    try:
        while sent < most:
            s.sendall(piece)
            sent += len(piece)
    except OSError:
        return sent
    raise AssertionError(f"the server took {sent} bytes without closing")


def answers(raw: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, content type, body) of each answer in `raw`, in order."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            body, raw = rest[:size], rest[size:]
        else:  # chunked: this module's answers are small, one chunk and the last
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            body, raw = rest[:size], rest[size + 2 :].removeprefix(b"0\r\n\r\n")
        found.append((int(lines[0].split()[1]), headers.get(b"content-type", b""), body))
    return found


def exchange(server: LiveServer, request: bytes) -> list[tuple[int, bytes, bytes]]:
    with connect(server) as s:
        s.sendall(request)
        return answers(read_all(s))


def assert_problem(answer: tuple[int, bytes, bytes], status: int) -> None:
    assert answer[:2] == (status, PROBLEM), answer
    problem = json.loads(answer[2])
    assert problem["status"] == status
    assert problem["type"].startswith("urn:items:problem:"), problem


def test_an_endless_header_block_is_refused_at_its_bound(live: LiveServer) -> None:
    with connect(live) as s:
        s.sendall(GET)
        sent = send_until_closed(s, b"X-Filler: " + b"a" * 1000 + b"\r\n", ENDLESS)
        found = answers(read_all(s))
    assert sent < SENT_AT_MOST  # refused near its bound, not endlessly
    if found:  # the answer may be lost to the reset of a socket still sending
        assert_problem(found[0], 431)
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_a_long_request_line_is_414(live: LiveServer) -> None:
    line = b"GET /api/v1/items?cursor=" + b"a" * (edge.MAX_HEAD + 10) + b" HTTP/1.1\r\n"
    with connect(live) as s:
        s.sendall(line[: edge.MAX_HEAD + 1])  # the server closes once it is past the bound
        found = answers(read_all(s))
    assert_problem(found[0], 414)


def test_a_get_with_an_endless_chunked_body_is_refused(live: LiveServer) -> None:
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    with connect(live) as s:
        s.sendall(GET + b"Transfer-Encoding: chunked\r\n\r\n")
        sent = send_until_closed(s, chunk, ENDLESS)
        found = answers(read_all(s))
    assert sent < SENT_AT_MOST
    if found:
        assert_problem(found[0], 413)
    with connect(live) as s:  # the refusal itself, when the body is small enough to land
        s.sendall(GET + b"Content-Length: 5\r\n\r\nhello")
        assert_problem(answers(read_all(s))[0], 413)


@pytest.mark.parametrize("close", [b"Connection: close\r\n", b""], ids=["close", "keep-alive"])
def test_an_early_answer_reaches_a_client_still_sending_its_body(
    live: LiveServer, close: bytes
) -> None:
    """The 413 for a declared Content-Length comes before the body is read. A client
    sends its body anyway, as most do, and reads after. Closed with that body unread,
    the socket is reset and the client gets ConnectionResetError instead of its 413;
    the server lingers instead (LINGER_BYTES, LINGER_TIME)."""
    body = b" " * (LINGER_BYTES - 64 * 1024)
    for _ in range(5):
        with connect(live) as s:
            s.sendall(
                b"POST /api/v1/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + close
                + b"Content-Length: %d\r\n\r\n" % len(body)
            )
            s.sendall(body)
            raw = b""
            while chunk := s.recv(65536):  # to the server's end; a reset fails the test
                raw += chunk
        [answer] = answers(raw)
        assert_problem(answer, 413)


def test_a_websocket_upgrade_is_an_ordinary_request(live: LiveServer) -> None:
    """No route speaks WebSocket: the Upgrade is ignored and the request answered as any
    other (uvicorn's own WebSocket code would answer a bare 403 text/plain)."""
    upgrade = (
        b"Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    [answer] = exchange(live, GET + upgrade)
    assert answer[0] == 200, answer
    assert json.loads(answer[2])["items"] == []
    [answer] = exchange(live, b"GET /ws HTTP/1.1\r\nHost: test\r\n" + upgrade)
    assert answer[:2] == (404, PROBLEM), answer


def test_http_1_1_without_host_is_400_and_http_1_0_needs_none(live: LiveServer) -> None:
    [answer] = exchange(live, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert_problem(answer, 400)
    [answer] = exchange(live, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert_problem(answer, 400)
    [answer] = exchange(live, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer[0] == 200


def test_a_valid_request_followed_by_garbage_keeps_its_answer(live: LiveServer) -> None:
    found = exchange(live, GET + b"\r\n" + b"\x00\x01garbage that is no HTTP\r\n\r\n")
    assert [status for status, _, _ in found] == [200, 400], found
    assert json.loads(found[0][2])["items"] == []
    assert_problem(found[1], 400)
    # Pipelined valid requests are all answered, in order, as before.
    found = exchange(live, GET + b"\r\n" + GET + b"Connection: close\r\n\r\n")
    assert [status for status, _, _ in found] == [200, 200]


@pytest.mark.slow
def test_slow_and_idle_sockets_are_closed_within_their_bounds(live: LiveServer) -> None:
    """Slowloris: each kind of slow socket, all at once; the server answers others
    meanwhile, at once."""

    def silent() -> tuple[float, bytes]:
        with connect(live) as s:
            started = time.monotonic()
            got = read_all(s)
            return time.monotonic() - started, got

    def trickle_headers() -> tuple[float, bytes]:
        with connect(live) as s:
            started = time.monotonic()
            s.sendall(GET)
            try:
                for _ in range(40):
                    s.sendall(b"X: y\r\n")  # never the blank line
                    time.sleep(0.5)
            except OSError:
                pass
            return time.monotonic() - started, read_all(s)

    def post_stalled(rest: bytes) -> tuple[float, bytes]:
        """A POST whose body never arrives whole, after its headers end with `rest`."""
        with connect(live) as s:
            started = time.monotonic()
            s.sendall(
                b"POST /api/v1/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + rest
            )
            return time.monotonic() - started, read_all(s)

    def short_body() -> tuple[float, bytes]:
        return post_stalled(b'Content-Length: 100\r\n\r\n{"name"')

    def huge_chunk() -> tuple[float, bytes]:
        return post_stalled(b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}")

    with ThreadPoolExecutor(8) as pool:
        kinds = {
            f.__name__: pool.submit(f) for f in (silent, trickle_headers, short_body, huge_chunk)
        }
        time.sleep(1.0)
        started = time.monotonic()
        assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 0.5
        results = {name: future.result(timeout=60) for name, future in kinds.items()}

    took, raw = results["silent"]
    assert took < KEEP_ALIVE + 1.5
    assert raw == b""
    took, raw = results["trickle_headers"]
    # It goes on sending after its 408, so it is held while the server lingers.
    assert took < edge.HEAD_TIMEOUT + LINGER_TIME + 1.5
    assert_problem(answers(raw)[0], 408)
    took, raw = results["short_body"]
    assert took < edge.BODY_TIMEOUT + 1.5
    assert_problem(answers(raw)[0], 408)
    took, raw = results["huge_chunk"]
    assert took < edge.BODY_TIMEOUT + 1.5
    status = answers(raw)[0][0]
    assert status in (400, 408, 413)
    assert_problem(answers(raw)[0], status)
