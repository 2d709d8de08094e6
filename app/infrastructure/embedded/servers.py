"""The servers of one DATA_DIR as a unit: started once, shared, reaped."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.infrastructure.embedded.processes import alive, describe, read_pid, terminate
from app.infrastructure.embedded.stores import EmbeddedRedis, start_postgres, stop_postgres

REAP_EVERY = 0.5  # seconds between two looks of the reaper at the clients
GRACE = 2.0  # seconds with no client before the reaper stops the servers


class EmbeddedServers:
    """The embedded servers of one DATA_DIR, shared by every `items` process on it."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).resolve()
        self.dir = self.root / "servers"
        self.clients = self.dir / "clients"
        self.redis = EmbeddedRedis(self.root, persistent=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.clients.mkdir(parents=True, exist_ok=True)
        with (self.dir / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def attach(self, *, postgres: bool = True, redis: bool = True) -> dict[str, str]:
        """Start what is not running (and the reaper), register this process as a client
        until it exits, and return the environment that names the servers."""
        with self._locked():
            env: dict[str, str] = {}
            if postgres:
                env["DATABASE_URL"] = start_postgres(self.root, stop_at_exit=False)
            if redis:
                env["REDIS_URL"] = self.redis.start(detached=True)
            self._ensure_reaper()
            me = self.clients / str(os.getpid())
            me.write_text(json.dumps(describe(os.getpid())))
        atexit.register(me.unlink, missing_ok=True)
        return env

    def secret_key(self) -> str:
        """A signing key made once for this DATA_DIR and kept in it (mode 0600)."""
        path = self.root / "secret_key"
        with self._locked():
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def live_clients(self) -> list[dict[str, Any]]:
        """The registered clients still running (the files of dead ones are removed)."""
        found = []
        for path in sorted(self.clients.glob("*")) if self.clients.exists() else []:
            with contextlib.suppress(OSError, ValueError):
                client = json.loads(path.read_text())
                if describe(int(client["pid"])).get("started") == client.get("started"):
                    found.append(client)
                    continue
                path.unlink(missing_ok=True)
        return found

    def status(self) -> dict[str, Any]:
        pg_pid = read_pid(self.root / "pg" / "postmaster.pid")
        return {
            "data_dir": str(self.root),
            "postgres": {"pid": pg_pid, "running": pg_pid is not None and alive(pg_pid)},
            "redis": {
                "pid": read_pid(self.redis.dir / "redis.pid"),
                "running": self.redis.running(),
                "url": self.redis.url,
            },
            "reaper": {"pid": self._reaper_pid()},
            "clients": self.live_clients(),
        }

    def stop(self) -> None:
        """Stop both servers and the reaper, whoever still uses them."""
        with self._locked():
            reaper = self._reaper_pid()
            if reaper is not None and reaper != os.getpid():
                terminate(reaper, wait=5)
            self._stop_servers()

    def _stop_servers(self) -> None:
        self.redis.stop()
        stop_postgres(self.root)
        (self.dir / "reaper.pid").unlink(missing_ok=True)

    def _reaper_pid(self) -> int | None:
        pid = read_pid(self.dir / "reaper.pid")
        return pid if pid is not None and alive(pid) else None

    def _ensure_reaper(self) -> None:
        if self._reaper_pid() is not None:
            return
        log = (self.dir / "reaper.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.infrastructure.embedded", "reap", str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        (self.dir / "reaper.pid").write_text(str(process.pid))

    def reap(self) -> None:
        """The reaper's loop: stop the servers once no client has been alive for GRACE."""
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        idle_since: float | None = None
        while True:
            time.sleep(REAP_EVERY)
            if self.live_clients():
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since < GRACE:
                continue
            with self._locked():
                if self.live_clients():  # one attached meanwhile
                    idle_since = None
                    continue
                self._stop_servers()
                return
