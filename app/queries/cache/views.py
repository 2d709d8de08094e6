"""A bounded in-process cache of item views, kept consistent by the projector's notices.

Why it is right (the argument the tests check):

* Every Redis step that changes a live view publishes a ChangeNotice (notices.py) inside
  the same Lua script, so the notice and the change are one atomic step, in Redis's one
  order. A batch's notice carries its checkpoint; a step that replaces a partition wholesale
  (restore, rebuild switch) publishes a reset.
* The cache is enabled only while our one pub/sub connection is subscribed. After the
  subscribe confirmation we read each partition's live generation and checkpoint: every
  change after that checkpoint reaches us, in order, on that connection. A lost or
  re-established subscription (redis-py reconnects by itself) disables and empties the
  cache before anything else is read from that connection.
* Per partition, `horizon` is the position up to which every notice has been applied,
  and `floor` (>= horizon) the position a Redis read must have been taken at to be
  stored. A read of generation G at checkpoint c >= floor shows the view as of c; a
  later change of it has a position > c and so a notice that has not been applied yet
  (else the floor would be past c), and applying it will drop the entry. A read that
  returned version N just before a notice for N+1 was applied has c < floor and is
  refused: that is the race of a read and a notice crossing.
* A repair rewrites a view without moving the checkpoint, so a read at the same
  checkpoint may show either side of it: its notice pins the id until the floor passes
  that position.
* Dropping an entry (a notice, eviction, a newer read) raises the floor to the entry's
  checkpoint, so an older read still in flight cannot bring back an older version; a
  Redis read newer than the cached entry drops it, and one that is not stored (a
  deletion, another generation) raises the floor to its own checkpoint: a client just
  answered from Redis is never answered an older version from the cache afterwards.
* A read with a Consistency-Token is served from the cache only when the partition's
  horizon has reached its position: every notice up to it has been applied, so the
  entry reflects that position. Otherwise it goes to Redis.
* A subscription can stall without closing (a frozen Redis, a network that drops
  packets): notices would then stop without any error. So the watcher PINGs on the
  pub/sub connection, and a PONG, which Redis sends after every notice it published
  before it read the PING, proves the cache current as of the PING's sending. The cache
  answers only within LEASE seconds of the last PING so proven; past that it misses and
  reads go to Redis (which then answers, or fails as Redis does). No process serves a
  view more than LEASE behind Redis.

List pages are cached by pages.py on the same subscription, horizon, floor and
lease; it is told of every notice and of every disable through `observe`.

Why entries are plain tuples keyed by the id's int: Python's cyclic garbage collector
walks every object it tracks on each full collection. A dataclass per entry and a UUID
per key made 100,000 cached views 200,000 more objects to walk (about 75 ms more per
full collection on the 2-core bench machine), and every miss promoted two more objects
towards the next full collection. A tuple of bytes, ints and a str, and an int key, are
not tracked at all once the collector has seen them once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol
from uuid import UUID

from app.queries.notices import ChangeNotice
from app.queries.read_model import ViewRead

ENTRY_OVERHEAD = 240  # bytes per entry beyond its body: dict slot, key, tuple, etag
LEASE = 1.0  # seconds a PONG keeps the cache answering (see the module docstring)


class CachedView(NamedTuple):
    """A cached view as lookup() hands it out (stored as a plain tuple of the same fields,
    which the garbage collector stops tracking: see the module docstring)."""

    body: bytes
    version: int
    checkpoint: int  # the position of the Redis read it came from
    partition: int
    etag: str


# CachedView's fields as a plain tuple: an exact tuple of untracked values is untracked.
_Entry = tuple[bytes, int, int, int, str]
_VERSION: Final = 1
_CHECKPOINT: Final = 2
_PARTITION: Final = 3


@dataclass
class Partition:
    generation: str | None  # the live generation; None: unknown, nothing is stored
    horizon: int  # every notice at or below this position has been applied
    floor: int  # a read must have been taken at or after this position to be stored
    pinned: dict[int, int] = field(default_factory=dict)  # repaired id (its int) -> position
    # The position of the last repair: a read taken at it may show either side of the
    # repair (which does not move the checkpoint), so a page read there is not stored.
    repaired: int = -1


class Observer(Protocol):
    """Another cache built on this one's notices (pages.py)."""

    def changed(self, partition: int) -> None:
        """A notice for the live generation of `partition` was applied."""

    def cleared(self) -> None:
        """The cache was disabled: nothing is known any more."""


class ViewCache:
    def __init__(
        self, max_bytes: int, lease: float = LEASE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.lease = lease
        self._clock = clock
        self._current_until = 0.0
        # Following: subscribed, with each partition's position known (the horizons are
        # kept even with a cache of size 0: writes wait on them). Enabled: following,
        # and storing views.
        self.following = False
        self.enabled = False
        self.layout = ""  # the read-model layout the partitions below are of
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # keyed by UUID.int
        self._parts: dict[int, Partition] = {}
        self._bytes = 0
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    # -- subscription -------------------------------------------------------------------

    def enable(
        self, positions: Iterable[tuple[int, str | None, int]], read_at: float, layout: str = ""
    ) -> None:
        """Subscribed: (partition, live generation or None, checkpoint) of `layout`, read
        after the subscribe confirmation, by a read that started at `read_at` (clock
        time)."""
        self.disable()
        self.layout = layout
        self._parts = {p: Partition(g, cp, cp) for p, g, cp in positions}
        self.following = True
        self.enabled = self.max_bytes > 0
        self.current_as_of(read_at)

    def current_as_of(self, sent_at: float) -> None:
        """A PONG came back for a PING sent at `sent_at` (clock time): every notice
        published before then has been applied."""
        self._current_until = max(self._current_until, sent_at + self.lease)

    def now(self) -> float:
        return self._clock()

    def answering(self) -> bool:
        """Enabled and within the lease: an entry may be served."""
        return self.enabled and self._clock() <= self._current_until

    def horizon(self, partition: int) -> int | None:
        """The position up to which every notice of `partition` has been applied, while
        that is known to be current (following, within the lease); None otherwise."""
        part = self._parts.get(partition)
        if part is None or not self.following or self._clock() > self._current_until:
            return None
        return part.horizon

    def partition(self, partition: int) -> Partition | None:
        """What is known of `partition` (None while disabled or for an unknown one)."""
        return self._parts.get(partition)

    def disable(self) -> None:
        """The subscription is gone (or not yet confirmed): nothing is known any more."""
        self.following = False
        self.enabled = False
        self._current_until = 0.0
        self._entries.clear()
        self._parts = {}
        self._bytes = 0
        for observer in self._observers:
            observer.cleared()

    # -- reads --------------------------------------------------------------------------

    def lookup(self, item_id: UUID, min_position: int | None) -> tuple[CachedView, int] | None:
        """The cached view and the position it is known current at, or None."""
        key = item_id.int
        entry = self._entries.get(key)
        if entry is None or self._clock() > self._current_until:
            self.misses += 1
            return None
        horizon = self._parts[entry[_PARTITION]].horizon
        if min_position is not None and min_position > horizon:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return CachedView._make(entry), max(entry[_CHECKPOINT], horizon)

    def offer(self, item_id: UUID, read: ViewRead, etag: str) -> None:
        """A view just read from Redis; stored only when the rules above allow it."""
        if not self.enabled:
            return
        version = abs(read.version)
        key = item_id.int
        old = self._entries.get(key)
        if old is not None:
            if old[_VERSION] >= version:
                return
            self._drop(key)  # Redis is ahead of the cache: the entry is stale
        part = self._parts.get(read.partition)
        if part is None or read.checkpoint < part.floor:
            return
        size = 0 if read.data is None else len(read.data) + ENTRY_OVERHEAD
        if (
            read.data is None
            or part.generation != read.generation
            or part.pinned.get(key, -1) >= read.checkpoint
            or size > self.max_bytes
        ):
            # Not stored, yet a client may be answered this version: no read older
            # than it may be stored after it.
            self._raise_floor(part, read.checkpoint)
            return
        self._entries[key] = (read.data, version, read.checkpoint, read.partition, etag)
        self._bytes += size
        # Cached list pages older than this answer must not be served after it.
        self._raise_floor(part, read.checkpoint)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    # -- notices ------------------------------------------------------------------------

    def apply(self, notice: ChangeNotice) -> None:
        if not self.following:
            return
        p = notice.partition
        if notice.reset:
            for key in [k for k, e in self._entries.items() if e[_PARTITION] == p]:
                self._drop(key)
            cp = notice.checkpoint
            self._parts[p] = Partition(notice.generation or None, cp, cp)
            self._changed(p)
            return
        part = self._parts.get(p)
        if part is None or part.generation != notice.generation:
            return  # a generation readers do not follow: a restore or rebuild filling
        for raw in notice.ids:
            key = UUID(raw).int
            self._drop(key)
            if notice.repair:
                part.pinned[key] = notice.checkpoint
        if notice.repair:
            part.repaired = max(part.repaired, notice.checkpoint)
        part.horizon = max(part.horizon, notice.checkpoint)
        self._raise_floor(part, notice.checkpoint)
        self._changed(p)

    def _changed(self, partition: int) -> None:
        for observer in self._observers:
            observer.changed(partition)

    # -- bookkeeping --------------------------------------------------------------------

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        body, _, checkpoint, partition, _ = entry
        self._bytes -= len(body) + ENTRY_OVERHEAD
        part = self._parts.get(partition)
        if part is not None:
            self._raise_floor(part, checkpoint)

    def raise_floor(self, partition: int, position: int) -> None:
        """No read of `partition` older than `position` may be stored any more: a client
        may have been answered as of `position`."""
        part = self._parts.get(partition)
        if part is not None:
            self._raise_floor(part, position)

    @staticmethod
    def _raise_floor(part: Partition, position: int) -> None:
        if position > part.floor:
            part.floor = position
            if part.pinned:
                part.pinned = {i: at for i, at in part.pinned.items() if at >= position}

    def stats(self) -> dict[str, int | bool]:
        return {
            "enabled": self.enabled,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }
