"""Pure projection logic: fold an item's events onto its current view.

No I/O here: the batch step (step.py) loads the current state from the read model, folds
the batch's events with these functions and hands the resulting operations to one
atomic write.
Folding is idempotent (events at or below the state's version are skipped) and refuses
a version gap instead of guessing, so a view is never built out of order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.events import Event, ItemCreated, ItemDeleted, ItemUpdated
from app.queries import views
from app.queries.views import index_members


class ProjectionError(Exception):
    """An event cannot be applied to the view it belongs to."""


@dataclass
class ItemState:
    version: int = 0
    view: views.View | None = None

    @property
    def deleted(self) -> bool:
        return self.version > 0 and self.view is None


@dataclass(frozen=True)
class ViewOp:
    """What one item's views and index entries must become, from one version to another."""

    item_id: str
    from_version: int
    to_version: int
    data: bytes | None  # the new view; None when the item is deleted
    removes: list[tuple[str, str]] = field(default_factory=list)
    adds: list[tuple[str, str]] = field(default_factory=list)


def apply_event(state: ItemState, event: Event) -> ItemState:
    if event.version <= state.version:
        return state  # already applied: a replay changes nothing
    if event.version != state.version + 1:
        raise ProjectionError(
            f"item {event.item_id}: event version {event.version} after view version "
            f"{state.version}; an earlier event is missing"
        )
    moment = views.format_time(event.occurred_at)
    if isinstance(event, ItemCreated):
        if state.version != 0:
            raise ProjectionError(f"item {event.item_id} created twice")
        view = views.make_view(
            item_id=str(event.item_id),
            name=event.name,
            description=event.description,
            price=views.format_price(event.price),
            tags=sorted(event.tags),
            version=event.version,
            created_at=moment,
            updated_at=moment,
        )
        return ItemState(event.version, view)
    if state.view is None:
        raise ProjectionError(f"item {event.item_id}: {type(event).__name__} without a live view")
    if isinstance(event, ItemDeleted):
        return ItemState(event.version, None)
    assert isinstance(event, ItemUpdated)
    view = dict(state.view)
    for name, value in event.changes.items():
        if name == "price":
            view["price"] = views.format_price(value)
        elif name == "tags":
            view["tags"] = sorted(value)
        elif name in ("name", "description"):
            view[name] = value
        else:
            raise ProjectionError(f"item {event.item_id}: unknown field {name!r}")
    view["version"] = event.version
    view["updated_at"] = moment
    return ItemState(event.version, view)


def fold(state: ItemState, events: list[Event]) -> ItemState:
    for event in events:
        state = apply_event(state, event)
    return state


def diff(item_id: str, before: ItemState, after: ItemState) -> ViewOp | None:
    """The operation that takes the stored state `before` to `after` (None: no change)."""
    if after.version == before.version:
        return None
    old = index_members(before.view) if before.view else {}
    new = index_members(after.view) if after.view else {}
    return ViewOp(
        item_id=item_id,
        from_version=before.version,
        to_version=after.version,
        data=None if after.view is None else views.render(after.view),
        removes=[(k, m) for k, m in old.items() if new.get(k) != m],
        adds=[(k, m) for k, m in new.items() if old.get(k) != m],
    )
