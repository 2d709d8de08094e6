"""`items rebuild` under live reads and writes, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from app.cli.rebuild import Shown
from app.cli.verify import summary
from app.infrastructure.postgres.items_reader import REBUILD_LOCK
from app.infrastructure.postgres.repositories import item_from_row
from app.infrastructure.redis.keys import scan_pattern
from app.infrastructure.redis.projection_store import as_text
from app.operations.rebuild import RebuildRefused
from app.queries import views
from app.queries.views import index_members
from tests.helpers import Running, eventually

ITEMS = "/api/v1/items"


async def _seed_rows(db: asyncpg.Connection, n: int) -> None:
    """Items and their creation events straight into PostgreSQL, like a big history."""
    await db.execute(
        """
        WITH new AS (
            SELECT gen_random_uuid() AS id, 'seeded ' || g AS name, g AS n,
                   clock_timestamp() AS at FROM generate_series(1, $1) AS g
        ), items_in AS (
            INSERT INTO items (id, name, price, tags, version, created_at, updated_at)
            SELECT id, name, (n % 1000) + 0.5, ARRAY['seeded'], 1, at, at FROM new
        )
        INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)
        SELECT gen_random_uuid(), id, 1, 'ItemCreated',
               jsonb_build_object('name', name, 'description', null,
                                  'price', ((n % 1000) + 0.5)::numeric(11,2)::text,
                                  'tags', jsonb_build_array('seeded')), at
        FROM new
        """,
        n,
    )


@pytest.mark.slow
async def test_rebuild_while_clients_read_and_write(
    app: Running,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="items.projector")
    await _seed_rows(db, 3000)
    page = await eventually(
        lambda: client.get(ITEMS, params={"tag": "seeded", "limit": 100}),
        lambda r: r.json()["total"] == 3000,
        within=20,
    )
    known = [i["id"] for i in page.json()["items"]]
    container = app.container
    stop = asyncio.Event()
    bad: list[Any] = []
    written: list[dict[str, Any]] = []

    async def reader() -> None:
        while not stop.is_set():
            item_id = random.choice(known)
            got = await client.get(f"{ITEMS}/{item_id}")
            if got.status_code != 200 or got.json()["id"] != item_id:
                bad.append((got.status_code, got.text))
            listed = await client.get(ITEMS, params={"tag": "seeded", "limit": 5})
            if listed.status_code != 200 or len(listed.json()["items"]) != 5:
                bad.append((listed.status_code, listed.text))

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            created = await client.post(ITEMS, json={"name": f"live {n}", "price": "1"})
            written.append(created.json())
            target = random.choice(known)
            await client.patch(f"{ITEMS}/{target}", json={"description": f"touched {n}"})

    tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]
    lines: list[str] = []
    report = await container.rebuild(batch_size=500, progress=Shown(lines.append, tty=False))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)

    assert bad == []
    # The live projector follows the switch: an INFO saying so, no false alarm.
    projector = [r for r in caplog.records if r.name == "items.projector"]
    assert [r.getMessage() for r in projector if r.levelno >= logging.WARNING] == []
    assert any("a rebuild switched it live" in r.getMessage() for r in projector)
    assert report.items >= 3000
    assert report.switched == [0]
    assert any("items/s" in line for line in lines)
    for item in written:
        await eventually(
            lambda i=item: client.get(f"{ITEMS}/{i['id']}"),  # type: ignore[misc]
            lambda r: r.status_code == 200,
        )
    verified = await container.verify(wait=20)
    assert verified.ok, summary(verified)
    # Nothing of the old generation is left behind.
    pattern = scan_pattern(container.layout.tag(0) + ":g")
    gens = {k.split(b":")[2] async for k in container.redis.scan_iter(match=pattern)}
    assert gens - {b"gen"} == {report.generation.encode()}


async def test_a_second_rebuild_refuses(app: Running, database_url: str) -> None:
    holder = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK)
        with pytest.raises(RebuildRefused, match="another"):
            await app.container.rebuild()
    finally:
        await holder.close()


async def test_dry_run_writes_nothing(app: Running, client: httpx.AsyncClient) -> None:
    created = await client.post(ITEMS, json={"name": "a", "price": "1"})
    await eventually(
        lambda: client.get(created.headers["location"]), lambda r: r.status_code == 200
    )
    container = app.container
    prefix = container.layout.prefix

    async def ours() -> list[bytes]:
        # Only this test's keys: other runs may share the Redis server.
        return sorted([k async for k in container.redis.scan_iter() if prefix in as_text(k)])

    before = await ours()
    assert before
    report = await container.rebuild(dry_run=True)
    assert report.dry_run
    assert report.items == 1
    assert await ours() == before


async def test_an_interrupted_rebuild_leaves_the_live_generation_and_is_cleaned_up(
    app: Running, client: httpx.AsyncClient
) -> None:
    created = await client.post(ITEMS, json={"name": "a", "price": "1"})
    await eventually(
        lambda: client.get(created.headers["location"]), lambda r: r.status_code == 200
    )
    container = app.container
    layout, redis = container.layout, container.redis
    live = await redis.get(layout.gen(0))
    # What a rebuild killed half-way leaves: its pointer and part of its generation.
    await redis.set(layout.rebuild(0), "gkilled")
    await redis.set(layout.base(0, "gkilled") + "v:" + created.json()["id"], b"{}")
    await redis.set(layout.base(0, "gkilled") + "cp", 0)
    assert await redis.get(layout.gen(0)) == live
    assert (await client.get(created.headers["location"])).json() == created.json()

    report = await container.rebuild()
    assert report.switched == [0]
    leftovers = [k async for k in redis.scan_iter(match=scan_pattern(layout.base(0, "gkilled")))]
    assert leftovers == []
    assert (await client.get(created.headers["location"])).json() == created.json()


async def test_rebuilt_views_are_the_bytes_the_write_side_renders(
    container: Any, db: asyncpg.Connection
) -> None:
    """The rebuild renders rows through PostgreSQL's text forms; they must give exactly
    the bytes (and index members) `views.item_view` gives, whatever the values."""
    rows = [
        (
            "Ünïcødé ☃ lamp",
            'quotes " and \\ and\nnew\tline \x01',
            "0",
            ["a", "b-2", "z9"],
            datetime(2026, 1, 2, 3, 4, 5, 0, UTC),
        ),  # fmt: skip
        ("x", None, "999999999.99", [], datetime(2026, 11, 28, 23, 59, 59, 999999, UTC)),
        ("MiXeD Case ß", "", "12.3", ["one"], datetime(2030, 6, 7, 8, 9, 10, 1, UTC)),
    ]
    for name, description, price, tags, at in rows:
        await db.execute(
            "INSERT INTO items (id, name, description, price, tags, version, created_at,"
            " updated_at) VALUES (gen_random_uuid(), $1, $2, $3::numeric, $4, 3, $5::timestamptz,"
            " $5::timestamptz + interval '1 second')",
            name, description, price, tags, at,
        )  # fmt: skip
    report = await container.rebuild()
    assert report.items == 3
    layout, redis = container.layout, container.redis
    base = layout.base(0, report.generation)
    for row in await db.fetch("SELECT * FROM items"):
        view = views.item_view(item_from_row(row))
        assert await redis.get(base + "v:" + str(row["id"])) == views.render(view)
        assert int(await redis.hget(base + "ver", str(row["id"]))) == 3
        for suffix, member in index_members(view).items():
            assert await redis.zscore(base + suffix, member) == 0, suffix
    verified = await container.verify(wait=5)
    assert verified.ok, summary(verified)
