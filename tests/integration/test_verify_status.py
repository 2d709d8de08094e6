"""`items verify` and `items status` against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from app.api.app import create_app
from app.bootstrap import Container
from app.cli.status import render_status
from app.cli.verify import progress_line, summary
from app.infrastructure.redis.projection_store import as_text
from app.operations.verify import VerifyReport
from app.queries import views
from app.queries.views import index_members
from app.settings import Settings
from tests.helpers import Running, create, eventually, running, visible

ITEMS = "/api/v1/items"


async def _base(container: Container, item_id: str) -> str:
    """Key prefix of the live generation of the item's partition."""
    p = container.layout.partition_of(item_id)
    gen = await container.redis.get(container.layout.gen(p))
    assert gen is not None
    return container.layout.base(p, as_text(gen))


async def _history(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """A few creates, updates and deletes; returns the live items, projected."""
    made = [
        await create(client, name=f"item {i}", price=f"{i}.50", tags=["a", f"t{i % 2}"])
        for i in range(6)
    ]
    for item in made[:3]:
        r = await client.patch(f"{ITEMS}/{item['id']}", json={"name": "renamed", "tags": ["b"]})
        assert r.status_code == 200, r.text
        item.update(r.json())
    for item in made[4:]:
        assert (await client.delete(f"{ITEMS}/{item['id']}")).status_code == 204
    live = made[:4]
    for item in live:
        await visible(client, item)
    return live


async def test_verify_ok_after_writes(app: Running, client: httpx.AsyncClient) -> None:
    await _history(client)
    lines: list[str] = []
    report = await app.container.verify(
        wait=10, batch=2, progress=lambda step: lines.append(progress_line(step))
    )
    assert report.ok, summary(report)
    assert report.checked == 4
    assert report.counts == dict.fromkeys(report.counts, 0)
    assert not report.read_model_missing
    assert "matches" in summary(report)[0]
    assert lines


async def test_missing_view_is_reported_and_repaired(
    app: Running, client: httpx.AsyncClient
) -> None:
    container: Container = app.container
    live = await _history(client)
    victim = live[1]["id"]
    await container.redis.delete(await _base(container, victim) + f"v:{victim}")

    report = await container.verify(wait=10)
    assert not report.ok
    assert report.missing == [victim]
    assert any(victim in line for line in summary(report))

    repaired = await container.verify(repair=True, wait=10)
    assert repaired.missing == [victim]
    assert repaired.repaired == 1
    assert repaired.after_repair is not None
    assert repaired.after_repair.ok
    assert repaired.ok
    assert (await container.verify(wait=10)).ok
    got = await client.get(f"{ITEMS}/{victim}")
    assert got.status_code == 200
    assert got.json() == live[1]


async def test_corrupt_index_and_extra_are_reported_and_repaired(
    app: Running, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    container: Container = app.container
    live = await _history(client)
    corrupt, unindexed, stale = live[0]["id"], live[2]["id"], live[3]["id"]
    redis = container.redis

    await redis.set(await _base(container, corrupt) + f"v:{corrupt}", b"{not json")
    members = index_members(live[2])
    base = await _base(container, unindexed)
    await redis.zrem(base + "ix:name", members["ix:name"])
    # A view one version behind PostgreSQL, as if an update had been lost.
    base3 = await _base(container, stale)
    old_data = await redis.get(base3 + f"v:{stale}")
    assert isinstance(old_data, bytes)
    old = views.parse(old_data)
    await db.execute("UPDATE items SET version = version + 1 WHERE id = $1", uuid.UUID(stale))
    # A view (with index entries) for an id PostgreSQL never had.
    ghost = str(uuid.uuid4())
    gbase = await _base(container, ghost)
    ghost_view = {**live[3], "id": ghost}
    await redis.set(gbase + f"v:{ghost}", views.render(ghost_view))
    await redis.hset(gbase + "ver", ghost, 1)
    for suffix, member in index_members(ghost_view).items():
        await redis.zadd(gbase + suffix, {member: 0})

    report = await container.verify(wait=10)
    assert not report.ok
    assert report.corrupt == [corrupt]
    assert report.stale == [stale]
    assert report.extra == [ghost]
    assert report.index_missing == [(unindexed, "ix:name")]
    assert report.missing == []
    assert {i for i, _ in report.index_extra} == {ghost}
    text = "\n".join(summary(report))
    for item_id in (corrupt, stale, ghost, unindexed):
        assert item_id in text

    repaired = await container.verify(repair=True, wait=10)
    assert repaired.ok, summary(repaired)
    assert repaired.repaired == 4
    assert (await container.verify(wait=10)).ok
    assert await redis.get(gbase + f"v:{ghost}") is None
    assert await redis.hget(gbase + "ver", ghost) == b"-1"
    assert (await client.get(f"{ITEMS}/{ghost}")).status_code == 404
    fixed = (await client.get(f"{ITEMS}/{stale}")).json()
    assert fixed["version"] == old["version"] + 1
    assert (await client.get(f"{ITEMS}/{corrupt}")).json() == live[0]
    page = (await client.get(ITEMS, params={"sort": "name", "limit": 100})).json()
    assert sorted(i["id"] for i in page["items"]) == sorted(i["id"] for i in live)


async def test_verify_does_not_report_writes_racing_it(
    app: Running, client: httpx.AsyncClient
) -> None:
    await _history(client)
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            item = await create(client, name=f"racer {n}", tags=["race"])
            await client.patch(f"{ITEMS}/{item['id']}", json={"price": "2"})
            if n % 2:
                await client.delete(f"{ITEMS}/{item['id']}")
            n += 1

    task = asyncio.create_task(writer())
    try:
        reports = [await app.container.verify(wait=10, batch=3) for _ in range(3)]
    finally:
        stop.set()
        await task
    for report in reports:
        assert report.ok, summary(report)


async def test_status_while_projecting(app: Running, client: httpx.AsyncClient) -> None:
    container: Container = app.container
    await _history(client)

    async def caught_up() -> dict[str, Any]:
        return await container.status()

    state = await eventually(caught_up, lambda s: s["lag_events"] == 0)
    assert state["head_position"] > 0
    assert state["checkpoint"] == state["head_position"]
    assert state["lag_seconds"] == 0
    assert state["read_model"] == "live"
    assert state["dead_letters"] == 0
    assert state["projectors"] == 1
    assert state["owned_partitions"] == 1
    assert state["layout"] == {"name": "", "partitions": 1}
    [partition] = state["partitions"]
    owner = partition["owner"]
    assert owner is not None
    assert owner["pid"] == os.getpid()  # the test app runs its projector on this loop
    assert owner["host"] == socket.gethostname()
    assert owner["since"]
    assert partition["epoch"] >= 1
    assert partition["lag_events"] == 0
    assert partition["checkpoint"] == state["head_position"]
    assert partition["generation"] is not None
    assert not partition["restoring"]
    assert not partition["rebuilding"]
    text = render_status(state)
    assert "live" in text
    # The table's row of partition 0: partition, owner pid@host, epoch, generation, ...
    [row] = [line.split() for line in text.splitlines() if line.split()[:1] == ["0"]]
    assert row[:5] == [
        "0",
        f"{owner['pid']}@{owner['host']}",
        str(partition["epoch"]),
        partition["generation"],
        str(partition["checkpoint"]),
    ]


async def test_status_and_verify_when_redis_lost_its_data(
    container: Container, db: asyncpg.Connection, redis: Redis, prefix: str
) -> None:
    item_id = uuid.uuid4()
    async with db.transaction():  # one now() for the row and its event, as a writer does
        await db.execute(
            "INSERT INTO items (id, name, price, tags, version, created_at, updated_at)"
            " VALUES ($1, 'seeded', 1.5, ARRAY['x'], 1, now(), now())",
            item_id,
        )
        await db.execute(
            "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)"
            " VALUES (gen_random_uuid(), $1, 1, 'ItemCreated',"
            ' \'{"name": "seeded", "description": null, "price": "1.50", "tags": ["x"]}\','
            " now())",
            item_id,
        )
    projector = container.projector()
    task = asyncio.create_task(projector.run())
    try:
        state = await eventually(container.status, lambda s: s["lag_events"] == 0)
        assert state["head_position"] == 1
        assert state["checkpoint"] == 1
        assert state["partitions"][0]["owner"] is not None
        assert (await container.verify(wait=10)).ok
    finally:
        projector.stop()
        await asyncio.wait_for(task, 10)

    state = await container.status()
    # A clean stop gives the partition up at once: no owner, not one lease later.
    assert state["partitions"][0]["owner"] is None
    assert state["projectors"] == 0
    async for key in redis.scan_iter(match=f"{{{prefix}:*", count=1000):
        await redis.unlink(key)
    state = await container.status()
    assert state["read_model"] == "missing"
    assert state["partitions"][0]["generation"] is None
    assert state["lag_events"] == 1
    assert "missing" in render_status(state)
    report: VerifyReport = await container.verify(wait=1)
    assert report.read_model_missing
    assert not report.ok
    assert "missing" in summary(report)[0]


async def test_verify_and_repair_across_partitions(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    application = create_app(settings.model_copy(update={"projection_partitions": 3}))
    async with running(application) as started, started.client() as client:
        container: Container = started.container
        live = await _history(client)
        # Ids are random: four of them share one of three partitions about one
        # run in 27, so add items until the history spans more than one.
        for n in range(40):
            if len({container.layout.partition_of(i["id"]) for i in live}) > 1:
                break
            live.append(await visible(client, await create(client, name=f"more {n}")))
        assert len({container.layout.partition_of(i["id"]) for i in live}) > 1
        assert (await container.verify(wait=10)).ok
        victim = live[0]["id"]
        base = await _base(container, victim)
        await redis.delete(base + f"v:{victim}")
        await redis.zrem(base + "ix:price", index_members(live[0])["ix:price"])
        report = await container.verify(wait=10)
        assert report.missing == [victim]
        assert report.index_missing == [(victim, "ix:price")]
        assert (await container.verify(repair=True, wait=10)).ok
        state = await container.status()
        assert len(state["partitions"]) == 3
        assert state["read_model"] == "live"
