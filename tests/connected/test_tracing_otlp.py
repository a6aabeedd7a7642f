"""`engram run ingest` as a real process, tracing to an OTLP/HTTP receiver in this test
(as an OpenTelemetry Collector would receive it): the span of an event the test published
with a ``traceparent`` arrives in the test's trace, as the child of the test's span, from
``service.name`` ingest; and what the worker still holds is exported when it stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests import factories
from tests.conftest import Env
from tests.connected.cli_run import ENGRAM
from tests.helpers import eventually

pytestmark = pytest.mark.connected

TRACE_ID = "5b8efff798038103d269b633813fc60c"
PARENT_ID = "eee19b7ec3c1b174"


class Receiver:
    """Collects the requests POSTed to ``/v1/traces``."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                receiver.requests.append(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """(resource attributes, span) of every span received."""
        found: list[tuple[dict[str, str], Span]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope.spans]
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def run_ingest(env: Env, receiver: Receiver, log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_"))}
    return subprocess.Popen(
        [ENGRAM, "run", "ingest"],
        env={
            **base,
            "NATS_URL": env.nats_login("ingest"),
            "DATABASE_URL": env.login("ingest"),
            "INGEST_FETCH_WAIT_S": "0.5",
            "INGEST_DRAIN_TIMEOUT_S": "5",
            # The standard variable, as a collector's address is usually given to a pod.
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            # Nothing is sent on the timer: what arrives was flushed when the worker stopped.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def test_engram_run_exports_the_events_span_in_the_producers_trace(
    env: Env, nc: NatsClient, db: asyncpg.Connection, receiver: Receiver, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    proc = run_ingest(env, receiver, log)
    cid = uuid.uuid4()
    conversation, message = factories.conversation(cid), factories.message(cid)
    try:
        js = nc.jetstream()
        await js.publish(
            conversation.type,
            conversation.model_dump_json().encode(),
            headers=conversation.headers(),
        )
        await js.publish(
            message.type,
            message.model_dump_json().encode(),
            headers={**message.headers(), "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) FROM ingest.messages WHERE message_id = $1",
                message.payload.message_id,
            ),
            lambda n: n == 1,
            timeout=60,
            interval=0.2,
        )
        assert receiver.requests == []  # held in the worker's batch until it stops
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, log.read_text(errors="replace")
    assert set(receiver.paths) == {"/v1/traces"}
    received = receiver.spans()
    mine = [(resource, span) for resource, span in received if span.trace_id.hex() == TRACE_ID]
    assert len(mine) == 1, [s.name for _, s in received]
    resource, span = mine[0]
    assert span.name == "process chat.message.created"
    assert span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["engram.event_id"].string_value == str(message.event_id)
    assert attributes["engram.outcome"].string_value == "applied"
    assert resource["service.name"] == "ingest"
    assert resource["service.namespace"] == "engram"
    assert resource["service.instance.id"].endswith(f":{proc.pid}")
    # The conversation arrived without a traceparent: its span started a trace of its own.
    names = sorted(s.name for _, s in received)
    assert names.count("process chat.conversation.created") == 1
