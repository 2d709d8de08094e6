"""Properties of the write model and the projection, over any command sequence.

Hypothesis draws a sequence of create / update / delete commands over a few item slots,
including no-op updates, invalid values and commands on missing or deleted items. They
run through the real CommandBus, handlers and Item aggregate on an in-memory unit of
work; the events committed are then projected in random batches, with replays, and the
views must equal the ones rendered from the final aggregates:

- purely (fold / diff into an in-memory store with the Lua script's version guard), and
- through the real projection step (BatchStep) and the real APPLY Lua script, on fakeredis.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from hypothesis import given, note, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from app.commands.bus import CommandBus
from app.commands.commands import Command, CreateItem, DeleteItem, UpdateItem
from app.domain.errors import DomainError, InvalidValue, ItemNotFound
from app.domain.events import Event
from app.domain.model import Item
from app.infrastructure.redis.keys import KeyLayout, scan_pattern
from app.infrastructure.redis.projection_store import RedisProjectionStore, as_text
from app.infrastructure.redis.read_model import RedisReadModel
from app.projection.fold import ItemState, ViewOp, diff, fold
from app.projection.ports import Target
from app.projection.step import BatchStep
from app.queries import views
from app.queries.views import index_members, is_index
from tests.fakes import Clock, FakeDatabase, FakeUnitOfWork, MemoryLog, owning_all
from tests.unit.builders import NAMES, TAGS, at, stored, uid

SLOTS = 3
SAME = "<same as now>"  # an update value resolved to the item's current value: a no-op

# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    slot: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class Update:
    slot: int
    changes: dict[str, Any]  # values may be SAME


@dataclass(frozen=True)
class Delete:
    slot: int


Step = Create | Update | Delete


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight (shrinking to the first)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Valid values eleven times in twelve: refused commands are tested, not the rule."""
    return weighted((11, valid), (1, invalid))


plain_text = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=10)
names = mostly(
    st.one_of(st.sampled_from(NAMES + (" padded ",)), plain_text.filter(str.strip)),
    st.one_of(st.sampled_from(["", "   ", "a\x00b", "\ud800", "x" * 201]), st.text(max_size=4)),
)
prices = mostly(
    st.one_of(
        st.integers(0, 10**11 - 1).map(lambda cents: str(Decimal(cents).scaleb(-2))),
        st.integers(0, 10**6),
        st.sampled_from(["0.10", "7.", ".5", "1.230", "-0"]),
    ),
    st.sampled_from(["-1", "1.234", "1e3", " 1", "abc", "1000000000", "NaN"]),
)
descriptions = mostly(
    st.one_of(st.none(), st.sampled_from(["", "plain", "two\nlines\ttab"]), plain_text),
    st.sampled_from(["nul\x00", "bell\x07", "lone \udfff", "d" * 2001]),
)
tag_lists = mostly(
    st.lists(st.sampled_from(TAGS), max_size=6),
    st.sampled_from([["UPPER"], [""], ["t" * 51], [f"t{i}" for i in range(21)]]),
)
FIELDS = {"name": names, "description": descriptions, "price": prices, "tags": tag_lists}

create_fields = st.fixed_dictionaries(
    {"name": names, "price": prices}, optional={"description": descriptions, "tags": tag_lists}
)
creates = st.builds(Create, st.integers(0, SLOTS - 1), create_fields)
updates = st.builds(
    Update,
    st.integers(0, SLOTS - 1),
    st.fixed_dictionaries(
        {}, optional={k: weighted((2, v), (1, st.just(SAME))) for k, v in FIELDS.items()}
    ),
)
deletes = st.builds(Delete, st.integers(0, SLOTS - 1))
# A few creates first, so that most later commands find an item to work on.
steps = st.builds(
    list.__add__,
    st.lists(create_fields, min_size=SLOTS, max_size=SLOTS).map(
        lambda fields: [Create(slot, f) for slot, f in enumerate(fields)]
    ),
    st.lists(weighted((3, updates), (1, creates), (1, deletes)), min_size=6, max_size=40),
)


def show(**drawn: Any) -> None:
    """Report the failing example ourselves: importing schemathesis (the OpenAPI fuzz
    test) replaces Hypothesis' printer with one that prints nothing."""
    for name, value in drawn.items():
        note(f"{name} = {value!r}")


def _current(item: Item, name: str) -> Any:
    value = getattr(item, name)
    return list(value) if name == "tags" else str(value) if name == "price" else value


