"""The pure projection: fold events onto views and diff them into index operations."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import orjson
import pytest

from app.commands import outbox
from app.domain.events import Event, ItemCreated, ItemUpdated
from app.domain.model import Item
from app.projection.fold import ItemState, ProjectionError, apply_event, diff, fold
from app.queries import views
from app.queries.queries import SORT_FIELDS
from app.queries.views import index_members
from tests.unit.builders import at, cut, random_history, uid

ID = uid(1)
SID = str(ID)


def lamp() -> Item:
    return Item.create(
        item_id=ID,
        name="Desk Lamp",
        price="24.90",
        description="Warm light",
        tags=["office", "lighting"],
        now=at(0),
    )


def lamp_events() -> tuple[Item, list[Event]]:
    """created (v1), price change (v2), name change (v3), tags change (v4)."""
    item = lamp()
    item.update({"price": "19.90"}, now=at(1))
    item.update({"name": "Reading lamp"}, now=at(2))
    item.update({"tags": ["lighting", "sale"]}, now=at(3))
    events = list(item.events)
    item.events.clear()
    return item, events


# -- fold / apply_event ----------------------------------------------------------------


def test_created_event_builds_the_same_view_the_write_side_renders() -> None:
    item = lamp()
    state = fold(ItemState(), list(item.events))
    assert state.version == 1
    assert not state.deleted
    assert state.view == views.item_view(item)
    assert state.view is not None
    assert state.view["tags"] == ["lighting", "office"]
    assert state.view["price"] == "24.90"
    assert state.view["created_at"] == "2024-05-01T12:00:00.000000Z"


def test_folded_updates_match_the_aggregate() -> None:
    item, events = lamp_events()
    state = fold(ItemState(), events)
    assert state.version == item.version == 4
    assert state.view == views.item_view(item)
    assert state.view is not None
    assert views.render(state.view) == views.render(views.item_view(item))  # same bytes


def test_description_can_be_cleared() -> None:
    item = lamp()
    item.update({"description": None}, now=at(1))
    state = fold(ItemState(), list(item.events))
    assert state.view is not None
    assert state.view["description"] is None


def test_folding_the_same_events_twice_gives_the_same_state() -> None:
    _, events = lamp_events()
    once = fold(ItemState(), events)
    twice = fold(once, events)
    assert twice == once
    assert fold(ItemState(), events + events) == once


def test_replaying_older_events_after_newer_is_a_no_op() -> None:
    _, events = lamp_events()
    state = fold(ItemState(), events)
    for event in reversed(events):
        assert apply_event(state, event) is state
    assert fold(state, events[:2]) is state
    assert diff(SID, state, fold(state, events[1:3])) is None


def test_a_version_gap_raises() -> None:
    _, events = lamp_events()
    with pytest.raises(ProjectionError, match="missing"):
        fold(ItemState(), events[1:])  # no ItemCreated
    with pytest.raises(ProjectionError, match="missing"):
        fold(ItemState(), [events[0], events[2]])
    state = fold(ItemState(), events[:2])
    with pytest.raises(ProjectionError, match="missing"):
        apply_event(state, events[3])


def test_created_twice_raises() -> None:
    state = fold(ItemState(), list(lamp().events))
    again = ItemCreated(
        item_id=ID,
        version=2,
        occurred_at=at(1),
        name="x",
        description=None,
        price=Decimal("1.00"),
        tags=(),
    )
    with pytest.raises(ProjectionError, match="created twice"):
        apply_event(state, again)


def test_events_after_a_delete_raise() -> None:
    item = lamp()
    item.delete(now=at(1))
    state = fold(ItemState(), list(item.events))
    assert state.deleted
    assert state.version == 2
    late = ItemUpdated(item_id=ID, version=3, occurred_at=at(2), changes={"name": "zombie"})
    with pytest.raises(ProjectionError, match="without a live view"):
        apply_event(state, late)


def test_an_unknown_field_in_an_update_raises() -> None:
    state = fold(ItemState(), list(lamp().events))
    bad = ItemUpdated(item_id=ID, version=2, occurred_at=at(1), changes={"colour": "red"})
    with pytest.raises(ProjectionError, match="unknown field"):
        apply_event(state, bad)


def test_deleted_state() -> None:
    assert not ItemState().deleted  # never seen is not deleted
    assert ItemState(version=3, view=None).deleted


# -- diff ------------------------------------------------------------------------------


def _members(view: views.View, key: str) -> str:
    return index_members(view)[key]


def test_diff_of_a_create_adds_every_index_member() -> None:
    after = fold(ItemState(), list(lamp().events))
    op = diff(SID, ItemState(), after)
    assert op is not None
    assert (op.item_id, op.from_version, op.to_version) == (SID, 0, 1)
    assert op.data is not None
    assert views.parse(op.data) == after.view
    assert op.removes == []
    keys = {k for k, _ in op.adds}
    expected = {f"ix:{f}" for f in SORT_FIELDS}
    expected |= {f"tx:{t}:{f}" for t in ("lighting", "office") for f in SORT_FIELDS}
    assert keys == expected
    assert len(op.adds) == len(keys)
    assert ("ix:name", f"desk lamp\x00{SID}") in op.adds
    assert ("ix:price", f"000000002490\x00{SID}") in op.adds
    assert ("ix:created_at", f"2024-05-01T12:00:00.000000Z\x00{SID}") in op.adds


def test_diff_without_a_new_version_is_none() -> None:
    state = fold(ItemState(), list(lamp().events))
    assert diff(SID, state, state) is None


def test_a_name_change_moves_the_name_indexes() -> None:
    item = lamp()
    before = fold(ItemState(), list(item.events))
    item.events.clear()
    item.update({"name": "Reading Lamp"}, now=at(1))
    after = fold(before, list(item.events))
    op = diff(SID, before, after)
    assert op is not None
    assert before.view is not None
    assert after.view is not None
    assert (op.from_version, op.to_version) == (1, 2)

    moved = {"name", "updated_at"}  # every change also moves updated_at
    scopes = ["ix:", "tx:lighting:", "tx:office:"]
    assert sorted(op.removes) == sorted(
        (f"{s}{f}", _members(before.view, f"{s}{f}")) for s in scopes for f in moved
    )
    assert sorted(op.adds) == sorted(
        (f"{s}{f}", _members(after.view, f"{s}{f}")) for s in scopes for f in moved
    )
    assert ("ix:name", f"desk lamp\x00{SID}") in op.removes
    assert ("ix:name", f"reading lamp\x00{SID}") in op.adds
    touched = {k for k, _ in op.removes + op.adds}
    assert not touched & {"ix:price", "ix:created_at", "tx:office:price"}


def test_a_price_change_moves_the_price_indexes() -> None:
    item = lamp()
    before = fold(ItemState(), list(item.events))
    item.events.clear()
    item.update({"price": "100"}, now=at(1))
    op = diff(SID, before, fold(before, list(item.events)))
    assert op is not None
    assert ("ix:price", f"000000002490\x00{SID}") in op.removes
    assert ("ix:price", f"000000010000\x00{SID}") in op.adds
    assert {k for k, _ in op.adds} == {
        f"{s}{f}" for s in ("ix:", "tx:lighting:", "tx:office:") for f in ("price", "updated_at")
    }


def test_a_tag_change_moves_the_tag_indexes() -> None:
    item = lamp()
    before = fold(ItemState(), list(item.events))
    item.events.clear()
    item.update({"tags": ["lighting", "sale"]}, now=at(1))  # office out, sale in
    after = fold(before, list(item.events))
    op = diff(SID, before, after)
    assert op is not None
    assert before.view is not None
    assert after.view is not None

    removed = {k for k, _ in op.removes}
    added = {k for k, _ in op.adds}
    assert {f"tx:office:{f}" for f in SORT_FIELDS} <= removed
    assert {f"tx:sale:{f}" for f in SORT_FIELDS} <= added
    assert not any(k.startswith("tx:sale:") for k in removed)
    assert not any(k.startswith("tx:office:") for k in added)
    # The kept tag only moves in the updated_at order, like the unfiltered index.
    assert removed - {f"tx:office:{f}" for f in SORT_FIELDS} == {
        "ix:updated_at",
        "tx:lighting:updated_at",
    }
    assert added - {f"tx:sale:{f}" for f in SORT_FIELDS} == {
        "ix:updated_at",
        "tx:lighting:updated_at",
    }
    # Members removed are exactly the old ones, members added the new ones.
    assert all(_members(before.view, k) == m for k, m in op.removes)
    assert all(_members(after.view, k) == m for k, m in op.adds)


def test_a_delete_removes_every_member() -> None:
    item, events = lamp_events()
    before = fold(ItemState(), events)
    item.delete(now=at(10))
    after = fold(before, list(item.events))
    op = diff(SID, before, after)
    assert op is not None
    assert before.view is not None
    assert op.data is None
    assert (op.from_version, op.to_version) == (4, 5)
    assert op.adds == []
    assert sorted(op.removes) == sorted(index_members(before.view).items())


def test_create_then_delete_in_one_batch_leaves_nothing() -> None:
    item = lamp()
    item.delete(now=at(1))
    op = diff(SID, ItemState(), fold(ItemState(), list(item.events)))
    assert op is not None
    assert (op.from_version, op.to_version, op.data) == (0, 2, None)
    assert op.removes == []
    assert op.adds == []


def test_index_members_sort_like_their_values() -> None:
    def view(name: str, price: str, minutes: int) -> views.View:
        moment = views.format_time(at(0) + timedelta(minutes=minutes))
        return views.make_view(
            item_id=SID,
            name=name,
            description=None,
            price=price,
            tags=[],
            version=1,
            created_at=moment,
            updated_at=moment,
        )

    prices = ["0.00", "0.09", "0.10", "9.99", "10.00", "999999999.99"]
    members = [index_members(view("n", p, 0))["ix:price"] for p in prices]
    assert members == sorted(members)
    names = ["apple", "Banana", "cherry"]  # case-folded: Banana sorts between
    members = [index_members(view(n, "1.00", 0))["ix:name"] for n in names]
    assert members == sorted(members)
    # A name that is a prefix of another sorts first: the separator is \x00.
    short, long = (index_members(view(n, "1.00", 0))["ix:name"] for n in ("ab", "ab c"))
    assert short < long
    times = [index_members(view("n", "1.00", m))["ix:created_at"] for m in (0, 1, 60, 24 * 60)]
    assert times == sorted(times)


# -- batching property -----------------------------------------------------------------


@dataclass
class MemoryViews:
    """Applies ViewOps the way the Redis script does, with its version guard."""

    versions: dict[str, int] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    indexes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def state(self, item_id: str) -> ItemState:
        raw = self.data.get(item_id)
        return ItemState(self.versions.get(item_id, 0), None if raw is None else views.parse(raw))

    def project(self, batch: list[Event]) -> None:
        by_item: dict[str, list[Event]] = defaultdict(list)
        for event in batch:
            by_item[str(event.item_id)].append(event)
        for item_id, events in by_item.items():
            before = self.state(item_id)
            op = diff(item_id, before, fold(before, events))
            if op is None:
                continue
            assert op.from_version == self.versions.get(item_id, 0)
            self.versions[item_id] = op.to_version
            if op.data is None:
                self.data.pop(item_id, None)
            else:
                self.data[item_id] = op.data
            for key, member in op.removes:
                assert member in self.indexes[key], (key, member)
                self.indexes[key].discard(member)
            for key, member in op.adds:
                assert member not in self.indexes[key], (key, member)
                self.indexes[key].add(member)

    def index_snapshot(self) -> dict[str, set[str]]:
        return {k: v for k, v in self.indexes.items() if v}


def _fold_all(events: list[Event]) -> dict[str, ItemState]:
    by_item: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_item[str(event.item_id)].append(event)
    return {item_id: fold(ItemState(), evs) for item_id, evs in by_item.items()}


def _expected_indexes(states: dict[str, ItemState]) -> dict[str, set[str]]:
    indexes: dict[str, set[str]] = defaultdict(set)
    for state in states.values():
        if state.view is not None:
            for key, member in index_members(state.view).items():
                indexes[key].add(member)
    return dict(indexes)


@pytest.mark.parametrize("seed", range(20))
def test_any_batching_gives_the_same_final_state(seed: int) -> None:
    rng = random.Random(seed)
    history = random_history(rng, commands=80)
    events = history.events
    assert any(isinstance(e, ItemUpdated) for e in events)
    final = _fold_all(events)

    # The folded views are what the write side would render for each live item.
    for item_id, item in history.items.items():
        state = final[str(item_id)]
        assert state.version == item.version
        assert state.view == (None if item.deleted else views.item_view(item))

    memory = MemoryViews()
    for batch in cut(rng, events):
        memory.project(batch)
    assert {i: memory.state(i) for i in final} == final
    assert memory.index_snapshot() == _expected_indexes(final)


@pytest.mark.parametrize("seed", range(20))
def test_redelivered_batches_change_nothing(seed: int) -> None:
    """A projector that crashed after writing re-reads from an older position: every
    batch may come again, overlapping what was applied, and the result is the same."""
    rng = random.Random(1000 + seed)
    events = random_history(rng, commands=60).events
    final = _fold_all(events)

    memory = MemoryViews()
    done = 0
    for batch in cut(rng, events):
        replay_from = rng.randint(0, done)
        memory.project(events[replay_from:done] + batch)
        done += len(batch)
        if rng.random() < 0.3:
            memory.project(events[rng.randint(0, done) : done])  # a pure replay
    assert {i: memory.state(i) for i in final} == final
    assert memory.index_snapshot() == _expected_indexes(final)


def test_a_batch_that_skips_an_event_is_refused() -> None:
    rng = random.Random(7)
    events = random_history(rng, commands=40).events
    # Drop an event that has a later one for the same item: that item now has a gap.
    seen_later: set[UUID] = set()
    victim = -1
    for i in reversed(range(len(events))):
        if events[i].item_id in seen_later:
            victim = i
            break
        seen_later.add(events[i].item_id)
    assert victim >= 0
    with pytest.raises(ProjectionError, match="missing"):
        MemoryViews().project(events[:victim] + events[victim + 1 :])


def test_events_decoded_from_the_log_fold_to_the_same_state() -> None:
    """The projector folds events read back from their JSON payloads (new Decimal,
    tuple and event objects): the views must come out the same."""
    item, events = lamp_events()
    item.delete(now=at(9))
    events += item.events
    decoded = [
        outbox.from_record(
            type_name=type(e).__name__,
            payload=orjson.loads(orjson.dumps(outbox.to_payload(e))),
            item_id=e.item_id,
            version=e.version,
            occurred_at=e.occurred_at,
            event_id=e.event_id,
        )
        for e in events
    ]
    assert decoded == events
    for n in range(1, len(events) + 1):
        assert fold(ItemState(), decoded[:n]) == fold(ItemState(), events[:n])
