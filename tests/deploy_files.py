"""The deployment files read as Docker and compose read them, for tests/test_deploy_files.py.

No Docker engine runs where the suite runs, so this is what stands in for one: compose's
${VAR} interpolation (the forms docker-compose.yml uses), the .env file it reads, and a
Dockerfile split into its instructions and stages.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = frozenset(name.upper() for name in Settings.model_fields)
# What the deployment files may name besides the settings, and who reads it.
NOT_SETTINGS = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "the OpenTelemetry exporter (tracing), in the app services",
    "POSTGRES_PASSWORD": "the postgres image, and DATABASE_URL in docker-compose.yml",
}
APP_SERVICES = ("migrate", "api", "projector", "grpc", "relay")


def mapping(value: Any, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what} should be a mapping, got {value!r}"
    return value


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list form."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in mapping(env, "environment").items()}


# --- compose interpolation -----------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Reference:
    name: str
    op: str  # "" (plain), ":-", "-", ":?" or "?"
    arg: str  # the default, or the error message


class Unset(Exception):
    """A ${VAR:?message} (or ${VAR?message}) whose VAR is not set: compose stops."""


def references(text: str) -> list[Reference]:
    """Every ${VAR...} and $VAR in a text, in order."""
    found = []
    for match in _REFERENCE.finditer(text):
        if match["escaped"]:
            continue
        name = match["name"] or match["bare"]
        found.append(Reference(name, match["op"] or "", match["arg"] or ""))
    return found


def strings(value: Any) -> list[str]:
    """Every string in a parsed YAML document (keys too): where compose interpolates."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in strings(key) + strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with its references replaced as compose replaces them from `env`."""

    def value(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, got = match["op"] or "", match["arg"] or "", env.get(name)
        missing = got is None or (op.startswith(":") and got == "")
        if op in {":?", "?"} and missing:
            raise Unset(f"{name}: {arg}")
        if op in {":-", "-"} and missing:
            return arg
        return got or ""

    return _REFERENCE.sub(value, text)


def interpolated(value: Any, env: Mapping[str, str]) -> Any:
    """A parsed compose file (or part of one) with every string interpolated."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, dict):
        return {key: interpolated(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolated(item, env) for item in value]
    return value


# --- .env files ---------------------------------------------------------------------------

_ENTRY = re.compile(r"^(?P<off># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    active: bool  # False: `# NAME=value`, listed but not set
    comment: str  # the comment line just above it


def dotenv(path: Path) -> list[Entry]:
    """The entries of an .env file; `# NAME=value` lines count, as listed but unset."""
    entries: list[Entry] = []
    previous = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        match = _ENTRY.match(line)
        if match:
            comment = previous if previous.startswith("#") else ""
            entries.append(Entry(match["name"], match["value"], not match["off"], comment))
            previous = ""
        else:
            previous = line
    return entries


def active(entries: list[Entry]) -> dict[str, str]:
    return {entry.name: entry.value for entry in entries if entry.active}


# --- Dockerfile -------------------------------------------------------------------------------


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
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


def words(args: str) -> list[str]:
    """Exec (JSON) form or shell-style words."""
    if args.startswith("["):
        parsed = json.loads(args)
        assert isinstance(parsed, list)
        return [str(a) for a in parsed]
    return shlex.split(args)


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is made of."""
    found = instructions()
    last_from = max(i for i, (kw, _) in enumerate(found) if kw == "FROM")
    return found[last_from:]


def exec_form(args: str) -> list[str]:
    """The command of a HEALTHCHECK (after its --options, `CMD`), or of a CMD."""
    options = re.match(r"^((?:--[a-z-]+=\S+\s+)*)(?:CMD\s+)?(.*)$", args, re.DOTALL)
    assert options is not None
    return words(options[2])


def python_healthcheck(service: str, port: int) -> list[str]:
    """docker-compose.yml's health check of `service` (`CMD python -c ...`) as a command
    to run here, against `port` instead of the one it names: so a test runs the check
    itself against a real process of that service."""
    compose = mapping(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), "compose file")
    check = mapping(compose["services"][service]["healthcheck"], "healthcheck")["test"]
    assert check[:3] == ["CMD", "python", "-c"], check
    code = str(check[3])
    named = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", code)}
    assert len(named) == 1, code
    return [sys.executable, "-c", code.replace(f"127.0.0.1:{named.pop()}", f"127.0.0.1:{port}")]
