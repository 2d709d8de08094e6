"""GapGuard: how far the projector may advance through positions with holes."""

from __future__ import annotations

import pytest

from app.projection.gap_guard import GapGuard, Snapshot


def snap(xmax: int, *xip: int) -> Snapshot:
    """A snapshot whose latest completed transaction is xmax - 1, with `xip` running."""
    return Snapshot(min(xip, default=xmax), xmax, frozenset(xip))


def test_contiguous_positions_all_pass() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 2, 3, 4], snap(102, 100, 101)) == 4
    assert guard.safe_count(4, [5, 6], snap(101, 100)) == 2
    assert guard.safe_count(10, [], snap(101, 100)) == 0
    assert not guard.needs_bound


def test_a_hole_with_transactions_in_flight_stops_before_it() -> None:
    guard = GapGuard()
    # 3 is missing while 100 and 101 are running: either may still commit it.
    assert guard.safe_count(0, [1, 2, 4, 5], snap(102, 100, 101)) == 2
    assert guard.needs_bound
    guard.set_bound(103)
    # Read again from 2 while one of those is still running: still held back.
    assert guard.safe_count(2, [4, 5], snap(104, 101, 102)) == 0
    assert guard.safe_count(2, [4, 5], snap(104, 101)) == 0


def test_a_hole_right_after_the_checkpoint_stops_at_once() -> None:
    guard = GapGuard()
    assert guard.safe_count(7, [9, 10], snap(56, 55)) == 0


def test_the_hole_passes_once_its_possible_owners_have_ended() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 2, 4, 5], snap(102, 100, 101)) == 2
    guard.set_bound(103)
    # 100 and 101 ended (104 is new: it took a position after 5, not 3).
    assert guard.safe_count(2, [4, 5], snap(105, 104)) == 2


def test_no_hole_passes_before_the_bound_is_known() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], snap(101, 100)) == 1
    assert guard.safe_count(1, [3], snap(300)) == 0  # everything ended, but up to what?
    guard.set_bound(150)
    assert guard.safe_count(1, [3], snap(300)) == 1


def test_an_empty_xip_does_not_mean_nothing_runs() -> None:
    # The bug this guards against: 200 committed position 3 while 201 (which took its
    # id after 200, and then position 2) still runs. The latest completed id is 200,
    # so the snapshot reads "201:201:" — xip empty, 201 running but not listed.
    guard = GapGuard()
    assert guard.safe_count(1, [3], snap(201)) == 0
    guard.set_bound(202)  # the projector's own id, taken after that read
    assert guard.safe_count(1, [3], snap(201)) == 0  # 201 may still be running
    assert guard.safe_count(1, [3], snap(203, 201)) == 0  # it is
    assert guard.safe_count(1, [3], snap(203)) == 1  # it ended (rolled back: 2 stays empty)


def test_ids_from_the_old_xmax_up_to_the_bound_are_owners_too() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], snap(100)) == 1
    guard.set_bound(105)
    assert guard.safe_count(1, [3], snap(110, 103)) == 0  # 103 may own the hole
    assert guard.safe_count(1, [3], snap(110, 107)) == 1  # 107 was handed out after


def test_a_late_commit_fills_the_hole_in_order() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], snap(101, 100)) == 1
    # 100 committed position 2: no hole any more, whatever is running now.
    assert guard.safe_count(1, [2, 3], snap(201, 200)) == 2


def test_a_newer_hole_waits_for_its_own_owners() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], snap(101, 100)) == 1
    guard.set_bound(102)
    # Hole 2 is settled (100 ended), but 6 shows a new hole (4-5) while 200 runs.
    assert guard.safe_count(1, [3, 6], snap(201, 200)) == 1
    assert guard.needs_bound
    guard.set_bound(202)
    assert guard.safe_count(3, [6], snap(301, 200, 300)) == 0
    assert guard.safe_count(3, [6, 7], snap(301, 300)) == 2


def test_holes_below_a_recorded_limit_share_its_owners() -> None:
    guard = GapGuard()
    # Holes 2..4 below 5 were all taken before 5 was: their owners ran at this read.
    assert guard.safe_count(0, [1, 5], snap(102, 100, 101)) == 1
    guard.set_bound(103)
    # 100 committed 3 meanwhile; 2 and 4 may still come from 101.
    assert guard.safe_count(1, [3, 5], snap(401, 101, 400)) == 0
    assert guard.safe_count(1, [3, 5], snap(401, 400)) == 2


def test_several_holes_in_one_read() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3, 5], snap(101, 100)) == 1
    guard.set_bound(102)
    assert guard.safe_count(1, [3, 5], snap(101, 100)) == 0
    assert guard.safe_count(1, [3, 5], snap(104, 103)) == 1  # 5's hole is new to it
    guard.set_bound(105)
    assert guard.safe_count(3, [5], snap(107, 106)) == 1


@pytest.mark.parametrize(
    ("text", "xmin", "xmax", "xip"),
    [
        ("10:20:12,15", 10, 20, {12, 15}),
        ("10:10:", 10, 10, set()),
        ("10:20:12", 10, 20, {12}),
        ("100:105:100,101,104", 100, 105, {100, 101, 104}),
        ("9223372036854775000:9223372036854775001:9223372036854775000",
         9223372036854775000, 9223372036854775001, {9223372036854775000}),
    ],
)  # fmt: skip
def test_snapshot_parses_pg_snapshot_text(text: str, xmin: int, xmax: int, xip: set[int]) -> None:
    parsed = Snapshot.parse(text)
    assert (parsed.xmin, parsed.xmax, parsed.xip) == (xmin, xmax, frozenset(xip))


def test_ids_at_or_above_xmax_count_as_running() -> None:
    s = Snapshot.parse("10:20:12")
    for running in (12, 20, 25):
        assert s.running(running)
    for ended in (11, 19):
        assert not s.running(ended)
