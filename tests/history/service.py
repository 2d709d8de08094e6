"""The service under test, started the way users run it, on the run's own servers.

Two setups:

- `single`: one `items serve` with its projector in a child process (the default);
- `workers`: `items serve --workers 2` with PROJECTOR_IN_PROCESS=false, four
  partitions, and two `items projector` processes dividing them.

Every process reaches PostgreSQL through the run's PgProxy (so connections can be cut
and frozen) and Redis on the run's own RedisServer (so it can be restarted empty or
stopped). The runner itself reads PostgreSQL directly, bypassing the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import psutil

from app.settings import Settings
from tests.history.proxy import ProxyProcess
from tests.servers import (
    SECRET,
    ItemsProcess,
    RedisServer,
    Spawner,
    free_port,
    items_env,
    wait_ready,
)

SETUPS = ("single", "workers")
READY_WITHIN = 90.0  # seconds; a start on a busy 2-core machine took over 30
OWNERS = """
SELECT owner_pid FROM projection_owners
WHERE read_model = $1 AND owner IS NOT NULL AND lease_until > now()
"""


@dataclass
class Service:
    setup: str
    spawn: Spawner
    env: dict[str, str]
    port: int
    redis: RedisServer
    proxy: ProxyProcess
    dsn: str  # the run's own database, directly
    prefix: str
    partitions: int
    serve: ItemsProcess | None = None
    projectors: list[ItemsProcess] = field(default_factory=list)
    restarts: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.setup == "single":
            await self._serve()
        else:
            # The projectors first: the API is ready once the read model is live, and
            # with PROJECTOR_IN_PROCESS=false they make it so.
            self.projectors = [
                await self.spawn.start(f"projector{n}", ["projector"], self.projector_env)
                for n in range(2)
            ]
            await self._serve("--workers", "2")
        await self.owned(within=READY_WITHIN)

    @property
    def projector_env(self) -> dict[str, str]:
        return {**self.env, "LOG_LEVEL": "info"}  # which partitions, when: a line each

    async def _serve(self, *args: str) -> None:
        command = ["serve", "--port", str(self.port), *args]
        self.serve = await self.spawn.start("serve", command, self.env)
        try:
            await wait_ready(self.base_url, self.serve, within=READY_WITHIN)
        except AssertionError as exc:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
                with contextlib.suppress(httpx.HTTPError):
                    said = (await client.get("/readyz")).text
                    raise AssertionError(f"{exc}\n/readyz: {said}") from None
            raise

    async def owners(self) -> list[int]:
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return [r["owner_pid"] for r in await conn.fetch(OWNERS, self.prefix)]
        finally:
            await conn.close()

    async def owned(self, within: float, without: frozenset[int] = frozenset()) -> float:
        """Seconds until every partition is held by a live projector not in `without`."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            pids = await self.owners()
            if len(pids) == self.partitions and not set(pids) & without:
                return time.monotonic() - started
            await asyncio.sleep(0.02)
        raise AssertionError(f"partitions not owned within {within}s")

    # -- process faults ----------------------------------------------------------------------

    async def kill_projector(self) -> dict[str, Any]:
        if self.setup == "single":
            victims = set(await self.owners())
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            owned_again = await self.owned(15, frozenset(victims))
            return {"killed": sorted(victims), "owned_again": owned_again}
        victim = self.projectors[0]
        await victim.kill()
        owned_again = await self.owned(15, frozenset({victim.pid}))
        self.restarts.append(asyncio.create_task(self._restart_projector(victim)))
        return {"killed": [victim.pid], "owned_again": owned_again}

    async def _restart_projector(self, dead: ItemsProcess) -> None:
        await asyncio.sleep(1.0)  # a supervisor (systemd, compose) starting it again
        index = self.projectors.index(dead)
        self.projectors[index] = await self.spawn.start(
            f"projector{index}", ["projector"], self.projector_env
        )

    async def kill_api(self) -> dict[str, Any]:
        assert self.serve is not None
        if self.setup == "single":
            killed = self.serve.pid
            started = time.monotonic()
            await self.serve.kill()
            await self._serve()
            return {"killed": [killed], "restarted_in": time.monotonic() - started}
        workers = self.workers()
        os.kill(workers[0], signal.SIGKILL)
        started = time.monotonic()
        while time.monotonic() - started < 15:
            now = self.workers()
            if len(now) == 2 and workers[0] not in now:
                break
            await asyncio.sleep(0.05)
        return {"killed": [workers[0]], "replaced_in": time.monotonic() - started}

    def workers(self) -> list[int]:
        assert self.serve is not None
        found = []
        for child in psutil.Process(self.serve.pid).children():
            with contextlib.suppress(psutil.Error):  # gone, or a zombie not reaped yet
                if _is_worker(" ".join(child.cmdline())):
                    found.append(child.pid)
        return found

    async def close(self) -> None:
        """SIGTERM everything (uvicorn's supervisor then stops its workers, which a
        SIGKILL would leave running); the Spawner kills whatever still runs."""
        for task in self.restarts:
            await task
        for process in [self.serve, *self.projectors]:
            if process is not None and process.running:
                with contextlib.suppress(AssertionError):
                    await process.stop(within=20)


def _is_worker(cmdline: str) -> bool:
    """uvicorn spawns its workers; they call themselves `items: api worker` only when
    they share the supervisor's projector (not with PROJECTOR_IN_PROCESS=false)."""
    return "api worker" in cmdline or "spawn_main" in cmdline


def service(
    setup: str,
    spawn: Spawner,
    direct_dsn: str,
    redis: RedisServer,
    proxy: ProxyProcess,
    prefix: str,
) -> Service:
    """The `setup` on these servers (not started yet)."""
    partitions = 1 if setup == "single" else 4
    settings = Settings(
        database_url=proxy.url,
        redis_url=redis.url,
        redis_prefix=prefix,
        secret_key=SECRET,
        projection_partitions=partitions,
        _env_file=None,
    )
    env = items_env(
        settings,
        PROJECTOR_IN_PROCESS="true" if setup == "single" else "false",
        LOG_LEVEL="warning",
        API_KEYS="",
        READ_REQUIRES_KEY="false",
    )
    return Service(setup, spawn, env, free_port(), redis, proxy, direct_dsn, prefix, partitions)
