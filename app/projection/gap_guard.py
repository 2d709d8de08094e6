"""Passing a hole in the event positions only once nothing can fill it any more.

Positions are handed out when a transaction inserts its events, but transactions commit
in their own order: position 11 can be visible while 10 is still in flight. A reader
that trusted "highest position seen" would skip 10 for good. So every read of the log
also returns the PostgreSQL snapshot it ran in, and `GapGuard` lets the projector pass a
hole only once every transaction that could still fill it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot, from its text form "xmin:xmax:xip,...".

    PostgreSQL sets xmax to the latest *completed* transaction id + 1, not to the next id
    to be handed out: a transaction that already holds an id at or above xmax is running
    but is not listed in xip. So "running" is xip plus everything from xmax up."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xips = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xips.split(",") if x))

    def running(self, xid: int) -> bool:
        return xid >= self.xmax or xid in self.xip


@dataclass(frozen=True)
class _Owners:
    """Every transaction that may still fill a hole seen in one snapshot: those it
    listed as running, and those that held an id at or above its xmax, which are all
    below `bound` (an id handed out after that snapshot; None until fetched)."""

    xip: frozenset[int]
    xmax: int
    bound: int | None = None

    def ended_by(self, later: Snapshot) -> bool:
        if self.bound is None:
            return False
        if any(later.running(x) for x in self.xip):
            return False
        # Every id in [xmax, bound) has ended in `later`: below its xmax and not listed.
        return self.bound <= later.xmax and not any(self.xmax <= x < self.bound for x in later.xip)


class GapGuard:
    """Decides how far the projector may advance through a read.

    A hole below a visible position p was allocated before p, so whoever owns it held a
    transaction id when the snapshot that showed p was taken (the repositories write the
    item row first, which gives a writer its id before it takes a position). Once every
    transaction that was running then has ended, a hole still empty belongs to a
    transaction that rolled back and will never be filled: it is safe to pass.

    "Running then" is the snapshot's xip list plus every id from its xmax up to an id
    handed out after it: the projector fetches that bound (`needs_bound`/`set_bound`)
    when a new hole appears, so no hole is ever passed on a snapshot alone.
    """

    def __init__(self) -> None:
        # Holes below `_limit` are owned by transactions among `_owners` (or had ended).
        self._limit = 0
        self._owners: _Owners | None = None

    @property
    def needs_bound(self) -> bool:
        return self._owners is not None and self._owners.bound is None

    def set_bound(self, next_xid: int) -> None:
        """An id handed out after the snapshot that showed the latest hole."""
        assert self._owners is not None
        self._owners = _Owners(self._owners.xip, self._owners.xmax, next_xid)

    def safe_count(self, after: int, positions: list[int], snapshot: Snapshot) -> int:
        """How many of `positions` (ascending, all > after) may be applied now."""
        expected = after + 1
        for count, position in enumerate(positions):
            if position != expected and not self._hole_settled(position, snapshot):
                return count
            expected = position + 1
        return len(positions)

    def _hole_settled(self, position: int, snapshot: Snapshot) -> bool:
        owners = self._owners
        if position <= self._limit and owners is not None and owners.ended_by(snapshot):
            return True
        if position > self._limit:
            # Who could own this hole (and every one below it): a superset of the
            # previous owners that are still running, so replacing them loses nothing.
            self._limit, self._owners = position, _Owners(snapshot.xip, snapshot.xmax)
        return False
