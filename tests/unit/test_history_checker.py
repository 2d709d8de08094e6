"""The history checker (tests/history/checker.py) on small hand-made histories: for each
rule one that keeps it and one that breaks it, and is caught."""

from __future__ import annotations

from typing import Any

import pytest

from tests.history.checker import Violation, check
from tests.history.history import Event, Fault, History, Op, Verify
from tests.history.recovery import recoveries

X = "00000000-0000-4000-8000-00000000000a"
Y = "00000000-0000-4000-8000-00000000000b"


def view(item: str, version: int, name: str, price: str = "1.00") -> dict[str, Any]:
    return {
        "id": item,
        "name": name,
        "description": None,
        "price": price,
        "tags": [],
        "version": version,
        "created_at": "t",
        "updated_at": "t",
    }


def op(n: int, f: str, status: int | None, **fields: Any) -> Op:
    method = {"create": "POST", "patch": "PATCH", "delete": "DELETE"}.get(f, "GET")
    defaults: dict[str, Any] = {"conn": "c1", "item": X, "path": f"/api/v1/items/{X}"}
    if status is not None and status >= 400:
        defaults["headers"] = {"content-type": "application/problem+json"}
    return Op(
        n,
        fields.pop("session", 1),
        f,
        float(n),
        n + 0.5,
        method,
        **{**defaults, **fields},
        status=status,
    )


def create(n: int, item: str = X, name: str = "a", **fields: Any) -> Op:
    return op(
        n,
        "create",
        201,
        req_body={"name": name, "price": "1"},
        body=view(item, 1, name),
        headers={"consistency-token": f"t{n}"},
        item=item,
        **fields,
    )


def patch(n: int, version: int, name: str, item: str = X, **fields: Any) -> Op:
    return op(
        n,
        "patch",
        200,
        req_body={"name": name},
        body=view(item, version, name),
        headers={"consistency-token": f"t{n}", **fields.pop("headers", {})},
        item=item,
        **fields,
    )


def get(n: int, body: dict[str, Any] | None, **fields: Any) -> Op:
    return op(n, "get", 200 if body else 404, body=body, **fields)


def created_event(position: int, item: str = X, name: str = "a", at: float = 1.2) -> Event:
    payload: dict[str, Any] = {"name": name, "description": None, "price": "1.00", "tags": []}
    return Event(position, item, 1, "ItemCreated", payload, at)


def patched_event(position: int, version: int, name: str, item: str = X, at: float = 0) -> Event:
    return Event(
        position, item, version, "ItemUpdated", {"changes": {"name": name}}, at or position + 0.2
    )


def history(
    ops: list[Op], events: list[Event], items: dict[str, int] | None = None, verify: int | None = 0
) -> History:
    h = History("single", 1, ops=ops, events=events, seconds=60.0)
    h.items = items if items is not None else {e.item: e.version for e in events}
    h.verifies = [] if verify is None else [Verify(5.0, verify, "said")]
    return h


def rules(found: list[Violation]) -> set[int]:
    return {v.rule for v in found}


BASE_OPS = [create(1), patch(2, 2, "b")]
BASE_EVENTS = [created_event(1), patched_event(2, 2, "b")]


def test_a_clean_history_keeps_every_rule() -> None:
    reads = [
        get(3, view(X, 2, "b")),
        get(4, view(X, 2, "b"), req_headers={"consistency-token": "t2"}),
    ]
    assert check(history([*BASE_OPS, *reads], BASE_EVENTS)) == []


@pytest.mark.parametrize(
    "answer",
    [
        op(3, "get", 500, body={"status": 500}),
        op(3, "get", 400, headers={"content-type": "text/plain"}),
        op(3, "patch", 404, req_body={"name": "c"}),  # the item exists in PostgreSQL
    ],
    ids=["a 500", "a 4xx that is no problem", "a write's 404 for an item that exists"],
)
def test_rule_0_answers_as_documented(answer: Op) -> None:
    assert rules(check(history([*BASE_OPS, answer], BASE_EVENTS))) == {0}
    kept = [*BASE_OPS, op(3, "get", 503, body={"status": 503}), op(4, "patch", 412)]
    assert check(history(kept, BASE_EVENTS)) == []


def test_rule_1_an_acknowledged_write_is_in_postgresql_exactly_once() -> None:
    lost = check(history(BASE_OPS, [created_event(1)], items={X: 1}))
    assert 1 in rules(lost)
    twice = [created_event(1), created_event(3, item=Y)]
    assert 1 in rules(check(history([create(1)], twice)))
    nobody = [created_event(1), patched_event(2, 2, "nobody sent this")]
    assert 1 in rules(check(history([create(1)], nobody)))
    # A retry with the same key that was replayed created nothing new: kept.
    keyed = {"idempotency-key": "k1"}
    replay = [create(1, req_headers=keyed), create(2, req_headers=keyed)]
    assert check(history(replay, [created_event(1)])) == []
    # A write without an answer may or may not have happened: either way, kept.
    unknown = [create(1), op(2, "patch", None, req_body={"name": "b"})]
    assert check(history(unknown, [created_event(1)])) == []
    assert check(history(unknown, BASE_EVENTS)) == []


def test_rule_2_versions_are_gap_free_and_one_per_patch() -> None:
    gap = [created_event(1), patched_event(2, 3, "b")]
    assert 2 in rules(check(history([create(1), patch(2, 3, "b")], gap)))
    row = check(history(BASE_OPS, BASE_EVENTS, items={X: 1}))
    assert rules(row) == {2}
    one_version = [create(1), patch(2, 2, "b"), patch(3, 2, "c")]
    assert 2 in rules(check(history(one_version, BASE_EVENTS)))
    assert check(history(BASE_OPS, BASE_EVENTS)) == []


def test_rule_3_a_token_read_never_shows_an_older_version() -> None:
    stale = get(5, view(X, 1, "a"), req_headers={"consistency-token": "t2"}, conn="c2")
    assert rules(check(history([*BASE_OPS, stale], BASE_EVENTS))) == {3}
    fresh = get(5, view(X, 2, "b"), req_headers={"consistency-token": "t2"}, conn="c2")
    assert check(history([*BASE_OPS, fresh], BASE_EVENTS)) == []


def test_rule_3_the_writers_next_read_over_its_connection_sees_the_write() -> None:
    stale = get(5, view(X, 1, "a"))
    assert rules(check(history([*BASE_OPS, stale], BASE_EVENTS))) == {3}
    # Another connection (maybe another process), or a write that said it was pending:
    # no promise, so no violation.
    assert check(history([*BASE_OPS, get(5, view(X, 1, "a"), conn="c2")], BASE_EVENTS)) == []
    pending = patch(2, 2, "b", headers={"consistency-pending": "true"})
    assert check(history([create(1), pending, stale], BASE_EVENTS)) == []


def test_rule_4_reads_never_go_back() -> None:
    back = [*BASE_OPS, get(5, view(X, 2, "b"), conn="c2"), get(6, view(X, 1, "a"), conn="c2")]
    assert rules(check(history(back, BASE_EVENTS))) == {4}
    forth = [*BASE_OPS, get(5, view(X, 1, "a"), conn="c2"), get(6, view(X, 2, "b"), conn="c2")]
    assert check(history(forth, BASE_EVENTS)) == []
    # A deleted item never comes back.
    deleted = [*BASE_EVENTS, Event(3, X, 3, "ItemDeleted", {}, 3.2)]
    gone = [
        *BASE_OPS,
        op(3, "delete", 204),
        get(5, None, conn="c2"),
        get(6, view(X, 2, "b"), conn="c2"),
    ]
    assert rules(check(history(gone, deleted, items={}))) == {4}


