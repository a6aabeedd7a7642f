"""Where a worker sends its traces, and that one configured with no endpoint traces
nothing (and does not even load the SDK)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.chat import MessageCreated
from services.ingest.settings import IngestSettings
from services.runtime.settings import traces_url
from services.runtime.tracing import Tracing, cause_headers, parent_of
from services.runtime.tracing_events import EventSpans
from tests import factories

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "INGEST_OTLP_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_off_without_an_endpoint() -> None:
    settings = IngestSettings()
    assert settings.traces_endpoint is None
    assert not Tracing.for_worker("ingest", settings).enabled


@pytest.mark.parametrize(
    ("variables", "endpoint"),
    [
        ({"INGEST_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"INGEST_OTLP_ENDPOINT": "http://c:4318/v1/traces"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces"),
        # The signal's own variable is a full URL, taken as it is.
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:4318/t"}, "http://otel:4318/t"),
        (
            {
                "INGEST_OTLP_ENDPOINT": "http://mine:4318",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://shared:4318",
            },
            "http://mine:4318/v1/traces",
        ),
        (
            {"INGEST_OTLP_ENDPOINT": "http://mine:4318", "OTEL_SDK_DISABLED": "true"},
            None,
        ),
    ],
)
def test_the_endpoint_from_the_services_setting_or_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], endpoint: str | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert IngestSettings().traces_endpoint == endpoint


def test_traces_url() -> None:
    assert traces_url("http://a:4318") == "http://a:4318/v1/traces"
    assert traces_url("https://a/otlp/") == "https://a/otlp/v1/traces"


def test_a_configured_worker_traces_as_its_service() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting("memory", exporter, batch=False)
    assert tracing.tracer is not None
    tracing.tracer.start_span("x").end()
    tracing.shutdown()
    [span] = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "memory"
    assert span.resource.attributes["service.namespace"] == "engram"
    assert str(span.resource.attributes["service.instance.id"]).endswith(f":{os.getpid()}")


def test_only_a_valid_traceparent_is_a_parent() -> None:
    assert parent_of(None) is None
    assert parent_of({"Nats-Msg-Id": "x"}) is None
    assert parent_of({"traceparent": "garbage"}) is None
    assert parent_of({"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"}) is None  # zero trace id
    assert parent_of({"traceparent": f"00-{'a' * 32}-{'1' * 16}-01"}) is not None


def test_outside_a_traced_batch_an_event_has_no_cause_to_name() -> None:
    assert cause_headers("acme", uuid.uuid4()) == {}
    assert cause_headers("acme", None) == {}


def test_a_worker_that_does_not_trace_never_loads_the_sdk() -> None:
    program = (
        "import sys\n"
        "from services.catalog import SERVICES\n"
        "from services.runtime.service import create_worker\n"
        "app, worker = create_worker(SERVICES.get('ingest'))\n"
        "assert not worker.tracing.enabled\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    # The environment as cleaned above (no endpoint), from this checkout.
    ran = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


class Consumed:
    def __init__(self, msg: Msg, event: MessageCreated) -> None:
        self.msg, self.event = msg, event


def consumed(traceparent: str | None) -> Consumed:
    event = factories.message(uuid.uuid4())
    headers = event.headers() | ({"traceparent": traceparent} if traceparent else {})
    msg = Msg(
        _client=None,  # type: ignore[arg-type]
        subject=event.type,
        reply="$JS.ACK.CHAT.probe.2.7.7.1765000000000000000.0",
        headers=headers,
    )
    return Consumed(msg, event)


def test_a_batch_not_sampled_makes_spans_only_for_the_traces_of_its_producers() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting("probe", exporter, batch=False, sample_ratio=0.0)
    assert tracing.tracer is not None
    spans = EventSpans(tracing.tracer, "CHAT", "probe")
    sampled, unsampled = f"00-{'a' * 32}-{'1' * 16}-01", f"00-{'b' * 32}-{'2' * 16}-00"
    items = [consumed(None), consumed(sampled), consumed(unsampled)]
    batch = spans.start(items, [])
    new = {(i.event.tenant_id, i.event.event_id) for i in items}
    for item in items:
        spans.acked(item, new)
    spans.end(batch)
    # The producer's decision wins: only its sampled trace is recorded.
    [span] = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == "a" * 32
    assert span.attributes is not None
    assert span.attributes["engram.outcome"] == "applied"
    assert span.attributes["engram.stream_sequence"] == 7
    assert span.attributes["engram.deliveries"] == 2
