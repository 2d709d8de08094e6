"""docker-compose.yml, Dockerfile and .dockerignore, checked by reading them.

No Docker engine runs where the suite runs, so these tests parse the files and check
what the deployment relies on: the services and their health-gated start order, the
URLs the API gets, and an image that installs from the lock, runs `items serve` as a
non-root user and copies only files that exist and that .dockerignore lets through.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _mapping(value: Any, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what} should be a mapping, got {value!r}"
    return value


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list form."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in _mapping(env, "environment").items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _mapping(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), "compose file")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: _mapping(svc, name) for name, svc in _mapping(compose["services"], "services").items()
    }


# --- docker-compose.yml ----------------------------------------------------------------


def test_compose_has_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_compose_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", "api"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    assert str(services["redis"]["image"]).startswith("redis:7")
    build = services["api"]["build"]
    context = build if isinstance(build, str) else _mapping(build, "build").get("context")
    assert context == "."


def test_postgres_has_credentials_and_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    env = _environment(services["postgres"])
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env.get(name), name
    named = {str(v).split(":", 1)[0] for v in services["postgres"].get("volumes", [])}
    declared = set(_mapping(compose.get("volumes") or {}, "volumes"))
    assert named & declared, "postgres data should live in a named volume"


@pytest.mark.parametrize(
    ("service", "command"), [("postgres", "pg_isready"), ("redis", "redis-cli ping")]
)
def test_healthchecks(services: dict[str, dict[str, Any]], service: str, command: str) -> None:
    check = _mapping(services[service].get("healthcheck"), f"{service} healthcheck")
    test = check["test"]
    text = test if isinstance(test, str) else " ".join(str(part) for part in test)
    assert command in text


def test_api_waits_for_healthy_postgres_and_redis(services: dict[str, dict[str, Any]]) -> None:
    depends_on = _mapping(services["api"]["depends_on"], "api depends_on")
    for name in ("postgres", "redis"):
        assert _mapping(depends_on[name], name)["condition"] == "service_healthy"


def test_api_environment_points_at_the_services(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["api"])
    pg_env = _environment(services["postgres"])

    database = urlsplit(env["DATABASE_URL"])
    assert database.scheme in {"postgresql", "postgresql+asyncpg"}
    assert database.hostname == "postgres"
    assert database.port == 5432
    assert database.username == pg_env["POSTGRES_USER"]
    assert database.password == pg_env["POSTGRES_PASSWORD"]
    assert database.path == "/" + pg_env["POSTGRES_DB"]

    redis = urlsplit(env["REDIS_URL"])
    assert redis.scheme == "redis"
    assert redis.hostname == "redis"
    assert redis.port == 6379

    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "8000"
    assert "8000:8000" in [str(p) for p in services["api"]["ports"]]


# --- Dockerfile --------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines may sit inside a continuation too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return result


def _args(args: str) -> list[str]:
    """Exec (JSON) form or shell-style words."""
    if args.startswith("["):
        parsed = json.loads(args)
        assert isinstance(parsed, list)
        return [str(a) for a in parsed]
    return shlex.split(args)


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def test_dockerfile_bases_are_python_311() -> None:
    froms = [args for kw, args in _instructions() if kw == "FROM"]
    assert froms
    for args in froms:
        image = next(word for word in args.split() if not word.startswith("--"))
        assert image.startswith("python:3.11"), image


def test_dockerfile_installs_from_the_lock_with_uv() -> None:
    instructions = _instructions()
    runs = [args for kw, args in instructions if kw == "RUN"]
    assert any("uv==0.13.9" in run for run in runs)
    syncs = [i for i, (kw, args) in enumerate(instructions) if kw == "RUN" and "uv sync" in args]
    assert syncs
    for i in syncs:
        assert "--frozen" in instructions[i][1]
        assert "--no-dev" in instructions[i][1]
        # The embedded servers (an optional extra) are for machines with no stores.
        assert "--extra" not in instructions[i][1]
        assert "--all-extras" not in instructions[i][1]

    # Dependencies first (before the source is copied), then the project itself.
    copy_app = next(
        i for i, (kw, args) in enumerate(instructions) if kw == "COPY" and "app/" in _args(args)
    )
    assert "--no-install-project" in instructions[syncs[0]][1]
    assert syncs[0] < copy_app < syncs[-1]
    assert "--no-install-project" not in instructions[syncs[-1]][1]
    # The migrations are found next to app/, so the project must stay an editable install.
    assert not any("--no-editable" in instructions[i][1] for i in syncs)


def test_dockerfile_runs_items_serve_as_non_root_on_8000() -> None:
    final = _final_stage()
    cmds = [args for kw, args in final if kw == "CMD"]
    assert cmds
    assert _args(cmds[-1]) == ["items", "serve"]

    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage should switch to a non-root user"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}

    exposed = [port for kw, args in final if kw == "EXPOSE" for port in args.split()]
    assert "8000" in exposed or "8000/tcp" in exposed

    env = " ".join(args for kw, args in final if kw == "ENV")
    assert ".venv/bin" in env, "the environment's scripts (items) should be on PATH"


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops path or a folder it is in (no `!` patterns here)."""
    assert not any(p.startswith("!") for p in patterns), "exceptions need a real matcher"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix, pattern[3:]):
                return True
    return False


def test_dockerfile_copies_only_existing_unignored_paths() -> None:
    patterns = _dockerignore_patterns()
    sources: list[str] = []
    for kw, args in _instructions():
        if kw not in {"COPY", "ADD"}:
            continue
        words = _args(args)
        if any(word.startswith("--from=") for word in words):
            continue  # from another stage, not from the build context
        paths = [word for word in words if not word.startswith("--")]
        assert len(paths) >= 2, f"{kw} {args}"
        sources += paths[:-1]
    assert {"pyproject.toml", "uv.lock", "README.md", "alembic.ini"} <= set(sources)
    assert {"app", "migrations"} <= {source.rstrip("/") for source in sources}
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert not _ignored(source.rstrip("/"), patterns), f"COPY {source} is .dockerignored"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = _dockerignore_patterns()
    for path in (".venv", ".tools", ".data", ".git", ".env", "tests", "app/__pycache__"):
        assert _ignored(path, patterns), path
