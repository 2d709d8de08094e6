"""When this process can answer: what /readyz reports, what the API's lifespan waits for
before uvicorn accepts its first connection, and what `items grpc` waits for before its
health service says SERVING. Here, beside the container, so both entry points share it.

Reads need Redis, a live read model and, when this process runs the projector (the
default), that projector caught up with every write committed before the process
started: otherwise an acknowledged item would read 404 and a token read 503 for the
seconds the projector takes to start. The view cache must also follow the change
notices, which writes wait on (Container.write_visible). Writes need PostgreSQL, which
/readyz checks too but the start does not wait for: reads go on without it.

With PROJECTOR_IN_PROCESS=false readiness does not depend on a projector elsewhere: one
stalled projector would take every API process out of rotation at once. For the same
reason the projection's lag fails the read_model check only when READY_MAX_LAG_SECONDS
asks for it (default 0, off): a deployment that would rather answer 503 than serve views
more than that many seconds old turns it on.
"""

from __future__ import annotations

import asyncio
import time

from app.bootstrap.container import Container

CHECK_TIMEOUT = 2.0  # seconds any one check may take
POLL = 0.05  # seconds between two looks while the start waits


class Readiness:
    def __init__(self, container: Container) -> None:
        self._c = container
        # Once the projector here has caught up, it stays so for readiness: its lag from
        # then on is a matter for monitoring, not for taking this process out of rotation.
        self._projecting = not container.settings.projector_in_process
        self._head: int | None = None  # the head of the log when the start began

    async def checks(self) -> dict[str, str]:
        """Each check by name: "ok", or what is wrong (a failure names its exception)."""
        probes = {
            "postgres": self._postgres,
            "redis": self._redis,
            "read_model": self._read_model,
        }
        if self._c.settings.projector_in_process:
            probes["projector"] = self._projector
        results = await asyncio.gather(
            *(asyncio.wait_for(probe(), CHECK_TIMEOUT) for probe in probes.values()),
            return_exceptions=True,
        )
        return {
            name: (r if isinstance(r, str) else f"failed: {type(r).__name__}: {r}".strip(": "))
            for name, r in zip(probes, results, strict=True)
        }

    async def wait(self, within: float) -> dict[str, str]:
        """Wait until reads can be answered (every check but postgres passes and the
        change notices are followed), for `within` seconds at most; returns what still
        fails ({} when ready)."""
        deadline = time.monotonic() + within
        while True:
            checks = await self.checks()
            failing = {k: v for k, v in checks.items() if v != "ok" and k != "postgres"}
            if not self._c.view_cache.following:
                failing["notices"] = "not yet subscribed to the change notices"
            if not failing or time.monotonic() >= deadline:
                return failing
            await asyncio.sleep(POLL)

    async def _postgres(self) -> str:
        await self._c.database.ping()
        return "ok"

    async def _redis(self) -> str:
        await self._c.redis.ping()
        return "ok"

    async def _read_model(self) -> str:
        if not await self._c.read_model.ready():
            return "missing: being restored"
        bound = self._c.settings.ready_max_lag_seconds
        if bound > 0:
            lag = await self._c.projection_lag_seconds()
            if lag > bound:
                return f"lagging: {lag:.1f}s behind the event log (READY_MAX_LAG_SECONDS={bound:g})"
        return "ok"

    async def _projector(self) -> str:
        head, unowned = await self._c.projector_status()
        if unowned:
            # After the start too: while a projector child that died is started again,
            # nothing is projected, and a 200 then would be a lie (issue 18).
            return f"starting: {unowned} partition(s) have no projector yet"
        if self._projecting:
            return "ok"
        if self._head is None:
            self._head = head
        positions = await self._c.read_model.positions()
        low = min(cp if generation is not None else -1 for _, generation, cp in positions)
        if low < self._head:
            return f"catching up: at position {max(low, 0)} of {self._head}"
        self._projecting = True
        return "ok"
