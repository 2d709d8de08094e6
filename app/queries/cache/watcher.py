"""Following the read model's change notices: waking readers and keeping the caches right.

The watcher wakes readers waiting for a position, so read-your-writes waits are not
busy polling, and keeps the view cache consistent (views.py): the cache is enabled only
while the one subscription is up, and every notice reaches it in order. How the notices
arrive is a ChangeFeed's business (Redis pub/sub: app/infrastructure/redis/change_feed.py);
what they mean is this module's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from app.queries.cache.views import ViewCache
from app.queries.notices import ChangeNotice, LayoutChanged, parse_notice
from app.queries.read_model import ReadModel
from app.quiet import Quiet

log = logging.getLogger("items.read")


class ChangeListener(Protocol):
    """What a ChangeFeed tells the one that follows it."""

    def now(self) -> float:
        """The clock the lease is kept in (the view cache's)."""

    def current_as_of(self, sent_at: float) -> None:
        """Every notice published before `sent_at` (this clock) has been delivered."""

    async def received(self, kind: str, data: Any) -> None:
        """A message on the subscription: "subscribe" (a new or renewed subscription:
        notices may have been lost before it), "message" (a notice) or another kind."""

    def lost(self, error: Exception | None) -> None:
        """The subscription is gone (None: the feed was stopped)."""


class ChangeFeed(Protocol):
    async def follow(self, listener: ChangeListener) -> None:
        """Deliver to `listener` until stop(), resubscribing after every failure."""

    def stop(self) -> None: ...


class CheckpointWatcher:
    def __init__(self, feed: ChangeFeed, read_model: ReadModel, cache: ViewCache) -> None:
        self._feed = feed
        self._read_model = read_model
        self._cache = cache
        self._changed = asyncio.Event()
        self._down = Quiet(log, "change notices not followed")

    async def run(self) -> None:
        await self._feed.follow(self)

    def stop(self) -> None:
        self._feed.stop()

    # -- the feed's listener ------------------------------------------------------------

    def now(self) -> float:
        return self._cache.now()

    def current_as_of(self, sent_at: float) -> None:
        self._cache.current_as_of(sent_at)

    async def received(self, kind: str, data: Any) -> None:
        notice: ChangeNotice | LayoutChanged | None = None
        if kind == "message":
            try:
                notice = parse_notice(data)
            except ValueError:
                # Not a notice (a projector of an older release?): what changed is
                # unknown, so the cache starts again, as after a new subscription.
                log.warning("not a change notice: %r", data)
        if isinstance(notice, ChangeNotice):
            # Notices of a layout being filled, or of one just retired, are not about
            # the partitions this process reads: their numbers mean other partitions.
            if notice.layout == self._read_model.layout_name:
                self._cache.apply(notice)
        elif isinstance(notice, LayoutChanged) or kind in ("subscribe", "message"):
            if isinstance(notice, LayoutChanged):
                await self._read_model.follow_layout()
            # The first confirmation, or redis-py re-subscribing after it reconnected by
            # itself: notices may have been lost, so start again from what Redis holds.
            self._cache.disable()
            read_at = self._cache.now()
            while True:  # positions of one layout, even if a switch lands meanwhile
                layout = self._read_model.layout_name
                positions = await self._read_model.positions()
                if self._read_model.layout_name == layout:
                    break
            self._cache.enable(positions, read_at, layout)
            self._down.over()
        self._notify()

    def lost(self, error: Exception | None) -> None:
        # The subscription is lost: notices may be too, so the cache goes.
        self._cache.disable()
        if error is not None:
            self._down.say(f"the subscription failed ({error}); subscribing again")
            self._notify()  # waiters re-read (and find out Redis is down)

    # -- readers waiting for a position -------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, within: float) -> None:
        """Return on the next published checkpoint, or after `within` seconds."""
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait([waiter], timeout=within)
        finally:
            waiter.cancel()
