"""The fault schedule of a history run, and each fault.

One fault at a time, in an order drawn from the seed: injected, held for HOLD seconds
(or as long as it takes, for a restart, a rebuild, the dead-letter drill), healed, then
GAP seconds of calm in which recovery is measured, and the next. A fault's `end` is
when it was healed (for a SIGKILL, the kill itself: the service heals on its own; for
the one API process of the `single` setup, once it was started again and ready).
Faults reach only the run's own servers: its RedisServer, its PgProxy, and backends of
its own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx

from tests.history.history import Fault
from tests.history.service import Service
from tests.history.sessions import Recorder
from tests.servers import run_items

FAULTS = (
    "kill-projector",
    "kill-api",
    "redis-restart-empty",
    "redis-sigstop",
    "pg-cut",
    "pg-freeze",
    "pg-terminate-backend",
    "slow-clients",
    "rebuild",
    "dead-letter",
)
BACKGROUND = ("rebuild", "dead-letter")
HOLD = 1.5
GAP = 2.5  # recovery is measured in it: longer ones show as censored ("+")
WARM_UP = 2.0
TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


def plan(seed: int, names: tuple[str, ...] = FAULTS, setup: str = "workers") -> list[str]:
    """The faults in the order of this seed. In the `single` setup the API's SIGKILL
    comes last: its one process must be started again (12-18 s on the loaded 2-core
    machine, nearly all of it a new Python process importing), which anywhere else in
    the order left no room in 60 s for the faults after it."""
    order = list(names)
    random.Random(seed).shuffle(order)
    if setup == "single" and "kill-api" in order:
        order.remove("kill-api")
        order.append("kill-api")
    return order


async def run_schedule(
    kit: Kit, rec: Recorder, names: list[str], until: float, gap: float = GAP
) -> list[Fault]:
    """Each fault that still fits before `until`; the faults as injected. A rebuild and
    the dead-letter drill take seconds of their own (an `items` command each) and run in
    the background while the schedule goes on; their `end` is when they finished."""
    faults: list[Fault] = []
    await asyncio.sleep(WARM_UP)
    for name in names:
        if rec.now() + kit.hold + gap > until:
            break
        fault = Fault(name, rec.now(), rec.now())
        faults.append(fault)
        running = asyncio.create_task(_inject(kit, rec, fault))
        if name in BACKGROUND:
            kit.background.append(running)
            await asyncio.sleep(kit.hold)
        else:
            await running
        await asyncio.sleep(gap)
    return faults


async def _inject(kit: Kit, rec: Recorder, fault: Fault) -> None:
    fault.details = await getattr(kit, fault.name.replace("-", "_"))()
    fault.end = rec.now() - float(fault.details.pop("_ended_ago", 0.0))


class Kit:
    def __init__(self, svc: Service, hold: float) -> None:
        self.svc = svc
        self.hold = hold
        self.held: list[asyncio.Task[None]] = []  # slow sockets, closed by the server
        self.stop = threading.Event()
        # Their own threads: each blocks for as long as its socket is held, and the
        # default pool (a few threads) would make the other faults wait behind them.
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="slow-client")
        self.victims: set[str] = set()  # items written by a fault, not by a session
        self.background: list[asyncio.Task[None]] = []

    async def kill_projector(self) -> dict[str, Any]:
        details = await self.svc.kill_projector()
        details["_ended_ago"] = details["owned_again"]  # the kill was the fault
        return details

    async def kill_api(self) -> dict[str, Any]:
        details = await self.svc.kill_api()
        if self.svc.setup == "workers":
            details["_ended_ago"] = details["replaced_in"]  # the other worker serves on
        return details

    async def redis_restart_empty(self) -> dict[str, Any]:
        await asyncio.to_thread(self.svc.redis.restart)
        return {}

    async def redis_sigstop(self) -> dict[str, Any]:
        return await self._held(self.svc.redis.freeze, self.svc.redis.thaw)

    async def pg_cut(self) -> dict[str, Any]:
        await self.svc.proxy.command("cut")
        try:
            await asyncio.sleep(self.hold)
        finally:
            await self.svc.proxy.command("restore")
        return {"held": self.hold}

    async def pg_freeze(self) -> dict[str, Any]:
        await self.svc.proxy.command("freeze")
        try:
            await asyncio.sleep(self.hold)
        finally:
            await self.svc.proxy.command("thaw")
        return {"held": self.hold}

    async def _held(self, on: Callable[[], None], off: Callable[[], None]) -> dict[str, Any]:
        await asyncio.to_thread(on)
        try:
            await asyncio.sleep(self.hold)
        finally:
            await asyncio.to_thread(off)
        return {"held": self.hold}

    async def pg_terminate_backend(self) -> dict[str, Any]:
        """Every backend of the run's database but this one, every 0.25 s."""
        conn = await asyncpg.connect(self.svc.dsn, timeout=5)
        ended = 0
        try:
            deadline = time.monotonic() + self.hold
            while time.monotonic() < deadline:
                ended += int(await conn.fetchval(TERMINATE))
                await asyncio.sleep(0.25)
        finally:
            await conn.close()
        return {"terminated": ended}

    async def rebuild(self) -> dict[str, Any]:
        code, out, err = await run_items(["rebuild"], self.svc.env, within=120)
        said = (out.strip().splitlines() or err.strip().splitlines() or [""])[-1]
        return {"exit": code, "says": said[:200]}

    async def slow_clients(self) -> dict[str, Any]:
        """Sockets that trickle headers, stall a body, say nothing, or never read: the
        server must close them within its bounds and serve everyone else meanwhile.
        (One that never reads may end in the kernel's buffers, its FIN behind the data
        it will not read: then the server has let it go, but this side cannot tell.)"""
        details: dict[str, Any] = {}
        kinds = ["trickle"] * 12 + ["silent"] * 6 + ["short-body"] * 4 + ["never-reads"] * 2

        async def hold(kind: str) -> None:
            loop = asyncio.get_running_loop()
            closed, held = await loop.run_in_executor(
                self.pool, _slow, self.svc.port, kind, self.stop
            )
            seen = details.setdefault(kind, {"closed": 0, "of": 0, "longest": 0.0})
            seen["of"] += 1
            seen["closed"] += closed
            if closed:
                seen["longest"] = max(seen["longest"], round(held, 1))

        self.held += [asyncio.create_task(hold(kind)) for kind in kinds]
        await asyncio.sleep(self.hold)
        return details

    async def dead_letter(self) -> dict[str, Any]:
        """A corrupt event committed with its row (as a writer would): the projector must
        dead-letter it, hold the item back, and apply it once fixed and retried."""
        async with httpx.AsyncClient(base_url=self.svc.base_url, timeout=10) as client:
            victim = None
            for _ in range(20):
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.post("/api/v1/items", json={"name": "victim", "price": "1"})
                    if r.status_code == 201:
                        victim = r.json()["id"]
                        break
                await asyncio.sleep(0.25)
        if victim is None:
            return {"error": "could not create the victim"}
        self.victims.add(victim)
        conn = await asyncpg.connect(self.svc.dsn, timeout=5)
        try:
            return await _drill(conn, uuid.UUID(victim), self.svc.env)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Let the background faults finish; give up the slow sockets the server has not
        closed yet."""
        await asyncio.gather(*self.background)
        self.stop.set()
        await asyncio.gather(*self.held, return_exceptions=True)
        self.pool.shutdown()


async def _drill(
    conn: asyncpg.Connection, victim: uuid.UUID, env: dict[str, str]
) -> dict[str, Any]:
    async with conn.transaction():
        # now(): the transaction's time, the same in both, as a writer would record them.
        await conn.execute(
            "UPDATE items SET version = 2, name = 'fixed later', updated_at = now() WHERE id = $1",
            victim,
        )
        position = await conn.fetchval(
            "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)"
            " VALUES (gen_random_uuid(), $1, 2, 'ItemUpdated', '{\"changes\": 42}', now())"
            " RETURNING position",
            victim,
        )
    started = time.monotonic()
    while not await conn.fetchval(
        "SELECT count(*) FROM dead_letters WHERE position = $1", position
    ):
        if time.monotonic() - started > 15:
            return {"error": "never dead-lettered", "position": position}
        await asyncio.sleep(0.05)
    lettered = time.monotonic() - started
    await conn.execute(
        'UPDATE events SET payload = \'{"changes": {"name": "fixed later"}}\' WHERE position = $1',
        position,
    )
    for _ in range(5):  # as an operator would, again while PostgreSQL is cut (exit 2)
        code, out, err = await run_items(["dead-letters", "retry"], env, within=60)
        if code == 0:
            break
        await asyncio.sleep(1.0)
    left = await conn.fetchval("SELECT count(*) FROM dead_letters")
    return {
        "item": str(victim),
        "position": position,
        "dead_lettered_in": lettered,
        "retry_exit": code,
        "dead_letters_left": left,
    }


# -- slow sockets ---------------------------------------------------------------------------
# Each on a blocking socket in a thread of its own: (closed by the server, seconds held).

SLOW_LIMIT = 40.0  # a socket still open then is given up (and not counted as closed)


def _slow(port: int, kind: str, stop: threading.Event) -> tuple[bool, float]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that barely reads
    s.connect(("127.0.0.1", port))
    started = time.monotonic()
    try:
        if kind == "short-body":
            s.sendall(
                b"POST /api/v1/items HTTP/1.1\r\nHost: slow\r\nContent-Type: "
                b'application/json\r\nContent-Length: 200\r\n\r\n{"name": '
            )
        elif kind == "trickle":
            s.sendall(b"GET /api/v1/items HTTP/1.1\r\nHost: slow\r\n")
        elif kind == "never-reads":
            s.sendall(b"GET /api/v1/items?limit=100 HTTP/1.1\r\nHost: slow\r\n\r\n" * 200)
        poller = select.poll()
        events = select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)
        poller.register(s, events if kind == "never-reads" else events | select.POLLIN)
        while not stop.is_set() and time.monotonic() - started < SLOW_LIMIT:
            for _, event in poller.poll(500):
                if event & select.POLLIN and s.recv(65536):
                    continue  # an answer (a 408): the close follows
                return True, time.monotonic() - started
            if kind == "trickle":
                s.sendall(b"X-Slow: 1\r\n")
        return False, time.monotonic() - started
    except OSError:
        return True, time.monotonic() - started
    finally:
        s.close()
