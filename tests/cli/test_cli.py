"""The `items` command without servers: its commands and flags by name, their help, the
status renderer and its checks, the progress display, and how outages are named."""

from __future__ import annotations

import logging
import sys
from typing import Any

import asyncpg
import pytest
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from app import bootstrap, cli, proctitle
from app.cli import common, progress, status
from app.cli.rebuild import Shown
from app.operations.progress import Progress

# Every command and its options, as the README and the operators' scripts name them.
COMMANDS = {
    ("serve",): {"--host", "--port", "--access-log", "--workers"},
    ("grpc",): {"--host", "--port"},
    ("relay",): set(),
    ("projector",): set(),
    ("migrate",): set(),
    ("rebuild",): {"--batch-size", "--dry-run", "--partitions"},
    ("verify",): {"--repair", "--wait", "--batch-size"},
    ("status",): {"--json", "--check", "--max-lag"},
    ("dead-letters", "list"): set(),
    ("dead-letters", "retry"): set(),
    ("servers", "status"): {"--json"},
    ("servers", "stop"): set(),
}


def _command(path: tuple[str, ...]) -> Any:
    found: Any = typer.main.get_command(cli.app)
    for name in path:
        found = found.commands[name]
    return found


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_each_command_keeps_its_name_and_flags(path: tuple[str, ...]) -> None:
    options = {o for p in _command(path).params for o in p.opts if o.startswith("--")}
    assert options == COMMANDS[path]  # no --no-dry-run and the like either


@pytest.mark.parametrize(
    "path", [*COMMANDS, ("dead-letters",), ("servers",), ()], ids=lambda p: " ".join(p) or "-"
)
def test_help_of_every_command(path: tuple[str, ...]) -> None:
    done = CliRunner().invoke(cli.app, [*path, "--help"], prog_name="items")
    assert done.exit_code == 0, done.output
    assert done.output.lstrip().startswith(" ".join(("Usage: items", *path)))


def test_a_group_without_its_action_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli.app, ["dead-letters"], prog_name="items").exit_code == 2
    assert CliRunner().invoke(cli.app, ["rebuild", "--partitions", "65"]).exit_code == 2


def test_completion_comes_with_typer() -> None:
    options = {o for p in typer.main.get_command(cli.app).params for o in p.opts}
    assert {"--install-completion", "--show-completion"} <= options


def _status(**changes: Any) -> dict[str, Any]:
    partition = {
        "partition": 0,
        "generation": "g17",
        "checkpoint": 40,
        "restoring": False,
        "restore_generation": None,
        "restore_checkpoint": None,
        "rebuilding": True,
        "rebuild_generation": "g18",
        "rebuild_checkpoint": 12,
        "lag_events": 2,
        "lag_seconds": 0.25,
        "epoch": 3,
        "owner": {"pid": 4242, "host": "box[1]", "member": "m", "since": None},
    }
    found = {
        "head_position": 42,
        "checkpoint": 40,
        "lag_events": 2,
        "lag_seconds": 0.25,
        "read_model": "live",
        "layout": {"name": "", "partitions": 2},
        "partitions": [partition, {**partition, "partition": 1, "owner": None, "epoch": None}],
        "owned_partitions": 1,
        "projectors": 1,
        "dead_letters": 0,
    }
    return {**found, **changes}


def test_status_shows_the_facts_over_a_table_of_partitions() -> None:
    text = status.render_status(_status())
    lines = text.splitlines()
    assert lines[0] == "head position:   42"
    assert "dead letters:    0" in lines
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["0"], ["1"])}
    # The host's brackets are text, not rich markup.
    assert rows["0"][:7] == ["0", "4242@box[1]", "3", "g17", "40", "2", "event(s),"]
    assert rows["1"][:3] == ["1", "no", "owner"]
    assert "rebuilding g18 at 12" in text
    assert all(line == line.rstrip() for line in lines)  # no padding left in a log


def test_check_finds_lag_missing_owners_and_dead_letters() -> None:
    assert status.problems(_status(partitions=_status()["partitions"][:1]), 30) == []
    assert status.problems(_status(lag_seconds=31.5, dead_letters=3), 30) == [
        "lag 31.500s exceeds 30s (2 event(s) behind)",
        "partition 1 has no owner (no projector holds it)",
        "3 dead letter(s) wait (see `items dead-letters list`)",
    ]


