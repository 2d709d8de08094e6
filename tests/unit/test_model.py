"""The Item aggregate: which events it raises and how its version moves."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.domain.errors import InvalidValue
from app.domain.events import ItemCreated, ItemDeleted, ItemUpdated
from app.domain.model import Item
from tests.unit.builders import at, uid


def make_item(**fields: Any) -> Item:
    args: dict[str, Any] = {
        "item_id": uid(1),
        "name": "Desk lamp",
        "price": "24.90",
        "description": "Warm light",
        "tags": ["office", "lighting"],
        "now": at(0),
    }
    args.update(fields)
    return Item.create(**args)


def test_create_raises_item_created_v1_with_normalised_fields() -> None:
    item = Item.create(
        item_id=uid(7),
        name="  Desk lamp ",
        price="24.900",
        description=None,
        tags=["office", "lighting", "office"],
        now=at(0),
    )
    assert item.version == 1
    assert not item.deleted
    assert item.created_at == item.updated_at == at(0)
    assert (item.name, item.price, item.tags) == (
        "Desk lamp",
        Decimal("24.90"),
        ("lighting", "office"),
    )
    [event] = item.events
    assert isinstance(event, ItemCreated)
    assert event.item_id == uid(7)
    assert event.version == 1
    assert event.occurred_at == at(0)
    assert event.name == "Desk lamp"
    assert event.description is None
    assert event.price == Decimal("24.90")
    assert event.tags == ("lighting", "office")


def test_create_refuses_invalid_fields() -> None:
    with pytest.raises(InvalidValue) as caught:
        make_item(price="1.234")
    assert caught.value.field == "price"
    with pytest.raises(InvalidValue) as caught:
        make_item(name="   ")
    assert caught.value.field == "name"


def test_each_event_gets_its_own_id() -> None:
    first, second = make_item(item_id=uid(1)), make_item(item_id=uid(2))
    assert first.events[0].event_id != second.events[0].event_id


def test_update_with_changes_bumps_version_by_one_and_carries_only_changed_fields() -> None:
    item = make_item()
    item.events.clear()
    changed = item.update(
        {"name": "Desk lamp", "price": "19.9", "tags": ["lighting", "office"]}, now=at(5)
    )
    assert changed
    assert item.version == 2
    assert item.price == Decimal("19.90")
    assert item.updated_at == at(5)
    assert item.created_at == at(0)
    [event] = item.events
    assert isinstance(event, ItemUpdated)
    assert event.version == 2
    assert event.occurred_at == at(5)
    assert event.changes == {"price": Decimal("19.90")}


def test_update_normalises_values_in_the_event() -> None:
    item = make_item()
    item.events.clear()
    item.update({"name": "  Lamp ", "tags": ["z", "a", "z"], "description": None}, now=at(1))
    [event] = item.events
    assert isinstance(event, ItemUpdated)
    assert event.changes == {"name": "Lamp", "tags": ("a", "z"), "description": None}
    assert item.description is None


def test_successive_updates_grow_the_version_one_at_a_time() -> None:
    item = make_item()
    for step, price in enumerate(["1", "2", "3"], start=1):
        assert item.update({"price": price}, now=at(step))
    assert item.version == 4
    assert [e.version for e in item.events] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": "Desk lamp"},
        {"name": "  Desk lamp  "},  # equal once trimmed
        {"price": "24.9"},
        {"price": 24.90},
        {"price": Decimal("24.900")},
        {"tags": ["office", "lighting", "office"]},  # same set, other order
        {"description": "Warm light"},
        {"name": "Desk lamp", "price": "24.90", "tags": ["lighting", "office"]},
    ],
)
def test_update_that_changes_nothing_raises_no_event(changes: dict[str, Any]) -> None:
    item = make_item()
    item.events.clear()
    assert item.update(changes, now=at(9)) is False
    assert item.events == []
    assert item.version == 1
    assert item.updated_at == at(0)


def test_update_refuses_unknown_fields_without_changing_anything() -> None:
    item = make_item()
    item.events.clear()
    with pytest.raises(InvalidValue) as caught:
        item.update({"price": "1.00", "version": 9}, now=at(1))
    assert caught.value.field == "version"
    assert (item.version, item.price, item.events) == (1, Decimal("24.90"), [])


def test_update_with_an_invalid_value_changes_nothing() -> None:
    item = make_item()
    item.events.clear()
    with pytest.raises(InvalidValue):
        item.update({"name": "New name", "price": "-1"}, now=at(1))
    assert (item.name, item.version, item.events) == ("Desk lamp", 1, [])


def test_delete_raises_item_deleted_with_the_next_version() -> None:
    item = make_item()
    item.update({"price": "1"}, now=at(1))
    item.events.clear()
    item.delete(now=at(2))
    assert item.deleted
    assert item.version == 3
    assert item.updated_at == at(2)
    [event] = item.events
    assert isinstance(event, ItemDeleted)
    assert (event.item_id, event.version, event.occurred_at) == (item.id, 3, at(2))
