"""The checker: what one history proves, rule by rule. Pure: it reads the History it is
given (the operations, the faults, PostgreSQL's events and items after the run, the
`items verify` runs) and nothing else.

Ground truth is PostgreSQL's event log after the run: every write that committed is
there once, with its version, and `recorded` says when it committed (the database's
clock, on this machine). An operation without an answer (`status` None) or with a 503
may or may not have taken effect; the checker never assumes either.

0. every answer is one the contract documents for its operation: no 500, every 4xx and
   5xx problem+json, and no 404 for an item that exists;
1. no acknowledged write lost: every 2xx write is in PostgreSQL, exactly once (an
   idempotent retry created nothing new), and PostgreSQL holds no write nobody sent;
2. every item's versions are gap-free (1..n, created first, deleted only last, the items
   row at n), and each acknowledged PATCH is one version of its own;
3. read-your-writes: a GET with a write's Consistency-Token never shows an older version
   than that write (nor a deleted item again); nor does a GET by the same session over
   the same connection (so the same API process) after a 2xx write of that item that
   said neither `Consistency-Pending: true` nor `Preference-Applied: respond-async`;
4. monotonic reads: one session's GETs of an item over one connection never go back in
   version, and a deleted item never comes back (across processes: rule 3, the token);
5. If-Match: of the PATCHes and DELETEs sent with one ETag for one item, at most one
   succeeds (its retries with the same Idempotency-Key are the same request), and a
   PATCH that succeeds with If-Match "v" answers version v + 1;
6. no read shows a state that never existed: every item read (by id or in a list page)
   equals PostgreSQL's state of that item at that version, and the body a write
   answered with for that version, byte for byte once parsed;
7. list pages: no item twice in a cursor walk (the runner walks only `created_at`,
   which no write changes), and when the read model stood still during the walk
   every page's total equals the items the walk showed, and the log's count;
8. once the faults stop, every view equals PostgreSQL: an `items verify` exits 0 within
   VERIFY_BOUND seconds of the moment the last fault was healed and the load ended
   (verify itself first waits for the projection to reach the head it read).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.history.history import Event, History, Op

VERIFY_BOUND = 30.0  # seconds after the last fault and the load (a verify takes 2-5 s)
SLACK = 0.05  # seconds between the database's clock and the runner's (one machine)
DELETED = math.inf
ALLOWED = {
    "create": {201, 409, 503},
    "patch": {200, 404, 409, 412, 503},
    "delete": {204, 404, 409, 412, 503},
    "get": {200, 404, 503},
    "list": {200, 503},
}
RULES = {
    0: "answers as documented (no 500, problem+json)",
    1: "no acknowledged write lost, none twice",
    2: "versions gap-free, one per PATCH",
    3: "read-your-writes (token, same process)",
    4: "monotonic reads per session and process",
    5: "If-Match: one winner per ETag",
    6: "no read of a state that never existed",
    7: "list walks: no duplicates, totals",
    8: "views equal PostgreSQL after the faults",
}


@dataclass(frozen=True)
class Violation:
    rule: int
    what: str
    ops: tuple[int, ...] = ()

    def __str__(self) -> str:
        shown = ", ".join(f"#{i}" for i in self.ops[:6])
        return f"rule {self.rule} ({RULES[self.rule]}): {self.what}" + (
            f" [ops {shown}]" if shown else ""
        )


class Facts:
    """What the rules share, computed once from the history."""

    def __init__(self, h: History) -> None:
        self.h = h
        own = h.harness_items
        self.ops = [op for op in h.ops if op.item not in own]
        self.everything: dict[str, list[Event]] = defaultdict(list)
        for e in sorted(h.events, key=lambda e: (e.item, e.version, e.position)):
            self.everything[e.item].append(e)
        self.by_item = {item: es for item, es in self.everything.items() if item not in own}
        self.states = {  # (item, version) -> its fields then, folded from the log
            key: state for item, events in self.by_item.items() for key, state in _fold(events)
        }
        self.deleted_at = {
            item: e.recorded
            for item, es in self.by_item.items()
            for e in es
            if e.type == "ItemDeleted"
        }
        self.created_at = {es[0].item: es[0].recorded for es in self.by_item.values()}
        self.tokens = {
            op.headers["consistency-token"]: op
            for op in self.ops
            if op.ok and op.f in ("create", "patch", "delete") and "consistency-token" in op.headers
        }

    def gone(self, item: str | None, at: float) -> bool:
        """Whether the item's deletion had committed by `at`."""
        return item in self.deleted_at and self.deleted_at[item] <= at + SLACK