def test_rule_5_one_winner_per_etag() -> None:
    match = {"if-match": '"1"'}
    two = [create(1), patch(2, 2, "b", req_headers=match), patch(3, 3, "c", req_headers=match)]
    events = [*BASE_EVENTS, patched_event(3, 3, "c")]
    assert 5 in rules(check(history(two, events)))
    one = [
        create(1),
        patch(2, 2, "b", req_headers=match),
        op(3, "patch", 412, req_body={"name": "c"}, req_headers=match),
    ]
    assert check(history(one, BASE_EVENTS)) == []


def test_rule_6_no_read_of_a_state_that_never_existed() -> None:
    invented = get(5, view(X, 2, "never written"), conn="c2")
    assert rules(check(history([*BASE_OPS, invented], BASE_EVENTS))) == {6}
    future = get(5, view(X, 3, "b"), conn="c2")
    assert 6 in rules(check(history([*BASE_OPS, future], BASE_EVENTS)))
    cheaper = get(5, view(X, 2, "b", price="0.50"), conn="c2")
    assert rules(check(history([*BASE_OPS, cheaper], BASE_EVENTS))) == {6}
    # A write without an answer is a state that existed once PostgreSQL has it.
    unknown = [create(1), op(2, "patch", None, req_body={"name": "b"}), get(5, view(X, 2, "b"))]
    assert check(history(unknown, BASE_EVENTS)) == []


def page(n: int, walk: int, ids: list[str], total: int, cursor: str | None, at: int = 9) -> Op:
    body = {
        "items": [view(i, 1, "a" if i == X else "y") for i in ids],
        "next_cursor": cursor,
        "total": total,
    }
    return op(
        n,
        "list",
        200,
        path="/api/v1/items",
        item=None,
        body=body,
        walk=walk,
        headers={"x-projection-position": str(at)},
        params={"sort": "created_at"},
    )


def test_rule_7_a_cursor_walk_shows_no_item_twice_and_its_totals_add_up() -> None:
    events = [created_event(1), created_event(2, item=Y, name="y")]
    made = [create(1), create(2, item=Y, name="y")]
    clean = [page(10, 1, [X], 2, "c"), page(11, 1, [Y], 2, None)]
    assert check(history([*made, *clean], events)) == []
    twice = [page(10, 1, [X, Y], 2, "c"), page(11, 1, [Y], 2, None)]
    assert rules(check(history([*made, *twice], events))) == {7}
    short = [page(10, 1, [X], 3, "c"), page(11, 1, [Y], 3, None)]
    assert rules(check(history([*made, *short], events))) == {7}
    # While the read model moves (pages at two positions), totals may differ: kept.
    moving = [page(10, 1, [X], 1, "c", at=1), page(11, 1, [Y], 2, None, at=2)]
    assert check(history([*made, *moving], events)) == []


def test_rule_8_views_equal_postgresql_after_the_faults() -> None:
    assert rules(check(history(BASE_OPS, BASE_EVENTS, verify=1))) == {8}
    assert rules(check(history(BASE_OPS, BASE_EVENTS, verify=None))) == {8}
    late = history(BASE_OPS, BASE_EVENTS)
    late.verifies = [Verify(100.0, 0, "matches")]  # 100 s after the faults: too late
    assert rules(check(late)) == {8}


def test_recovery_is_the_last_failure_after_the_fault_ended() -> None:
    h = history(
        [
            *BASE_OPS,
            op(10, "get", 503),
            op(11, "get", 503),
            op(12, "create", 201, req_body={"name": "z"}, body=view(Y, 1, "z"), item=Y),
        ],
        BASE_EVENTS,
    )
    h.faults = [Fault("redis-sigstop", 8.0, 10.5), Fault("pg-cut", 20.0, 22.0)]
    first, second = recoveries(h)
    assert first.reads == pytest.approx(11.5 - 10.5)  # op 11, invoked at 11.0
    assert first.failed_during == 1  # op 10, invoked while Redis was stopped
    assert first.writes == 0.0
    assert second.reads == 0.0
