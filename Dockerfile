# syntax=docker/dockerfile:1
# The items image: `items serve` by default; docker-compose.yml runs `items migrate` and
# `items projector` from it too. Alone:
#   docker build -t items . && docker run -e DATABASE_URL=... -e REDIS_URL=... \
#     -e SECRET_KEY=... -e API_KEYS=... -e ENVIRONMENT=production -p 8000:8000 items

# --- builder: resolve the locked environment into /app/.venv with uv --------------------
FROM python:3.11-slim AS builder

RUN pip install --no-cache-dir uv==0.13.9

ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# Not the dev group (tests, linters, bench tools) and not the `embedded` extra: the
# image runs against the PostgreSQL and Redis that DATABASE_URL / REDIS_URL name
# (docker-compose.yml starts both). The `traces` extra (OpenTelemetry) is in: it stays
# off until OTEL_EXPORTER_OTLP_ENDPOINT is set, and a deployment should not need a
# rebuild to turn tracing on.
# hatchling reads README.md (pyproject's `readme`) when it builds the project.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra traces --no-install-project

# Then the project itself. It stays an editable install (uv's default, so no
# --no-editable): app/infrastructure/postgres/migrations.py finds alembic.ini and
# migrations/ next to the app/ folder.
COPY alembic.ini ./
COPY migrations/ ./migrations/
COPY app/ ./app/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra traces
# UV_COMPILE_BYTECODE covers site-packages, not an editable project: compile app/ and
# migrations/ here, since the runtime user cannot write __pycache__ under /app and
# every process would compile them again at each start.
RUN python -m compileall -q app migrations

# --- runtime: the same Python, the environment and the source; no uv, no compiler -------
# python:3.11-slim has no C compiler, and nothing here installs one: every dependency
# comes as a wheel from the builder's environment.
FROM python:3.11-slim AS runtime

# A fixed, numeric uid/gid: Kubernetes' runAsNonRoot can check a number (not a name),
# and files on mounted volumes get an owner that means the same on every host.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin app

# Same path as in the builder: the venv's scripts and the editable install point at
# /app. Owned by root, read-only to the app user: the code cannot be changed at run time.
COPY --from=builder /app /app
WORKDIR /app

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000

USER 10001:10001

EXPOSE 8000

# Readiness, not liveness: unhealthy while the API cannot answer reads (Redis down, no
# live read model), which is what `depends_on: service_healthy` and load balancers want.
# python with urllib, as the image has no curl; urlopen raises on a 503. The projector
# container (docker-compose.yml) overrides this with a check of its /metrics port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=3)"]

# `items serve` applies the migrations up to head (a no-op after compose's `migrate`),
# then serves with uvicorn.
CMD ["items", "serve"]
