"""GET /metrics, X-Request-ID and traces, through the app (its lifespan run, its
projector on the test's loop) on real PostgreSQL and Redis."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import tracing
from app.api.app import create_app
from app.settings import Settings
from tests.helpers import Running, assert_problem, eventually, running

ITEMS = "/api/v1/items"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def _samples(text: str) -> dict[tuple[str, str], float]:
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            found[(match["name"], match["labels"] or "")] = float(match["value"])
    return found


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    got = await client.get("/metrics")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain")
    return _samples(got.text)


def _total(samples: dict[tuple[str, str], float], name: str, *parts: str) -> float:
    return sum(
        v for (n, labels), v in samples.items() if n == name and all(p in labels for p in parts)
    )


async def test_metrics_move_with_writes_and_label_routes_by_template(
    app: Running, client: httpx.AsyncClient
) -> None:
    before = await _scrape(client)
    created = [
        (await client.post(ITEMS, json={"name": f"m{i}", "price": "1"})).json() for i in range(3)
    ]
    for item in created:
        assert (await client.get(f"{ITEMS}/{item['id']}")).status_code == 200
        assert (await client.get(f"{ITEMS}/{item['id']}")).status_code == 200  # a cache hit
    assert (await client.get(ITEMS, params={"limit": 2})).status_code == 200
    assert (await client.get(f"{ITEMS}/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404

    async def moved() -> dict[tuple[str, str], float]:
        return await _scrape(client)

    after = await eventually(
        moved,
        lambda s: (
            _total(s, "items_events_projected_total")
            >= _total(before, "items_events_projected_total") + 3
        ),
    )
    assert _total(after, "items_events_appended_total") >= 3 + _total(
        before, "items_events_appended_total"
    )
    by_id = 'route="/api/v1/items/{item_id}"'
    assert (
        _total(after, "http_requests_total", by_id, 'status="200"')
        - _total(before, "http_requests_total", by_id, 'status="200"')
        == 6
    )
    assert _total(after, "http_requests_total", by_id, 'status="404"') >= 1
    assert _total(after, "http_requests_total", 'route="/api/v1/items"', 'method="POST"') >= 3
    assert _total(after, "http_requests_total", 'route="/api/v1/items"', 'method="GET"') >= 1
    assert _total(after, "http_requests_total", 'route="<unmatched>"') >= 1
    labels = " ".join(labels for (name, labels) in after if name == "http_requests_total")
    assert "/no/such/path" not in labels
    assert created[0]["id"] not in labels  # never a raw path
    assert _total(after, "http_request_duration_seconds_count", by_id) >= 6
    assert _total(after, "items_view_cache_hits_total") >= _total(
        before, "items_view_cache_hits_total"
    )
    assert after[("items_projection_checkpoint", 'partition="0"')] >= 3
    assert after[("items_projection_lag_events", 'partition="0"')] >= 0
    assert ("items_projection_lag_seconds", 'partition="0"') in after
    assert after[("items_dead_letters", "")] == 0
    assert after[("items_projection_partition_owned", 'partition="0"')] == 1


async def test_a_request_id_is_kept_or_made_and_named_in_problems(
    client: httpx.AsyncClient,
) -> None:
    got = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert got.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    for bad in (b"", b"x" * 129, b"tab\there", "é".encode()):
        answer = await client.get("/healthz", headers=[(b"x-request-id", bad)])
        assert answer.headers["x-request-id"].encode() != bad
    missing = await client.get(f"{ITEMS}/{uuid.uuid4()}", headers={"X-Request-ID": "req-42"})
    body = assert_problem(missing, 404)
    assert body["request_id"] == "req-42"
    assert missing.headers["x-request-id"] == "req-42"
    invalid = await client.post(ITEMS, json={"name": ""}, headers={"X-Request-ID": "req-43"})
    assert assert_problem(invalid, 422)["request_id"] == "req-43"


async def test_an_unexpected_error_is_a_500_problem_with_its_request_id(
    app: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On both read paths: the Edge's own (a canonical id) and the router's (upper case),
    where the 500 comes from FastAPI's ServerErrorMiddleware, inside the Edge."""

    async def broken(query: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.container.queries, "get_item", broken)
    transport = httpx.ASGITransport(app=app.asgi(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        some = str(uuid.uuid4())
        for path in (f"{ITEMS}/{some}", f"{ITEMS}/{some.upper()}"):
            got = await c.get(path, headers={"X-Request-ID": "req-500"})
            assert assert_problem(got, 500)["request_id"] == "req-500", path
            assert got.headers["x-request-id"] == "req-500", path
            assert "boom" not in got.text


@pytest.fixture
async def traced(settings: Settings) -> AsyncIterator[tuple[Running, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("items-test", exporter=exporter)
    try:
        async with running(create_app(settings)) as started:
            yield started, exporter
    finally:
        tracing.shutdown()


async def test_a_write_is_traced_to_the_batch_that_projects_it(
    traced: tuple[Running, InMemorySpanExporter], db: object, redis: object
) -> None:
    started, exporter = traced
    async with started.client() as client:
        created = await client.post(ITEMS, json={"name": "traced", "price": "1"})
        assert created.status_code == 201
        await eventually(
            lambda: client.get(f"{ITEMS}/{created.json()['id']}"), lambda r: r.status_code == 200
        )

    async def finished() -> list[Any]:
        return list(exporter.get_finished_spans())

    spans = await eventually(
        finished, lambda found: any(s.name == "projection.batch" and s.links for s in found)
    )
    servers = [s for s in spans if s.kind.name == "SERVER" and "POST" in s.name]
    assert servers, [s.name for s in spans]
    # GET by id, answered in the Edge, is inside the server span too.
    assert any(s.kind.name == "SERVER" and "GET" in s.name for s in spans), spans
    write_trace = servers[0].context.trace_id
    in_write = [s for s in spans if s.context.trace_id == write_trace]
    assert any(s.attributes.get("db.system") == "postgresql" for s in in_write), in_write
    assert any(s.attributes.get("db.system") == "redis" for s in spans)
    batches = [s for s in spans if s.name == "projection.batch"]
    linked = {link.context.trace_id for b in batches for link in b.links}
    assert write_trace in linked