async def run_commands(plan: list[Step]) -> FakeDatabase:
    """Run the plan through the real bus; a refused command must change nothing."""
    db = FakeDatabase()
    bus = CommandBus(lambda: FakeUnitOfWork(db), clock=Clock())
    slots: dict[int, UUID] = {}  # the item each slot names now (a create takes a new id)
    for n, step in enumerate(plan):
        target = slots.get(step.slot, uid(10_000 + step.slot))  # never created: missing
        live = db.rows.get(target)
        cmd: Command
        if isinstance(step, Create):
            target = slots[step.slot] = uid(n + 1)
            live = None
            fields = dict(step.fields)
            cmd = CreateItem(item_id=target, tags=tuple(fields.pop("tags", ())), **fields)
        elif isinstance(step, Update):
            changes = {
                k: _current(live, k) if v == SAME and live is not None else v
                for k, v in step.changes.items()
            }
            cmd = UpdateItem(
                item_id=target, changes={k: v for k, v in changes.items() if v != SAME}
            )
        else:
            cmd = DeleteItem(item_id=target)
        before = (dict(db.rows), len(db.log))
        refused: DomainError | None = None
        try:
            result = await bus.handle(cmd)
        except DomainError as exc:
            refused = exc
        if refused is not None:
            # Refused for a reason the domain names, and nothing changed.
            assert isinstance(refused, InvalidValue) or live is None, refused
            assert isinstance(refused, InvalidValue | ItemNotFound), refused
            assert (db.rows, len(db.log)) == before
            continue
        assert live is not None or isinstance(step, Create)
        item = db.final[target]
        assert result.changed == (len(db.log) > before[1])
        assert item.version == (live.version if live else 0) + (len(db.log) - before[1])
        if not result.changed:
            assert isinstance(step, Update)
            assert db.rows[target] is live  # no commit: the very same row
    return db


def assert_aggregate_refuses_changes_after_delete(db: FakeDatabase) -> None:
    for item in db.final.values():
        if item.deleted:
            copy = dataclasses.replace(item, events=[])
            with pytest.raises(ItemNotFound):
                copy.update({"name": "again"}, now=at(0))
            with pytest.raises(ItemNotFound):
                copy.delete(now=at(0))
            assert copy.events == []


# -- what the views must be ------------------------------------------------------------------


def expected_views(db: FakeDatabase) -> dict[str, tuple[int, bytes | None]]:
    """Per item ever created: its version (negative: deleted) and view bytes."""
    return {
        str(i): (-item.version, None)
        if item.deleted
        else (item.version, views.render(views.item_view(item)))
        for i, item in db.final.items()
    }


def expected_indexes(db: FakeDatabase) -> dict[str, set[str]]:
    indexes: dict[str, set[str]] = defaultdict(set)
    for item in db.rows.values():
        for key, member in index_members(views.item_view(item)).items():
            indexes[key].add(member)
    return dict(indexes)


def split(events: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = sorted({c % (len(events) + 1) for c in cuts} | {0, len(events)})
    return [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- the pure projection ------------------------------------------------------------------------


@dataclass
class MemoryStore:
    """ViewOps applied with the rules of the APPLY script: an op whose target version
    the item already has is skipped; otherwise its base must be the stored version."""

    versions: dict[str, int] = field(default_factory=dict)  # negative: deleted
    data: dict[str, bytes] = field(default_factory=dict)
    indexes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def load(self, item_id: str) -> ItemState:
        raw = self.data.get(item_id)
        version = abs(self.versions.get(item_id, 0))
        return ItemState(version, None if raw is None else views.parse(raw))

    def apply(self, ops: list[ViewOp]) -> int:
        applied = 0
        for op in ops:
            have = abs(self.versions.get(op.item_id, 0))
            if have >= op.to_version:
                continue
            assert have == op.from_version, (op, have)
            applied += 1
            if op.data is None:
                self.versions[op.item_id] = -op.to_version
                self.data.pop(op.item_id, None)
            else:
                self.versions[op.item_id] = op.to_version
                self.data[op.item_id] = op.data
            for key, member in op.removes:
                assert member in self.indexes[key], (key, member)
                self.indexes[key].discard(member)
            for key, member in op.adds:
                assert member not in self.indexes[key], (key, member)
                self.indexes[key].add(member)
        return applied


def project(store: MemoryStore, batch: list[Event]) -> list[ViewOp]:
    """What the projector does with one batch: load, fold per item, diff, apply."""
    by_item: dict[str, list[Event]] = defaultdict(list)
    for event in batch:
        by_item[str(event.item_id)].append(event)
    ops = []
    for item_id, events in by_item.items():
        before = store.load(item_id)
        op = diff(item_id, before, fold(before, events))
        if op is not None:
            ops.append(op)
    store.apply(ops)
    return ops


@settings(max_examples=150, deadline=None)
@given(plan=steps, cuts=st.lists(st.integers(0, 200), max_size=12), data=st.data())
def test_any_commands_projected_in_any_batching_give_the_write_model(
    plan: list[Step], cuts: list[int], data: st.DataObject
) -> None:
    show(plan=plan, cuts=cuts)
    db = asyncio.run(run_commands(plan))
    assert_aggregate_refuses_changes_after_delete(db)
    events = db.events
    store = MemoryStore()
    sent: list[list[ViewOp]] = []
    done = 0
    for batch in split(events, cuts):
        # Redelivery: the batch may come with events already applied before it.
        again = data.draw(st.integers(0, done), label="redelivered from")
        sent.append(project(store, events[again:done] + batch))
        done += len(batch)
        if data.draw(st.booleans(), label="replay stale ops"):
            # Ops computed before later batches moved the views on: skipped by version.
            old = data.draw(st.sampled_from(sent), label="stale ops")
            assert store.apply(old) == 0

    got = {i: (store.versions[i], store.data.get(i)) for i in store.versions}
    assert got == expected_views(db)
    assert {k: v for k, v in store.indexes.items() if v} == expected_indexes(db)


# -- the real projection step and APPLY script, on fakeredis ---------------------------


class RecordingStore(RedisProjectionStore):
    """The real store; remembers every batch of ops it was asked to apply."""

    sent: list[tuple[int, list[ViewOp]]]

    async def apply(self, target: Target, expected: int, new: int, ops: list[ViewOp]) -> int:
        self.sent.append((target.partition, ops))
        return await super().apply(target, expected, new, ops)


async def new_step(store: RedisProjectionStore) -> BatchStep:
    """The projector's batch step (re)started from what Redis holds, with no PostgreSQL."""
    step = owning_all(BatchStep(store), store.partitions)
    await step.resolve()
    return step


async def read_back(redis: Redis, layout: KeyLayout, ids: list[str]) -> Any:
    read_model = RedisReadModel(redis, layout)
    got = {}
    for item_id in ids:
        read = await read_model.get(item_id)
        got[item_id] = (read.version, read.data)
    indexes: dict[str, set[str]] = defaultdict(set)
    checkpoints = set()
    for p in range(layout.partitions):
        generation = await redis.get(layout.gen(p))
        assert generation is not None
        base = layout.base(p, as_text(generation))
        checkpoints.add(int(await redis.get(base + "cp") or 0))
        async for key in redis.scan_iter(match=scan_pattern(base)):
            suffix = as_text(key)[len(base) :]
            if is_index(suffix):
                members = cast(list[bytes], await redis.zrange(key, 0, -1))
                indexes[suffix] |= {m.decode() for m in members}
    return got, dict(indexes), checkpoints


async def project_on_redis(
    events: list[Event], partitions: int, cuts: list[int], data: st.DataObject
) -> tuple[Any, int]:
    redis: Redis = FakeRedis(server=FakeServer())
    layout = KeyLayout("t", partitions)
    try:
        store = RecordingStore(redis, layout)
        store.sent = []
        step = await new_step(store)
        dead_letters = MemoryLog(refuse=True)
        log = stored(events)
        done = 0
        for batch in split(log, cuts):
            if data.draw(st.booleans(), label="restart"):
                step = await new_step(store)  # a crash: resume from Redis
            again = data.draw(st.integers(0, done), label="redelivered from")
            if batch or again < done:
                await step.apply(log[again:done] + batch, dead_letters)
            done += len(batch)
            if data.draw(st.booleans(), label="replay stale ops") and store.sent:
                p, ops = data.draw(st.sampled_from(store.sent), label="stale ops")
                cp = step.checkpoints[p]
                assert await store.apply(step.targets[p], cp, cp, ops) == 0
        await step.finish_restores()
        ids = sorted({str(e.item_id) for e in events})
        return await read_back(redis, layout, ids), len(events)
    finally:
        await redis.aclose()


@settings(max_examples=100, deadline=None)
@given(
    plan=steps,
    partitions=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 200), max_size=10),
    data=st.data(),
)
def test_the_real_projector_on_redis_gives_the_write_model(
    plan: list[Step], partitions: int, cuts: list[int], data: st.DataObject
) -> None:
    show(plan=plan, partitions=partitions, cuts=cuts)
    db = asyncio.run(run_commands(plan))
    (got, indexes, checkpoints), last = asyncio.run(
        project_on_redis(db.events, partitions, cuts, data)
    )
    assert got == expected_views(db)
    assert indexes == expected_indexes(db)
    assert checkpoints == ({last} if db.log else {0})
