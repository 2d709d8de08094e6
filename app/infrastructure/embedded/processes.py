"""Processes by pid: who runs, since when, how to stop one."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any


def describe(pid: int) -> dict[str, Any]:
    """A process as a client record: its pid, its start time (a reused pid has another)
    and its command line; {} for no such process."""
    import psutil

    try:
        process = psutil.Process(pid)
        return {"pid": pid, "started": process.create_time(), "command": process.cmdline()}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}


def read_pid(path: Path) -> int | None:
    """The pid a pid file names; None for none. PostgreSQL writes a negative pid while a
    standalone backend (initdb) runs: no server yet, and as a pid for os.kill() it would
    name a whole process group."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(path.read_text().split()[0])
        return pid if pid > 0 else None
    return None


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not)."""
    import psutil

    if pid <= 0:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def terminate(pid: int, wait: float) -> bool:
    """SIGTERM, then up to `wait` seconds for the exit (SIGKILL after that)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return True
        time.sleep(0.05)
    return True
