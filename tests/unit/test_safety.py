"""ENVIRONMENT=production refuses the settings that are only fit for a laptop
(app/bootstrap/safety.py): each one named, all in one line, exit 2; nothing otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from app.bootstrap.safety import refuse_if_unsafe, unsafe_for_production
from app.settings import Settings

INVOLVED = (
    "ENVIRONMENT",
    "SECRET_KEY",
    "API_KEYS",
    "ALLOW_OPEN_WRITES",
    "DATABASE_URL",
    "REDIS_URL",
)
SAFE: dict[str, Any] = {
    "environment": "production",
    "secret_key": "a-production-secret-0123456789",
    "api_keys": "k1,k2",
    "database_url": "postgresql://items:pw@postgres:5432/items",
    "redis_url": "redis://redis:6379/0",
}


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fields not passed below would be read from the environment (a developer's
    # SECRET_KEY, say) and hide what is checked.
    for name in INVOLVED:
        monkeypatch.delenv(name, raising=False)


def settings(**fields: Any) -> Settings:
    return Settings(**fields, _env_file=None)


def test_a_complete_production_configuration_is_safe() -> None:
    assert unsafe_for_production(settings(**SAFE)) == []


def test_nothing_is_checked_outside_production() -> None:
    assert unsafe_for_production(settings()) == []
    refuse_if_unsafe(settings())  # returns: the embedded defaults are what `make run` wants


@pytest.mark.parametrize(
    ("unset", "variable"),
    [
        ("secret_key", "SECRET_KEY"),
        ("api_keys", "API_KEYS"),
        ("database_url", "DATABASE_URL"),
        ("redis_url", "REDIS_URL"),
    ],
)
def test_each_unsafe_setting_is_named(unset: str, variable: str) -> None:
    found = unsafe_for_production(settings(**{**SAFE, unset: "" if unset == "api_keys" else None}))
    assert len(found) == 1, found
    assert found[0].startswith(variable + " ")


def test_everything_unsafe_is_named_at_once() -> None:
    found = unsafe_for_production(settings(environment="production"))
    names = [message.split()[0] for message in found]
    assert names == ["SECRET_KEY", "API_KEYS", "DATABASE_URL", "REDIS_URL"]


def test_open_writes_are_allowed_when_asked_for() -> None:
    allowed = settings(**{**SAFE, "api_keys": "", "allow_open_writes": True})
    assert unsafe_for_production(allowed) == []


def test_read_as_docker_compose_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose hands unset ${VAR:-} over as empty strings: those mean unset here too.
    for name, value in {
        "ENVIRONMENT": "production",
        "SECRET_KEY": "",
        "API_KEYS": "",
        "ALLOW_OPEN_WRITES": "false",
        "DATABASE_URL": SAFE["database_url"],
        "REDIS_URL": SAFE["redis_url"],
    }.items():
        monkeypatch.setenv(name, value)
    found = unsafe_for_production(Settings(_env_file=None))
    assert [message.split()[0] for message in found] == ["SECRET_KEY", "API_KEYS"]
    monkeypatch.setenv("SECRET_KEY", SAFE["secret_key"])
    monkeypatch.setenv("ALLOW_OPEN_WRITES", "true")
    assert unsafe_for_production(Settings(_env_file=None)) == []


def test_refusal_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    unsafe = settings(**{**SAFE, "secret_key": None, "api_keys": ""})
    with pytest.raises(SystemExit) as exited:
        refuse_if_unsafe(unsafe)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert err.startswith("items: refusing to start with ENVIRONMENT=production: SECRET_KEY ")
    assert ", API_KEYS " in err


def test_a_safe_production_start_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    refuse_if_unsafe(settings(**SAFE))
    assert capsys.readouterr() == ("", "")


def test_no_secret_reaches_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    # The keys are set here (so only the URLs are reported): neither may be echoed.
    with pytest.raises(SystemExit):
        refuse_if_unsafe(settings(**{**SAFE, "database_url": None}))
    err = capsys.readouterr().err
    assert SAFE["secret_key"] not in err
    assert "k1" not in err
