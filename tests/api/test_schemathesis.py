"""The running service against its own OpenAPI description (schemathesis).

`items serve` runs as a process with real PostgreSQL and Redis; the schema is loaded
from its /openapi.json, and every operation gets a bounded number of generated
requests, valid ones and invalid ones. Every answer must be as documented: no 5xx, a
documented status and content type, a body that matches its schema (problem+json for
every error), valid requests accepted and invalid ones refused. Then the stateful
phase: sequences of calls that follow the document's links (create an item, then read,
update, delete it, read it again), with every check, "deleted resource still available"
among them (with WRITE_VISIBLE_WAIT_MS=0 it finds that one at once).

A few items are created first, so that requests by id reach live items as well as
unknown ones. Valid requests carry genuine opaque values where the schema cannot say
what makes one valid: a Consistency-Token and a cursor must have been issued by the
service, an Idempotency-Key must not have been used for another request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import APIOperation, GenerationMode
from schemathesis.core.result import Ok

from app.api.app import create_app
from app.api.openapi import KEY_PATTERN, TOKEN_PATTERN
from app.settings import Settings
from tests.servers import SECRET, LiveServer, own_database, serving

EXAMPLES = 40  # per operation and generation mode: the module takes about 15 s
SORTS = [f"{d}{f}" for d in ("", "-") for f in ("created_at", "updated_at", "name", "price")]
# 412 joins the statuses a valid request may get: like 404 and 409, it depends on the
# item's state (If-Match names a version), not on the request.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]


@dataclass
class Seeds:
    ids: list[str] = field(default_factory=list)
    token: str = ""
    cursors: dict[tuple[str, str | None], str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live(server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    admin_url, redis_url = server_urls
    with own_database(admin_url) as database_url, serving(database_url, redis_url) as server:
        yield server


def plant(live: LiveServer, seeds: Seeds) -> None:
    """Five live items (earlier ones may have met a generated DELETE)."""
    ids = []
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for n, tags in enumerate([[], ["office"], ["office", "sale"], ["x-1"], ["office"]]):
            body = {"name": f"Seed {n}", "price": f"{n}.50", "tags": tags, "description": "s"}
            response = client.post("/api/v1/items", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            seeds.token = response.headers["consistency-token"]
    seeds.ids[:] = ids


@pytest.fixture(scope="module")
def seeds(live: LiveServer) -> Seeds:
    seeds = Seeds()
    plant(live, seeds)
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for sort in SORTS:
            for tag in (None, "office"):
                params: dict[str, str | int] = {"sort": sort, "limit": 1}
                if tag:
                    params["tag"] = tag
                page = client.get(
                    "/api/v1/items", params=params, headers={"Consistency-Token": seeds.token}
                )
                seeds.cursors[sort, tag] = page.json()["next_cursor"]
    return seeds


@pytest.fixture(scope="module")
def api_schema(live: LiveServer, seeds: Seeds) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
    )
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)

    @schema.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
    ) -> st.SearchStrategy[Any]:
        # Half of the ids name items that exist (until a generated DELETE removes them).
        existing = st.sampled_from(seeds.ids).map(lambda item_id: {"item_id": item_id})
        return st.one_of(strategy, existing)

    return schema


def _operations() -> list[str]:
    """Every operation the app documents, but /api/v1/admin (operators only, behind API
    keys; its own tests cover it). Read from the app itself: no server at collection."""
    document = create_app(Settings(secret_key=SECRET, _env_file=None)).openapi()
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        if not path.startswith("/api/v1/admin")
        for method in operations
    )


OPERATIONS = _operations()
Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]


def genuine(case: Case, seeds: Seeds) -> None:
    """Give schema-valid values the issued form the schema cannot describe. Values the
    schema refuses (in negative cases) stay as generated."""
    headers: MutableMapping[str, Any] = case.headers or {}
    token = headers.get("Consistency-Token")
    if isinstance(token, str) and re.fullmatch(TOKEN_PATTERN, token):
        headers["Consistency-Token"] = seeds.token
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(KEY_PATTERN, key):
        headers["Idempotency-Key"] = f"{key[:200]}~{uuid.uuid4().hex}"
    query = case.query or {}
    cursor, sort, tag = query.get("cursor"), query.get("sort", "-created_at"), query.get("tag")
    # A negative case may repeat a parameter (a list): its cursor stays as generated.
    if isinstance(cursor, str) and len(cursor) <= 2048 and isinstance(sort, str):
        issued = seeds.cursors.get((sort, tag if isinstance(tag, str) else None))
        if issued is None:
            del query["cursor"]
        else:
            query["cursor"] = issued


def test_the_served_document_has_these_operations(api_schema: schemathesis.BaseSchema) -> None:
    served = {
        result.ok().label for result in api_schema.get_all_operations() if isinstance(result, Ok)
    }
    assert {label for label in served if " /api/v1/admin" not in label} == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_is_documented(
    api_schema: schemathesis.BaseSchema,
    live: LiveServer,
    seeds: Seeds,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None
    plant(live, seeds)

    # derandomize: the same requests on every run, so that CI cannot flake; a failure
    # names its request as a curl command line.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case: Case) -> None:
        genuine(case, seeds)
        try:
            case.call_and_validate(timeout=10)
        except Exception as exc:
            exc.add_note(f"--- server output ---\n{live.log_tail()}")
            raise

    answers_as_documented()


STEPS = 8  # calls per stateful scenario
SCENARIOS = 40


def test_sequences_of_calls_that_follow_the_links(
    api_schema: schemathesis.BaseSchema, live: LiveServer, seeds: Seeds
) -> None:
    plant(live, seeds)
    machine = api_schema.as_state_machine()
    failures: list[str] = []
    checked = [0]

    class Scenario(machine):  # type: ignore[misc, valid-type]
        """A client that follows the links as the README tells it to: a write answered
        with Consistency-Pending (the wait of WRITE_VISIBLE_WAIT_MS ran out, as it may on a
        loaded machine) is read back with its Consistency-Token."""

        pending: str | None = None

        def before_call(self, case: Case) -> None:
            genuine(case, seeds)
            if self.pending and case.headers is not None:  # case-insensitive
                case.headers.setdefault("Consistency-Token", self.pending)

        def after_call(self, response: Any, case: Case) -> None:
            if response.headers.get("consistency-pending") == ["true"]:
                self.pending = response.headers["consistency-token"][0]

        def validate_response(self, response: Any, case: Case, *args: Any, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, *args, **kwargs)
            except Exception as exc:
                failures.append(f"{case.as_curl_command()}\n{exc!r}")
                raise
            checked[0] += 1

    # Every answer is checked as it comes (validate_response). Hypothesis then replays a
    # scenario to shrink a failure, or compares one scenario's choices with an earlier
    # one's; against a server whose state has moved on (items created, deleted, lists
    # grown) either may differ and end the run as Flaky. As schemathesis' own runner does,
    # that ends a run without unreporting what it found: a failure is the first check that
    # failed; without one, the scenarios go on in a new run.
    for _ in range(3):
        try:
            Scenario.run(
                settings=settings(
                    max_examples=SCENARIOS,
                    stateful_step_count=STEPS,
                    deadline=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
            )
        except Flaky as exc:
            if not failures:
                continue
            exc.add_note(f"--- the first failure ---\n{failures[0]}")
            exc.add_note(f"--- server output ---\n{live.log_tail()}")
            raise
        except Exception as exc:
            exc.add_note(f"--- server output ---\n{live.log_tail()}")
            raise
        break
    assert not failures, failures[0]
    # Not vacuous: most scenarios ran their calls to the end, each answer checked.
    assert checked[0] >= SCENARIOS * STEPS // 2, checked[0]