def _fold(events: list[Event]) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    state: dict[str, Any] = {}
    for e in events:
        if e.type == "ItemCreated":
            state = {k: e.payload.get(k) for k in ("name", "description", "price", "tags")}
        elif e.type == "ItemUpdated":
            changes = e.payload.get("changes")
            state = {**state, **(changes if isinstance(changes, dict) else {})}
        else:
            continue
        yield (e.item, e.version), state


def rank(op: Op) -> float:
    """How far an item's history an answer shows: its version, DELETED for a 2xx
    DELETE."""
    if op.f == "delete":
        return DELETED
    return float(op.body["version"])


def check(h: History) -> list[Violation]:
    facts = Facts(h)
    rules: list[Callable[[Facts], Iterator[Violation]]] = [
        answers,
        lost_or_twice,
        versions,
        read_your_writes,
        monotonic,
        if_match,
        states_that_existed,
        list_walks,
        converged,
    ]
    return [v for rule in rules for v in rule(facts)]


# -- 0 ---------------------------------------------------------------------------------------


def answers(f: Facts) -> Iterator[Violation]:
    for op in f.ops:
        if op.status is None:
            continue
        if op.status not in ALLOWED[op.f]:
            yield Violation(0, f"{op.method} {op.path} answered {op.status}", (op.id,))
        elif op.status >= 400 and not op.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            yield Violation(0, f"a {op.status} that is not problem+json", (op.id,))
        # A write's 404 comes from PostgreSQL (a read's may be a view not projected yet).
        if op.status == 404 and op.f != "get" and op.item in f.created_at:
            existed = f.created_at[op.item] < op.invoke - SLACK
            if existed and not f.gone(op.item, op.complete):
                yield Violation(0, f"404 for item {op.item}, which exists", (op.id,))


# -- 1 ---------------------------------------------------------------------------------------


def lost_or_twice(f: Facts) -> Iterator[Violation]:
    created = {_name(es[0]): es[0] for es in f.by_item.values()}
    names_created: dict[str, int] = defaultdict(int)
    names_patched: dict[str, list[Event]] = defaultdict(list)
    for es in f.by_item.values():
        for e in es:
            if e.type == "ItemCreated":
                names_created[_name(e)] += 1
            elif e.type == "ItemUpdated":
                names_patched[_name(e)].append(e)
    sent = {op.req_body["name"] for op in f.ops if op.f in ("create", "patch") and op.req_body}
    deletes_sent = {op.item for op in f.ops if op.f == "delete"}
    ids_by_key: dict[str, set[str]] = defaultdict(set)
    for op in f.ops:
        if not op.ok:
            continue
        name = str((op.req_body or {}).get("name"))
        if op.f == "create":
            ids_by_key[op.logical].add(op.body["id"])
            found = created.get(name)
            if found is None or found.item != op.body["id"]:
                yield Violation(
                    1, f"acknowledged create of {op.body['id']} not in PostgreSQL", (op.id,)
                )
        elif op.f == "patch":
            at = {e.version: e for e in names_patched.get(name, [])}
            if op.body["version"] not in at or at[op.body["version"]].item != op.item:
                yield Violation(
                    1,
                    f"acknowledged PATCH of {op.item} (version "
                    f"{op.body['version']}) not in PostgreSQL",
                    (op.id,),
                )
        elif op.f == "delete" and op.item not in f.deleted_at:
            yield Violation(1, f"acknowledged DELETE of {op.item} not in PostgreSQL", (op.id,))
    for key, ids in ids_by_key.items():
        if len(ids) > 1:
            yield Violation(1, f"one Idempotency-Key {key} answered {len(ids)} items")
    for name, count in names_created.items():
        if count > 1:
            yield Violation(1, f"create {name!r} applied {count} times")
        if name not in sent:
            yield Violation(1, f"PostgreSQL holds a create nobody sent ({name!r})")
    for name, events in names_patched.items():
        if len(events) > 1:
            yield Violation(1, f"PATCH {name!r} applied {len(events)} times")
        if name not in sent:
            yield Violation(1, f"PostgreSQL holds a PATCH nobody sent ({name!r})")
    for item in f.deleted_at:
        if item not in deletes_sent:
            yield Violation(1, f"PostgreSQL holds a DELETE of {item} nobody sent")


def _name(e: Event) -> str:
    """The name a create or PATCH event set: each request of the runner sets its own."""
    changes = e.payload.get("changes") if e.type == "ItemUpdated" else e.payload
    return str(changes.get("name")) if isinstance(changes, dict) else ""


# -- 2 ---------------------------------------------------------------------------------------


