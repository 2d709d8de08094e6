"""Real `items` processes for the fault tests and the soak: start, signal, wait, read logs.

Every process gets the test's PostgreSQL database, Redis and key prefix through the
environment, exactly as an operator would start it, and writes its output to a file so
a failing test can show what the process said.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from types import TracebackType

import httpx

from app.infrastructure.settings import Settings

ITEMS = str(Path(sys.executable).with_name("items"))

# Every setting read from the environment: none may leak from the caller's shell (say
# API_KEYS) into a process under test; each test says what it wants.
_SETTINGS = {name.upper() for name in Settings.model_fields}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_application_name(database_url: str, name: str) -> str:
    """The URL with `application_name` set: it shows in pg_stat_activity, so a test can
    tell which process holds the projector's advisory lock."""
    joiner = "&" if "?" in database_url else "?"
    return f"{database_url}{joiner}application_name={name}"


def items_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of an `items` process on the settings' servers and key prefix."""
    database_url, redis_url = settings.require_urls()
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=settings.redis_prefix,
        SECRET_KEY=settings.secret_key.get_secret_value(),
        PROJECTION_PARTITIONS=str(settings.projection_partitions),
        PROJECTOR_BATCH_SIZE=str(settings.projector_batch_size),
        PROJECTOR_POLL_INTERVAL="0.2",
        LOG_LEVEL="info",
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

    async def start(self, name: str, args: list[str], env: dict[str, str]) -> ItemsProcess:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                ITEMS, *args, env=env, cwd=self.log_dir, stdout=out, stderr=out
            )
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
