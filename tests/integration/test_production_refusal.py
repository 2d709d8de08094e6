"""ENVIRONMENT=production refuses to start, at once and in one line, when the settings
are only fit for a laptop; fixed, the same command runs."""

from __future__ import annotations

from app.settings import Settings
from tests.servers import items_env, run_items


async def test_every_command_refuses_unsafe_production_settings(settings: Settings) -> None:
    env = items_env(settings, ENVIRONMENT="production", API_KEYS="")
    del env["SECRET_KEY"]
    for command in (["migrate"], ["status"], ["serve", "--port", "1"], ["projector"]):
        code, out, err = await run_items(command, env, within=30)
        assert code == 2, (command, out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("items: refusing to start with ENVIRONMENT=production: ")
        assert "SECRET_KEY" in lines[0]
        assert "API_KEYS" in lines[0]
    # Embedded servers too: no URL.
    bare = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    code, _, err = await run_items(["status"], {**bare, "SECRET_KEY": "k" * 20}, within=30)
    assert code == 2
    assert "DATABASE_URL" in err
    assert "REDIS_URL" in err
    # Made safe, it runs.
    safe = {**env, "SECRET_KEY": "k" * 20, "API_KEYS": "a-key-0123456789"}
    code, out, err = await run_items(["status", "--json"], safe, within=30)
    assert code == 0, err
