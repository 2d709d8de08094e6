# One command to run, one to test, one to lint. Needs only Python 3.11+ and make:
# uv (pinned, installed into .tools/) builds .venv from uv.lock.
#
# `make run` installs what running needs (and the embedded servers); `make test` and
# `make lint` add the dev tools. --inexact: one never removes what the other installed,
# so a `make run` beside a running `make test` leaves its tools in place.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
SYNC = $(UV) sync --frozen --inexact --extra embedded --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"

.PHONY: install dev run test faults lint format proto bench bench-smoke soak history reset clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced-run: uv.lock pyproject.toml | $(UV)
	$(SYNC) --no-dev
	touch $@

$(VENV)/.synced-dev: uv.lock pyproject.toml | $(UV)
	$(SYNC) --extra traces
	touch $@ $(VENV)/.synced-run

install: $(VENV)/.synced-run  ## what `items` needs to run, and nothing else

dev: $(VENV)/.synced-dev  ## that, and the test, lint and bench tools

run: install  ## serve on http://127.0.0.1:8000 (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL)
	$(VENV)/bin/items serve

test: dev  ## the whole suite (embedded servers unless TEST_DATABASE_URL/TEST_REDIS_URL)
	$(VENV)/bin/pytest

faults: dev  ## only the fault tests of README's RELIABILITY section (make test runs them too)
	$(VENV)/bin/pytest tests/faults

lint: dev  ## ruff, mypy --strict, and the layers of app/ (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile

format: dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

proto: dev  ## app/grpc/generated from proto/items/v1/items.proto (checked in: the image has no grpcio-tools)
	rm -rf app/grpc/generated
	$(VENV)/bin/python proto/generate.py

bench: dev  ## wrk load of the service and of ../shared/bench references; JSON in bench/results/
	$(VENV)/bin/python bench/run.py

bench-smoke: dev  ## the same, a few seconds of each part (it runs in the tests too)
	$(VENV)/bin/python bench/run.py --smoke

soak: dev  ## writers and readers for SOAK_SECONDS (30); then PostgreSQL must hold exactly the acknowledged writes and items verify exit 0
	$(VENV)/bin/python -m tests.faults.soak

history: dev  ## 16+ sessions record every operation while faults hit both setups (HISTORY_SECONDS each, 60; HISTORY_SEED replays); the checker's report, exit 1 on any violation
	$(VENV)/bin/python -m tests.history --png docs/history.png

reset: install  ## stop the embedded servers and delete their data (DATA_DIR, default .data)
	$(VENV)/bin/items servers stop
	rm -rf "$${DATA_DIR:-.data}"

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
