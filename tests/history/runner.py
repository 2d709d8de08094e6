"""One history run of one setup: servers of its own, the service, the sessions and the
fault schedule at once, then `items verify` until it passes and PostgreSQL's final
state, all into a History."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.settings import asyncpg_dsn
from tests.history import faults as fault_kit
from tests.history.checker import VERIFY_BOUND
from tests.history.history import Event, History, Verify
from tests.history.proxy import ProxyProcess
from tests.history.service import Service, service
from tests.history.sessions import Recorder, Session, Shared, Walker
from tests.servers import RedisServer, Spawner, run_items

SESSIONS = 16
WALKERS = 2
QUIET_EVERY = 8.0  # seconds between two quiet phases (no writes: list totals must add up)
QUIET_FOR = 1.2
SAMPLE_EVERY = 0.25


async def run_setup(
    setup: str,
    database_url: str,
    root: Path,
    *,
    seconds: float,
    seed: int,
    faults: tuple[str, ...] = fault_kit.FAULTS,
    hold: float = fault_kit.HOLD,
    gap: float = fault_kit.GAP,
    sessions: int = SESSIONS,
) -> History:
    """`database_url`: a database of the run's own, migrated (it is reached through a
    proxy the faults may cut, and directly for the checks)."""
    dsn = asyncpg_dsn(database_url)
    redis = RedisServer(root / "redis")  # makes `root` too
    proxy = ProxyProcess(dsn)
    await asyncio.to_thread(redis.start)
    await proxy.start()
    try:
        async with Spawner(root) as spawn:
            svc = service(setup, spawn, dsn, redis, proxy, f"h{uuid.uuid4().hex[:10]}")
            try:
                await svc.start()
                history = await _drive(svc, seconds, seed, faults, hold, gap, sessions)
            finally:
                await svc.close()
        return history
    finally:
        await proxy.close()
        redis.stop()


async def _drive(
    svc: Service,
    seconds: float,
    seed: int,
    names: tuple[str, ...],
    hold: float,
    gap: float,
    sessions: int,
) -> History:
    rec = Recorder()
    shared = Shared()
    shared.writes_open.set()
    history = History(svc.setup, seed, wall=rec.wall)
    clients = [Session(n, svc.base_url, seed, rec, shared) for n in range(sessions)]
    clients += [
        Walker(n, svc.base_url, seed, rec, shared) for n in range(sessions, sessions + WALKERS)
    ]
    kit = fault_kit.Kit(svc, hold)
    load = [asyncio.create_task(c.run(seconds)) for c in clients]
    helpers = [
        asyncio.create_task(_quiet_phases(shared, rec, seconds)),
        asyncio.create_task(_sample(svc.base_url, rec, history)),
    ]
    try:
        order = fault_kit.plan(seed, names, svc.setup)
        history.faults = await fault_kit.run_schedule(kit, rec, order, seconds - 1.0, gap)
        await asyncio.gather(*load)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await kit.close()
    # Quiet from here: no fault in force, no request in flight (what rule 8 times from).
    history.faults_over = max([rec.now(), *(f.end for f in history.faults)])
    history.harness_items = kit.victims
    history.verifies = await _verify(svc.env, rec, history.faults_over)
    history.events, history.items = await _final(svc.dsn, rec.wall)
    history.seconds = rec.now()
    history.ops = sorted(rec.ops, key=lambda op: op.id)
    return history


async def _quiet_phases(shared: Shared, rec: Recorder, until: float) -> None:
    while rec.now() + QUIET_EVERY < until:
        await asyncio.sleep(QUIET_EVERY - QUIET_FOR)
        shared.writes_open.clear()
        try:
            await asyncio.sleep(QUIET_FOR)
        finally:
            shared.writes_open.set()


async def _sample(base_url: str, rec: Recorder, history: History) -> None:
    """The projection's head and checkpoint, for the timeline (not an operation)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=1.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                r = await client.get("/api/v1/admin/projection")
                if r.status_code == 200:
                    found = r.json()
                    history.samples.append(
                        (rec.now(), int(found["head_position"]), int(found["checkpoint"]))
                    )
            await asyncio.sleep(SAMPLE_EVERY)


async def _verify(env: dict[str, str], rec: Recorder, faults_over: float) -> list[Verify]:
    """`items verify` until it exits 0, VERIFY_BOUND seconds after the last fault at most."""
    runs = []
    while True:
        code, out, err = await run_items(["verify"], env, within=120)
        said = (out.strip().splitlines() or err.strip().splitlines() or [""])[-1]
        runs.append(Verify(rec.now(), code, said[:300]))
        if code == 0 or rec.now() - faults_over > VERIFY_BOUND:
            return runs
        await asyncio.sleep(0.5)


async def _final(dsn: str, wall: float) -> tuple[list[Event], dict[str, int]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT position, item_id::text AS item, item_version, type, payload::text AS p,"
            " extract(epoch FROM recorded_at) AS t FROM events ORDER BY position"
        )
        items = await conn.fetch("SELECT id::text AS id, version FROM items")
    finally:
        await conn.close()
    events = [
        Event(
            r["position"],
            r["item"],
            r["item_version"],
            r["type"],
            _payload(r["p"]),
            float(r["t"]) - wall,
        )
        for r in rows
    ]
    return events, {r["id"]: r["version"] for r in items}


def _payload(text: str) -> dict[str, Any]:
    found = json.loads(text)
    return found if isinstance(found, dict) else {"raw": found}
