"""The API's projector, run in a child process of its own.

Why: on the API's event loop every await of the projector (read the log, load the
views, run the Lua script) waits behind all the HTTP work that is ready at that moment.
Measured under the bench's 95/5 read/write mix on a 2-core machine, one loop turn took
30-40 ms and a projector step about five turns: projection lag p50 ~280 ms, p99 ~470 ms.
In a process of its own, the operating system runs the projector as soon as its socket
is readable (it sleeps most of the time, so the scheduler favours it): lag p50 ~25 ms,
p99 ~47 ms in the same setting. A thread was measured too (p99 ~62 ms): it still waits
for the GIL behind request handling.

The child runs the same `Projector` as `items projector` (its entry point is
app/bootstrap's `projector_process`, handed to the supervisor here by name); it owns
partitions by leases like any projector. The parent restarts it if it dies, and stops
it (SIGTERM, which finishes the batch in hand and gives its partitions up) when the API
shuts down. The child asks the kernel for SIGTERM when its parent dies
(`die_with_parent`), and also watches its parent's pid (`watch_parent`), so a killed API
never leaves an orphan projector renewing leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("items.projector")

RESTART_DELAY = 1.0  # seconds before a child that died is started again (doubling, capped)
MAX_RESTART_DELAY = 15.0
STOP_TIMEOUT = 10.0  # a batch in hand finishes well within this
_PR_SET_PDEATHSIG = 1


class ProjectorChild:
    """Runs and supervises the child: `run()` until `stop()`, like `Projector`.

    `target(*args)` is the child's entry point: a module-level function, since a spawned
    interpreter imports it by name (and `args` are pickled to it)."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._target = target
        self._args = args
        self._stopping = asyncio.Event()
        self._process: BaseProcess | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        """`run()` then asks the child to finish its batch and give its partitions up."""
        self._stopping.set()

    async def run(self) -> None:
        delay = RESTART_DELAY
        while not self._stopping.is_set():
            # spawn, not fork: a forked copy of a running event loop, its sockets and
            # its threads is not safe to use.
            process = multiprocessing.get_context("spawn").Process(
                target=self._target, args=self._args, name="items-projector", daemon=True
            )
            process.start()
            self._process = process
            log.info("projector child started (pid %s)", process.pid)
            await self._exit_or_stop(process)
            if self._stopping.is_set():
                await self._end(process)
                return
            # Exit 0 is a stop it was asked for (a signal to it alone: the API's own stop
            # goes through stop() above); anything else is a crash. Either way the API
            # keeps its projector.
            report = log.info if process.exitcode == 0 else log.error
            report("projector child (pid %s) exited with %s; starting it again in %.0fs",
                   process.pid, process.exitcode, delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def _exit_or_stop(self, process: BaseProcess) -> None:
        # The sentinel is a pipe the child holds: it reads end-of-file when the child
        # is gone, so the loop wakes on the exit itself rather than polling for it.
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[Any] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(process.exitcode)

        loop.add_reader(process.sentinel, on_exit)
        stopping = asyncio.ensure_future(self._stopping.wait())
        either: list[asyncio.Future[Any]] = [exited, stopping]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(process.sentinel)
            stopping.cancel()
        process.join(0)  # reap it (it has exited, or this returns at once)

    @staticmethod
    async def _end(process: BaseProcess) -> None:
        """SIGTERM (the batch in hand finishes, the partitions are given up); kill if it
        hangs."""
        if process.exitcode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, process.join, STOP_TIMEOUT)
        if process.exitcode is None:
            log.warning("projector child did not stop within %.0fs; killed", STOP_TIMEOUT)
            process.kill()
            await loop.run_in_executor(None, process.join, 5)


class ChildInThread:
    """A ProjectorChild supervised from a thread with its own event loop: for a process
    that runs no event loop of its own to host it (uvicorn's multi-worker supervisor).
    The thread lives as long as the child may: PR_SET_PDEATHSIG fires when the thread
    that started the child ends."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._child = ProjectorChild(target, args)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projector-child", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        """Ask the child to finish its batch and give its partitions up; wait for it."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._child.stop)
        self._thread.join(STOP_TIMEOUT + 10)

    def _run(self) -> None:
        async def supervise() -> None:
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self._child.run()

        asyncio.run(supervise())


async def watch_parent(parent: int, stop: Callable[[], None]) -> None:
    """Call `stop` once this process's parent is gone: where PR_SET_PDEATHSIG is missing
    (not Linux), or the parent died before it was set, a re-parented child sees another
    ppid."""
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing to wait on but time
        await asyncio.sleep(1.0)
    log.warning("the API process is gone; the projector child stops")
    stop()


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux; elsewhere a no-op), and
    leave the parent's process group: a Ctrl-C on the terminal reaches the API alone,
    which then stops its child in order (after its requests have drained), instead of
    both at once."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
