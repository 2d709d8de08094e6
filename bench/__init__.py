"""`make bench`: the service as users run it, loaded by wrk, beside its references.

One run, on one machine:

- starts `items serve` (uvicorn, uvloop, httptools, no access log, one worker) pinned to
  one CPU, with wrk (and this driver) pinned to the other; the API's projector runs in its
  child process, which inherits the pin: the whole service shares that one CPU;
- seeds N items through the API (BENCH_ITEMS, default 100,000);
- measures GET by id (random ids, keep-alive, 64 connections), beside it the same read as
  GraphQL item(id) (wrk) and gRPC GetItem (`items grpc`, loaded by bench/grpc_load.py),
  GET list (pages of 20 and 100, default sort and a tag filter), POST, PATCH, a 95/5
  read/write mix and, under that
  mix, the projection lag (a write's commit to its view in Redis), p50 and p99;
- measures PostgreSQL's own rate for the same write statements: pgbench (prepared, 20
  clients on the load CPU) running the write side's SQL for a create, a create with an
  Idempotency-Key and a price change; the service's POST, keyed POST and PATCH are set
  beside them;
- measures `items rebuild` of BENCH_REBUILD_ITEMS items (default 1,000,000) seeded
  straight into PostgreSQL: items per second, peak memory, Redis bytes per item, and
  beside it Redis taking the same keys and index members sent raw from one client;
- serves GET by id, list 20 and POST on that rebuilt store and on a small one
  (min(10,000, a tenth)): the cost must not grow with the size;
- measures the references of ../shared/bench in the same run: the bare HTTP ceiling, the
  one-redis-py-GET ceiling and the seed-style FastAPI + SQLModel peer reading PostgreSQL
  (the same wrk loads as the service's);
- the scale part (no targets, figures only): 1 and 4 projection partitions, on the run's
  single Redis and on a local Redis Cluster of 3 masters (tests/redis_cluster.py;
  skipped with a note where Debian's redis-server is missing), each on a fresh database:
  GET by id, list 20, POST, the 95/5 mix with its projection lag (shorter loads on
  fewer items than above), and the projection's throughput catching up a backlog
  inserted straight into PostgreSQL, with 1 `items projector` and, for 4 partitions, 2;
  then `items serve --workers 1` against `--workers 2` for GET by id, pinned and not;
- prints requests per second, p50, p99 and the ratios to the references, and writes them
  to bench/results/bench-<timestamp>.json and bench/results/latest.json.

The references run on this repo's own .venv interpreter (same uvicorn, Starlette and
FastAPI as the service); only sqlmodel, which the peer needs and the service does not, is
installed with `pip --target bench/.venv-ref --no-deps` and put on PYTHONPATH.

Env: BENCH_ITEMS, BENCH_DURATION (seconds per load), BENCH_CONNECTIONS, BENCH_WARMUP
(seconds of warm-up load before a server's first measurement), BENCH_REBUILD_ITEMS,
BENCH_REBUILD_BATCH (`items rebuild --batch-size`), BENCH_PGBENCH_CLIENTS (default 20),
BENCH_DATABASE_URL (admin URL; a fresh database is created and dropped), BENCH_REDIS_URL
(keys live under a per-run prefix and are removed); unset, the machine's own servers on
127.0.0.1:5432 / 6379 if they answer, else embedded ones as `make run` starts;
BENCH_SHARED (the references' folder, default ../shared/bench); the scale part:
BENCH_SCALE=0 skips it, BENCH_SCALE_ITEMS (default min(BENCH_ITEMS, 20,000)),
BENCH_SCALE_EVENTS (each projection backlog, default 20,000), BENCH_SCALE_DURATION
(seconds per load, default half of BENCH_DURATION, at least 3).
`--smoke`: a few seconds of everything, so the bench cannot rot (tests/test_bench_smoke.py).

The entry point is bench/run.py (`python bench/run.py [--smoke] [--results-dir DIR]`);
the package, one job a module:

    config.py      the settings: BENCH_* variables, the command line, the CPUs, the paths
    console.py     the printed lines
    servers.py     which PostgreSQL and Redis the run uses
    stores.py      the databases and Redis keys the run makes, and their removal
    processes.py   starting, pinning and stopping processes; waiting for HTTP
    loads.py       wrk: timed runs, open-ended runs, seeding through the API, warming views
    lag.py         the 95/5 mix with the projection lag of its writes
    service.py     the service's measurements
    grpc_bench.py  gRPC GetItem: `items grpc` beside the service, and its load
    grpc_load.py   the asyncio gRPC load client (ghz is not available)
    references.py  the ../shared/bench reference servers' measurements
    pgbench.py     pgbench running the write side's statements: the writes' references
    rebuild.py     the `items rebuild` measurement
    redis_raw.py   the rebuild's reference: its writes sent raw; Redis memory per item
    sizes.py       the same loads on a small store and on the rebuild's large one
    scale.py       the scale part: its configurations, the cluster, the workers rows
    scale_run.py   one configuration of it: projection runs, then the service's loads
    catchup.py     the projection's throughput catching up a backlog
    workers.py     `items serve --workers 1` against `--workers 2`, GET by id
    cpu.py         process trees, CPU seconds, Redis CPU, moving processes between CPUs
    report.py      ratios, targets, the tables and the JSON
    main.py        one run, in order
"""
