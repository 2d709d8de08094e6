"""What every `items` command shares: the settings with their servers, the container
around an operator command, and the exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from app import bootstrap
from app.bootstrap import Container
from app.settings import Settings

# Exit codes of operator commands: 0 ok, 1 "looked, and found something wrong",
# 2 "could not look" (a store unreachable, or the projection did not catch up in time).
OK, FOUND, UNREACHABLE = 0, 1, 2

# What argparse's add_subparsers() returns, to which each command module adds its own
# (a string: the class is generic for type checkers only).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def complain(command: str, message: str) -> None:
    sys.stderr.write(f"{command}: {message}\n")


def settings() -> Settings:
    """The settings, with embedded servers started for any store URL left unset."""
    return bootstrap.with_servers(Settings())


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
        # An operator asking for status during an outage wants the outage named, not a
        # traceback; exit 2 tells scripts "could not look" apart from "looked, not ok".
        complain("items", f"a server is unreachable: {type(exc).__name__}: {exc}")
        return UNREACHABLE
