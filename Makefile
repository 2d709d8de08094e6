# One command to run, one to test, one to lint. Needs only Python 3.11+ and make:
# uv (pinned, installed into .tools/) builds .venv from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test faults lint format bench bench-smoke soak clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	touch $@

install: $(VENV)/.synced

run: install  ## serve on http://127.0.0.1:8000 (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL)
	$(VENV)/bin/items serve

test: install  ## the whole suite (embedded servers unless TEST_DATABASE_URL/TEST_REDIS_URL)
	$(VENV)/bin/pytest

faults: install  ## only the fault tests of README's RELIABILITY section (make test runs them too)
	$(VENV)/bin/pytest tests/faults

lint: install  ## ruff, mypy --strict, and the layers of app/ (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install  ## wrk load of the service and of ../shared/bench references; JSON in bench/results/
	$(VENV)/bin/python bench/run.py

bench-smoke: install  ## the same, a few seconds of each part (it runs in the tests too)
	$(VENV)/bin/python bench/run.py --smoke

soak: install  ## writers and readers for SOAK_SECONDS (30); then PostgreSQL must hold exactly the acknowledged writes and items verify exit 0
	$(VENV)/bin/python -m tests.faults.soak

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
