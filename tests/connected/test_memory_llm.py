"""Consolidation with an optional summarizer model: an OpenAI-compatible endpoint, when
configured, writes the summaries of clusters; when it fails, the extractive summary is
kept."""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests.connected.embedder_fixtures import Running
from tests.connected.fake_llm import FakeCompletions, serving
from tests.connected.memory_fixtures import consolidate, job_done, with_vectors
from tests.connected.test_memory_consolidation import VEGGIE, RunMemory, planted
from tests.helpers import publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]


class Summarizer(FakeCompletions):
    """Answers a fixed summary, or fails when asked to."""

    requests: ClassVar[list[dict[str, Any]]] = []
    fail = False

    def answer(self, body: dict[str, Any]) -> str | None:
        Summarizer.requests.append({"path": self.path, "body": body})
        return None if Summarizer.fail else "The user wants vegetarian food in Lisbon."


@pytest.mark.parametrize("fail", [False, True], ids=["llm", "llm-down-falls-back"])
async def test_an_llm_endpoint_when_configured_summarizes_clusters(
    embedder: Running,
    run_memory: RunMemory,
    nc: NatsClient,
    db: asyncpg.Connection,
    fail: bool,
) -> None:
    Summarizer.requests, Summarizer.fail = [], fail
    with serving(Summarizer) as url:
        async with run_memory(llm_url=url, llm_model="tiny"):
            events = planted()
            await publish(nc, *events)
            await with_vectors(db, len(events))
            job = consolidate(steps=["summarize"])
            await publish(nc, job)
            await job_done(db, job.payload.job_id)
    text = await db.fetchval("SELECT text FROM memory.memories WHERE origin = 'summarize'")
    (request,) = Summarizer.requests
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "tiny"
    assert all(v in request["body"]["messages"][1]["content"] for v in VEGGIE)
    if fail:
        assert text.startswith(VEGGIE[0])  # the extractive summary
    else:
        assert text == "The user wants vegetarian food in Lisbon."
