"""Consolidation with an optional summarizer model: an OpenAI-compatible endpoint, when
configured, writes the summaries of clusters; when it fails, the extractive summary is
kept."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests.connected.embedder_fixtures import Running
from tests.connected.memory_fixtures import consolidate, job_done, with_vectors
from tests.connected.test_memory_consolidation import VEGGIE, RunMemory, planted
from tests.helpers import publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]


class FakeCompletions(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint standing in for a model server (not engram's bus or
    database): answers a fixed summary, or fails when asked to."""

    requests: ClassVar[list[dict[str, Any]]] = []
    fail = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeCompletions.requests.append({"path": self.path, "body": body})
        if FakeCompletions.fail:
            self.send_response(500)
            self.end_headers()
            return
        reply = {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": "The user wants vegetarian food in Lisbon.",
                    }
                }
            ]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.mark.parametrize("fail", [False, True], ids=["llm", "llm-down-falls-back"])
async def test_an_llm_endpoint_when_configured_summarizes_clusters(
    embedder: Running,
    run_memory: RunMemory,
    nc: NatsClient,
    db: asyncpg.Connection,
    fail: bool,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    FakeCompletions.requests, FakeCompletions.fail = [], fail
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        async with run_memory(llm_url=url, llm_model="tiny"):
            events = planted()
            await publish(nc, *events)
            await with_vectors(db, len(events))
            job = consolidate(steps=["summarize"])
            await publish(nc, job)
            await job_done(db, job.payload.job_id)
    finally:
        server.shutdown()
    text = await db.fetchval("SELECT text FROM memory.memories WHERE origin = 'summarize'")
    (request,) = FakeCompletions.requests
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "tiny"
    assert all(v in request["body"]["messages"][1]["content"] for v in VEGGIE)
    if fail:
        assert text.startswith(VEGGIE[0])  # the extractive summary
    else:
        assert text == "The user wants vegetarian food in Lisbon."
