"""A client generated from the running service's own OpenAPI document, by a third-party
generator (openapi-python-client, warnings fail), drives the items through every
operation: the document is complete enough for the clients users generate."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.servers import LiveServer, own_database, serving

PACKAGE = "items_client"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def live(server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    admin_url, redis_url = server_urls
    with own_database(admin_url) as database_url, serving(database_url, redis_url) as server:
        yield server


@pytest.fixture(scope="module")
def generated(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("generated")
    spec = root / "openapi.json"
    spec.write_bytes(httpx.get(f"{live.url}/openapi.json", timeout=10).content)
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
            "--fail-on-warning",
        ],  # fmt: skip
        cwd=root,
        # Its post-generation hooks run ruff, which must be found (it is a dev tool here).
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.items.{name}")


@pytest.mark.slow
def test_the_generated_client_creates_reads_updates_lists_and_deletes(
    live: LiveServer, generated: ModuleType
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    with generated.Client(base_url=live.url) as client:
        created = _api("create_item").sync_detailed(
            client=client,
            body=models.ItemCreate(name="Generated lamp", price="24.90", tags=["office"]),
        )
        assert created.status_code == 201
        item = created.parsed
        assert isinstance(item, models.ItemOut)
        assert (item.name, item.price, item.tags, item.version) == (
            "Generated lamp", "24.90", ["office"], 1,
        )  # fmt: skip

        got = _api("get_item").sync(item.id, client=client)
        assert isinstance(got, models.ItemOut)
        assert got.to_dict() == item.to_dict()

        updated = _api("update_item").sync_detailed(
            item.id, client=client, body=models.ItemPatch(price="19.90"), if_match='"1"'
        )
        assert updated.status_code == 200
        assert isinstance(updated.parsed, models.ItemOut)
        assert (updated.parsed.price, updated.parsed.version) == ("19.90", 2)
        stale = _api("update_item").sync_detailed(
            item.id, client=client, body=models.ItemPatch(price="1.00"), if_match='"1"'
        )
        assert stale.status_code == 412
        assert isinstance(stale.parsed, models.Problem)  # the one named error model
        assert stale.parsed.status == 412

        page = _api("list_items").sync(client=client, tag="office", limit=10)
        assert isinstance(page, models.ItemPageOut)
        assert [i.id for i in page.items] == [item.id]
        assert page.total == 1

        invalid = _api("create_item").sync_detailed(
            client=client, body=models.ItemCreate(name="x", price="-1")
        )
        assert invalid.status_code == 422
        assert isinstance(invalid.parsed, models.Problem)
        errors = invalid.parsed.errors
        assert [e.field for e in errors] == ["price"]

        gone = _api("delete_item").sync_detailed(item.id, client=client)
        assert gone.status_code == 204
        missing = _api("get_item").sync_detailed(item.id, client=client)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Problem)