def versions(f: Facts) -> Iterator[Violation]:
    for item, es in f.by_item.items():
        got = [e.version for e in es]
        if got != list(range(1, len(es) + 1)):
            yield Violation(2, f"item {item} has versions {got[:12]}")
        types = [e.type for e in es]
        if types[0] != "ItemCreated" or "ItemCreated" in types[1:]:
            yield Violation(2, f"item {item} not created first and once: {types[:6]}")
        if "ItemDeleted" in types[:-1]:
            yield Violation(2, f"item {item} changed after its deletion")
        row = f.h.items.get(item)
        want = None if types[-1] == "ItemDeleted" else len(es)
        if row != want:
            yield Violation(2, f"item {item}: items row at version {row}, events say {want}")
    for item in set(f.h.items) - set(f.by_item) - f.h.harness_items:
        yield Violation(2, f"item {item} has a row but no events")
    seen: dict[tuple[str | None, int], set[str]] = defaultdict(set)
    who: dict[tuple[str | None, int], list[int]] = defaultdict(list)
    for op in f.ops:
        if op.ok and op.f == "patch":
            seen[(op.item, op.body["version"])].add(op.logical)
            who[(op.item, op.body["version"])].append(op.id)
    for key, writes in seen.items():
        if len(writes) > 1:
            yield Violation(
                2, f"{len(writes)} PATCHes of {key[0]} answered version {key[1]}", tuple(who[key])
            )


# -- 3 and 4 ------------------------------------------------------------------------------------


def _behind(f: Facts, read: Op, floor: float) -> str | None:
    """What is wrong with `read` if it must show at least `floor` (a version or DELETED)."""
    if read.status == 200:
        if floor == DELETED:
            return "shows a deleted item"
        if read.body["version"] < floor:
            return f"shows version {read.body['version']} after version {floor:.0f}"
    elif read.status == 404 and floor != DELETED and not f.gone(read.item, read.complete):
        return f"404 after version {floor:.0f} was written"
    return None


def read_your_writes(f: Facts) -> Iterator[Violation]:
    gets = [op for op in f.ops if op.f == "get" and op.status in (200, 404)]
    for read in gets:
        write = f.tokens.get(read.token or "")
        if write is not None and write.item == read.item:
            wrong = _behind(f, read, rank(write))
            if wrong:
                yield Violation(3, f"a token read of {read.item} {wrong}", (write.id, read.id))
    # The same session over the same connection: a sweep in time order per item.
    timeline: dict[tuple[int, str | None, str | None], list[tuple[float, int, Op]]]
    timeline = defaultdict(list)
    for op in f.ops:
        if op.f in ("create", "patch", "delete") and op.ok and _visible(op):
            timeline[(op.session, op.conn, op.item)].append((op.complete, 0, op))
    for read in gets:
        timeline[(read.session, read.conn, read.item)].append((read.invoke, 1, read))
    for entries in timeline.values():
        floor, last = -1.0, None
        for _, is_read, op in sorted(entries, key=lambda e: (e[0], e[1])):
            if not is_read:
                floor, last = max(floor, rank(op)), op
            elif last is not None and (wrong := _behind(f, op, floor)):
                yield Violation(
                    3,
                    f"a read of {op.item} by its writer's session over the same connection {wrong}",
                    (last.id, op.id),
                )


def _visible(write: Op) -> bool:
    """A write whose answer promised its process shows it (the default visibility)."""
    return write.headers.get(
        "consistency-pending"
    ) != "true" and "respond-async" not in write.headers.get("preference-applied", "")


def monotonic(f: Facts) -> Iterator[Violation]:
    reads: dict[tuple[int, str | None, str | None], list[Op]] = defaultdict(list)
    for op in f.ops:
        if op.f == "get" and op.status in (200, 404):
            reads[(op.session, op.conn, op.item)].append(op)
    for series in reads.values():
        best, best_op = -1.0, None
        for op in sorted(series, key=lambda o: o.invoke):
            if op.status == 200:
                now = float(op.body["version"])
            else:
                now = DELETED if f.gone(op.item, op.complete) else 0.0
            if best_op is not None and now < best:
                shown = (
                    "a deleted item came back"
                    if best == DELETED
                    else (f"version {now:.0f} after {best:.0f}")
                )
                yield Violation(4, f"item {op.item}: {shown}", (best_op.id, op.id))
            if now >= best:
                best, best_op = now, op


# -- 5 ---------------------------------------------------------------------------------------


def if_match(f: Facts) -> Iterator[Violation]:
    winners: dict[tuple[str | None, str], dict[str, int]] = defaultdict(dict)
    for op in f.ops:
        tag = op.req_headers.get("if-match")
        if not (op.ok and tag and op.f in ("patch", "delete")):
            continue
        winners[(op.item, tag)].setdefault(op.logical, op.id)
        if op.f == "patch" and tag.strip('"').isdigit():
            if op.body["version"] != int(tag.strip('"')) + 1:
                yield Violation(
                    5, f"If-Match {tag} answered version {op.body['version']}", (op.id,)
                )
    for (item, tag), won in winners.items():
        if len(won) > 1:
            yield Violation(
                5, f"{len(won)} writes of {item} succeeded with If-Match {tag}", tuple(won.values())
            )


