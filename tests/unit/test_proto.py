"""The checked-in gRPC code is what `make proto` makes of proto/items/v1/items.proto now:
never edited by hand, never behind the proto."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "app" / "grpc" / "generated"


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_generated_code_is_make_protos_output(tmp_path: Path) -> None:
    generate = runpy.run_path(str(ROOT / "proto" / "generate.py"))["generate"]
    generate(tmp_path)
    assert _files(tmp_path) == _files(GENERATED), "run `make proto`"


def test_the_proto_imports_nothing_but_googles_well_known_types() -> None:
    proto = (ROOT / "proto" / "items" / "v1" / "items.proto").read_text()
    imports = [line.split('"')[1] for line in proto.splitlines() if line.startswith("import ")]
    assert imports
    assert all(name.startswith("google/protobuf/") for name in imports)
    assert "package items.v1;" in proto
    assert "service ItemsService {" in proto
