"""The list page cache's rules, one by one (the argument is in app/queries/cache/pages.py)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from app.queries.cache.pages import PAGE_OVERHEAD, CachedPage, PageCache
from app.queries.cache.views import ViewCache
from app.queries.notices import ChangeNotice
from app.queries.read_model import ViewRead

G = "g1"
KEY = (20, "-created_at", None, None)
OTHER = (20, "name", None, None)


def frozen() -> float:
    return 0.0


def page(*checkpoints: int, gen: str = G, body: bytes = b'{"items":[]}') -> CachedPage:
    """A page read at these checkpoints (one per partition)."""
    return CachedPage(
        body, f'"{checkpoints}"', min(checkpoints), tuple((gen, c) for c in checkpoints)
    )


def cached(pages: PageCache, key: object = KEY, min_position: int | None = None) -> int | None:
    """The checkpoint of the page the cache would answer with, or None."""
    hit = pages.lookup(key, min_position)
    return None if hit is None else hit.checkpoint


def changed(checkpoint: int, *, partition: int = 0, gen: str = G) -> ChangeNotice:
    return ChangeNotice(partition, checkpoint, gen, (str(uuid4()),))


@pytest.fixture
def views() -> ViewCache:
    v = ViewCache(1 << 20, clock=frozen)
    v.enable([(0, G, 10), (1, G, 10)], 0.0)
    return v


@pytest.fixture
def pages(views: ViewCache) -> PageCache:
    return PageCache(views, 1 << 20)


def test_stored_only_while_the_view_cache_is_enabled(views: ViewCache, pages: PageCache) -> None:
    pages.offer(KEY, page(10, 10))
    assert cached(pages) == 10
    views.disable()
    assert cached(pages) is None
    pages.offer(KEY, page(10, 10))
    assert cached(pages) is None
    views.enable([(0, G, 10), (1, G, 10)], 0.0)
    assert cached(pages) is None  # emptied by the disable, not kept for later
    pages.offer(KEY, page(10, 10))
    assert cached(pages) == 10


def test_any_notice_of_any_partition_drops_every_page(views: ViewCache, pages: PageCache) -> None:
    pages.offer(KEY, page(10, 10))
    pages.offer(OTHER, page(10, 10))
    views.apply(changed(11, partition=1))  # an item none of the pages shows, maybe
    assert cached(pages) is None
    assert cached(pages, OTHER) is None


def test_notices_of_a_generation_readers_do_not_follow_keep_pages(
    views: ViewCache, pages: PageCache
) -> None:
    pages.offer(KEY, page(10, 10))
    views.apply(changed(50, gen="g-rebuild"))
    assert cached(pages) == 10


def test_a_read_from_before_the_horizon_or_crossing_a_notice_is_refused(
    views: ViewCache, pages: PageCache
) -> None:
    pages.offer(KEY, page(9, 10))  # partition 0 read before we knew every notice
    assert cached(pages) is None
    views.apply(changed(12))
    pages.offer(KEY, page(11, 12))  # Redis answered at 11; the notice of 12 came first
    assert cached(pages) is None
    pages.offer(KEY, page(12, 12))
    assert cached(pages) == 12


def test_a_read_of_another_generation_is_refused(pages: PageCache) -> None:
    pages.offer(KEY, page(20, 20, gen="g2"))
    assert cached(pages) is None


def test_dropping_pages_keeps_older_reads_in_flight_out(views: ViewCache, pages: PageCache) -> None:
    """A client answered a page read at 15 must not be answered one read at 13 later."""
    pages.offer(KEY, page(15, 15))  # read ahead of the notices (horizon still 10)
    views.apply(changed(12))  # drops it
    pages.offer(KEY, page(13, 13))  # an older read still in flight
    assert cached(pages) is None
    pages.offer(KEY, page(15, 15))
    assert cached(pages) == 15


def test_a_read_not_stored_keeps_older_reads_out(pages: PageCache) -> None:
    pages.offer(KEY, page(14, 14, gen="g2"))  # answered from Redis, not stored
    pages.offer(KEY, page(12, 12))
    assert cached(pages) is None


def test_a_newer_read_replaces_and_an_older_one_does_not(pages: PageCache) -> None:
    pages.offer(KEY, page(12, 12, body=b"12"))
    pages.offer(KEY, page(11, 11, body=b"11"))
    assert cached(pages) == 12
    pages.offer(KEY, page(14, 14, body=b"14"))  # its notice has not arrived yet
    assert cached(pages) == 14
    pages.offer(KEY, page(13, 13, body=b"13"))
    hit = pages.lookup(KEY, None)
    assert hit is not None
    assert hit.body == b"14"


def test_a_repair_refuses_reads_at_its_checkpoint(views: ViewCache, pages: PageCache) -> None:
    """A repair rewrites a view and its index entries at an unchanged checkpoint: a page
    read at that checkpoint may be from before it."""
    pages.offer(KEY, page(10, 10))
    views.apply(ChangeNotice(0, 10, G, (str(uuid4()),), repair=True))
    assert cached(pages) is None
    pages.offer(KEY, page(10, 10))
    assert cached(pages) is None
    views.apply(changed(11))
    pages.offer(KEY, page(11, 10))
    assert cached(pages) == 10


def test_reset_drops_pages_and_adopts_the_new_generation(
    views: ViewCache, pages: PageCache
) -> None:
    pages.offer(KEY, page(10, 10))
    views.apply(ChangeNotice(0, 30, "g2", reset=True))
    assert cached(pages) is None
    pages.offer(KEY, page(30, 10))  # partition 0 read from the old generation
    assert cached(pages) is None
    pages.offer(KEY, CachedPage(b"{}", '"x"', 10, (("g2", 30), (G, 10))))
    assert cached(pages) == 10


def test_a_token_is_served_only_once_every_horizon_reached_it(
    views: ViewCache, pages: PageCache
) -> None:
    pages.offer(KEY, page(10, 10))
    assert cached(pages, min_position=10) == 10
    assert cached(pages, min_position=11) is None  # its notice may not have arrived yet
    views.apply(changed(12))
    views.apply(changed(12, partition=1))
    pages.offer(KEY, page(12, 12))
    assert cached(pages, min_position=12) == 12


def test_answers_only_within_the_lease() -> None:
    now = [100.0]
    views = ViewCache(1 << 20, lease=1.0, clock=lambda: now[0])
    pages = PageCache(views, 1 << 20)
    views.enable([(0, G, 10)], read_at=100.0)
    pages.offer(KEY, page(10))
    now[0] = 100.9
    assert cached(pages) == 10
    now[0] = 101.1  # no PONG since: the subscription may have stalled
    assert cached(pages) is None
    views.current_as_of(100.5)
    assert cached(pages) == 10


def test_bounded_by_bytes_least_recently_used_first(views: ViewCache) -> None:
    size = len(page(10, 10).body) + PAGE_OVERHEAD
    small = PageCache(views, 2 * size)
    a, b, c = (1, "a", None, None), (1, "b", None, None), (1, "c", None, None)
    small.offer(a, page(12, 12))
    small.offer(b, page(12, 12))
    assert cached(small, b) == 12  # b is now the most recently used
    small.offer(c, page(12, 12))
    assert small.stats()["bytes"] <= 2 * size
    assert cached(small, a) is None
    assert cached(small, b) == 12
    assert cached(small, c) == 12
    small.offer(a, page(11, 11))  # an older read of the evicted page, still in flight
    assert cached(small, a) is None


def test_zero_bytes_stores_nothing(views: ViewCache) -> None:
    off = PageCache(views, 0)
    off.offer(KEY, page(10, 10))
    assert cached(off) is None


def test_a_page_older_than_a_later_answer_is_not_served(views: ViewCache, pages: PageCache) -> None:
    """Two reads straddle a change whose notice has not arrived: the page read after it
    was answered, so the one read before it may not be served any more."""
    pages.offer(KEY, page(10, 10))
    pages.offer(OTHER, page(12, 10))  # read after position 12, its notice still on its way
    assert cached(pages, OTHER) == 10
    assert cached(pages) is None


def test_a_view_read_from_redis_retires_older_pages(views: ViewCache, pages: PageCache) -> None:
    pages.offer(KEY, page(10, 10))
    read = ViewRead(b'{"id":"x"}', 12, 3, 0, G)
    views.offer(uuid4(), read, '"3"')  # a GET by id answered as of position 12
    assert cached(pages) is None
