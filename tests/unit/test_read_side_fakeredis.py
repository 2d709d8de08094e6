"""The Redis side of the projection and the queries, on fakeredis (Lua via lupa).

RedisProjectionStore writes what the projection step computes; RedisReadModel and
QueryHandlers read it back. No server: every test gets its own in-memory FakeServer.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import orjson
import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from redis.asyncio import Redis

from app.domain.errors import ItemNotFound
from app.domain.events import Event
from app.domain.model import Item
from app.infrastructure.redis.change_feed import RedisChangeFeed
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.read_model import RedisReadModel
from app.projection.fold import ItemState, ViewOp, diff, fold
from app.projection.ports import BaseMoved, Fenced, Target
from app.projection.step import BatchStep
from app.queries import views
from app.queries.cache.pages import PageCache
from app.queries.cache.views import ViewCache
from app.queries.cache.watcher import CheckpointWatcher
from app.queries.cursor import CursorCodec
from app.queries.errors import ConsistencyTimeout, InvalidCursor, ReadModelUnavailable
from app.queries.handlers import QueryHandlers
from app.queries.queries import GetItem, ListItems, item_etag
from tests.fakes import MemoryLog, owning_all
from tests.unit.builders import at, cut, random_history, stored, uid


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    client: Redis = FakeRedis(server=FakeServer())
    yield client
    await client.aclose()


class Projection:
    """The real projection step on its store, fed events directly rather than from a
    log: positions continue from one batch to the next."""

    def __init__(self, store: RedisProjectionStore) -> None:
        self.store = store
        self.step = owning_all(BatchStep(store), store.partitions)
        self.dead_letters = MemoryLog(refuse=True)
        self.position = 0

    @property
    def targets(self) -> dict[int, Target]:
        return self.step.targets

    @property
    def checkpoints(self) -> dict[int, int]:
        return self.step.checkpoints

    async def resolve(self) -> None:
        await self.step.resolve()

    async def apply(self, batch: list[Event]) -> None:
        """Apply the next events of the log (positions continue from the last batch)."""
        if batch:
            await self.step.apply(stored(batch, start=self.position + 1), self.dead_letters)
        self.position += len(batch)

    async def activate(self) -> None:
        await self.step.finish_restores()


def make(item_id: UUID, name: str, price: str, tags: list[str], step: int) -> Item:
    return Item.create(item_id=item_id, name=name, price=price, tags=tags, now=at(step))


def drain(*items: Item) -> list[Event]:
    events: list[Event] = []
    for item in items:
        events += item.events
        item.events.clear()
    return events


async def project(
    redis: Redis, events: list[Event], *, partitions: int = 1, batches: int = 1
) -> Projection:
    projection = Projection(RedisProjectionStore(redis, KeyLayout("t", partitions)))
    await projection.resolve()
    size = max(1, -(-len(events) // batches))
    for i in range(0, len(events), size):
        await projection.apply(events[i : i + size])
    await projection.activate()
    return projection


def queries(
    redis: Redis, partitions: int = 1, *, secret: str = "x" * 32, wait_limit: float = 0.05
) -> QueryHandlers:
    layout = KeyLayout("t", partitions)
    read_model = RedisReadModel(redis, layout)
    cache = ViewCache(1 << 20)  # never enabled: the watcher does not run, reads poll
    feed = RedisChangeFeed(redis, layout.checkpoint_channel)
    return QueryHandlers(
        read_model,
        CursorCodec(secret),
        CheckpointWatcher(feed, read_model, cache),
        wait_limit,
        cache,
        PageCache(cache, 1 << 20),
    )


async def all_pages(handlers: QueryHandlers, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a listing, following next_cursor; and the total of the first page."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    total = -1
    for _ in range(1000):
        answer = await handlers.list_items(ListItems(cursor=cursor, **query))
        page = orjson.loads(answer.body)
        assert set(page) == {"items", "next_cursor", "total"}
        if total < 0:
            total = page["total"]
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found, total
    raise AssertionError("the pages never end")


def ordered(items: list[Item], sort: str) -> list[Item]:
    """The listing order, computed from the aggregates: value, then id, both reversed
    for a descending sort; names compare case-folded."""
    field = sort.lstrip("-")

    def key(item: Item) -> tuple[Any, str]:
        value: Any = views.item_view(item)[field]
        if field == "name":
            value = str(value).casefold()
        elif field == "price":
            value = item.price
        return value, str(item.id)

    return sorted(items, key=key, reverse=sort.startswith("-"))


def expected_order(items: list[Item], sort: str) -> list[str]:
    return [str(i.id) for i in ordered(items, sort)]


# -- the store -------------------------------------------------------------------------


async def test_reads_are_unavailable_before_activation(fake_redis: Redis) -> None:
    handlers = queries(fake_redis)
    with pytest.raises(ReadModelUnavailable):
        await handlers.get_item(GetItem(uid(1)))
    with pytest.raises(ReadModelUnavailable):
        await handlers.list_items(ListItems())

    projection = Projection(RedisProjectionStore(fake_redis, KeyLayout("t", 1)))
    await projection.resolve()
    target = projection.targets[0]
    assert target.building
    assert projection.checkpoints[0] == 0
    await projection.apply(drain(make(uid(1), "Lamp", "1", [], 0)))
    read_model = RedisReadModel(fake_redis, KeyLayout("t", 1))
    assert not await read_model.ready()
    with pytest.raises(ReadModelUnavailable):
        await read_model.get(str(uid(1)))  # written, but still building

    await projection.activate()
    assert await read_model.ready()
    read = await read_model.get(str(uid(1)))
    assert read.checkpoint == 1
    assert read.data is not None


async def test_resolve_follows_a_building_generation_then_the_live_one(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 1))
    first, cp = await store.resolve(0)
    again, _ = await store.resolve(0)
    assert again == first  # a second projector joins the same restore
    assert (first.building, cp) == (True, 0)
    await store.apply(first, 0, 3, [])
    assert await store.activate(first) is None  # nothing was live before
    live, cp = await store.resolve(0)
    assert live == Target(0, first.generation, building=False)
    assert cp == 3
    assert await store.still_current([live])


async def test_get_returns_the_projected_view_bytes(fake_redis: Redis) -> None:
    lamp = make(uid(1), "Desk lamp", "24.90", ["office"], 0)
    chair = make(uid(2), "Chair", "80", [], 1)
    events = drain(lamp, chair)
    lamp.update({"price": "19.90", "tags": ["office", "sale"]}, now=at(2))
    events += drain(lamp)
    await project(fake_redis, events)

    handlers = queries(fake_redis)
    answer = await handlers.get_item(GetItem(lamp.id))
    assert answer.body == views.render(views.item_view(lamp))
    assert answer.checkpoint == 3
    assert orjson.loads(answer.body)["version"] == 2
    assert answer.etag == item_etag(2) == '"2"'
    answer = await handlers.get_item(GetItem(chair.id))
    assert orjson.loads(answer.body) == views.item_view(chair)
    with pytest.raises(ItemNotFound):
        await handlers.get_item(GetItem(uid(99)))


async def test_a_deleted_item_is_gone_from_views_and_indexes(fake_redis: Redis) -> None:
    lamp = make(uid(1), "Lamp", "1", ["office"], 0)
    chair = make(uid(2), "Chair", "2", ["office"], 1)
    events = drain(lamp, chair)
    lamp.delete(now=at(2))
    events += drain(lamp)
    projection = await project(fake_redis, events, batches=3)

    handlers = queries(fake_redis)
    with pytest.raises(ItemNotFound):
        await handlers.get_item(GetItem(lamp.id))
    for tag in (None, "office"):
        found, total = await all_pages(handlers, tag=tag)
        assert [i["id"] for i in found] == [str(chair.id)]
        assert total == 1
    # The version survives the view, as a negative number, so replays stay no-ops.
    state = (await projection.store.load(projection.targets[0], [str(lamp.id)]))[str(lamp.id)]
    assert state == ItemState(version=2, view=None)
    assert state.deleted


async def test_apply_with_a_wrong_checkpoint_is_fenced(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 1))
    target, cp = await store.resolve(0)
    events = drain(make(uid(1), "Lamp", "1", [], 0))
    op = diff(str(uid(1)), ItemState(), fold(ItemState(), events))
    assert op is not None
    with pytest.raises(Fenced, match="checkpoint"):
        await store.apply(target, cp + 5, cp + 6, [op])
    assert await store.load(target, [str(uid(1))]) == {str(uid(1)): ItemState()}  # no write

    assert await store.apply(target, cp, 1, [op]) == 1
    with pytest.raises(Fenced, match="checkpoint"):
        await store.apply(target, 0, 2, [op])  # a stale projector still at 0


async def test_apply_to_a_generation_that_is_no_longer_named_is_fenced(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 1))
    target, _ = await store.resolve(0)
    await store.apply(target, 0, 1, [])
    await store.activate(target)
    # The building pointer is gone: a projector still writing "building" must stop.
    with pytest.raises(Fenced, match="generation"):
        await store.apply(target, 1, 2, [])
    with pytest.raises(Fenced):
        await store.activate(target)
    assert not await store.still_current([target])
    live = Target(0, target.generation, building=False)
    assert await store.apply(live, 1, 2, []) == 0


async def test_replayed_ops_are_skipped_and_moved_bases_refused(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 1))
    target, _ = await store.resolve(0)
    item = make(uid(1), "Lamp", "1", [], 0)
    created = fold(ItemState(), drain(item))
    first = diff(str(item.id), ItemState(), created)
    assert first is not None
    assert await store.apply(target, 0, 1, [first]) == 1
    assert await store.apply(target, 1, 2, [first]) == 0  # already there: skipped

    item.update({"name": "Lamp 2"}, now=at(1))
    item.update({"name": "Lamp 3"}, now=at(2))
    events = drain(item)
    # An op computed from a base the store does not hold (version 2, it has 1).
    v2 = fold(created, events[:1])
    bad = diff(str(item.id), v2, fold(v2, events[1:]))
    assert bad is not None
    with pytest.raises(BaseMoved):
        await store.apply(target, 2, 3, [bad])
    stored = await store.load(target, [str(item.id)])
    assert stored[str(item.id)] == created  # refused whole, nothing written


async def test_load_of_no_items(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 2))
    target, _ = await store.resolve(0)
    assert await store.load(target, []) == {}


async def step_over(store: RedisProjectionStore) -> BatchStep:
    """The real projection step with its Redis side only (no PostgreSQL connection)."""
    step = owning_all(BatchStep(store), store.partitions)
    await step.resolve()
    return step


async def test_the_projector_applies_stored_events(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 1))
    step = await step_over(store)
    lamp = make(uid(1), "Lamp", "1.50", ["office"], 0)
    lamp.update({"description": "bright", "tags": []}, now=at(1))
    events = drain(lamp)
    await step.apply(stored(events), MemoryLog())
    await step.apply(stored(events), MemoryLog())  # the same batch again: nothing moves
    await step.finish_restores()
    answer = await queries(fake_redis).get_item(GetItem(lamp.id))
    assert answer.body == views.render(views.item_view(lamp))
    assert answer.checkpoint == 2


async def test_the_projector_applies_a_batch_that_misses_a_partition(fake_redis: Redis) -> None:
    store = RedisProjectionStore(fake_redis, KeyLayout("t", 2))
    step = await step_over(store)
    await step.apply(stored(drain(make(uid(1), "Lamp", "1", [], 0))), MemoryLog())
    assert step.checkpoints == {0: 1, 1: 1}


class CountedLoads(RedisProjectionStore):
    """The store, counting the items the step asks Redis for and the batches it writes
    (or tries to: a refused one counts too)."""

    def __init__(self, redis: Redis, layout: KeyLayout) -> None:
        super().__init__(redis, layout)
        self.loaded: list[str] = []
        self.applies = 0

    async def load(self, target: Target, item_ids: list[str]) -> dict[str, ItemState]:
        self.loaded += item_ids
        return await super().load(target, item_ids)

    async def apply(self, target: Target, expected: int, new: int, ops: list[ViewOp]) -> int:
        self.applies += 1
        return await super().apply(target, expected, new, ops)


async def test_an_item_the_step_just_wrote_is_folded_on_without_reading_it_back(
    fake_redis: Redis,
) -> None:
    store = CountedLoads(fake_redis, KeyLayout("t", 1))
    step = await step_over(store)
    lamp = make(uid(1), "Lamp", "1.50", ["office"], 0)
    chair = make(uid(2), "Chair", "9", [], 1)
    await step.apply(stored(drain(lamp, chair)), MemoryLog())
    lamp.update({"price": "2.00", "tags": ["home"]}, now=at(2))
    await step.apply(stored(drain(lamp), start=3), MemoryLog())
    chair.update({"name": "Stool"}, now=at(3))
    lamp.update({"name": "Lantern"}, now=at(4))
    await step.apply(stored(drain(chair, lamp), start=4), MemoryLog())
    assert store.loaded == []  # every base was the step's own last write
    step.forget()  # after a failure nothing is guessed: the next batch reads Redis
    await step.resolve()
    chair.update({"price": "10"}, now=at(5))
    await step.apply(stored(drain(chair), start=6), MemoryLog())
    assert store.loaded == [str(chair.id)]
    await step.finish_restores()
    handlers = queries(fake_redis)
    for item in (lamp, chair):
        answer = await handlers.get_item(GetItem(item.id))
        assert answer.body == views.render(views.item_view(item))
    for sort in ("name", "price", "-updated_at"):
        found, _ = await all_pages(handlers, sort=sort)
        assert [i["id"] for i in found] == expected_order([lamp, chair], sort)
    assert [i["id"] for i in (await all_pages(handlers, tag="home"))[0]] == [str(lamp.id)]
    assert (await all_pages(handlers, tag="office"))[0] == []


async def test_a_view_moved_behind_the_steps_back_is_folded_again_from_redis(
    fake_redis: Redis,
) -> None:
    """Another writer (a repair) moved the item on since the step wrote it: the guessed
    base is refused by the script's version check, and the step folds from Redis."""
    layout = KeyLayout("t", 1)
    store = CountedLoads(fake_redis, layout)
    step = await step_over(store)
    lamp = make(uid(1), "Lamp", "1.50", ["office"], 0)
    await step.apply(stored(drain(lamp)), MemoryLog())
    before = (await store.load(step.targets[0], [str(lamp.id)]))[str(lamp.id)]
    lamp.update({"name": "Lantern", "tags": ["home"]}, now=at(1))
    lamp.update({"price": "3.00"}, now=at(2))
    v2_event, v3_event = drain(lamp)
    # The other writer's version 2, written as a repair writes it: view, `ver`, indexes.
    v2 = fold(before, [v2_event])
    op = diff(str(lamp.id), before, v2)
    assert op is not None
    assert op.data is not None
    base = layout.base(0, step.targets[0].generation)
    await fake_redis.set(base + "v:" + str(lamp.id), op.data)
    await fake_redis.hset(base + "ver", str(lamp.id), 2)
    for index, member in op.removes:
        await fake_redis.zrem(base + index, member)
    for index, member in op.adds:
        await fake_redis.zadd(base + index, {member: 0})
    store.loaded, store.applies = [], 0
    await step.apply(stored([v2_event, v3_event], start=2), MemoryLog())
    # Guessed from version 1 and refused (BaseMoved), then read and written again.
    assert store.applies == 2
    assert store.loaded == [str(lamp.id)]
    await step.finish_restores()
    handlers = queries(fake_redis)
    answer = await handlers.get_item(GetItem(lamp.id))
    assert answer.body == views.render(views.item_view(lamp))
    assert [i["id"] for i in (await all_pages(handlers, tag="home"))[0]] == [str(lamp.id)]
    assert (await all_pages(handlers, tag="office"))[0] == []
    found, total = await all_pages(handlers, sort="price")
    assert total == 1
    assert found[0]["price"] == "3.00"


# -- the queries -----------------------------------------------------------------------


@pytest.fixture
def catalogue() -> list[Item]:
    names = ["banana", "Apple", "cherry", "apple", "Éclair", "date", "Banana split"]
    prices = ["3.50", "0.99", "12.00", "0.99", "7.25", "100", "3.5"]
    tags = [["fruit"], ["fruit", "red"], ["red"], ["fruit"], [], ["fruit"], ["fruit", "sale"]]
    return [make(uid(i + 1), names[i], prices[i], tags[i], step=i * 3) for i in range(len(names))]


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("sort", ["created_at", "-created_at", "name", "-name", "price", "-price"])
async def test_list_pages_follow_the_sort(
    fake_redis: Redis, catalogue: list[Item], sort: str, partitions: int
) -> None:
    await project(fake_redis, drain(*catalogue), partitions=partitions, batches=2)
    handlers = queries(fake_redis, partitions)
    for limit in (1, 2, 3, 100):
        found, total = await all_pages(handlers, sort=sort, limit=limit)
        assert total == len(catalogue)
        assert [i["id"] for i in found] == expected_order(catalogue, sort)
    first = orjson.loads((await handlers.list_items(ListItems(sort=sort, limit=2))).body)
    assert first["items"] == [views.item_view(i) for i in ordered(catalogue, sort)[:2]]


@pytest.mark.parametrize("partitions", [1, 2])
async def test_list_filters_by_tag(
    fake_redis: Redis, catalogue: list[Item], partitions: int
) -> None:
    await project(fake_redis, drain(*catalogue), partitions=partitions)
    handlers = queries(fake_redis, partitions)
    for tag in ("fruit", "red", "sale", "none-such"):
        tagged = [i for i in catalogue if tag in i.tags]
        found, total = await all_pages(handlers, sort="-price", tag=tag, limit=2)
        assert total == len(tagged)
        assert [i["id"] for i in found] == expected_order(tagged, "-price")


async def test_list_body_and_checkpoint(fake_redis: Redis, catalogue: list[Item]) -> None:
    await project(fake_redis, drain(*catalogue))
    answer = await queries(fake_redis).list_items(ListItems(sort="name", limit=100))
    page = orjson.loads(answer.body)
    assert page["next_cursor"] is None
    assert page["total"] == len(catalogue)
    assert answer.checkpoint == len(catalogue)


async def test_empty_read_model_lists_nothing(fake_redis: Redis) -> None:
    await project(fake_redis, [])
    answer = await queries(fake_redis).list_items(ListItems())
    assert orjson.loads(answer.body) == {"items": [], "next_cursor": None, "total": 0}
    assert answer.checkpoint == 0


