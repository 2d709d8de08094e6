"""What the batch step last wrote for the items it wrote most recently: the state a next
event of one of them folds onto, without reading it back from the read model.

A PATCH of an item the projector wrote a moment ago is the common case under load, and
reading the view back first cost a Redis round trip per batch (the `load` script: about
a sixth of the projector's time under a 95/5 mix). A remembered state is only a guess
about what Redis holds, never trusted for a write: the apply script refuses a batch
whose op does not start from the version Redis holds (BaseMoved), and the step then folds
again from what Redis says. It is safe to guess because a view at a given version is a
function of the item's events up to that version: every writer (projector, rebuild,
repair, dead-letter retry) renders the same bytes for it, so a state remembered at the
version Redis holds is the state Redis holds.

Entries are keyed by the target (partition, generation, owner epoch): a rebuild's switch,
a restore after Redis lost its data or a change of owner start from nothing remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from app.projection.fold import ItemState
from app.projection.ports import StoredEvent, Target

SIZE = 8192  # items remembered, over every partition: a few MiB of views

_Key = tuple[int, str, int, str]  # partition, generation, epoch, item id


class RecentStates:
    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._states: OrderedDict[_Key, ItemState] = OrderedDict()

    def known(
        self, target: Target, by_item: Mapping[str, Sequence[StoredEvent]]
    ) -> dict[str, ItemState]:
        """The states a batch (each item's events, in order) may fold onto without asking
        Redis: nothing before an item's creation, else what was written last, if that is
        the version its first event here applies to."""
        known = {}
        for item_id, events in by_item.items():
            first = events[0].version
            state = ItemState() if first == 1 else self._before(target, item_id, first)
            if state is not None:
                known[item_id] = state
        return known

    def _before(self, target: Target, item_id: str, version: int) -> ItemState | None:
        """The remembered state an event at `version` applies to (the one at version - 1),
        or None: nothing remembered for it, or remembered at another version."""
        key = _key(target, item_id)
        state = self._states.get(key)
        if state is None or state.version != version - 1:
            return None
        self._states.move_to_end(key)
        return state

    def wrote(self, target: Target, states: dict[str, ItemState]) -> None:
        """Remember what one applied batch left these items at."""
        for item_id, state in states.items():
            key = _key(target, item_id)
            self._states[key] = state
            self._states.move_to_end(key)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()


def _key(target: Target, item_id: str) -> _Key:
    return (target.partition, target.generation, target.epoch, item_id)
