"""What every `items` command shares: its start, the settings with their servers, the
container around an operator command, the exit codes, and the two output streams
(stdout for results, stderr for complaints), neither of which ever shows a password."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import pydantic
import typer

from app import bootstrap, proctitle
from app.bootstrap import Container
from app.logs import redact
from app.settings import Settings

# Exit codes of operator commands: 0 ok, 1 "looked, and found something wrong",
# 2 "could not look" (a store unreachable, or the projection did not catch up in time).
OK, FOUND, UNREACHABLE = 0, 1, 2


def begin(role: str) -> None:
    """The first thing every command does, once its arguments are parsed: `items: <role>`
    in `ps`, and this process's logging (LOG_LEVEL, LOG_FORMAT). After parsing, so that
    `--help` needs no valid settings and leaves the caller's logging alone."""
    proctitle.name(role)
    try:
        bootstrap.configure_logging(Settings())
    except pydantic.ValidationError as exc:
        # Its text repeats the values it refused, a URL with its password among them.
        complain("items", f"invalid settings: {exc}")
        finish(UNREACHABLE)


def finish(code: int) -> NoReturn:
    """End the command with `code` (Typer ignores what a command returns)."""
    raise typer.Exit(code)


def say(line: str) -> None:
    sys.stdout.write(redact(line) + "\n")
    sys.stdout.flush()


def complain(command: str, message: str) -> None:
    sys.stderr.write(redact(f"{command}: {message}") + "\n")
    sys.stderr.flush()


def scrubbed(value: Any) -> Any:
    """`value` (JSON-like) with every password in a URL in its strings replaced by ***:
    the same shape, for `--json` outputs."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    return value


def settings() -> Settings:
    """The settings, with embedded servers started for any store URL left unset."""
    return bootstrap.with_servers(Settings())


def unreachable(exc: BaseException) -> int:
    # An operator asking for status during an outage wants the outage named, not a
    # traceback; exit 2 tells scripts "could not look" apart from "looked, not ok".
    complain(
        "items", f"{bootstrap.unreachable_store(exc)} is unreachable: {type(exc).__name__}: {exc}"
    )
    return UNREACHABLE


def outage(exc: BaseException) -> BaseException | None:
    """The error of bootstrap.UNREACHABLE behind `exc`, if any: Alembic runs on
    SQLAlchemy, which may wrap the driver's error in its own."""
    seen: list[BaseException] = []
    at: BaseException | None = exc
    while at is not None and at not in seen:  # a chain may, rarely, loop
        if isinstance(at, bootstrap.UNREACHABLE):
            return at
        seen.append(at)
        at = at.__cause__ or at.__context__
    return None


def operate(work: Callable[[Container], Awaitable[int]]) -> int:
    """Run an operator command against the configured stores; returns the exit code."""
    configured = settings()

    async def run() -> int:
        container = bootstrap.build(configured)
        try:
            return await work(container)
        finally:
            await container.close()

    try:
        return asyncio.run(run())
    except bootstrap.UNREACHABLE as exc:
        return unreachable(exc)
