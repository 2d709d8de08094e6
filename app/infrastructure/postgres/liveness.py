"""Whether the holder of a lease on this host is still alive, for the two kinds of
lease kept in PostgreSQL (partitions: leases.py; the relay: relay_store.py).

A holder names its host and pid. On the same host a dead pid is sure to be gone, so its
lease need not be waited out; a pid that runs may be anything (pids are reused) and its
lease is waited out. Our own pid is a special case: in a container every restart is pid
1 again, so a holder under our pid is a previous life of this process unless it is one
of the holders this process has open now (the tests run several in one process).
"""

from __future__ import annotations

import os

_OPEN_HERE: set[str] = set()


def opened(holder: str) -> None:
    _OPEN_HERE.add(holder)


def closed(holder: str) -> None:
    _OPEN_HERE.discard(holder)


def gone(pid: int, holder: str) -> bool:
    """Whether the process that took `holder`'s lease under `pid` (on this host) ended."""
    if pid == os.getpid():
        return holder not in _OPEN_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process: it runs
    return False
