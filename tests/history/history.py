"""What a history run records, and its JSON-lines file.

One line per record, each with a `kind`: `meta` (the run: setup, seed, when it started),
`op` (one request: who sent it, when it was invoked and completed, the request, the
status, the answer's headers and body; `status` null when no answer came: a timeout or
a broken connection, whose effect is unknown), `fault` (what was injected, from when
until when it was in force), `sample` (the projection's head and checkpoint, for the
timeline), `final` (PostgreSQL's events and items after the run) and `verify` (each
`items verify` after the faults, its exit code and when). Times are seconds since the
run's start on the runner's monotonic clock; `wall` is the same moment on the wall
clock (PostgreSQL's `recorded_at` is compared with it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

WRITES = ("create", "patch", "delete")
READS = ("get", "list")


@dataclass
class Op:
    id: int
    session: int
    f: str  # create | patch | delete | get | list
    invoke: float
    complete: float
    method: str
    path: str
    req_headers: dict[str, str] = field(default_factory=dict)
    req_body: Any = None
    status: int | None = None  # None: no answer (unknown effect)
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    conn: str | None = None  # the connection it went over: one API process
    item: str | None = None  # the item it is about (for a create: once known)
    walk: int | None = None  # a cursor walk's id (list pages)
    race: int | None = None  # concurrent PATCHes with one If-Match
    params: dict[str, str] = field(default_factory=dict)  # list query parameters

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def failed(self) -> bool:
        """Unavailable: a 503, a 500 or no answer at all (what recovery measures)."""
        return self.status is None or self.status >= 500

    @property
    def key(self) -> str | None:
        return self.req_headers.get("idempotency-key")

    @property
    def logical(self) -> str:
        """One write however many times it was retried: its Idempotency-Key, else itself."""
        return self.key or f"op{self.id}"

    @property
    def token(self) -> str | None:
        return self.req_headers.get("consistency-token")


@dataclass
class Fault:
    name: str
    start: float
    end: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """A row of PostgreSQL's events table after the run."""

    position: int
    item: str
    version: int
    type: str
    payload: dict[str, Any]
    recorded: float  # run time of its INSERT (the database's clock)


@dataclass
class Verify:
    at: float  # run time when it finished
    exit: int
    says: str


@dataclass
class History:
    setup: str
    seed: int
    wall: float = 0.0  # wall clock at run time 0
    seconds: float = 0.0
    ops: list[Op] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, head, checkpoint)
    events: list[Event] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)  # PostgreSQL's rows: id -> version
    harness_items: set[str] = field(default_factory=set)  # written by faults, not sessions
    verifies: list[Verify] = field(default_factory=list)
    faults_over: float = 0.0  # run time when the last fault was healed and the load ended

    def write(self, out: IO[str]) -> None:
        meta = {
            "setup": self.setup,
            "seed": self.seed,
            "wall": self.wall,
            "seconds": self.seconds,
            "faults_over": self.faults_over,
            "harness_items": sorted(self.harness_items),
        }
        _line(out, "meta", meta)
        for op in self.ops:
            _line(out, "op", dataclasses.asdict(op))
        for fault in self.faults:
            _line(out, "fault", dataclasses.asdict(fault))
        for t, head, checkpoint in self.samples:
            _line(out, "sample", {"t": t, "head": head, "checkpoint": checkpoint})
        for event in self.events:
            _line(out, "event", dataclasses.asdict(event))
        _line(out, "final", {"items": self.items})
        for verify in self.verifies:
            _line(out, "verify", dataclasses.asdict(verify))

    def save(self, path: Path) -> None:
        with path.open("w") as out:
            self.write(out)


def _line(out: IO[str], kind: str, record: dict[str, Any]) -> None:
    out.write(json.dumps({"kind": kind, **record}, default=str) + "\n")


def read(lines: Iterable[str]) -> Iterator[History]:
    """The histories in a file (one per setup, each starting with its `meta`)."""
    history: History | None = None
    for line in lines:
        record = json.loads(line)
        kind = record.pop("kind")
        if kind == "meta":
            if history is not None:
                yield history
            history = History(
                record["setup"],
                record["seed"],
                record["wall"],
                record["seconds"],
                faults_over=record["faults_over"],
                harness_items=set(record["harness_items"]),
            )
            continue
        assert history is not None, "a history starts with its meta line"
        if kind == "op":
            history.ops.append(Op(**record))
        elif kind == "fault":
            history.faults.append(Fault(**record))
        elif kind == "sample":
            history.samples.append((record["t"], record["head"], record["checkpoint"]))
        elif kind == "event":
            history.events.append(Event(**record))
        elif kind == "final":
            history.items = record["items"]
        elif kind == "verify":
            history.verifies.append(Verify(**record))
    if history is not None:
        yield history
