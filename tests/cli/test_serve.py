"""`items serve` up to uvicorn.run, with uvicorn, the migrations and the projector child
replaced: what it hands uvicorn, what it puts in the environment, how it names itself."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import uvicorn

from app import bootstrap, cli, metrics, proctitle
from app.cli import serve
from app.settings import Settings


class Started:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
        self.roles: list[str] = []
        self.uvicorn: dict[str, Any] = {}
        self.children: list[str] = []
        configured = Settings(
            database_url="postgresql://app:pw@db/items",
            redis_url="redis://cache:6379/0",
            _env_file=None,
            **settings,
        )
        monkeypatch.setattr(serve, "settings", lambda: configured)
        monkeypatch.setattr(bootstrap, "configure_logging", lambda _: None)
        monkeypatch.setattr(bootstrap, "migrate", lambda *_: "0006")
        monkeypatch.setattr(proctitle, "name", self.roles.append)
        monkeypatch.setattr(uvicorn, "run", self.run)
        monkeypatch.setattr(signal, "signal", lambda *_: None)
        monkeypatch.setattr(serve, "ChildInThread", lambda *_, **__: self)
        self.metrics_folder: str | None = None
        for name in ("ACCESS_LOG", "PROJECTOR_SUPERVISED", metrics.MULTIPROC_ENV):
            # serve sets them in os.environ; set first, so that monkeypatch restores them
            # (to unset) after the test: a leftover PROJECTOR_SUPERVISED would keep every
            # later test app from starting its projector.
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)

    def run(self, app: str, **kw: Any) -> None:
        self.uvicorn.update(kw, app=app)
        self.metrics_folder = os.environ.get(metrics.MULTIPROC_ENV)
        assert self.metrics_folder is not None
        assert os.path.isdir(self.metrics_folder)

    def start(self) -> None:
        self.children.append("started")

    def stop(self) -> None:
        self.children.append("stopped")


def _serve(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", *args])
    assert isinstance(exited.value.code, int)
    return exited.value.code


def test_uvicorn_gets_no_logging_config_and_no_access_log_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = Started(monkeypatch)
    assert _serve("--port", "8123") == 0
    assert started.roles == ["api"]
    kw = started.uvicorn
    assert kw["app"] == serve.APP_FACTORY
    assert kw["log_config"] is None
    assert kw["access_log"] is False
    assert kw["port"] == 8123
    assert kw["workers"] == 1
    assert kw["http"] == serve.HTTP_PROTOCOL
    assert kw["timeout_graceful_shutdown"] == serve.GRACEFUL_SHUTDOWN
    assert "ACCESS_LOG" not in os.environ
    assert started.children == []  # one worker: its lifespan runs the projector


def test_access_log_is_the_services_own_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = Started(monkeypatch)
    assert _serve("--access-log") == 0
    assert os.environ["ACCESS_LOG"] == "true"  # every worker's settings read it
    assert started.uvicorn["access_log"] is False


def test_workers_run_one_projector_beside_them(monkeypatch: pytest.MonkeyPatch) -> None:
    started = Started(monkeypatch, secret_key="serve-test-secret-0123456789")
    assert _serve("--workers", "3") == 0
    assert started.roles == ["api", "api supervisor"]
    assert started.uvicorn["workers"] == 3
    assert os.environ["PROJECTOR_SUPERVISED"] == "true"
    assert started.children == ["started", "stopped"]


def test_the_environment_is_given_back() -> None:
    # After the tests above (pytest runs a file's tests in order).
    assert "PROJECTOR_SUPERVISED" not in os.environ
    assert "ACCESS_LOG" not in os.environ
    assert metrics.MULTIPROC_ENV not in os.environ


def test_every_process_counts_into_one_folder_gone_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = Started(monkeypatch, secret_key="serve-test-secret-0123456789")
    assert _serve("--workers", "2") == 0
    # Named before the workers and the projector child started (they inherit it) ...
    assert started.metrics_folder is not None
    # ... removed with its name once uvicorn returned, so no later process inherits it.
    assert not os.path.exists(started.metrics_folder)
    assert metrics.MULTIPROC_ENV not in os.environ


def test_workers_without_a_shared_key_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = Started(monkeypatch)
    assert _serve("--workers", "2") == 2
    assert "needs SECRET_KEY" in capsys.readouterr().err
    assert started.uvicorn == {}
    assert _serve("--workers", "0") == 2