def test_check_finds_a_relay_behind_or_without_a_holder() -> None:
    def check(**relay: object) -> list[str]:
        held = {"stream": "ITEMS", "position": 40, "lag_events": 2, "lag_seconds": 0.25,
                "owner": {"pid": 7, "host": "box"}}  # fmt: skip
        return status.problems(
            _status(partitions=_status()["partitions"][:1], relay={**held, **relay}), 30
        )

    assert check() == []
    assert check(lag_events=0, owner=None) == []  # stopped, with nothing left to send
    assert check(lag_seconds=45.0, owner=None) == [
        "relay lag 45.000s exceeds 30s (2 event(s) not yet on stream ITEMS)",
        "no relay holds the stream and 2 event(s) not yet on stream ITEMS",
    ]


def test_rebuild_progress_in_a_log_is_a_line_every_few_seconds() -> None:
    lines: list[str] = []
    shown = Shown(lines.append, tty=False)
    for done in range(0, 1000, 100):
        shown(Progress("rebuild.seeding", done, 1000, seconds=1.0 + done / 1000))
    shown(Progress("rebuild.seeded", 1000, 1000, seconds=2.0))
    shown(Progress("rebuild.live", 1000, seconds=2.5, item="g2"))
    assert lines == [
        "rebuild: 0/1000 items, 0 items/s, ETA 0s",  # the first, then none for 2 s
        "rebuild: 1000/1000 items, 500 items/s, ETA 0s",  # the last, always
        "rebuild: 1000 items in 2.5s (400 items/s), generation g2 is live",
    ]


def test_rebuild_progress_on_a_terminal_is_a_bar_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []
    stderr = sys.stderr
    handler = logging.StreamHandler(stderr)  # as app/logs.py configures it
    logging.getLogger().addHandler(handler)
    try:
        with Shown(lines.append, tty=True) as shown:
            shown(Progress("rebuild.seeding", 500, 1000, seconds=1.0))
            assert handler.stream is not stderr  # log lines go above the bar
            logging.getLogger().warning("a log line while the bar is drawn")
            shown(Progress("rebuild.seeded", 1000, 1000, seconds=2.0))
        shown(Progress("rebuild.live", 1000, seconds=2.5, item="g2"))
    finally:
        logging.getLogger().removeHandler(handler)
    assert handler.stream is stderr is sys.stderr  # and it is given its stream back
    assert lines == ["rebuild: 1000 items in 2.5s (400 items/s), generation g2 is live"]
    drawn = capsys.readouterr()
    assert drawn.out == ""  # stdout holds results only
    assert "1000/1000" in drawn.err
    assert "500 items/s" in drawn.err
    assert "a log line while the bar is drawn" in drawn.err


def test_a_meter_closed_early_leaves_the_terminal_as_it_was() -> None:
    meter = progress.Meter("verify", print, tty=True)
    meter.waiting("verify: waiting")
    meter.close()
    meter.close()  # twice is harmless


def test_an_outage_names_its_store() -> None:
    assert bootstrap.unreachable_store(RedisConnectionError("Error 111 connecting")) == "Redis"
    assert bootstrap.unreachable_store(ConnectionRefusedError(111, "refused")) == "PostgreSQL"
    assert bootstrap.unreachable_store(asyncpg.CannotConnectNowError("starting")) == "PostgreSQL"
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as exc:
            raise RuntimeError("wrapped, as SQLAlchemy does") from exc
    except RuntimeError as wrapped:
        cause = common.outage(wrapped)
    assert isinstance(cause, ConnectionRefusedError)
    assert common.outage(ValueError("no outage")) is None


def test_no_password_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    common.say("at redis://user:hunter2@cache:6379/0")
    common.complain("items", "postgresql://app:hunter2@db/items refused")
    out, err = capsys.readouterr()
    assert "hunter2" not in out + err
    assert "redis://user:***@cache:6379/0" in out
    assert common.scrubbed({"redis": {"url": "redis://:hunter2@h/0"}, "n": [1, "x"]}) == {
        "redis": {"url": "redis://:***@h/0"},
        "n": [1, "x"],
    }


def test_a_failure_is_logged_with_its_traceback_and_no_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails() -> None:
        raise RuntimeError("cannot use postgresql://app:hunter2@db/items")

    monkeypatch.setattr(common, "settings", fails)
    monkeypatch.setattr(proctitle, "name", lambda _: None)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["dead-letters", "list"])  # begin() configures the logging
    finally:
        root.handlers[:] = handlers  # pytest's own, for the tests after this one
        root.setLevel(level)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "postgresql://app:***@db/items" in err
    assert "hunter2" not in err
