"""deploy/nats/*.json must say what the workers declare (bus.py), so they cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

from services.catalog import create_worker
from services.runtime.bus import CHAT, STREAMS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"


def test_streams_match_bus() -> None:
    written = {s["name"]: s for s in json.loads((DEPLOY / "streams.json").read_text())}
    assert set(written) == {s.name for s in STREAMS}
    for stream in STREAMS:
        declared = stream.config().as_dict()
        for key in ("subjects", "retention", "storage", "max_age", "duplicate_window", "discard"):
            assert written[stream.name][key] == declared[key], (stream.name, key)


def test_ingest_consumer_matches_defaults() -> None:
    (written,) = json.loads((DEPLOY / "consumers.json").read_text())
    _, worker = create_worker("ingest")
    spec = worker.spec_for(CHAT, CHAT.subjects)
    declared = spec.config().as_dict()
    assert written["stream"] == "CHAT"
    assert "backoff" not in written["config"]  # it would replace the ack wait
    for key in (
        "durable_name",
        "ack_policy",
        "ack_wait",
        "max_deliver",
        "max_ack_pending",
        "filter_subjects",
    ):
        assert written["config"][key] == declared[key], key
