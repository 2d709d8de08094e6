"""The outbox relay to NATS JetStream, on real PostgreSQL and the machine's NATS, read back
by nats-py consumers (issue 19): every event, in position order, with its Nats-Msg-Id and
JSON body; a checkpoint that moves only after the acknowledgements; one active relay; and
a relay SIGKILLed mid-stream that, restarted, leaves every event delivered at least once,
in order per item, a duplicate only ever carrying an already-seen Nats-Msg-Id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app import bootstrap
from app.bootstrap import Container
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.relay.runner import Relay
from app.settings import Settings
from tests.deploy_files import python_healthcheck
from tests.helpers import client_of, eventually
from tests.jetstream import Delivered, Stream
from tests.servers import Spawner, free_port, items_env, run_items


@pytest.fixture
def relay_settings(settings: Settings, jetstream: Stream) -> Settings:
    return settings.model_copy(
        update={
            "nats_url": jetstream.url,
            "nats_stream": jetstream.name,
            "nats_subject_prefix": jetstream.prefix,
            "relay_batch_size": 20,
        }
    )


@pytest.fixture
async def wired(
    relay_settings: Settings, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[Container]:
    built = bootstrap.build(relay_settings)
    yield built
    await built.close()


@contextlib.asynccontextmanager
async def relaying(container: Container) -> AsyncIterator[Relay]:
    relay = container.relay()
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await asyncio.wait_for(task, 15)


async def write(container: Container, items: int, updates: int) -> None:
    """`items` items, each updated `updates` times, interleaved; every third deleted."""
    ids = [uuid.uuid4() for _ in range(items)]
    for item_id in ids:
        await container.bus.handle(CreateItem(item_id=item_id, name="n", price="1"))
    for n in range(updates):
        for item_id in ids:
            await container.bus.handle(UpdateItem(item_id=item_id, changes={"price": f"{n + 2}"}))
    for item_id in ids[::3]:
        await container.bus.handle(DeleteItem(item_id=item_id))


async def on_stream(jetstream: Stream) -> int:
    """How many messages the stream holds."""
    return len(await jetstream.read_all())


async def log(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await db.fetch("SELECT position, event_id, item_id, item_version FROM events ORDER BY 1")
    )


def check_delivery(events: list[asyncpg.Record], delivered: list[Delivered], prefix: str) -> int:
    """Every event at least once, in order per item, duplicates only with a seen id;
    returns how many duplicates there were."""
    seen: set[str] = set()
    per_item: dict[str, list[int]] = defaultdict(list)
    duplicates = 0
    for d in delivered:
        assert d.msg_id == d.body["event_id"], d
        assert d.subject == f"{prefix}.{d.body['item_id']}"
        if d.msg_id in seen:
            duplicates += 1
            continue
        seen.add(d.msg_id)
        per_item[d.body["item_id"]].append(d.body["version"])
    assert seen == {str(e["event_id"]) for e in events}, "events missing from the stream"
    for item_id, versions in per_item.items():
        assert versions == list(range(1, len(versions) + 1)), (item_id, versions)
    return duplicates


async def test_every_event_in_order_with_its_id_and_body(
    wired: Container, jetstream: Stream, db: asyncpg.Connection
) -> None:
    async with relaying(wired) as relay:
        await write(wired, items=5, updates=2)
        events = await log(db)
        await eventually(lambda: asyncio.sleep(0, relay.position), lambda p: p == len(events))
    delivered = await jetstream.read_all()
    assert len(delivered) == len(events)  # no duplicates without a fault
    assert [d.body["position"] for d in delivered] == [e["position"] for e in events]
    assert check_delivery(events, delivered, jetstream.prefix) == 0
    first = delivered[0].body
    assert set(first) == {
        "event_id",
        "type",
        "item_id",
        "version",
        "position",
        "occurred_at",
        "data",
    }
    assert first["type"] == "ItemCreated"
    assert first["version"] == 1
    assert first["data"] == {"name": "n", "description": None, "price": "1.00", "tags": []}
    assert first["occurred_at"].endswith("Z")
    assert delivered[-1].body["type"] == "ItemDeleted"
    # The checkpoint was saved, with the lease given up at the stop.
    row = await db.fetchrow("SELECT * FROM relay_checkpoints WHERE stream = $1", jetstream.name)
    assert row["position"] == len(events)
    assert row["owner"] is None


async def test_a_restarted_relay_publishes_nothing_twice_and_goes_on(
    wired: Container, jetstream: Stream, db: asyncpg.Connection
) -> None:
    async with relaying(wired) as relay:
        await write(wired, items=3, updates=1)  # 7 events
        await eventually(lambda: asyncio.sleep(0, relay.position), lambda p: p == 7)
    # The checkpoint goes back, as after a crash between the broker's ack and the save:
    # the stream's own record says what it holds already.
    await db.execute("UPDATE relay_checkpoints SET position = 2 WHERE stream = $1", jetstream.name)
    async with relaying(wired) as relay:
        await write(wired, items=1, updates=1)  # 3 more
        await eventually(lambda: asyncio.sleep(0, relay.position), lambda p: p == 10)
        assert relay.published == 3
    delivered = await jetstream.read_all()
    assert check_delivery(await log(db), delivered, jetstream.prefix) == 0
    assert len(delivered) == 10


async def test_one_relay_publishes_at_a_time(
    wired: Container, jetstream: Stream, db: asyncpg.Connection
) -> None:
    async with relaying(wired) as first, relaying(wired) as second:
        await write(wired, items=4, updates=1)  # 10 events
        await eventually(
            lambda: asyncio.sleep(0, (first.position, second.position)),
            lambda ps: 10 in ps and None in ps,
        )
        active, standby = (first, second) if first.position == 10 else (second, first)
        assert standby.published == 0
        active.stop()  # gives the lease up: the standby takes over at once
        await write(wired, items=1, updates=0)  # 2 more
        await eventually(lambda: asyncio.sleep(0, standby.position), lambda p: p == 12)
    assert check_delivery(await log(db), await jetstream.read_all(), jetstream.prefix) == 0


async def test_status_shows_the_relays_position_and_lag(
    wired: Container, relay_settings: Settings, jetstream: Stream, db: asyncpg.Connection
) -> None:
    env = items_env(relay_settings, **jetstream.env())
    code, out, err = await run_items(["status", "--json"], env)
    assert code == 0, err
    assert json.loads(out)["relay"] is None  # no relay ever ran for this stream
    async with relaying(wired) as relay:
        await write(wired, items=2, updates=0)  # 3 events
        await eventually(lambda: asyncio.sleep(0, relay.position), lambda p: p == 3)
        status = await wired.status()
        assert status["relay"]["position"] == 3
        assert status["relay"]["lag_events"] == 0
        assert status["relay"]["owner"]["pid"] > 0
    await write(wired, items=1, updates=0)  # 2 more, and no relay runs now: the lag grows
    code, out, err = await run_items(["status", "--json"], env)
    found: dict[str, Any] = json.loads(out)["relay"]
    assert (found["stream"], found["position"], found["lag_events"]) == (jetstream.name, 3, 2)
    assert found["owner"] is None
    assert found["lag_seconds"] >= 0
    code, out, _ = await run_items(["status"], env)
    assert f"stream {jetstream.name} at position 3, lag 2 event(s)" in out
    code, _, err = await run_items(["status", "--check"], env)
    assert code == 1
    assert f"no relay holds the stream and 2 event(s) not yet on stream {jetstream.name}" in err


async def test_items_relay_serves_its_metrics_and_passes_the_compose_health_check(
    wired: Container,
    relay_settings: Settings,
    jetstream: Stream,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = items_env(relay_settings, **jetstream.env(), METRICS_PORT=str(port))
    async with Spawner(tmp_path) as spawn:
        relay = await spawn.start("relay", ["relay"], env)
        await write(wired, items=2, updates=1)
        events = await log(db)

        await eventually(lambda: on_stream(jetstream), lambda n: n >= len(events), within=30)
        scraped = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")).text
        relayed = [line for line in scraped.splitlines()
                   if line.startswith("items_events_relayed_total ")]  # fmt: skip
        assert relayed, scraped
        assert float(relayed[0].split()[1]) == len(events), scraped
        check = await asyncio.to_thread(
            subprocess.run, python_healthcheck("relay", port), capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        assert await relay.stop() == 0, relay.log()


@pytest.mark.slow
async def test_a_relay_sigkilled_mid_stream_loses_nothing_and_keeps_the_order(
    wired: Container,
    relay_settings: Settings,
    jetstream: Stream,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    env = items_env(relay_settings, **jetstream.env(), RELAY_BATCH_SIZE="20")
    async with Spawner(tmp_path) as spawn:
        first = await spawn.start("relay-a", ["relay"], env)
        writer = asyncio.create_task(write(wired, items=40, updates=6))  # 320 events

        await eventually(lambda: on_stream(jetstream), lambda n: n >= 60, within=30)
        await first.kill()  # SIGKILL, mid-stream: no checkpoint saved for what is in hand
        at_kill = len(await jetstream.read_all())
        second = await spawn.start("relay-b", ["relay"], env)
        await writer
        # Events written after the kill, which only relay-b can send: the stream is then
        # complete only once relay-b holds the lease (relay-a may have sent everything
        # written before the kill; relay-b stopped while still starting exits by SIGTERM).
        await write(wired, items=3, updates=0)
        events = await log(db)
        await eventually(lambda: on_stream(jetstream), lambda n: n >= len(events), within=60)
        assert second.running, second.log()
        assert await second.stop() == 0, second.log()
        row = await db.fetchrow("SELECT * FROM relay_checkpoints WHERE stream = $1", jetstream.name)
        assert row["position"] == len(events)
        assert row["owner"] is None
        # It took over from the checkpoint, behind what the stream held at the kill, and
        # asked the stream before publishing those again.
        taken = [line for line in second.log().splitlines() if "relay active from" in line]
        assert taken, second.log()
        assert int(taken[0].rsplit(" ", 1)[1]) <= at_kill < len(events), taken
    stream = await jetstream.read_all()
    duplicates = check_delivery(events, stream, jetstream.prefix)
    assert len(stream) == len(events) + duplicates


async def test_the_api_runs_a_relay_with_relay_in_serve(
    relay_settings: Settings, jetstream: Stream, db: asyncpg.Connection, redis: Redis
) -> None:
    with_relay = relay_settings.model_copy(update={"relay_in_serve": True})
    async with client_of(with_relay) as client:
        made = await client.post("/api/v1/items", json={"name": "relayed", "price": "1"})
        assert made.status_code == 201

        async def stream() -> list[Delivered]:
            return await jetstream.read_all()

        [delivered] = await eventually(stream, lambda found: len(found) == 1)
        assert delivered.body["item_id"] == made.json()["id"]
    # Without RELAY_IN_SERVE (or without NATS_URL) the API runs none.
    container = bootstrap.build(relay_settings)
    try:
        assert bootstrap.serve_relay(container) is None
    finally:
        await container.close()
