"""The API's projector in a child process: it projects, comes back when it dies, stops
with the API, and never outlives a killed API (which would keep the advisory lock)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from app.api.app import create_app
from app.settings import Settings
from tests.helpers import eventually, running
from tests.servers import Spawner, free_port, items_env

ITEMS = "/api/v1/items"


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """From /proc/<pid>/stat: the state letter ("Z" for a zombie) and the parent's pid;
    None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _state_and_parent(pid)
    return state is not None and state[0] != "Z"


def _children(pid: int) -> dict[int, bytes]:
    """Live children of `pid`, with their command lines."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        state = _state_and_parent(int(entry))
        if state is None or state[1] != pid or state[0] == "Z":
            continue
        try:
            found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
    return found


def children(pid: int) -> set[int]:
    """Live projector children of `pid`: forked by its multiprocessing fork server (a
    child of `pid`), they name themselves `items: projector child`. (multiprocessing
    also starts a resource tracker, which is not one.)"""
    found = set()
    for server, cmdline in _children(pid).items():
        if b"forkserver" in cmdline:
            found |= {
                child
                for child, line in _children(server).items()
                if line.startswith(b"items: projector child")
            }
    return found


async def _visible(client: httpx.AsyncClient, name: str) -> int:
    created = await client.post(ITEMS, json={"name": name, "price": "1"})
    assert created.status_code == 201
    location = created.headers["Location"]

    async def status() -> int:
        return (await client.get(location)).status_code

    return await eventually(status, lambda code: code == 200, within=15)


async def test_the_child_projects_is_restarted_when_killed_and_stops_with_the_api(
    settings: Settings, db: object, redis: Redis
) -> None:
    before = children(os.getpid())
    app = create_app(settings.model_copy(update={"projector_in_child": True}))
    async with running(app, within=15) as started, started.client() as client:
        assert await _visible(client, "first") == 200

        async def child() -> set[int]:
            return children(os.getpid()) - before

        (first,) = await eventually(child, lambda pids: len(pids) == 1)
        os.kill(first, signal.SIGKILL)  # no handler runs; the lock goes with its connection
        await eventually(child, lambda pids: len(pids) == 1 and first not in pids, within=10)
        assert await _visible(client, "after the restart") == 200
    assert children(os.getpid()) - before == set()


@pytest.mark.slow
async def test_a_killed_api_takes_its_projector_child_with_it(
    settings: Settings, db: object, redis: Redis, tmp_path: Path
) -> None:
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.serve("serve", items_env(settings), free_port())

        (projector,) = await eventually(
            lambda: asyncio.sleep(0, children(serve.pid)), lambda pids: len(pids) == 1, within=10
        )
        await serve.kill()

        await eventually(lambda: asyncio.sleep(0, _alive(projector)), lambda up: not up, within=5)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_to_the_whole_process_group_stops_the_api_once(
    settings: Settings, db: object, redis: Redis, tmp_path: Path, sig: signal.Signals
) -> None:
    """What a terminal's Ctrl-C, `kill -- -<pgid>` or a service manager does: every
    process of the API gets the signal at once, its fork server too. The API stops, and
    its child with it, once. (A fork server killed by the SIGTERM made the API log
    "exited with 255" and start a new fork server and child during its shutdown.)"""
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.serve("serve", items_env(settings), free_port())

        (projector,) = await eventually(
            lambda: asyncio.sleep(0, children(serve.pid)), lambda pids: len(pids) == 1, within=10
        )
        os.killpg(serve.pid, sig)
        assert await serve.wait(15) == 0, serve.log()

        await eventually(lambda: asyncio.sleep(0, _alive(projector)), lambda up: not up, within=5)
    log = serve.log()
    assert log.count("projector child started") == 1, log
    assert "exited with" not in log, log
    assert "projector gave up its partitions" in log, log
