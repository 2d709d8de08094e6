"""Prometheus metrics (prometheus-client): what every process counts, and how a scrape
sees all of them.

Counters and histograms are counted where things happen: HTTP requests in the API
processes (app/api/observe.py), events appended by the write side, events projected by
whichever process projects, store errors anywhere. With `items serve` (one worker or
several, and its projector child) they live in prometheus-client's multiprocess mode:
`items serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before it starts any
process (`prepare_multiprocess`), each process writes its own files there, and a scrape
of any worker's `/metrics` sums them all. Gauges of the projection (checkpoint and lag
per partition, dead letters) are not counted anywhere: a scrape reads them from
PostgreSQL and Redis then (app/api/routes/metrics.py), so every worker answers the same.

prometheus-client picks its value store when it is first imported, so this module
imports it only when the metrics are first built (`instance()`), after `items serve` has
set the folder; and it builds them once per process (a second registration of a name
is an error, and the tests build many apps in one process).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a cached GET (~0.1 ms) to a write that waited for its visibility (1 s).
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Metrics:
    http_requests: Any
    http_duration: Any
    events_appended: Any
    events_projected: Any
    events_relayed: Any
    view_cache_hits: Any
    view_cache_misses: Any
    page_cache_hits: Any
    page_cache_misses: Any
    store_errors: Any


_built: Metrics | None = None


def instance() -> Metrics:
    """This process's metrics, built on first use."""
    global _built
    if _built is None:
        from prometheus_client import Counter, Histogram

        _built = Metrics(
            http_requests=Counter(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                ["method", "route", "status"],
            ),
            http_duration=Histogram(
                "http_request_duration_seconds",
                "Time from a request's arrival to the end of its answer, by route template.",
                ["method", "route"],
                buckets=HTTP_BUCKETS,
            ),
            events_appended=Counter(
                "items_events_appended_total",
                "Events committed to the log by the write side (one per write).",
            ),
            events_projected=Counter(
                "items_events_projected_total",
                "Events applied to the read model, by partition.",
                ["partition"],
            ),
            events_relayed=Counter(
                "items_events_relayed_total",
                "Events the outbox relay published to NATS JetStream, acknowledged by it.",
            ),
            view_cache_hits=Counter(
                "items_view_cache_hits_total", "Reads of a view answered by the in-process cache."
            ),
            view_cache_misses=Counter(
                "items_view_cache_misses_total", "Reads of a view the cache could not answer."
            ),
            page_cache_hits=Counter(
                "items_page_cache_hits_total", "List pages answered by the in-process cache."
            ),
            page_cache_misses=Counter(
                "items_page_cache_misses_total", "List pages the cache could not answer."
            ),
            store_errors=Counter(
                "items_store_errors_total",
                "Calls to a store that failed (unreachable, timed out, refused), by store.",
                ["store"],
            ),
        )
    return _built


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess() -> str:
    """For `items serve`: a fresh folder for every process's metric files, named in the
    environment before any worker or child starts (they inherit it). Removed at exit by
    `cleanup_multiprocess`."""
    folder = tempfile.mkdtemp(prefix="items-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def cleanup_multiprocess(folder: str) -> None:
    """Remove the folder, and its name from the environment: a process started after
    this one (a test's next `items serve`) must not inherit a folder that is gone."""
    if os.environ.get(MULTIPROC_ENV) == folder:
        del os.environ[MULTIPROC_ENV]
    shutil.rmtree(folder, ignore_errors=True)


def serve_http(port: int) -> None:
    """`items projector`'s and `items relay`'s own /metrics on `port` (prometheus-client's
    server, in a thread): this process's counters, or every process's in multiprocess
    mode."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    instance()
    registry: Any = REGISTRY
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, registry=registry)


def exposition(extra: list[Any]) -> tuple[bytes, str]:
    """The scrape: every process's counters (this process's registry, or every
    process's files in multiprocess mode) and the `extra` collectors (the gauges read at
    scrape time)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    instance()
    sources: list[Any] = [REGISTRY]
    if multiprocess():
        from prometheus_client import multiprocess as mp

        sources = [mp.MultiProcessCollector(None)]  # type: ignore[no-untyped-call]
    together: Any = _Together([*sources, *extra])
    return generate_latest(together), CONTENT_TYPE_LATEST


class _Together:
    """Several collectors as one registry, for one scrape."""

    def __init__(self, collectors: list[Any]) -> None:
        self._collectors = collectors

    def collect(self) -> Any:
        for collector in self._collectors:
            yield from collector.collect()
