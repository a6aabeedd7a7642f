"""The AsyncAPI documents say what a producer must send: the Nats-Msg-Id header (= the
envelope's event_id) on every event, and the correlation id where it is, in the body
(issue 11, section 8)."""

from __future__ import annotations

import pytest

from services.catalog import create_worker
from services.runtime.docs import asyncapi_document


@pytest.mark.parametrize("service", ["ingest", "embedder", "memory", "checkpointer"])
def test_events_require_nats_msg_id_and_correlate_by_the_body_field(service: str) -> None:
    app, _ = create_worker(service)
    messages = asyncapi_document(app)["components"]["messages"]
    events = {
        name: m
        for name, m in messages.items()
        if ":SubscribeMessage" in name and not name.startswith("query.")
    }
    assert events
    for name, message in events.items():
        headers = message.get("headers")
        assert headers is not None, name
        assert headers["required"] == ["Nats-Msg-Id"], name
        assert "event_id" in headers["properties"]["Nats-Msg-Id"]["description"]
        assert message["correlationId"]["location"] == "$message.payload#/correlation_id"
    for name, message in messages.items():  # no message claims a correlation_id header
        location = message.get("correlationId", {}).get("location", "")
        assert not location.startswith("$message.header"), name
