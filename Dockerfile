# syntax=docker/dockerfile:1
# The items API image: `docker compose up` (see docker-compose.yml) or
#   docker build -t items . && docker run -e DATABASE_URL=... -e REDIS_URL=... -p 8000:8000 items

# --- builder: resolve the locked environment into /app/.venv with uv --------------------
FROM python:3.11-slim AS builder

RUN pip install --no-cache-dir uv==0.13.9

ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# Neither the dev group nor the `embedded` extra: the image runs against the PostgreSQL
# and Redis that DATABASE_URL / REDIS_URL name (docker-compose.yml starts both).
# hatchling reads README.md (pyproject's `readme`) when it builds the project.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself. It stays an editable install (uv's default, so no
# --no-editable): app/infrastructure/postgres/migrations.py finds alembic.ini and
# migrations/ next to the app/ folder.
COPY alembic.ini ./
COPY migrations/ ./migrations/
COPY app/ ./app/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# --- runtime: the same Python, the environment and the source, no uv, no compiler -------
FROM python:3.11-slim AS runtime

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin app

# Same path as in the builder: the venv's scripts and the editable install point at /app.
COPY --from=builder /app /app
WORKDIR /app

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000

USER app

EXPOSE 8000

# `items serve` applies the migrations up to head, then serves with uvicorn.
CMD ["items", "serve"]
