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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import forkserver, resource_tracker
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("items.projector")

# A child that died is started again at once; one that dies again within STEADY seconds
# of its start waits RESTART_DELAY, doubling up to MAX_RESTART_DELAY (a crash loop).
RESTART_DELAY = 0.25
MAX_RESTART_DELAY = 15.0
STEADY = 2.0
STOP_TIMEOUT = 10.0  # a batch in hand finishes well within this
# A child whose projector loop has not gone round for this long is stuck (stopped with
# SIGSTOP, hung on a call that never returns): it is killed and another started. A round
# takes at most the poll interval or the longest back-off (5 s) when all is well.
STALLED_AFTER = 30.0
BEAT_CHECK = 1.0
_PR_SET_PDEATHSIG = 1


class ProjectorChild:
    """Runs and supervises the child: `run()` until `stop()`, like `Projector`.

    `target(*args, beat)` is the child's entry point: a module-level function, since a
    spawned interpreter imports it by name (and `args` are pickled to it). `beat` is a
    shared double the child sets to time.monotonic() at every round of its projector
    loop (the clock is the machine's, the same in both processes); a beat older than
    `stalled_after` seconds gets the child killed and started again."""

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        stalled_after: float = STALLED_AFTER,
    ) -> None:
        self._target = target
        self._args = args
        self._stalled_after = stalled_after
        self._stopping = asyncio.Event()
        self._process: BaseProcess | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        """`run()` then asks the child to finish its batch and give its partitions up."""
        self._stopping.set()

    async def run(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            # Not a fork of this process: a forked copy of a running event loop, its
            # sockets and its threads is not safe to use. A fork server instead: a
            # clean process, started once, that has imported the child's modules and
            # forks a child from itself in milliseconds. Spawned afresh, a child took
            # 0.6-2 s to import (and also ran the `items` script, so the whole CLI):
            # after a SIGKILL nothing was projected for 2-8 s (issue 18).
            context = _fork_server_context(self._target)
            beat = context.Value("d", time.monotonic(), lock=False)
            started = time.monotonic()
            process = context.Process(
                target=self._target,
                args=(*self._args, beat),
                name="items-projector",
                daemon=True,
            )
            with _without_main_script(), _stop_signals_held():
                process.start()
            self._process = process
            log.info("projector child started (pid %s)", process.pid)
            await self._exit_or_stop(process, beat)
            if self._stopping.is_set():
                await self._end(process)
                return
            # Exit 0 is a stop it was asked for (a signal to it alone: the API's own stop
            # goes through stop() above); anything else is a crash. Either way the API
            # keeps its projector.
            if time.monotonic() - started >= STEADY:
                delay = 0.0
            report = log.info if process.exitcode == 0 else log.error
            report("projector child (pid %s) exited with %s; starting it again in %.2fs",
                   process.pid, process.exitcode, delay)  # fmt: skip
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(max(delay * 2, RESTART_DELAY), MAX_RESTART_DELAY)

    async def _exit_or_stop(self, process: BaseProcess, beat: Any) -> None:
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
            while True:
                done, _ = await asyncio.wait(
                    either, timeout=BEAT_CHECK, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    break
                silent = time.monotonic() - beat.value
                if silent > self._stalled_after:
                    log.error("projector child (pid %s) has not gone round its loop for "
                              "%.0fs (stopped? hung?); killing it and starting another",
                              process.pid, silent)  # fmt: skip
                    self.restarts += 1
                    process.kill()
                    await asyncio.wait([exited], timeout=10)
                    break
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


def start_fork_server(target: Callable[..., None]) -> None:
    """Start the fork server that ProjectorChild(target, ...) forks its children from
    now, not at the first child: it imports `target`'s module in a process of its own
    while this one goes on starting its server, instead of in series. It inherits this
    process's environment, as every child it forks does: start it once that is final.
    Idempotent, like the first child's own start."""
    _fork_server_context(target)
    with _without_main_script(), _stop_signals_held():
        forkserver.ensure_running()


def _fork_server_context(target: Callable[..., None]) -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([target.__module__])
    return context


@contextlib.contextmanager
def _without_main_script() -> Iterator[None]:
    """multiprocessing runs the parent's main script in every child it starts (as
    `__mp_main__`, for pickled functions defined there): for `items serve` that is the
    `items` script, so the whole CLI (typer, rich, every command) was imported again:
    1.3-2.4 s of a child's start, measured (issue 18). The child's entry point is a
    module-level function of its own module, so the child needs nothing of the script:
    it is hidden while the child starts (this thread alone reads it then)."""
    main = sys.modules["__main__"]
    script = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if script is not None:
            main.__file__ = script


# What a terminal, `kill -- -<pgid>` or a service manager sends to every process of the
# API at once. The fork server is one of them; see _stop_signals_held.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT blocked in this thread while it starts a child, and with it,
    the first time, the fork server, which inherits the mask and keeps it: it never
    takes a stop signal, and exits when the API is gone (its pipe from it closes). That
    is how multiprocessing protects its resource tracker; which is started first, as it
    unblocks both signals once it has started.

    Why: a SIGTERM to the API's whole process group killed the fork server too; the
    child then lost its parent (PR_SET_PDEATHSIG stopped it) and the API, reading no
    exit status through the dead server, logged "exited with 255", spent 0.8 s of its
    event loop starting a new fork server and child, which took the partitions again
    only to be stopped a second later by the API's own shutdown. Blocked, not ignored:
    a signal that arrives meanwhile waits for the unblock, and is not lost. The child
    unblocks them first thing (die_with_parent)."""
    resource_tracker.ensure_running()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class ChildInThread:
    """A ProjectorChild supervised from a thread with its own event loop: for a process
    that runs no event loop of its own to host it (uvicorn's multi-worker supervisor).
    The thread lives as long as the child may: PR_SET_PDEATHSIG fires when the thread
    that started the child ends."""

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        stalled_after: float = STALLED_AFTER,
    ) -> None:
        self._child = ProjectorChild(target, args, stalled_after)
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
    both at once.

    The parent is the fork server, which exits once the API is gone: once no process
    holds its "API alive" pipe. multiprocessing hands that pipe to every child it forks
    (so that a child could fork more); this child closes it, else the fork server, and
    with it this child, would outlive a killed API."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held by the fork server
    server: Any = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
