"""The runtime is a platform: it names no service, and every service declares itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from services.catalog import SERVICES
from services.runtime.bus import NoStream, stream_of
from services.runtime.spec import Catalog

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = sorted((ROOT / "services" / "runtime").glob("*.py"))
SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?(\w+)\"?\.", re.IGNORECASE)


def test_the_runtime_imports_no_service() -> None:
    for path in RUNTIME:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("services.") or name.startswith("services.runtime"), (
                    f"{path.name} imports {name}"
                )


def test_the_runtime_names_no_service_or_its_tables() -> None:
    names = {spec.name for spec in SERVICES} | {spec.schema for spec in SERVICES}
    for path in RUNTIME:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names, f"{path.name} names the service {node.value!r}"
                for schema in SQL_TABLE.findall(node.value):
                    assert schema not in names, f"{path.name} reads {schema}'s tables"


def test_every_spec_matches_its_settings_and_assembles() -> None:
    for spec in SERVICES:
        assert spec.settings.service == spec.name
        assert spec.role == f"engram_{spec.name}"
        assert spec.assemble.startswith(f"services.{spec.name}.")
        for command in spec.commands:
            assert command.load() is not None


def test_an_unknown_service_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown service 'nope'; known: ingest, embedder"):
        SERVICES.get("nope")


def test_a_catalog_keeps_its_order() -> None:
    specs = list(SERVICES)
    assert Catalog(specs[::-1]).names == [s.name for s in specs[::-1]]


@pytest.mark.parametrize(
    ("subject", "stream"),
    [
        ("chat.message.created", "CHAT"),
        ("memory.write", "MEMORY"),
        ("state.patch", "STATE"),
        ("engram.state.conflict", "ENGRAM"),
        ("dlq.checkpointer.state.patch", "DLQ"),
    ],
)
def test_the_outbox_publishes_each_subject_to_the_stream_that_stores_it(
    subject: str, stream: str
) -> None:
    assert stream_of(subject).name == stream


@pytest.mark.parametrize("subject", ["chat.message", "memory.write.extra", "dlq", "other.x"])
def test_a_subject_no_stream_stores_is_refused(subject: str) -> None:
    with pytest.raises(NoStream):
        stream_of(subject)
