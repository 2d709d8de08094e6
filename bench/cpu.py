"""Where the CPU went during a load, and where processes may run: the process tree of a
server (`items serve` and its workers and projector child), the CPU seconds each used
(/proc), the CPU seconds Redis servers used (INFO cpu: a cluster's nodes summed), and
moving a running tree to other CPUs (every thread of every process, as `taskset -a -p`).
The scale part (scale.py) records them beside its figures to say what limits them."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import redis

TICKS = os.sysconf("SC_CLK_TCK")
SS_PID = re.compile(r"pid=(\d+)")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (field 3, the state, first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return sorted(found)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process (its threads included) so far."""
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def redis_cpu(urls: list[str]) -> float:
    """CPU seconds the Redis servers at `urls` used so far (user + system, summed)."""
    total = 0.0
    for url in urls:
        r = redis.Redis.from_url(url, socket_timeout=5)
        try:
            info = r.info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        finally:
            r.close()
    return total


def set_cpus(pid: int, cpus: set[int]) -> None:
    """Move every thread of `pid` and of its descendants to `cpus`."""
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def client_ports(port: int) -> dict[int, int]:
    """Client port -> pid holding the server side of each established connection to
    `port` (ss): which API worker answers which connection."""
    done = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True, timeout=10)  # fmt: skip
    found = {}
    for line in done.stdout.splitlines():
        fields, pid = line.split(), SS_PID.search(line)
        if len(fields) >= 4 and pid is not None:
            found[int(fields[3].rsplit(":", 1)[1])] = int(pid.group(1))
    return found


def connection_owners(port: int) -> dict[int, int]:
    """pid -> how many established connections to `port` that process answers."""
    counts: dict[int, int] = {}
    for pid in client_ports(port).values():
        counts[pid] = counts.get(pid, 0) + 1
    return counts
