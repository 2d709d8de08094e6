"""The batch step: read the next events of the log, fold them onto the views, and hand
the result to the read model in one atomic write per partition.

No loop and no lock here (runner.py keeps those): a step is called by the live
projector, by a rebuild catching its new generation up, and (`reapply`) by the
dead-letter retry, so the three can never fold differently.

Where a step writes: every partition's live generation, restoring any that is missing
(the projector), or fixed targets (a rebuild's generation, released partition by
partition as they go live). Each write is guarded by the checkpoint it expects, so a
step that lost its lock without knowing it cannot write (Fenced), and a batch that
fails is retried, never skipped.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from app.projection.fold import ItemState, ProjectionError, apply_event, diff, fold
from app.projection.gap_guard import GapGuard
from app.projection.ports import BaseMoved, EventLog, Fenced, ProjectionStore, StoredEvent, Target

log = logging.getLogger("items.projector")

HOLE_WAIT = 0.02  # seconds before reading again while a hole in the positions may fill
MAX_ATTEMPTS = 3  # tries of an event that fails to apply before it becomes a dead letter
APPLY_ATTEMPTS = 3  # folds of one partition's batch when a view moved under it (BaseMoved)
REAPPLY_ATTEMPTS = 20  # the same for a dead-letter retry, racing the live projector
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
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._fixed = None if targets is None else dict(targets)
        self.targets: dict[int, Target] = {}
        self.checkpoints: dict[int, int] = {}
        self._guard = GapGuard()
        self._failures: dict[int, int] = {}
        # The live generation each partition had when last resolved: a partition that had
        # one and now has none lost it (Redis restarted empty), which is worth a warning;
        # one that never had one is a new read model.
        self._seen_live: dict[int, str] = {}
        self._announced: dict[int, str] = {}  # the generation each partition builds, said once

    def reset(self) -> None:
        """Start over from what the read model holds (a projector that just won its lock)."""
        self.targets.clear()
        self._guard = GapGuard()

    def forget(self) -> None:
        """Reload the targets and checkpoints before the next step (after a failure)."""
        self.targets.clear()

    def release(self, partition: int) -> None:
        """A fixed target's generation is live now; the live projector takes it over."""
        if self._fixed is not None:
            self._fixed.pop(partition, None)
        self.targets.pop(partition, None)
        self.checkpoints.pop(partition, None)

    async def resolve(self) -> None:
        """Where to write, and from which checkpoint, as the read model says now."""
        if self._fixed is None:
            for p in range(self._store.partitions):
                target, self.checkpoints[p] = await self._store.resolve(p)
                self._note(target)
                self.targets[p] = target
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
        if not self.targets:
            await self.resolve()
            if not self.targets:
                return None  # every fixed target was released: nothing left to do
        after = min(self.checkpoints.values())
        snapshot, read = await log_.read_after(after, self._batch_size)
        batch = read[: self._guard.safe_count(after, [e.position for e in read], snapshot)]
        if self._guard.needs_bound:
            self._guard.set_bound(await log_.next_xid())
        if batch:
            try:
                await self.apply(batch, log_)
            except Fenced as exc:
                # A rebuild switched generations, or Redis lost its data: resolving again
                # says which (_note).
                log.info("projection target moved (%s); reloading it from Redis", exc)
                self.targets.clear()
                return 0
        if len(batch) < len(read):
            return HOLE_WAIT  # a transaction that took an earlier position is still open
        if len(read) == self._batch_size:
            return 0
        await self.finish_restores()
        # Idle: make sure Redis still holds what we think (it may have restarted empty);
        # if not, the next step resolves again and restores from the log. After a batch
        # there is no need: its script checked the generation and checkpoint itself
        # (Fenced), and this round trip would only add to the projection lag.
        if batch:
            return None
        if not await self._store.still_current(list(self.targets.values())):
            self.targets.clear()  # resolving again says what happened (_note)
            return 0
        return None

    async def apply(self, batch: list[StoredEvent], log_: EventLog) -> None:
        """Apply a batch (in position order) to every target it reaches."""
        by_partition: dict[int, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_partition[self._store.partition_of(stored.item_id)].append(stored)
        last = batch[-1].position
        for p, target in self.targets.items():
            # Events at or below this partition's checkpoint were applied before a crash
            # between two partitions' scripts; the checkpoint guard skips them.
            mine = [e for e in by_partition.get(p, []) if e.position > self.checkpoints[p]]
            if last <= self.checkpoints[p]:
                continue
            await self._apply_partition(target, mine, last, log_)
            self.checkpoints[p] = last

    async def _apply_partition(
        self, target: Target, batch: list[StoredEvent], last: int, log_: EventLog
    ) -> None:
        by_item: dict[str, list[StoredEvent]] = defaultdict(list)
        for stored in batch:
            by_item[str(stored.item_id)].append(stored)
        held = {item_id for item_id, events in by_item.items() if any(e.held for e in events)}
        # An item whose first event here is its creation had no view before it: no need
        # to ask Redis (one round trip less per batch of new items, which counts under
        # load). The script's version check still refuses the batch if one exists. Not
        # while any event is failing: a dead letter is only ever decided on Redis's state.
        new = set() if self._failures else {i for i, e in by_item.items() if e[0].version == 1}
        for attempt in range(APPLY_ATTEMPTS):
            known = {i: ItemState() for i in new} if attempt == 0 else {}
            states = known | await self._store.load(target, [i for i in by_item if i not in known])
            ops, dead = [], []
            for item_id, item_events in by_item.items():
                after, failed = self._fold(states[item_id], item_events, item_id in held)
                dead += failed
                op = diff(item_id, states[item_id], after)
                if op is not None:
                    ops.append(op)
            if dead:
                # Durable before the checkpoint passes them: nothing is ever dropped.
                await log_.record_dead_letters(dead)
                for stored, error in dead:
                    log.error("dead letter at position %d: %s", stored.position, error)
            try:
                await self._store.apply(target, self.checkpoints[target.partition], last, ops)
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
                self.targets[p] = Target(p, target.generation, building=False)
                self._seen_live[p] = target.generation
                log.info("partition %d: restored generation %s is live", p, target.generation)
                if old:
                    await self._store.drop_generation(p, old)

    async def reapply(self, item_id: str, events: list[StoredEvent]) -> None:
        """Apply one item's held events (its dead letters, in position order) onto its
        live view. Strict: an event that still fails raises (one of FOLD_ERRORS) and
        nothing is written. The checkpoint does not move, and the write is guarded like
        a batch's, so a batch racing it makes it fold again."""
        decoded = [e.decode() for e in events]
        p = self._store.partition_of(item_id)
        for _ in range(REAPPLY_ATTEMPTS):
            target = await self._store.live(p)
            if target is None:
                raise ValueError("the read model is being restored; retry when it is live")
            cp = await self._store.checkpoint(target)
            state = (await self._store.load(target, [item_id]))[item_id]
            op = diff(item_id, state, fold(state, decoded))
            try:
                await self._store.apply(target, cp, cp, [op] if op else [])
                return
            except (Fenced, BaseMoved):
                continue
        raise ValueError("the projector kept moving the view; try again")
