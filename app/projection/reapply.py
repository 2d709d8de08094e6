"""The dead-letter retry of one item: its held events, folded onto its live view.

Strict: an event that still fails raises (one of step.FOLD_ERRORS) and nothing is
written. The checkpoint does not move, and the write is guarded like a batch's (the
checkpoint it read, the view's version), so a batch of the live projector racing it
makes it fold again; it writes under no owner epoch, owning nothing.
"""

from __future__ import annotations

from app.projection.fold import diff, fold
from app.projection.ports import BaseMoved, Fenced, ProjectionStore, StoredEvent

ATTEMPTS = 20  # folds of the item while the live projector keeps moving its view


async def reapply(store: ProjectionStore, item_id: str, events: list[StoredEvent]) -> None:
    """Apply one item's held events (its dead letters, in position order)."""
    decoded = [e.decode() for e in events]
    p = store.partition_of(item_id)
    for _ in range(ATTEMPTS):
        target = await store.live(p)
        if target is None:
            raise ValueError("the read model is being restored; retry when it is live")
        cp = await store.checkpoint(target)
        state = (await store.load(target, [item_id]))[item_id]
        op = diff(item_id, state, fold(state, decoded))
        try:
            await store.apply(target, cp, cp, [op] if op else [])
            return
        except (Fenced, BaseMoved):
            continue
    raise ValueError("the projector kept moving the view; try again")