# -- 6 ---------------------------------------------------------------------------------------


def states_that_existed(f: Facts) -> Iterator[Violation]:
    answered: dict[tuple[str, int], Any] = {}
    for op in f.ops:
        if op.ok and op.f in ("create", "patch"):
            answered[(op.body["id"], op.body["version"])] = op.body
    for op in f.ops:
        if op.status != 200 or op.f not in ("get", "list"):
            continue
        for view in op.body["items"] if op.f == "list" else [op.body]:
            if view["id"] in f.h.harness_items:
                continue
            key = (view["id"], view["version"])
            state = f.states.get(key)
            if state is None:
                yield Violation(
                    6, f"{key[0]} at version {key[1]}, which PostgreSQL never had", (op.id,)
                )
            elif (wrong := _differs(view, state)) is not None:
                yield Violation(6, f"{key[0]} version {key[1]}: {wrong}", (op.id,))
            elif key in answered and answered[key] != view:
                yield Violation(
                    6, f"{key[0]} version {key[1]} differs from its write's answer", (op.id,)
                )


def _differs(view: dict[str, Any], state: dict[str, Any]) -> str | None:
    if view["name"] != state["name"] or view.get("description") != state.get("description"):
        return f"name/description {view['name']!r} where PostgreSQL has {state['name']!r}"
    if Decimal(str(view["price"])) != Decimal(str(state["price"])):
        return f"price {view['price']} where PostgreSQL has {state['price']}"
    if sorted(view["tags"]) != sorted(set(state.get("tags") or [])):
        return f"tags {view['tags']} where PostgreSQL has {state['tags']}"
    return None


# -- 7 ---------------------------------------------------------------------------------------


def list_walks(f: Facts) -> Iterator[Violation]:
    walks: dict[int, list[Op]] = defaultdict(list)
    for op in f.ops:
        if op.f == "list" and op.walk is not None:
            walks[op.walk].append(op)
    events = sorted((e for es in f.everything.values() for e in es), key=lambda e: e.position)
    for walk, pages in walks.items():
        pages.sort(key=lambda o: o.invoke)
        answered = [p for p in pages if p.status == 200]  # a fault may cut a walk short
        ids = [view["id"] for p in answered for view in p.body["items"]]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        shown = tuple(p.id for p in pages)
        if twice:
            yield Violation(7, f"walk {walk} showed {twice[:3]} twice", shown)
        if len(answered) < len(pages) or pages[-1].body["next_cursor"] is not None:
            continue
        # The read model stood still during the walk when every page reflects one
        # position p (the lowest checkpoint of the partitions) and nothing past p had
        # committed by the walk's end; then the totals are those of the log up to p.
        at = {p.headers.get("x-projection-position") for p in pages}
        if len(at) != 1 or not str(next(iter(at))).isdigit():
            continue
        position, end = int(str(next(iter(at)))), pages[-1].complete + SLACK
        if any(e.position > position and e.recorded <= end for e in events):
            continue
        totals = {p.body["total"] for p in pages}
        live = _live([e for e in events if e.position <= position], pages[0].params.get("tag"))
        if totals != {len(set(ids))} or live != len(set(ids)):
            yield Violation(
                7,
                f"walk {walk} at position {position}: totals {sorted(totals)}, "
                f"{len(set(ids))} items shown, {live} in the log",
                shown,
            )


def _live(events: list[Event], tag: str | None) -> int:
    """Items (with `tag`, when given) that `events` leave in existence."""
    by_item: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_item[e.item].append(e)
    count = 0
    for es in by_item.values():
        es.sort(key=lambda e: e.version)
        if es[-1].type == "ItemDeleted":
            continue
        states = dict(_fold(es))
        if tag is None or tag in (states[(es[-1].item, es[-1].version)].get("tags") or []):
            count += 1
    return count


# -- 8 ---------------------------------------------------------------------------------------


def converged(f: Facts) -> Iterator[Violation]:
    runs = f.h.verifies
    if not any(v.exit == 0 and v.at - f.h.faults_over <= VERIFY_BOUND for v in runs):
        said = runs[-1].says if runs else "never ran"
        yield Violation(
            8,
            f"no `items verify` exit 0 within {VERIFY_BOUND:.0f}s of the "
            f"last fault ({len(runs)} runs; last: {said})",
        )
