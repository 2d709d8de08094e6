"""The view cache's rules, one by one (the argument is in app/queries/cache/views.py)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from app.queries.cache.views import ENTRY_OVERHEAD, ViewCache
from app.queries.notices import ChangeNotice
from app.queries.read_model import ViewRead

G = "g1"


def read(version: int, checkpoint: int, *, gen: str = G, partition: int = 0) -> ViewRead:
    return ViewRead(b'{"v":%d}' % version, checkpoint, version, partition, gen)


def cached(cache: ViewCache, item_id: UUID, min_position: int | None = None) -> int | None:
    """The version the cache would answer with, or None."""
    hit = cache.lookup(item_id, min_position)
    return None if hit is None else hit[0].version


def frozen() -> float:
    """The cache's clock in these tests: a PING proven at 0.0 keeps it answering."""
    return 0.0


def changed(checkpoint: int, *ids: UUID, gen: str = G, partition: int = 0) -> ChangeNotice:
    return ChangeNotice(partition, checkpoint, gen, tuple(str(i) for i in ids))


@pytest.fixture
def cache() -> ViewCache:
    c = ViewCache(1 << 20, clock=frozen)
    c.enable([(0, G, 10), (1, G, 10)], 0.0)
    return c


def test_notices_round_trip_and_keep_partition_and_checkpoint_first() -> None:
    a, b = str(uuid4()), str(uuid4())
    for notice in (
        ChangeNotice(3, 42, "g7", (a, b)),
        ChangeNotice(3, 42, "g7", ()),
        ChangeNotice(0, 5, "g7", (a,), repair=True),
        ChangeNotice(1, 9, "g8", reset=True),
        ChangeNotice(1, 0, "", reset=True),
    ):
        text = notice.encode()
        assert ChangeNotice.parse(text.encode()) == notice
        part, cp = text.split(":", 2)[:2]
        assert (int(part), int(cp)) == (notice.partition, notice.checkpoint)
    with pytest.raises(ValueError, match="not enough values"):
        ChangeNotice.parse(b"0:12")  # the old checkpoint-only message


def test_disabled_until_enabled_and_emptied_when_disabled() -> None:
    cache = ViewCache(1 << 20, clock=frozen)
    item = uuid4()
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) is None
    cache.enable([(0, G, 10)], 0.0)
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) == 1
    cache.disable()
    assert cached(cache, item) is None
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) is None
    assert cache.hits == 1


def test_zero_bytes_means_off() -> None:
    cache = ViewCache(0, clock=frozen)
    cache.enable([(0, G, 10)], 0.0)
    item = uuid4()
    cache.offer(item, read(1, 10), '"1"')
    assert not cache.enabled
    assert cached(cache, item) is None


def test_a_read_from_before_the_horizon_is_refused(cache: ViewCache) -> None:
    item = uuid4()
    cache.offer(item, read(1, 9), '"1"')  # taken before we knew every notice
    assert cached(cache, item) is None
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) == 1


def test_a_read_crossing_a_notice_is_refused(cache: ViewCache) -> None:
    """Redis answered version 1 at 10; the notice of version 2 at 11 is applied before
    the read is offered: storing it would pin version 1 for good."""
    item = uuid4()
    cache.apply(changed(11, item))
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) is None
    cache.offer(item, read(2, 11), '"2"')
    assert cached(cache, item) == 2


def test_a_notice_drops_its_ids_only(cache: ViewCache) -> None:
    a, b = uuid4(), uuid4()
    cache.offer(a, read(1, 10), '"1"')
    cache.offer(b, read(1, 10), '"1"')
    cache.apply(changed(12, a))
    assert cached(cache, a) is None
    assert cached(cache, b) == 1


def test_notices_of_another_generation_or_partition_do_not_count(cache: ViewCache) -> None:
    a = uuid4()
    cache.offer(a, read(1, 10), '"1"')
    cache.apply(changed(50, a, gen="g-rebuild"))  # a rebuild filling its generation
    cache.apply(changed(50, uuid4(), partition=1))
    assert cached(cache, a) == 1
    cache.offer(uuid4(), read(1, 10), '"1"')  # floor of partition 0 still 10
    assert cache.stats()["entries"] == 2


def test_a_read_of_another_generation_is_not_stored(cache: ViewCache) -> None:
    item = uuid4()
    cache.offer(item, read(1, 20, gen="g2"), '"1"')
    assert cached(cache, item) is None


def test_only_newer_versions_replace_and_a_newer_read_drops_a_stale_entry(
    cache: ViewCache,
) -> None:
    item = uuid4()
    cache.offer(item, read(2, 12), '"2"')
    cache.offer(item, read(1, 10), '"1"')  # an older read still in flight
    assert cached(cache, item) == 2
    cache.offer(item, read(3, 14), '"3"')
    assert cached(cache, item) == 3
    # Redis answered version 4 but the read cannot be stored (another generation, say):
    # the cache must not keep answering 3 to a client that has just seen 4.
    cache.offer(item, read(4, 20, gen="g2"), '"4"')
    assert cached(cache, item) is None
    cache.offer(item, read(3, 14), '"3"')  # the dropped entry's reads stay refused
    assert cached(cache, item) is None


def test_a_deleted_view_is_not_stored_and_drops_the_live_one(cache: ViewCache) -> None:
    item = uuid4()
    cache.offer(item, read(1, 10), '"1"')
    cache.offer(item, ViewRead(None, 11, -2, 0, G), '"2"')
    assert cached(cache, item) is None
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item) is None


def test_reset_voids_the_partition_and_adopts_the_new_generation(cache: ViewCache) -> None:
    a, b = uuid4(), uuid4()
    cache.offer(a, read(1, 10), '"1"')
    cache.offer(b, read(1, 10, partition=1), '"1"')
    cache.apply(ChangeNotice(0, 30, "g2", reset=True))
    assert cached(cache, a) is None
    assert cached(cache, b) == 1
    cache.offer(a, read(1, 20), '"1"')  # the old generation
    cache.offer(a, read(1, 29, gen="g2"), '"1"')  # before the switch
    assert cached(cache, a) is None
    cache.offer(a, read(1, 30, gen="g2"), '"1"')
    assert cached(cache, a) == 1


def test_reset_without_a_live_generation_stores_nothing(cache: ViewCache) -> None:
    item = uuid4()
    cache.apply(ChangeNotice(0, 0, "", reset=True))  # Redis lost its data; restoring
    cache.apply(changed(5, uuid4(), gen="g-restore"))
    cache.offer(item, read(1, 5, gen="g-restore"), '"1"')
    assert cached(cache, item) is None
    cache.apply(ChangeNotice(0, 5, "g-restore", reset=True))  # made live
    cache.offer(item, read(1, 5, gen="g-restore"), '"1"')
    assert cached(cache, item) == 1


def test_a_repair_pins_the_id_at_its_checkpoint(cache: ViewCache) -> None:
    """A repair rewrites a view at an unchanged checkpoint: a read at that checkpoint
    may be from before it."""
    item, other = uuid4(), uuid4()
    cache.apply(ChangeNotice(0, 15, G, (str(item),), repair=True))
    cache.offer(item, read(1, 15), '"1"')
    assert cached(cache, item) is None
    cache.offer(other, read(1, 15), '"1"')
    assert cached(cache, other) == 1
    cache.apply(changed(16, uuid4()))
    cache.offer(item, read(1, 16), '"1"')
    assert cached(cache, item) == 1


def test_a_token_is_served_only_up_to_the_horizon(cache: ViewCache) -> None:
    item = uuid4()
    cache.offer(item, read(1, 10), '"1"')
    assert cached(cache, item, 10) == 1
    assert cached(cache, item, 11) is None  # its notice may not have arrived yet
    cache.apply(changed(12, uuid4()))
    hit = cache.lookup(item, 12)
    assert hit is not None
    assert hit[1] == 12  # known current at the horizon, and says so


def test_bounded_by_bytes_least_recently_used_first(cache: ViewCache) -> None:
    size = len(read(1, 10).data or b"") + ENTRY_OVERHEAD
    small = ViewCache(3 * size, clock=frozen)
    small.enable([(0, G, 10)], 0.0)
    a, b, c, d = uuid4(), uuid4(), uuid4(), uuid4()
    for item in (a, b, c):
        small.offer(item, read(1, 10), '"1"')
    assert cached(small, a) == 1  # a is now the most recently used
    small.offer(d, read(1, 10), '"1"')
    assert small.stats()["bytes"] <= 3 * size
    assert cached(small, b) is None
    assert [cached(small, i) for i in (a, c, d)] == [1, 1, 1]


def test_eviction_keeps_older_reads_out(cache: ViewCache) -> None:
    size = len(read(1, 10).data or b"") + ENTRY_OVERHEAD
    small = ViewCache(size, clock=frozen)
    small.enable([(0, G, 10)], 0.0)
    a, b = uuid4(), uuid4()
    small.offer(a, read(2, 12), '"2"')
    small.offer(b, read(1, 12), '"1"')  # evicts a
    small.offer(a, read(1, 10), '"1"')  # an older read of a, still in flight
    assert cached(small, a) is None


def test_answers_only_within_the_lease_of_the_last_proven_ping() -> None:
    now = [100.0]
    cache = ViewCache(1 << 20, lease=1.0, clock=lambda: now[0])
    cache.enable([(0, G, 10)], read_at=100.0)
    item = uuid4()
    cache.offer(item, read(1, 10), '"1"')
    now[0] = 100.9
    assert cached(cache, item) == 1
    now[0] = 101.1  # no PONG since: the subscription may have stalled
    assert cached(cache, item) is None
    cache.current_as_of(100.5)  # a PONG for a PING sent at 100.5
    assert cached(cache, item) == 1
    now[0] = 101.6
    assert cached(cache, item) is None
    cache.current_as_of(100.2)  # a late PONG of an older PING proves nothing newer
    assert cached(cache, item) is None
