"""The HTTP counts handed to prometheus-client in bulk equal what observe() per request
would have recorded: the bulk hand-over uses the Histogram's own buckets and sum, which
prometheus-client does not document; this test pins that down."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from app.api.observe import HttpCounts
from app.metrics import HTTP_BUCKETS, Metrics


def _metrics(registry: CollectorRegistry, name: str) -> Metrics:
    requests = Counter(f"{name}_total", "r", ["method", "route", "status"], registry=registry)
    duration = Histogram(
        f"{name}_seconds", "d", ["method", "route"], buckets=HTTP_BUCKETS, registry=registry
    )
    unused = Counter(f"{name}_unused_total", "u", registry=registry)
    given = dict.fromkeys((f.name for f in fields(Metrics)), unused)  # by name: new ones too
    return Metrics(**{**given, "http_requests": requests, "http_duration": duration})


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name.replace(name, "x"), tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_bulk_counts_equal_one_observe_per_request() -> None:
    rng = random.Random(7)
    requests = [
        (rng.choice(["GET", "POST"]), rng.choice(["/a", "/b/{id}"]), rng.choice([200, 404]),
         rng.choice([0.0001, 0.0005, 0.0007, 0.003, 0.2, 1.0, 9.0, *HTTP_BUCKETS]))
        for _ in range(2000)
    ]  # fmt: skip
    by_observe, by_bulk = CollectorRegistry(), CollectorRegistry()
    one, bulk = _metrics(by_observe, "one"), _metrics(by_bulk, "bulk")
    counts = HttpCounts(bulk)
    for method, route, status, seconds in requests:
        one.http_requests.labels(method, route, str(status)).inc()
        one.http_duration.labels(method, route).observe(seconds)
        counts.add(method, route, status, seconds)
    counts.flush()
    counts.flush()  # a second hand-over adds nothing
    got, want = _samples(by_bulk, "bulk"), _samples(by_observe, "one")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-9, key
