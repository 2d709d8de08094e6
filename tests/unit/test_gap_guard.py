"""GapGuard: how far the projector may advance through positions with holes."""

from __future__ import annotations

import pytest

from app.infrastructure.event_log import GapGuard, in_progress

NONE: frozenset[int] = frozenset()


def test_contiguous_positions_all_pass() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 2, 3, 4], frozenset({100, 101})) == 4
    assert guard.safe_count(4, [5, 6], frozenset({100})) == 2
    assert guard.safe_count(10, [], frozenset({100})) == 0


def test_a_hole_with_transactions_in_flight_stops_before_it() -> None:
    guard = GapGuard()
    # 3 is missing while 100 and 101 are running: either may still commit it.
    assert guard.safe_count(0, [1, 2, 4, 5], frozenset({100, 101})) == 2
    # Read again from 2 while one of those is still running: still held back.
    assert guard.safe_count(2, [4, 5], frozenset({101, 102})) == 0
    assert guard.safe_count(2, [4, 5], frozenset({101})) == 0


def test_a_hole_right_after_the_checkpoint_stops_at_once() -> None:
    guard = GapGuard()
    assert guard.safe_count(7, [9, 10], frozenset({55})) == 0


def test_the_hole_passes_once_its_possible_owners_have_ended() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 2, 4, 5], frozenset({100, 101})) == 2
    # 100 and 101 ended (102 is new: it took a position after 5, not 3).
    assert guard.safe_count(2, [4, 5], frozenset({102})) == 2


def test_a_late_commit_fills_the_hole_in_order() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], frozenset({100})) == 1
    # 100 committed position 2: no hole any more, whatever is running now.
    assert guard.safe_count(1, [2, 3], frozenset({100, 200})) == 2


def test_an_empty_running_set_passes_holes_at_once() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [2, 5, 9], NONE) == 3
    # Also when an earlier read had recorded owners for a hole.
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], frozenset({100})) == 1
    assert guard.safe_count(1, [3], NONE) == 1


def test_a_newer_hole_waits_for_its_own_owners() -> None:
    guard = GapGuard()
    assert guard.safe_count(0, [1, 3], frozenset({100})) == 1
    # Hole 2 is settled (100 ended), but 6 shows a new hole (4-5) while 200 runs.
    assert guard.safe_count(1, [3, 6], frozenset({200})) == 1
    assert guard.safe_count(3, [6], frozenset({200, 300})) == 0
    assert guard.safe_count(3, [6, 7], frozenset({300})) == 2


def test_holes_below_a_recorded_limit_share_its_owners() -> None:
    guard = GapGuard()
    # Holes 2..4 below 5 were all taken before 5 was: their owners ran at this read.
    assert guard.safe_count(0, [1, 5], frozenset({100, 101})) == 1
    # 100 committed 3 meanwhile; 2 and 4 may still come from 101.
    assert guard.safe_count(1, [3, 5], frozenset({101, 400})) == 0
    assert guard.safe_count(1, [3, 5], frozenset({400})) == 2


def test_several_holes_in_one_read() -> None:
    guard = GapGuard()
    running = frozenset({100})
    assert guard.safe_count(0, [1, 3, 5], running) == 1
    assert guard.safe_count(1, [3, 5], running) == 0
    assert guard.safe_count(1, [3, 5], frozenset({101})) == 1  # 5's hole is new to it
    assert guard.safe_count(3, [5], frozenset({102})) == 1


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        ("10:20:12,15", {12, 15}),
        ("10:10:", set()),
        ("10:20:12", {12}),
        ("100:105:100,101,104", {100, 101, 104}),
        ("9223372036854775000:9223372036854775001:9223372036854775000", {9223372036854775000}),
    ],
)
def test_in_progress_parses_pg_snapshot_text(snapshot: str, expected: set[int]) -> None:
    running = in_progress(snapshot)
    assert running == frozenset(expected)
    assert isinstance(running, frozenset)
