"""Which key signs cursors and tokens, and what a process says when it is random."""

from __future__ import annotations

import logging

import pytest

from app import bootstrap
from app.settings import Settings


def _settings(secret_key: str | None = None) -> Settings:
    return Settings(
        database_url="postgresql://u@localhost/db",
        redis_url="redis://localhost/0",
        secret_key=secret_key,
        _env_file=None,
    )


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)


def test_external_stores_and_no_key_warn_that_nothing_signed_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings()
    assert settings.random_signing_key
    with caplog.at_level(logging.WARNING, logger="items"):
        assert bootstrap.with_servers(settings) is settings
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "SECRET_KEY" in warned[0]
    assert "restart" in warned[0]
    assert "another process" in warned[0]


def test_a_key_set_is_used_and_nothing_is_said(caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings("k" * 20)
    with caplog.at_level(logging.WARNING):
        bootstrap.with_servers(settings)
    assert settings.signing_key == "k" * 20
    assert caplog.records == []


def test_an_empty_secret_key_is_unset() -> None:
    # docker compose passes ${SECRET_KEY:-} as SECRET_KEY= when the shell has none.
    settings = _settings("")
    assert settings.secret_key is None
    assert settings.random_signing_key


def test_a_random_key_is_one_per_settings_object() -> None:
    first, second = _settings(), _settings()
    assert first.signing_key == first.signing_key
    assert first.signing_key != second.signing_key
    assert len(first.signing_key) >= 32
