"""Which partitions this projector owns, and until when it may write to them.

A keeper task ticks every TICK seconds on a lease connection of its own (the Leases
port; app/infrastructure/postgres/leases.py says how partitions are divided): it reads
the layout readers follow (creating the first one when there is none), then renews and
rebalances this process's leases. An owned partition may be written only until the
lease taken at the start of the tick would lapse, less a margin: a process that stops
ticking (stuck, cut off from the database, SIGSTOPped) stops writing before another can
acquire the partition, and should it still try (a step already past its check), Redis
refuses the write once the new owner has claimed the partition with its later epoch.

Bound: a dead or stuck owner's partitions are acquired by another live projector within
LEASE + TICK seconds (6 s by default) after its last renewal; a clean stop gives them up
at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.projection.ports import LeaseConnector, Leases, ProjectionStore
from app.quiet import Quiet

log = logging.getLogger("items.projector")

TICK = 1.0  # seconds between two renewals of the leases
MARGIN = 0.8  # of a lease this process trusts its own clock for before it stops writing

Transient = Callable[[BaseException], str | None]


class Ownership:
    def __init__(
        self,
        connector: LeaseConnector,
        store: ProjectionStore,
        *,
        default_partitions: int,
        lease: float,
        tick: float = TICK,
        transient: Transient = lambda exc: None,
    ) -> None:
        self._connector = connector
        self._store = store
        self._default = default_partitions
        self._lease = lease
        self._tick = tick
        # Called when what is owned changes (the runner wakes on it).
        self.on_change: Callable[[], None] = lambda: None
        self._transient = transient
        self._owned: dict[int, tuple[int, float]] = {}  # partition -> (epoch, valid until)
        self.layout: tuple[str, int] | None = None
        self._stopping = asyncio.Event()
        # What the keeper waits for (a store not ready): the projector's own Quiet once it
        # runs one (runner.py), so one wait makes one line, not one per part.
        self.waiting = Quiet(log, "projector waiting")

    def owned(self) -> dict[int, int]:
        """Partition -> epoch of every partition this process may write to now."""
        now = time.monotonic()
        return {p: epoch for p, (epoch, until) in self._owned.items() if now < until}

    def epoch(self, partition: int) -> int | None:
        """The epoch to write `partition` under, or None when it may not be written."""
        held = self._owned.get(partition)
        return held[0] if held is not None and time.monotonic() < held[1] else None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Tick until stop(), reconnecting after a failure; give everything up at the end."""
        self._stopping.clear()
        while not self._stopping.is_set():
            leases: Leases | None = None
            try:
                leases = await self._connector.connect()
                while not self._stopping.is_set():
                    if await self.tick(leases):
                        self.waiting.over()
                    await self._pause(self._tick)
                await leases.release()
                self._set({})
                log.info("projector gave up its partitions")
            except Exception as exc:
                reason = self._transient(exc)
                if reason is None:
                    log.exception("partition leases failed; trying again")
                else:
                    self.waiting.say(reason)
                await self._pause(self._tick)
            finally:
                if leases is not None:
                    await leases.close()

    async def tick(self, leases: Leases) -> bool:
        """One renewal; False when Redis could not be read (the leases were renewed on
        the layout known)."""
        healthy = True
        try:
            layout = await self._store.followed_layout()
        except Exception as exc:
            # Redis is down: nobody can switch layouts meanwhile, so the leases are kept
            # on the layout known; when Redis is back, this process still owns its share.
            if self.layout is None:
                raise
            self.waiting.say(self._transient(exc) or f"reading the layout failed ({exc})")
            layout, healthy = self.layout, False
        if layout is None:
            layout = await self._store.create_layout(await leases.partitions(self._default))
        started = time.monotonic()
        owned = await leases.tick(*layout)
        if layout != self.layout:
            if self.layout is not None:
                log.info("projector follows layout %r with %d partitions now", *layout)
            self.layout = layout
            self._store.follow(*layout)
            self._owned = {}
        self._set(owned, started + self._lease * MARGIN)
        return healthy

    def _set(self, owned: dict[int, int], until: float = 0.0) -> None:
        before = {p: epoch for p, (epoch, _) in self._owned.items()}
        self._owned = {p: (epoch, until) for p, epoch in owned.items()}
        if owned != before:
            if owned:
                listed = ", ".join(f"{p} (epoch {e})" for p, e in sorted(owned.items()))
                log.info("projector owns partition(s) %s", listed)
            elif before:
                log.info("projector owns no partition now")
            self.on_change()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass
