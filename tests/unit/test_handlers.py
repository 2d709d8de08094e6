"""The command bus and handlers over an in-memory unit of work."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.commands.bus import CommandBus, CommandResult
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.commands.idempotency import (
    IdempotentRequest,
    KeyReused,
    RequestInFlight,
    StoredResponse,
)
from app.domain.errors import InvalidValue, ItemNotFound, VersionMismatch
from app.domain.events import ItemCreated, ItemDeleted, ItemUpdated
from tests.fakes import Clock, FakeDatabase, FakeUnitOfWork
from tests.unit.builders import at, uid


@pytest.fixture
def fake_db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def bus(fake_db: FakeDatabase) -> CommandBus:
    return CommandBus(lambda: FakeUnitOfWork(fake_db), clock=Clock())


ITEM = uid(1)


async def test_create_commits_the_item_and_its_event_once(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    result = await bus.handle(
        CreateItem(item_id=ITEM, name=" Lamp ", price="9.9", tags=("b", "a", "b"))
    )
    assert result.changed
    assert result.position == 1
    assert result.item.id == ITEM
    assert (result.item.name, result.item.price, result.item.tags) == (
        "Lamp",
        Decimal("9.90"),
        ("a", "b"),
    )
    assert result.item.events == []  # collected by the commit
    assert len(fake_db.commits) == 1
    [(position, event)] = fake_db.log
    assert position == 1
    assert isinstance(event, ItemCreated)
    assert (event.item_id, event.version, event.occurred_at) == (ITEM, 1, at(1))
    assert fake_db.rows[ITEM].version == 1


async def test_update_and_delete_append_the_next_versions(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="9.90"))
    updated = await bus.handle(UpdateItem(item_id=ITEM, changes={"price": "12", "name": "Lamp"}))
    assert updated.changed
    assert updated.position == 2
    assert updated.item.version == 2
    assert fake_db.rows[ITEM].price == Decimal("12.00")

    deleted = await bus.handle(DeleteItem(item_id=ITEM))
    assert deleted.changed
    assert deleted.position == 3
    assert deleted.item.deleted
    assert ITEM not in fake_db.rows

    assert [(p, type(e), e.version) for p, e in fake_db.log] == [
        (1, ItemCreated, 1),
        (2, ItemUpdated, 2),
        (3, ItemDeleted, 3),
    ]
    update_event = fake_db.log[1][1]
    assert isinstance(update_event, ItemUpdated)
    assert update_event.changes == {"price": Decimal("12.00")}
    assert len(fake_db.commits) == 3  # exactly one commit per command


async def test_positions_are_shared_by_all_items(bus: CommandBus, fake_db: FakeDatabase) -> None:
    a = await bus.handle(CreateItem(item_id=uid(1), name="a", price=1))
    b = await bus.handle(CreateItem(item_id=uid(2), name="b", price=2))
    a2 = await bus.handle(UpdateItem(item_id=uid(1), changes={"name": "A"}))
    assert (a.position, b.position, a2.position) == (1, 2, 3)
    assert [e.version for _, e in fake_db.log] == [1, 1, 2]


async def test_a_patch_that_changes_nothing_commits_no_event(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="9.90", tags=("x",)))
    await bus.handle(CreateItem(item_id=uid(2), name="other", price="1"))  # position 2
    result = await bus.handle(
        UpdateItem(item_id=ITEM, changes={"name": " Lamp", "price": 9.9, "tags": ["x", "x"]})
    )
    assert not result.changed
    assert result.position == 1  # the item's own latest event, not the log's head
    assert result.item.version == 1
    assert fake_db.commits[-1] == []  # the bus still commits once, with nothing in it
    assert len(fake_db.commits) == 3
    assert len(fake_db.appends) == 2  # the outbox was not even asked
    assert len(fake_db.log) == 2


async def test_an_empty_patch_is_a_no_op(bus: CommandBus, fake_db: FakeDatabase) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1"))
    result = await bus.handle(UpdateItem(item_id=ITEM))
    assert (result.changed, result.position, result.item.version) == (False, 1, 1)
    assert len(fake_db.log) == 1


@pytest.mark.parametrize(
    "command",
    [UpdateItem(item_id=uid(404), changes={"name": "x"}), DeleteItem(item_id=uid(404))],
)
async def test_unknown_ids_raise_item_not_found_and_commit_nothing(
    bus: CommandBus, fake_db: FakeDatabase, command: UpdateItem | DeleteItem
) -> None:
    with pytest.raises(ItemNotFound) as caught:
        await bus.handle(command)
    assert caught.value.item_id == uid(404)
    assert fake_db.commits == []
    assert fake_db.rollbacks == 1


async def test_a_deleted_item_is_not_found_any_more(bus: CommandBus, fake_db: FakeDatabase) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1"))
    await bus.handle(DeleteItem(item_id=ITEM))
    with pytest.raises(ItemNotFound):
        await bus.handle(UpdateItem(item_id=ITEM, changes={"name": "back"}))
    with pytest.raises(ItemNotFound):
        await bus.handle(DeleteItem(item_id=ITEM))
    assert len(fake_db.commits) == 2
    assert len(fake_db.log) == 2


async def test_invalid_commands_commit_nothing(bus: CommandBus, fake_db: FakeDatabase) -> None:
    with pytest.raises(InvalidValue):
        await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1.001"))
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1"))
    with pytest.raises(InvalidValue):
        await bus.handle(UpdateItem(item_id=ITEM, changes={"tags": ["Bad Tag"]}))
    with pytest.raises(InvalidValue):
        await bus.handle(UpdateItem(item_id=ITEM, changes={"id": "nope"}))
    assert len(fake_db.commits) == 1
    assert fake_db.rows[ITEM].tags == ()
    assert fake_db.rows[ITEM].version == 1


async def test_rollback_after_commit_keeps_the_commit(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1"))
    await bus.handle(UpdateItem(item_id=ITEM, changes={"price": "2"}))
    # __aexit__ always rolls back; after a commit that must change nothing.
    assert fake_db.rollbacks == 0
    assert fake_db.rows[ITEM].price == Decimal("2.00")
    assert [p for p, _ in fake_db.log] == [1, 2]


# -- If-Match preconditions ------------------------------------------------------------


async def test_expected_versions_are_checked_under_the_lock(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    await bus.handle(CreateItem(item_id=ITEM, name="Lamp", price="1"))
    ok = await bus.handle(
        UpdateItem(item_id=ITEM, changes={"price": "2"}, expected_versions=frozenset({1, 7}))
    )
    assert ok.item.version == 2
    with pytest.raises(VersionMismatch) as caught:
        await bus.handle(
            UpdateItem(item_id=ITEM, changes={"price": "3"}, expected_versions=frozenset({1}))
        )
    assert (caught.value.item_id, caught.value.current_version) == (ITEM, 2)
    with pytest.raises(VersionMismatch):
        await bus.handle(DeleteItem(item_id=ITEM, expected_versions=frozenset({1})))
    assert fake_db.rows[ITEM].version == 2
    assert len(fake_db.commits) == 2

    deleted = await bus.handle(DeleteItem(item_id=ITEM, expected_versions=frozenset({2})))
    assert deleted.position == 3


async def test_an_unknown_id_is_not_found_before_any_precondition(bus: CommandBus) -> None:
    with pytest.raises(ItemNotFound):
        await bus.handle(DeleteItem(item_id=uid(404), expected_versions=frozenset({1})))


# -- idempotency keys ------------------------------------------------------------------


def respond(result: CommandResult) -> StoredResponse:
    return StoredResponse(201, {"etag": f'"{result.item.version}"'}, str(result.position).encode())


async def test_an_idempotent_command_runs_once_per_key(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    request = IdempotentRequest(key="k1", fingerprint="POST /items {...}")
    first = await bus.handle_idempotent(
        CreateItem(item_id=ITEM, name="Lamp", price="1"), request, respond
    )
    assert first.response == StoredResponse(201, {"etag": '"1"'}, b"1")
    assert not first.replayed
    assert fake_db.keys["k1"] == (request.fingerprint, first.response)
    # A retry (even one whose command would now fail) gets the first answer again.
    again = await bus.handle_idempotent(
        CreateItem(item_id=ITEM, name="Lamp", price="1"), request, respond
    )
    assert again.response == first.response
    assert again.replayed
    assert len(fake_db.log) == 1
    assert len(fake_db.commits) == 1


async def test_a_key_reused_for_another_request_is_refused(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    await bus.handle_idempotent(
        CreateItem(item_id=ITEM, name="Lamp", price="1"),
        IdempotentRequest(key="k1", fingerprint="one"),
        respond,
    )
    with pytest.raises(KeyReused):
        await bus.handle_idempotent(
            CreateItem(item_id=uid(2), name="Other", price="1"),
            IdempotentRequest(key="k1", fingerprint="two"),
            respond,
        )
    assert uid(2) not in fake_db.rows


async def test_a_key_in_flight_is_refused(bus: CommandBus, fake_db: FakeDatabase) -> None:
    fake_db.locked.add("busy")  # held by another open transaction
    with pytest.raises(RequestInFlight):
        await bus.handle_idempotent(
            CreateItem(item_id=ITEM, name="Lamp", price="1"),
            IdempotentRequest(key="busy", fingerprint="f"),
            respond,
        )
    assert fake_db.commits == []


async def test_a_failed_idempotent_command_stores_no_answer(
    bus: CommandBus, fake_db: FakeDatabase
) -> None:
    request = IdempotentRequest(key="k1", fingerprint="f")
    with pytest.raises(ItemNotFound):
        await bus.handle_idempotent(DeleteItem(item_id=uid(404)), request, respond)
    assert fake_db.keys == {}
    assert fake_db.locked == set()  # released with the rollback
    await bus.handle_idempotent(CreateItem(item_id=ITEM, name="Lamp", price="1"), request, respond)
    assert "k1" in fake_db.keys
