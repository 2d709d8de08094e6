"""The embedded default behaves like a deployment (issue 15).

Real `items` processes with no DATABASE_URL, REDIS_URL or SECRET_KEY on one empty
DATA_DIR, as a newcomer runs them: `items projector` beside `PROJECTOR_IN_PROCESS=false
items serve`. The servers they share outlive either client (SIGTERM or SIGKILL), stop
once the last one has gone, and after a restart of everything the cursor, the
Consistency-Token and the idempotent replay a client saved still work.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import _SETTINGS, ItemsProcess, Spawner, free_port, run_items, wait_ready

pytestmark = pytest.mark.slow

ITEMS_PATH = "/api/v1/items"
TOKEN, REPLAYED = "Consistency-Token", "Idempotent-Replayed"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment that names no store and no key: the embedded default."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS}
    env.update(DATA_DIR=str(data_dir), PROJECTOR_POLL_INTERVAL="0.2", LOG_LEVEL="info", **extra)
    return env


async def _status(env: dict[str, str]) -> dict[str, Any]:
    code, out, err = await run_items(["servers", "status", "--json"], env)
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


async def _stopped(env: dict[str, str], within: float = 20.0) -> dict[str, Any]:
    """The status once neither server runs; fails if they are still up after `within`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = await _status(env)
        if not found["postgres"]["running"] and not found["redis"]["running"]:
            return found
        assert loop.time() < deadline, f"embedded servers still running: {found}"
        await asyncio.sleep(0.2)


async def _serves(api: httpx.AsyncClient, item_id: str) -> None:
    """Reads and writes are answered: the read of a known item, a new write."""
    assert (await api.get(f"{ITEMS_PATH}/{item_id}")).status_code == 200
    assert (
        await api.post(ITEMS_PATH, json={"name": "while the projector is away", "price": "3.00"})
    ).status_code == 201
    assert (await api.get("/readyz")).status_code == 200


def _no_traceback(*processes: ItemsProcess) -> None:
    for process in processes:
        assert "Traceback" not in process.log(), f"{process.name}:\n{process.log()[-4000:]}"


async def test_servers_outlive_their_clients_and_what_clients_saved_survives_a_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(data_dir)
    api_env = _env(data_dir, PROJECTOR_IN_PROCESS="false", PORT=str(port))
    async with Spawner(tmp_path) as spawn, httpx.AsyncClient(base_url=base, timeout=10) as api:
        # The projector first, on a database nobody has migrated yet: it waits, quietly.
        projector = await spawn.start("projector", ["projector"], env)
        serve = await spawn.start("serve", ["serve"], api_env)
        await wait_ready(base, serve, within=90)

        created = await api.post(
            ITEMS_PATH, json={"name": "kept", "price": "1.00"}, headers={"Idempotency-Key": "k-1"}
        )
        assert created.status_code == 201, created.text
        item, token = created.json(), created.headers[TOKEN]
        for n in range(3):
            await api.post(ITEMS_PATH, json={"name": f"more {n}", "price": "2.00"})
        page = await api.get(ITEMS_PATH, params={"limit": 2}, headers={TOKEN: token})
        assert page.status_code == 200, page.text
        cursor = page.json()["next_cursor"]
        assert cursor

        key = data_dir / "secret_key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        running = await _status(env)
        assert running["postgres"]["running"]
        assert running["redis"]["running"]
        assert {c["pid"] for c in running["clients"]} >= {projector.pid, serve.pid}

        # SIGTERM to the projector: the servers stay for the API.
        assert await projector.stop() == 0
        await asyncio.sleep(3)  # longer than the reaper's grace: it must not stop them
        await _serves(api, item["id"])
        # SIGKILL to another projector: no exit handler runs, the servers stay still.
        killed = await spawn.start("projector", ["projector"], env)
        await asyncio.sleep(2)
        await killed.kill()
        await asyncio.sleep(3)
        await _serves(api, item["id"])
        _no_traceback(projector, serve)

        # The last client leaves: the servers stop once it has drained.
        assert await serve.stop() == 0
        await _stopped(env)
        assert "connecting to" not in serve.log(), serve.log()[-3000:]

        # Everything again, on the same folder: what the client saved still works. The
        # API first, in a group of its own as a shell would run it: it starts the servers.
        serve = await spawn.start("serve", ["serve"], api_env)
        await wait_ready(base, serve, within=90)
        projector = await spawn.start("projector", ["projector"], env)
        following = await api.get(ITEMS_PATH, params={"limit": 2, "cursor": cursor})
        assert following.status_code == 200, following.text
        assert following.json()["items"], "the saved cursor reads the next page"
        fresh = await api.get(f"{ITEMS_PATH}/{item['id']}", headers={TOKEN: token})
        assert fresh.status_code == 200, fresh.text
        replay = await api.post(
            ITEMS_PATH, json={"name": "kept", "price": "1.00"}, headers={"Idempotency-Key": "k-1"}
        )
        assert replay.status_code == 201, replay.text
        assert replay.headers.get(REPLAYED) == "true"
        assert replay.json()["id"] == item["id"]
        again = await api.get(f"{ITEMS_PATH}/{item['id']}", headers={TOKEN: replay.headers[TOKEN]})
        assert again.status_code == 200, again.text

        # Ctrl-C on `make run` reaches the API's whole process group: not the servers.
        os.killpg(serve.pid, signal.SIGINT)
        assert await serve.wait(20) == 0
        assert "connecting to" not in serve.log(), serve.log()[-3000:]
        assert (await _status(env))["redis"]["running"], "the projector still uses Redis"
        assert await projector.stop() == 0
        await _stopped(env)
        _no_traceback(projector, serve)


async def test_racing_commands_start_one_set_of_servers(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    async with Spawner(tmp_path) as spawn:
        racers = [await spawn.start(f"racer{n}", ["projector"], env) for n in range(3)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len((found := await _status(env))["clients"]) < 3:
            assert loop.time() < deadline, f"not every racer attached: {found}"
            await asyncio.sleep(0.2)
        assert found["postgres"]["running"]
        assert found["redis"]["running"]
        postmasters = list((tmp_path / "data" / "pg").glob("postmaster.pid"))
        assert len(postmasters) == 1
        for racer in racers:
            await racer.stop()
        await _stopped(env)
        _no_traceback(*racers)


async def test_servers_stop_stops_them_whoever_uses_them(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    async with Spawner(tmp_path) as spawn:
        projector = await spawn.start("projector", ["projector"], env)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not (await _status(env))["redis"]["running"]:
            assert loop.time() < deadline
            await asyncio.sleep(0.2)
        code, out, _ = await run_items(["servers", "stop"], env)
        assert code == 0
        assert "stopped" in out
        found = await _stopped(env, within=5)
        assert found["reaper"]["pid"] is None
        await projector.kill()
