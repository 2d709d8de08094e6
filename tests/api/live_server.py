"""The service as a real process: `items serve` (uvicorn, in-process projector) on a free
port, with its own database, for the tests that need real HTTP on a real socket.

Its own database, not the session's: its projector holds the advisory lock of the
database it projects, and the tests' in-process projectors must keep theirs.
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
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from redis import Redis

from app.cli import migrate
from app.infrastructure.settings import asyncpg_dsn

ITEMS = str(Path(sys.executable).with_name("items"))
SECRET = "live-server-secret-0123456789"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


@contextlib.contextmanager
def own_database(admin_url: str) -> Iterator[str]:
    """A new database on the test PostgreSQL, migrated to head; dropped afterwards."""
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
        migrate(url)
        yield url
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def serving(database_url: str, redis_url: str, **extra_env: str) -> Iterator[LiveServer]:
    """`items serve` until the block ends; fails with the server's output if it does
    not become ready. Its Redis keys are deleted afterwards."""
    port = free_port()
    prefix = f"live{uuid.uuid4().hex[:10]}"
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
