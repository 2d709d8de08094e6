"""The command bus: the explicit registry of handlers, and the one place a unit of
work is opened, handed to a handler and committed.

Every entry point (REST, GraphQL, gRPC) sends its commands here, so a rule registered
on the bus (`add_rule`) holds for all of them without a line of theirs changing.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.commands import handlers
from app.commands.commands import Command, CreateItem, DeleteItem, UpdateItem
from app.commands.idempotency import (
    IdempotentRequest,
    KeyReused,
    RequestInFlight,
    StoredResponse,
)
from app.commands.unit_of_work import UnitOfWork
from app.domain.model import Item

Handler = Callable[[Any, UnitOfWork, datetime], Awaitable[Item]]
# A rule a command must pass: it sees the command and the aggregate as the handler left
# it, and refuses by raising (a DomainError: InvalidValue for a field, say).
Rule = Callable[[Any, Item], None]

HANDLERS: dict[type[Command], Handler] = {
    CreateItem: handlers.create_item,
    UpdateItem: handlers.update_item,
    DeleteItem: handlers.delete_item,
}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandResult:
    item: Item
    # Position of the last event this command committed or, when it changed nothing,
    # of the item's latest event: what a client waits for to read its own write.
    position: int | None
    changed: bool


@dataclass(frozen=True)
class Answered:
    """What an idempotent command answers: the response, and whether it is the stored
    answer of an earlier request with the same key (nothing ran this time)."""

    response: StoredResponse
    replayed: bool


class CommandBus:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        clock: Callable[[], datetime] = utc_now,
        handlers: Mapping[type[Command], Handler] = HANDLERS,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._handlers = dict(handlers)
        self._rules: dict[type[Command], list[Rule]] = {}

    def add_rule(self, command: type[Command], rule: Rule) -> None:
        """Check `rule` on every `command` from now on: after its handler changed the
        aggregate, before any event is appended, so a refusal writes nothing."""
        if command not in self._handlers:
            raise KeyError(f"no handler for {command.__name__}")
        self._rules.setdefault(command, []).append(rule)

    async def handle(self, cmd: Command) -> CommandResult:
        async with self._uow_factory() as uow:
            item = await self._apply(cmd, uow)
            changed = bool(item.events)
            # Nothing to append: the answer names the item's latest event, read while
            # the item is still locked. Otherwise the commit appends and says where:
            # a new item is then one statement, with no BEGIN or COMMIT of its own.
            latest = None if changed else await uow.items.last_position(item.id)
            position = await uow.commit()
        return CommandResult(item=item, position=latest if position is None else position,
                             changed=changed)  # fmt: skip

    async def handle_idempotent(
        self,
        cmd: Command,
        request: IdempotentRequest,
        respond: Callable[[CommandResult], StoredResponse],
    ) -> Answered:
        """Run a command at most once per key; a retry gets the first answer again."""
        async with self._uow_factory() as uow:
            if not await uow.idempotency.lock(request.key):
                raise RequestInFlight()
            stored = await uow.idempotency.get(request.key)
            if stored is not None:
                fingerprint, response = stored
                if fingerprint != request.fingerprint:
                    raise KeyReused()
                return Answered(response, replayed=True)
            response = respond(await self._run(cmd, uow))
            await uow.idempotency.save(request.key, request.fingerprint, response)
            await uow.commit()
        return Answered(response, replayed=False)

    async def _apply(self, cmd: Command, uow: UnitOfWork) -> Item:
        """The handler, then the rules: nothing is written yet if a rule refuses."""
        handler = self._handlers[type(cmd)]
        item = await handler(cmd, uow, self._clock())
        for rule in self._rules.get(type(cmd), ()):
            rule(cmd, item)
        return item

    async def _run(self, cmd: Command, uow: UnitOfWork) -> CommandResult:
        item = await self._apply(cmd, uow)
        changed = bool(item.events)
        position = await uow.flush()
        if position is None:
            position = await uow.items.last_position(item.id)
        return CommandResult(item=item, position=position, changed=changed)
