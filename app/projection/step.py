"""The batch step: read the next events of the log, fold them onto the views, and hand
the result to the read model in one atomic write per partition.

No loop and no lock here (runner.py keeps those): a step is called by the live
projector and by a rebuild catching its new generation up, so the two can never fold
differently (the dead-letter retry, reapply.py, folds with the same functions).

Where a step writes: the live generation of each partition its projector owns,
restoring any that is missing (the projector), or fixed targets (a rebuild's generation,
released partition by partition as they go live). Each write is guarded by the
checkpoint it expects and, for an owner, by its epoch: a step whose lease lapsed writes
nothing (the lease is checked before every write, and Redis refuses an epoch older than
the partition's fence), and a batch that fails is retried, never skipped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

from app import metrics, tracing
from app.projection.fold import ItemState, ProjectionError, apply_event, diff
from app.projection.gap_guard import GapGuard
from app.projection.ports import BaseMoved, EventLog, Fenced, ProjectionStore, StoredEvent, Target
from app.projection.recent import RecentStates

log = logging.getLogger("items.projector")

HOLE_WAIT = 0.02  # seconds before reading again while a hole in the positions may fill
MAX_ATTEMPTS = 3  # tries of an event that fails to apply before it becomes a dead letter
APPLY_ATTEMPTS = 3  # folds of one partition's batch when a view moved under it (BaseMoved)
# What folding a stored event raises when the event cannot be applied (a corrupt record,
# an event out of order): counted, retried, then dead-lettered. Anything else is a fault
# of the step itself, retried with back-off for as long as it lasts.
FOLD_ERRORS = (ProjectionError, KeyError, TypeError, ValueError)


class BatchStep:
    def __init__(
        self,
        store: ProjectionStore,
        *,
        batch_size: int = 500,
        targets: dict[int, Target] | None = None,
        lease: Callable[[int], int | None] | None = None,
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._fixed = None if targets is None else dict(targets)
        # An owner's check before every write: the epoch it may write a partition under
        # now, or None once its lease may have lapsed. None for fixed targets.
        self._lease = lease
        self._owned: dict[int, int] = {}
        self._refused: dict[int, int] = {}  # partition -> epoch a later owner fenced out
        self._layout: tuple[str, int] | None = None
        self.targets: dict[int, Target] = {}
        self.checkpoints: dict[int, int] = {}
        self._guard = GapGuard()
        self._failures: dict[int, int] = {}
        # The live generation each partition had when last resolved: a partition that had
        # one and now has none lost it (Redis restarted empty), which is worth a warning;
        # one that never had one is a new read model.
        self._seen_live: dict[int, str] = {}
        self._announced: dict[int, str] = {}  # the generation each partition builds, said once
        self._recent = RecentStates()

    def reset(self) -> None:
        """Start over from what the read model holds (a projector that (re)connected)."""
        self.targets.clear()
        self.checkpoints.clear()
        self._recent.clear()
        self._guard = GapGuard()

    def own(self, owned: dict[int, int], layout: tuple[str, int] | None) -> bool:
        """What the projector owns now (partition -> epoch, of `layout`): targets of
        partitions no longer owned, or owned under another epoch, are dropped before the
        next step; new ones are resolved by it. False when nothing is owned."""
        if layout != self._layout:
            self._layout = layout
            self.targets.clear()
            self.checkpoints.clear()
            self._seen_live.clear()
            self._announced.clear()
        owned = {p: e for p, e in owned.items() if self._refused.get(p) != e}
        for p in [p for p, t in self.targets.items() if owned.get(p) != t.epoch]:
            self._drop(p)
        self._owned = owned
        return bool(owned)

    def _drop(self, partition: int) -> None:
        self.targets.pop(partition, None)
        self.checkpoints.pop(partition, None)

    def forget(self) -> None:
        """Reload the targets, checkpoints and states before the next step (after a failure)."""
        self.targets.clear()
        self.checkpoints.clear()
        self._recent.clear()

    def fix(self, targets: dict[int, Target]) -> None:
        """Write to these fixed targets from now on (a rebuild's generations, made live
        in a layout no reader follows yet)."""
        self._fixed = dict(targets)
        self.targets.clear()
        self.checkpoints.clear()

    @property
    def store(self) -> ProjectionStore:
        return self._store

    def release(self, partition: int) -> None:
        """A fixed target's generation is live now; the live projector takes it over."""
        if self._fixed is not None:
            self._fixed.pop(partition, None)
        self.targets.pop(partition, None)
        self.checkpoints.pop(partition, None)

    async def resolve(self) -> None:
        """Where to write, and from which checkpoint, as the read model says now: for
        every owned partition without a target, claim it under its epoch (from then on
        an earlier owner cannot write), then read its generation and checkpoint."""
        if self._fixed is None:
            for p, epoch in sorted(self._owned.items()):
                if p in self.targets:
                    continue
                if not await self._store.claim(p, epoch):
                    log.info("partition %d: a later owner has claimed it; leaving it", p)
                    self._refused[p] = epoch
                    del self._owned[p]
                    continue
                target, checkpoint = await self._store.resolve(p)
                self._note(target)
                self.targets[p] = replace(target, epoch=epoch)
                self.checkpoints[p] = checkpoint
            return
        # Fixed: reload our own targets, never the live ones.
        for p, target in self._fixed.items():
            self.targets[p] = target
            self.checkpoints[p] = await self._store.checkpoint(target)

    def _note(self, target: Target) -> None:
        p = target.partition
        if not target.building:
            if self._seen_live.get(p, target.generation) != target.generation:
                log.info("partition %d: following generation %s (a rebuild switched it live)",
                         p, target.generation)  # fmt: skip
            self._seen_live[p] = target.generation
        elif p in self._seen_live:
            log.warning("partition %d: its read model is gone from Redis (restarted empty?); "
                        "restoring it from the event log", p)  # fmt: skip
            self._seen_live.pop(p)
        elif self._announced.get(p) != target.generation:
            log.info("partition %d: no live read model yet; building generation %s from the "
                     "event log", p, target.generation)  # fmt: skip
            self._announced[p] = target.generation

    async def step(self, log_: EventLog) -> float | None:
        """Project one batch. Returns how long to wait before the next one: 0 when there
        is more to read, a short pause while a hole in the positions may still fill,
        None to sleep until NOTIFY (or the poll interval)."""
        if self._fixed is None and set(self.targets) != set(self._owned):
            await self.resolve()
        elif not self.targets:
            await self.resolve()
        if not self.targets:
            return None  # nothing owned, or every fixed target was released
        after = min(self.checkpoints.values())
        snapshot, read = await log_.read_after(after, self._batch_size)
        batch = read[: self._guard.safe_count(after, [e.position for e in read], snapshot)]
        if self._guard.needs_bound:
            self._guard.set_bound(await log_.next_xid())
        if batch:
            try:
                await self.apply(batch, log_)
            except Fenced as exc:
                # A rebuild switched generations, Redis lost its data, or a later owner
                # took a partition over: resolving again says which (_note, claim).
                log.info("projection target moved (%s); reloading it from Redis", exc)
                self.targets.clear()
                self.checkpoints.clear()
                return 0
        if len(batch) < len(read):
            return HOLE_WAIT  # a transaction that took an earlier position is still open
        if len(read) == self._batch_size:
            return 0
        try:
            await self.finish_restores()
        except Fenced as exc:  # a later owner took a partition over meanwhile
            log.info("restore not made live (%s); reloading from Redis", exc)
            self.targets.clear()
            self.checkpoints.clear()
            return 0
        # Idle: make sure Redis still holds what we think (it may have restarted empty);
        # if not, the next step resolves again and restores from the log. After a batch
        # there is no need: its script checked the generation and checkpoint itself
        # (Fenced), and this round trip would only add to the projection lag.
        if batch:
            return None
        if not await self._store.still_current(list(self.targets.values())):
            self.targets.clear()  # resolving again says what happened (_note)
            self.checkpoints.clear()
            return 0
        return None

    async def apply(self, batch: list[StoredEvent], log_: EventLog) -> None:
        """Apply a batch (in position order) to every target it reaches."""
        by_partition: dict[int, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_partition[self._store.partition_of(stored.item_id)].append(stored)
        last = batch[-1].position
        for p, target in list(self.targets.items()):
            # Events at or below this partition's checkpoint were applied before a crash
            # between two partitions' scripts; the checkpoint guard skips them.
            mine = [e for e in by_partition.get(p, []) if e.position > self.checkpoints[p]]
            if last <= self.checkpoints[p]:
                continue
            if self._lease is not None and self._lease(p) != target.epoch:
                # The lease may have lapsed (this process stalled, or lost the database):
                # write nothing more to it; what it owns is known again at the next tick.
                log.info("partition %d: lease lapsed; not writing to it", p)
                self._drop(p)
                continue
            with tracing.batch(p, len(mine), [e.trace_context for e in mine]):
                await self._apply_partition(target, mine, last, log_)
            self.checkpoints[p] = last
            if mine and not target.rebuild:  # a rebuild's catch-up is not the live projection
                metrics.instance().events_projected.labels(str(p)).inc(len(mine))

    async def _apply_partition(
        self, target: Target, batch: list[StoredEvent], last: int, log_: EventLog
    ) -> None:
        by_item: dict[str, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_item[str(stored.item_id)].append(stored)
        held = {item_id for item_id, events in by_item.items() if any(e.held for e in events)}
        for attempt in range(APPLY_ATTEMPTS):
            # Not while any event is failing: a dead letter is decided on Redis's state.
            guess = attempt == 0 and not self._failures
            known = self._recent.known(target, by_item) if guess else {}
            states = known | await self._store.load(target, [i for i in by_item if i not in known])
            ops, dead, wrote = [], [], {}
            for item_id, item_events in by_item.items():
                after, failed = self._fold(states[item_id], item_events, item_id in held)
                dead += failed
                op = diff(item_id, states[item_id], after)
                if op is not None:
                    ops.append(op)
                    wrote[item_id] = after
            if dead:
                # Durable before the checkpoint passes them: nothing is ever dropped.
                await log_.record_dead_letters(dead)
                for stored, error in dead:
                    log.error("dead letter at position %d: %s", stored.position, error)
            try:
                await self._store.apply(target, self.checkpoints[target.partition], last, ops)
                self._recent.wrote(target, wrote)
                return
            except BaseMoved:
                # Someone (a repair) wrote a view between our load and our apply: the
                # version guard refused the batch whole; fold again from what is there.
                if attempt == APPLY_ATTEMPTS - 1:
                    raise

    def _fold(
        self, state: ItemState, events: list[StoredEvent], held: bool
    ) -> tuple[ItemState, list[tuple[StoredEvent, str]]]:
        """Fold one item's events; an event that cannot be applied (after a few tries of
        the whole batch) becomes a dead letter, and every later event of that item is
        held back behind it so the view never goes out of order. Other items flow on."""
        if held:
            return state, [(e, "held back behind an earlier dead letter") for e in events]
        for i, stored in enumerate(events):
            try:
                state = apply_event(state, stored.decode())
            except FOLD_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
                self._failures[stored.position] = self._failures.get(stored.position, 0) + 1
                if self._failures[stored.position] < MAX_ATTEMPTS:
                    raise  # retried with back-off; a transient cause gets its chance
                self._failures.pop(stored.position, None)
                rest = [
                    (e, f"held back behind position {stored.position}") for e in events[i + 1 :]
                ]
                return state, [(stored, error), *rest]
        return state, []

    async def finish_restores(self) -> None:
        """A generation being restored goes live once it has caught up with the log."""
        for p, target in list(self.targets.items()):
            if target.building:
                old = await self._store.activate(target)
                self.targets[p] = replace(target, building=False)
                self._seen_live[p] = target.generation
                log.info("partition %d: restored generation %s is live", p, target.generation)
                if old:
                    await self._store.drop_generation(p, old)