async def test_updates_move_items_in_the_listing(fake_redis: Redis, catalogue: list[Item]) -> None:
    events = drain(*catalogue)
    catalogue[0].update({"name": "aardvark", "tags": ["sale"]}, now=at(100))
    catalogue[1].update({"price": "1000"}, now=at(101))
    events += drain(*catalogue)
    await project(fake_redis, events, partitions=2, batches=4)
    handlers = queries(fake_redis, 2)
    for sort in ("name", "-price", "-updated_at"):
        found, _ = await all_pages(handlers, sort=sort, limit=3)
        assert [i["id"] for i in found] == expected_order(catalogue, sort)
        assert found == [views.item_view(i) for i in ordered(catalogue, sort)]
    sale, _ = await all_pages(handlers, tag="sale", sort="name")
    assert [i["name"] for i in sale] == ["aardvark", "Banana split"]


async def test_cursors_are_bound_to_their_query(fake_redis: Redis, catalogue: list[Item]) -> None:
    await project(fake_redis, drain(*catalogue))
    handlers = queries(fake_redis)
    page = orjson.loads((await handlers.list_items(ListItems(sort="name", limit=2))).body)
    cursor = page["next_cursor"]
    assert isinstance(cursor, str)
    with pytest.raises(InvalidCursor):
        await handlers.list_items(ListItems(sort="-name", limit=2, cursor=cursor))
    with pytest.raises(InvalidCursor):
        await handlers.list_items(ListItems(sort="name", tag="fruit", limit=2, cursor=cursor))
    forged = queries(fake_redis, secret="y" * 32)
    with pytest.raises(InvalidCursor):
        await forged.list_items(ListItems(sort="name", limit=2, cursor=cursor))
    for garbage in ("", "abc", "a.b.c", "!!!.???", cursor[:-2] + "AA"):
        with pytest.raises(InvalidCursor):
            await handlers.list_items(ListItems(sort="name", cursor=garbage))
    with pytest.raises(ValueError, match="unknown sort"):
        await handlers.list_items(ListItems(sort="colour"))


