"""A bounded in-process cache of list pages, on the view cache's consistency machinery.

A list page is read from Redis per partition (the read model merges them), so any write
to any partition may change any page: its total, its order, an item on it. So the rules
are blunter than the view cache's, and rest on the same facts (views.py):

* A page is stored only while the view cache is enabled, and only when, for every
  partition, the read was of the live generation the cache follows, taken at a
  checkpoint at or above the partition's floor (so at or above its horizon: every notice
  applied so far is already in the page) and above its last repair (a repair does not
  move the checkpoint, so a read taken at the repair's position may predate it).
* Every notice for a followed partition (a batch, a repair, a reset) and every disable
  drops every page. A change after the page's read has a position above it and so a
  notice not applied yet when the page was stored; its arrival drops the page.
* Dropping pages raises each partition's floor to the highest checkpoint any of them
  was read at, and any read from Redis (a page, stored or not, or a stored view) raises
  them to its own: a client may have been answered as of those, so no older read in
  flight may be stored afterwards, and a page stored below the floor is not served
  (two reads can straddle a change whose notice is still on its way).
* A hit is served only within the view cache's lease; a read with a Consistency-Token
  only when every partition's horizon has reached the token's position (as for views).

So a page never goes back relative to Redis or to an answer already given. The cost is
that under writes pages live only between notices; without writes every read hits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from app.queries.cache.views import ViewCache

PAGE_OVERHEAD = 400  # bytes per page beyond its body: dict slot, key, dataclass, etag


@dataclass(frozen=True, slots=True)
class CachedPage:
    body: bytes
    etag: str
    checkpoint: int  # the lowest of `reads`' checkpoints: the position answered
    reads: tuple[tuple[str, int], ...]  # (generation, checkpoint) per partition


class PageCache:
    def __init__(self, views: ViewCache, max_bytes: int) -> None:
        self._views = views
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._pages: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._bytes = 0
        # Per partition, the highest checkpoint a stored page was read at: the floor a
        # wholesale drop must raise, without walking every page.
        self._highest: dict[int, int] = {}
        views.observe(self)

    def lookup(self, key: Hashable, min_position: int | None) -> CachedPage | None:
        page = self._pages.get(key)
        if page is None or not self._views.answering():
            self.misses += 1
            return None
        for p, (_, cp) in enumerate(page.reads):
            part = self._views.partition(p)
            if part is None or cp < part.floor:
                # A client was answered as of a later position (another page or a view
                # read from Redis) while the notice between them is still on its way.
                self._drop(key)
                self.misses += 1
                return None
        if min_position is not None:
            for p in range(len(page.reads)):
                part = self._views.partition(p)
                if part is None or part.horizon < min_position:
                    self.misses += 1
                    return None
        self.hits += 1
        self._pages.move_to_end(key)
        return page

    def offer(self, key: Hashable, page: CachedPage) -> None:
        """A page just read from Redis; stored only when the rules above allow it."""
        if not self._views.enabled:
            return
        old = self._pages.get(key)
        if old is not None:
            if all(o >= n for (_, o), (_, n) in zip(old.reads, page.reads, strict=True)):
                return  # no notice since the cached read, and this one is no newer
            self._drop(key)  # Redis is ahead of the cache: the entry is stale
        size = len(page.body) + PAGE_OVERHEAD
        if size > self.max_bytes or not self._storable(page):
            self._raise_floors(page)
            return
        self._pages[key] = page
        self._bytes += size
        # Pages stored before this one at a lower checkpoint are older than an answer
        # now given: lookup refuses them from here on.
        self._raise_floors(page)
        for p, (_, cp) in enumerate(page.reads):
            self._highest[p] = max(self._highest.get(p, cp), cp)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._pages)))

    def _storable(self, page: CachedPage) -> bool:
        for p, (generation, cp) in enumerate(page.reads):
            part = self._views.partition(p)
            if part is None or part.generation != generation:
                return False
            if cp < part.floor or cp <= part.repaired:
                return False
        return True

    # -- the view cache's notices (ViewCache.observe) -----------------------------------

    def changed(self, partition: int) -> None:
        if not self._pages:
            return
        # Every page covers every partition: any change may alter any of them.
        highest = self._highest
        self.cleared()
        for p, cp in highest.items():
            self._views.raise_floor(p, cp)

    def cleared(self) -> None:
        self._pages.clear()
        self._bytes = 0
        self._highest = {}

    # -- bookkeeping --------------------------------------------------------------------

    def _drop(self, key: Hashable) -> None:
        page = self._pages.pop(key, None)
        if page is None:
            return
        self._bytes -= len(page.body) + PAGE_OVERHEAD
        self._raise_floors(page)

    def _raise_floors(self, page: CachedPage) -> None:
        for p, (_, cp) in enumerate(page.reads):
            self._views.raise_floor(p, cp)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._pages),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }
