"""Every read and write of the read model during a Redis Cluster slot migration, one
MIGRATE at a time, on a real cluster: each answers what the partition holds or refuses
with TRYAGAIN (TryAgainError: a 503 for readers, a wait for the projector), never a
missing view, a checkpoint of 0, a version mismatch or a second copy of a key.

Redis refuses a script on the old node once a key it reaches has moved, but on the new
node (where ASK sends the call once a declared key has moved) a key still to move reads
as missing: what lua/lib/settled.lua guards. Without it the view read here answered a
404 for an item that exists (seen in test_scale_out under load), and a projector's write
on the new node failed as a version mismatch or left a key that MIGRATE then refused.
A TRYAGAIN answered to the call itself (its KEYS split between the nodes) is a
TryAgainError too, not redis-py's bare "TTL exhausted" once its retries ran out.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import TryAgainError

from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.infrastructure.redis.read_model import RedisReadModel
from app.projection.fold import ItemState, diff
from app.projection.ports import Target
from app.queries import views
from tests.redis_cluster import LocalRedisCluster, SlotMove, available

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

EPOCH = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(tmp_path_factory.mktemp("slots"), masters=3) as c:
        yield c


def _state(item_id: str, name: str, price: str, version: int) -> ItemState:
    view = views.make_view(
        item_id=item_id, name=name, description=None, price=price, tags=["red"],
        version=version, created_at="2026-12-07T00:00:00.000000Z",
        updated_at=f"2026-12-07T00:00:{version:02d}.000000Z",
    )  # fmt: skip
    return ItemState(version=version, view=view)


class Partition:
    """One partition of two items, written and read through the service's adapters, and
    what it must hold: every answer is checked against that."""

    def __init__(self, redis: RedisCluster, prefix: str) -> None:
        self.layout = KeyLayout(prefix, 1)
        self.store = RedisProjectionStore(redis, self.layout)
        self.reader = RedisReadModel(redis, self.layout)
        self.ids = sorted(str(uuid.uuid4()) for _ in range(2))
        self.states = {i: ItemState(0, None) for i in self.ids}
        self.checkpoint = 0
        self.target = Target(0, "", building=False)

    async def seed(self) -> None:
        assert await self.store.claim(0, EPOCH)
        building, self.checkpoint = await self.store.resolve(0)
        building = replace(building, epoch=EPOCH)
        news = {i: _state(i, f"item {n}", "1.00", 1) for n, i in enumerate(self.ids)}
        await self._apply(building, news)
        await self.store.activate(building)
        self.target = replace(building, building=False)

    async def _apply(self, target: Target, news: dict[str, ItemState]) -> None:
        ops = [diff(i, self.states[i], s) for i, s in news.items()]
        await self.store.apply(
            target, self.checkpoint, self.checkpoint + 1, [op for op in ops if op]
        )
        self.checkpoint += 1
        self.states.update(news)

    async def update(self) -> None:
        """The projector's next batch: the first item's next version (a new price)."""
        first = self.ids[0]
        version = self.states[first].version + 1
        await self._apply(self.target, {first: _state(first, "item 0", f"{version}.00", version)})

    async def check_reads(self) -> int:
        """Every read of the partition, each right or refused; how many were refused."""
        refused = 0
        for read in (self._get, self._list, self._position, self._load):
            try:
                await read()
            except TryAgainError:
                refused += 1
        return refused

    async def _get(self) -> None:
        for i in self.ids:
            got = await self.reader.get(i)
            state = self.states[i]
            assert state.view is not None
            assert (got.data, got.version, got.checkpoint) == (
                views.render(state.view), state.version, self.checkpoint
            ), f"item {i}"  # fmt: skip

    async def _list(self) -> None:
        page = await self.reader.list(
            sort_field="name", descending=False, tag="red", after=None, count=20
        )
        want = [views.render(s.view) for s in self.states.values() if s.view]
        assert [v for _, v in page.entries] == want
        assert (page.total, page.checkpoint) == (len(want), self.checkpoint)

    async def _position(self) -> None:
        assert await self.reader.positions() == [(0, self.target.generation, self.checkpoint)]

    async def _load(self) -> None:
        assert await self.store.load(self.target, self.ids) == self.states


ORDERS = ["pointers first", "pointers last", "shuffled"]


@pytest.mark.parametrize("order", ORDERS)
async def test_each_step_of_a_slot_migration_answers_right_or_refuses(
    cluster: LocalRedisCluster, tmp_path: Path, order: str
) -> None:
    redis = RedisCluster.from_url(cluster.url)
    redis.RedisClusterRequestTTL = 2  # a refusal after 2 tries, not 16 (0.05 s apart)
    try:
        part = Partition(redis, f"mig-{uuid.uuid4().hex[:8]}")
        await part.seed()
        await part.update()
        assert await part.check_reads() == 0  # nothing moving: nothing refused
        tag = part.layout.tag(0)
        move: SlotMove = cluster.begin_move(tag, (cluster.node_of(tag) + 1) % 3)
        keys = move.keys()
        # The declared keys (the pointers, the checkpoint, the fence) moving before or
        # after the views, `ver` and the indexes they lead to.
        declared = {part.layout.gen(0), part.layout.epoch(0)}
        declared.add(part.layout.checkpoint(0, part.target.generation))
        rest = sorted(set(keys) - declared)
        if order == "pointers first":
            keys = sorted(declared) + rest
        elif order == "pointers last":
            keys = rest + sorted(declared)
        else:
            random.Random(7).shuffle(keys)
        refused, written = 0, 0
        for key in keys[:-1]:
            move.migrate([key])
            refused += await part.check_reads()
            try:
                await part.update()  # MIGRATE of a key written twice would fail next
                written += 1
            except TryAgainError:
                refused += 1
        move.finish()
        # Moved: everything is served again, from the new node, and writes go on.
        assert await part.check_reads() == 0
        await part.update()
        assert await part.check_reads() == 0
        assert refused > 0  # the guard was reached, not skipped by a lucky order
        print(f"{order}: {len(keys)} keys, {refused} refusals, {written} writes")  # noqa: T201
    finally:
        await redis.aclose()