@pytest.mark.parametrize("seed", range(4))
async def test_random_histories_read_back_like_the_write_side(fake_redis: Redis, seed: int) -> None:
    rng = random.Random(seed)
    history = random_history(rng, commands=50)
    projection = Projection(RedisProjectionStore(fake_redis, KeyLayout("t", 3)))
    await projection.resolve()
    for batch in cut(rng, history.events):
        await projection.apply(batch)
    await projection.activate()

    handlers = queries(fake_redis, 3)
    live = list(history.live.values())
    for sort in ("-created_at", "name", "price"):
        found, total = await all_pages(handlers, sort=sort, limit=4)
        assert total == len(live)
        assert [i["id"] for i in found] == expected_order(live, sort)
    for item in history.items.values():
        if item.deleted:
            with pytest.raises(ItemNotFound):
                await handlers.get_item(GetItem(item.id))
        else:
            answer = await handlers.get_item(GetItem(item.id))
            assert answer.body == views.render(views.item_view(item))
            assert answer.checkpoint == len(history.events)


# -- read-your-writes ------------------------------------------------------------------


async def test_a_read_at_a_reached_position_answers_at_once(
    fake_redis: Redis, catalogue: list[Item]
) -> None:
    await project(fake_redis, drain(*catalogue))
    handlers = queries(fake_redis, wait_limit=0)
    answer = await handlers.get_item(GetItem(catalogue[0].id, min_position=len(catalogue)))
    assert answer.checkpoint == len(catalogue)
    listed = await handlers.list_items(ListItems(min_position=1))
    assert listed.checkpoint == len(catalogue)


async def test_a_read_beyond_the_projection_times_out(
    fake_redis: Redis, catalogue: list[Item]
) -> None:
    await project(fake_redis, drain(*catalogue))
    handlers = queries(fake_redis, wait_limit=0.05)
    with pytest.raises(ConsistencyTimeout):
        await handlers.get_item(GetItem(catalogue[0].id, min_position=len(catalogue) + 1))
    with pytest.raises(ConsistencyTimeout):
        await handlers.list_items(ListItems(min_position=len(catalogue) + 1))


async def test_list_etag_follows_the_page_bytes(fake_redis: Redis, catalogue: list[Item]) -> None:
    projection = await project(fake_redis, drain(*catalogue))
    handlers = queries(fake_redis)
    first = await handlers.list_items(ListItems(sort="name", limit=3))
    assert first.etag == (await handlers.list_items(ListItems(sort="name", limit=3))).etag
    assert first.etag != (await handlers.list_items(ListItems(sort="name", limit=2))).etag
    catalogue[1].update({"price": "2"}, now=at(100))  # "Apple" is on the first page
    await projection.apply(drain(catalogue[1]))
    changed = await handlers.list_items(ListItems(sort="name", limit=3))
    assert changed.etag != first.etag
