"""Process faults on real servers, with real `items` processes (issue 5, faults 4-6).

4. The projector SIGKILLed in the middle of a backlog, several times: after a restart
   every view equals PostgreSQL (`items verify` exits 0) and no event took effect twice.
5. Two projectors started at once: one owns the partition, the other applies nothing; a
   stuck owner (SIGSTOP) loses it within a lease and, resumed, writes nothing; SIGKILL
   the owner and the other projects a new write within the stated bound.
6. `items serve` sent SIGTERM under load: requests in flight finish, every acknowledged
   write is in PostgreSQL and, once projected, visible.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app import bootstrap
from app.commands.bus import CommandBus
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.redis.keys import KeyLayout, scan_pattern
from app.infrastructure.redis.projection_store import as_text
from app.queries.views import member_id
from app.settings import Settings, asyncpg_dsn
from tests.helpers import epochs, eventually, owners
from tests.servers import Spawner, free_port, items_env, run_items

ITEMS = "/api/v1/items"
PARTITIONS = 4
BATCH = 12
SEEDED = 160  # items; with two updates each and a delete for every fifth: 512 events
KILL_AT = (0.2, 0.45, 0.7, 0.8, 0.9)  # fractions of the backlog; three kills or more


async def _seed(bus: CommandBus, count: int) -> None:
    """Creates, updates and deletes, so that versions and index moves matter."""

    async def history(n: int) -> None:
        item_id = uuid.uuid4()
        tags = (f"t{n % 3}", "all")
        await bus.handle(CreateItem(item_id=item_id, name=f"item {n}", price=f"{n}.25", tags=tags))
        await bus.handle(
            UpdateItem(item_id=item_id, changes={"name": f"renamed {n}", "tags": ["x"]})
        )
        await bus.handle(UpdateItem(item_id=item_id, changes={"price": f"{n}.75"}))
        if n % 5 == 0:
            await bus.handle(DeleteItem(item_id=item_id))

    for start in range(0, count, 10):
        await asyncio.gather(*(history(n) for n in range(start, min(start + 10, count))))


async def _run_until(container: bootstrap.Container, done: Callable[[], Awaitable[bool]]) -> None:
    """Run an in-process projector until `done`."""
    projector = container.projector()
    task = asyncio.create_task(projector.run())
    try:
        await eventually(done, within=20)
    finally:
        projector.stop()
        await asyncio.wait_for(task, 10)


async def _generations(redis: Redis, layout: KeyLayout) -> dict[int, str]:
    names = await redis.mget([layout.gen(p) for p in range(layout.partitions)])
    return {p: as_text(n) for p, n in enumerate(names) if n is not None}


async def _checkpoints(redis: Redis, layout: KeyLayout, gens: dict[int, str]) -> list[int]:
    cps = await redis.mget([layout.base(p, g) + "cp" for p, g in gens.items()])
    return [int(c or 0) for c in cps]


async def _when_partition_passes(
    redis: Redis, layout: KeyLayout, gens: dict[int, str], position: float
) -> None:
    """Return as soon as partition 0's checkpoint passes `position`: the other
    partitions of that batch are then usually still to be written."""
    key = layout.base(0, gens[0]) + "cp"
    for _ in range(20_000):
        if int(await redis.get(key) or 0) >= position:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"partition 0 never passed position {position}")


@pytest.mark.slow
async def test_projector_sigkilled_mid_batch_restarts_with_views_equal_to_postgresql(
    settings: Settings, db: asyncpg.Connection, redis: Redis, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"projection_partitions": PARTITIONS, "projector_batch_size": BATCH}
    )
    env = items_env(settings)
    container = bootstrap.build(settings)
    layout = container.layout
    try:
        async with Spawner(tmp_path) as spawn:
            # A live generation first, so that the kills hit steady-state projection.
            await _run_until(container, lambda: container.read_model.ready())
            gens = await _generations(redis, layout)
            await _seed(container.bus, SEEDED)
            head = await PgEventLog(db).head()

            kills = torn = 0  # torn: the partitions of one batch left at different checkpoints
            for fraction in KILL_AT:
                if kills >= 3 and torn:
                    break
                projector = await spawn.start("projector", ["projector"], env)
                await _when_partition_passes(redis, layout, gens, fraction * head)
                await projector.kill()
                cps = await _checkpoints(redis, layout, gens)
                assert max(cps) < head, "the backlog was projected before the kill"
                kills += 1
                torn += len(set(cps)) > 1
            assert torn, "no kill landed between two partitions of a batch"

            last = await spawn.start("projector", ["projector"], env)
            await eventually(
                lambda: _checkpoints(redis, layout, gens), lambda c: min(c) == head, within=20
            )
            code, out, err = await run_items(["verify"], env)
            assert code == 0, out + err
            assert f"checked {SEEDED - SEEDED // 5} item(s)" in out, out
            assert await _generations(redis, layout) == gens, "a kill caused a restore"
            await _assert_each_event_took_effect_once(db, redis, layout, gens)
            assert await last.stop() == 0, last.log()
    finally:
        await container.close()


async def _assert_each_event_took_effect_once(
    db: asyncpg.Connection, redis: Redis, layout: KeyLayout, gens: dict[int, str]
) -> None:
    """What `items verify` does not look at: the version of every item ever written
    (deleted ones too) equals its last event's, no event is a dead letter, and every
    index holds each live item exactly once."""
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 0
    rows = await db.fetch(
        "SELECT item_id::text AS id, max(item_version) AS version,"
        " bool_or(type = 'ItemDeleted') AS deleted FROM events GROUP BY item_id"
    )
    expected = {r["id"]: -r["version"] if r["deleted"] else r["version"] for r in rows}
    live = await db.fetch("SELECT id::text AS id, tags FROM items")
    versions: dict[str, int] = {}
    for p, gen in gens.items():
        base = layout.base(p, gen)
        stored = await redis.hgetall(base + "ver")
        assert not set(map(as_text, stored)) & set(versions), "an item in two partitions"
        versions.update({as_text(k): int(v) for k, v in stored.items()})

        mine = [r for r in live if layout.partition_of(r["id"]) == p]
        want: dict[str, set[str]] = defaultdict(set)  # index suffix -> ids
        for row in mine:
            for sort in ("created_at", "updated_at", "name", "price"):
                want[f"ix:{sort}"].add(row["id"])
                for tag in row["tags"]:
                    want[f"tx:{tag}:{sort}"].add(row["id"])
        have: dict[str, set[str]] = {}
        async for key in redis.scan_iter(match=scan_pattern(base), count=1000):
            suffix = as_text(key)[len(base) :]
            if suffix.startswith(("ix:", "tx:")):
                ids = Counter([member_id(as_text(m)) async for m, _ in redis.zscan_iter(key)])
                assert max(ids.values()) == 1, f"{suffix}: an item indexed twice"
                have[suffix] = set(ids)
        assert have == {k: v for k, v in want.items() if v}, f"partition {p}: indexes differ"
    assert versions == expected


# -- 5. two projectors -------------------------------------------------------------------


async def _create(container: bootstrap.Container, name: str) -> str:
    item_id = uuid.uuid4()
    await container.bus.handle(CreateItem(item_id=item_id, name=name, price="1"))
    return str(item_id)


async def _projected(container: bootstrap.Container, item_id: str) -> bool:
    return (await container.read_model.get(item_id)).data is not None


# The stated bound: a dead or stuck owner's partitions are taken over within a lease and
# a tick of the keeper (app/projection/ownership.py), plus a poll of the projector.
TAKEOVER = 5.0 + 1.0 + 1.0


@pytest.mark.slow
async def test_two_projectors_one_owns_a_stuck_owner_is_fenced_a_killed_one_replaced(
    settings: Settings,
    db: asyncpg.Connection,
    redis: Redis,
    container: bootstrap.Container,
    tmp_path: Path,
) -> None:
    prefix = settings.redis_prefix
    env = items_env(settings)
    async with Spawner(tmp_path) as spawn:
        started = await asyncio.gather(*(spawn.start(n, ["projector"], env) for n in "ab"))
        by_pid = {p.pid: p for p in started}
        held = await eventually(lambda: owners(db, prefix), lambda o: len(o) == 1, within=20)
        await asyncio.sleep(2.0)  # two lease ticks: the standby must not take it
        assert await owners(db, prefix) == held
        owner = by_pid[held[0]]
        [standby] = [p for p in started if p is not owner]
        await eventually(container.read_model.ready, within=10)
        first = await _create(container, "first")
        await eventually(lambda: _projected(container, first))
        assert "owns partition(s) 0" in owner.log()
        assert "owns partition(s)" not in standby.log()

        # A stuck owner: its lease lapses and the standby takes the partition over.
        loop = asyncio.get_running_loop()
        owner.signal(signal.SIGSTOP)
        stuck_at = loop.time()
        frozen = await _create(container, "while the owner is stuck")
        await eventually(lambda: _projected(container, frozen), within=TAKEOVER + 3)
        took_over = loop.time() - stuck_at
        assert took_over < TAKEOVER, f"took over after {took_over:.1f}s"
        assert await owners(db, prefix) == {0: standby.pid}

        # Resumed while the new owner is stopped in turn (its lease still runs), the old
        # one writes nothing: not the write made meanwhile, not its checkpoint.
        standby.signal(signal.SIGSTOP)
        pending = await _create(container, "while the new owner is stopped")
        before = await _partition_state(redis, container)
        owner.signal(signal.SIGCONT)
        await asyncio.sleep(2.0)
        assert not await _projected(container, pending), "a stale owner wrote"
        assert await _partition_state(redis, container) == before
        standby.signal(signal.SIGCONT)
        await eventually(lambda: _projected(container, pending), within=5)

        # A killed owner: the survivor takes over within the bound.
        await standby.kill()
        killed_at = loop.time()
        after = await _create(container, "after the kill")
        await eventually(lambda: _projected(container, after), within=TAKEOVER + 3)
        assert loop.time() - killed_at < TAKEOVER
        assert await owners(db, prefix) == {0: owner.pid}
        assert (await container.status())["partitions"][0]["owner"]["pid"] == owner.pid
        epoch = (await epochs(db, prefix))[0]
        assert epoch >= 3  # three acquisitions: the first, the takeover, the return
        assert await owner.stop() == 0, owner.log()
        assert await owners(db, prefix) == {}  # a clean stop gives it up at once


async def _partition_state(redis: Redis, container: bootstrap.Container) -> tuple[Any, ...]:
    """Partition 0's live generation, checkpoint and owner fence, as Redis holds them."""
    layout = container.layout
    generation = await redis.get(layout.gen(0))
    assert generation is not None
    checkpoint = await redis.get(layout.checkpoint(0, as_text(generation)))
    return generation, checkpoint, await redis.get(layout.epoch(0))


# -- 6. SIGTERM to the API under load ----------------------------------------------------

WRITERS = 12


@dataclass
class Outcome:
    key: str  # the request's Idempotency-Key
    status: int | None  # None: no answer (a transport error)
    at: float  # when the answer (or the error) came
    item_id: str | None = None
    version: int | None = None
    error: str = ""


async def _writer(client: httpx.AsyncClient, n: int, outcomes: list[Outcome]) -> None:
    """POST, then PATCH the new item twice (each PATCH renames it, so each is an event),
    as fast as the server answers, until it stops answering."""
    loop = asyncio.get_running_loop()
    item: dict[str, Any] | None = None
    for i in range(100_000):
        key = f"w{n}-{i}"
        try:
            if item is None or i % 3 == 0:
                body = {"name": key, "price": "1.50", "tags": [f"w{n}"]}
                r = await client.post(ITEMS, json=body, headers={"Idempotency-Key": key})
            else:
                r = await client.patch(
                    f"{ITEMS}/{item['id']}",
                    json={"name": key},
                    headers={"Idempotency-Key": key},
                )
        except httpx.TransportError as exc:
            outcomes.append(Outcome(key, None, loop.time(), error=repr(exc)))
            return
        outcome = Outcome(key, r.status_code, loop.time())
        if r.status_code in (200, 201):
            item = r.json()
            assert item is not None
            outcome.item_id, outcome.version = item["id"], item["version"]
        outcomes.append(outcome)


async def _hold_a_position(conn: asyncpg.Connection) -> int:
    """Open a transaction that takes an event position, and leave it open: the projector
    may not pass that position until the transaction ends."""
    item_id = uuid.uuid4()
    await conn.execute("BEGIN")
    await conn.execute(
        "INSERT INTO items (id, name, price, version, created_at, updated_at)"
        " VALUES ($1, 'held', 1, 1, now(), now())",
        item_id,
    )
    position = await conn.fetchval(
        "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)"
        " VALUES (gen_random_uuid(), $1, 1, 'ItemCreated', '{}', now()) RETURNING position",
        item_id,
    )
    return int(position)


@pytest.mark.slow
async def test_sigterm_to_the_api_under_load_finishes_in_flight_requests_and_loses_no_write(
    settings: Settings, db: asyncpg.Connection, redis: Redis, tmp_path: Path
) -> None:
    database_url, _ = settings.require_urls()
    env = items_env(settings, PROJECTOR_IN_PROCESS="true", CONSISTENCY_WAIT_MS="20000")
    port = free_port()
    loop = asyncio.get_running_loop()
    outcomes: list[Outcome] = []
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.serve("serve", env, port)
        limits = httpx.Limits(max_connections=WRITERS + 4)
        base_url = f"http://127.0.0.1:{port}"
        # A read that cannot be answered yet: it waits for a write that the projector may
        # not reach while an earlier position is held by an open transaction.
        hold = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await _hold_a_position(hold)
            async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
                awaited = await client.post(ITEMS, json={"name": "awaited", "price": "2"})
                assert awaited.status_code == 201
                token = {"Consistency-Token": awaited.headers["consistency-token"]}
                slow = asyncio.create_task(client.get(awaited.headers["location"], headers=token))
                writers = [
                    asyncio.create_task(_writer(client, n, outcomes)) for n in range(WRITERS)
                ]
                await asyncio.sleep(1.5)
                assert not slow.done()
                assert all(not w.done() for w in writers), "a writer stopped before SIGTERM"

                serve.signal(signal.SIGTERM)
                sigterm_at = loop.time()
                await asyncio.sleep(1.0)
                assert serve.running, "the server did not wait for the request in flight"
                assert not slow.done()
                await hold.close()  # rolls back: the projector may pass the position now
                answer = await slow
                answered_at = loop.time()
                await asyncio.wait_for(asyncio.gather(*writers), 20)
        finally:
            if not hold.is_closed():
                await hold.close()
        assert await serve.wait(15) == 0, serve.log()

        # The read in flight at SIGTERM got its whole answer, after the signal.
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "awaited"
        assert answered_at > sigterm_at + 1.0
        acknowledged = [o for o in outcomes if o.status is not None]
        assert {o.status for o in acknowledged} <= {200, 201}, Counter(o.status for o in outcomes)
        late = [o for o in outcomes if o.status is None and o.at < sigterm_at]
        assert not late, late
        # Requests in flight at SIGTERM were answered after it.
        assert any(o.at > sigterm_at for o in acknowledged)

        # Every acknowledged write is in PostgreSQL, and nothing else is: a write that
        # committed without its answer reaching the client would show as a stored key.
        stored = {r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")}
        assert stored == {o.key for o in acknowledged}
        want: dict[str, int] = {}
        for o in acknowledged:
            assert o.item_id is not None
            assert o.version is not None
            want[o.item_id] = max(want.get(o.item_id, 0), o.version)
        rows = await db.fetch("SELECT id::text AS id, version FROM items")
        have = {r["id"]: r["version"] for r in rows}
        assert {i: have.get(i) for i in want} == want
        assert await db.fetchval("SELECT count(*) FROM events") == len(acknowledged) + 1

        # Served again, every acknowledged write is visible at its version.
        again = await spawn.serve("serve-again", env, port)
        (code, out, err), _ = await asyncio.gather(
            run_items(["verify"], env), _visible_at(base_url, want)
        )
        assert code == 0, out + err
        assert await again.stop() == 0, again.log()


async def _visible_at(base_url: str, versions: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for item_id, version in versions.items():
            got = await eventually(
                lambda i=item_id: client.get(f"{ITEMS}/{i}"),  # type: ignore[misc]
                lambda r: r.status_code == 200,
            )
            assert got.json()["version"] == version
