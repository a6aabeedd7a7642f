"""docs/data-dictionary.md is what the migrations make: generated from the catalog of a
freshly migrated database (each test's database is a clone of the session's migrated
template), it must equal the committed file (issue 11, section 8)."""

from __future__ import annotations

import difflib

import pytest

from services.catalog import SERVICES
from services.runtime.datadict import COMMAND, DOC, render
from tests.conftest import Env

pytestmark = pytest.mark.connected


async def test_the_committed_data_dictionary_matches_the_migrations(env: Env) -> None:
    fresh = await render(env.database_url, SERVICES)
    committed = DOC.read_text() if DOC.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), fresh.splitlines(True), "committed", "fresh migrations", n=1
        )
    )
    assert not diff, f"{DOC} is out of date; regenerate it with `{COMMAND}`:\n{diff[:4000]}"
    for table in (
        "ingest.messages",
        "embedder.chunks",
        "memory.memories",
        "checkpoint.agent_states",
        "audit.events",
    ):
        assert f"### `{table}`" in fresh
