"""A stuck projector is seen, and said (issue 17).

- `items serve` kills and restarts a projector child that stopped going round its loop
  (SIGSTOP), not only one that died, logs why, and projection goes on.
- READY_MAX_LAG_SECONDS: /readyz fails the read_model check, naming the lag, once the
  projection is further behind than that; the default (0) never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.api.app import create_app
from app.settings import Settings
from tests.helpers import eventually, owners, running
from tests.servers import Spawner, free_port, items_env, wait_ready

pytestmark = pytest.mark.slow

ITEMS = "/api/v1/items"


async def test_a_stopped_projector_child_is_replaced_and_said_to_be(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**items_env(settings, PROJECTOR_STALLED_AFTER="3"), "PORT": str(port)}
    async with Spawner(tmp_path) as spawn, httpx.AsyncClient(base_url=base, timeout=10) as api:
        serve = await spawn.start("serve", ["serve"], env)
        await wait_ready(base, serve, within=60)
        [child] = (await owners(db, settings.redis_prefix)).values()
        assert child != serve.pid
        os.kill(child, signal.SIGSTOP)
        try:
            made = await api.post(
                ITEMS, json={"name": "after the stop", "price": "1"},
                headers={"Prefer": "respond-async"},
            )  # fmt: skip
            assert made.status_code == 201
            await eventually(
                lambda: api.get(f"{ITEMS}/{made.json()['id']}"),
                lambda r: r.status_code == 200,
                within=20,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        assert "has not gone round its loop" in serve.log(), serve.log()[-3000:]
        [replacement] = (await owners(db, settings.redis_prefix)).values()
        assert replacement not in (child, serve.pid)
        assert serve.running


async def test_readiness_fails_on_lag_only_when_asked(
    settings: Settings, db: asyncpg.Connection, redis: object
) -> None:
    # No projector here: every write adds to the lag.
    lagging = settings.model_copy(
        update={"projector_in_process": False, "ready_max_lag_seconds": 0.5}
    )
    writer = create_app(settings.model_copy(update={"projector_in_process": False}))
    async with running(create_app(settings)) as first, first.client() as c:
        await c.post(ITEMS, json={"name": "projected", "price": "1"})  # the read model is live
    async with running(create_app(lagging)) as started, started.client() as c:
        assert (await c.get("/readyz")).status_code == 200
        async with running(writer) as w, w.client() as wc:
            made = await wc.post(ITEMS, json={"name": "waiting", "price": "1"})
            assert made.status_code == 201
        await asyncio.sleep(1.0)
        ready = await c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["read_model"].startswith("lagging: ")
        assert "READY_MAX_LAG_SECONDS=0.5" in ready.json()["checks"]["read_model"]
    async with running(writer) as w, w.client() as c:
        # READY_MAX_LAG_SECONDS=0 (the default): the same lag, ready.
        assert (await c.get("/readyz")).json()["checks"]["read_model"] == "ok"
