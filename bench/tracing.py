#!/usr/bin/env python
"""The CPU a worker spends on tracing one event, when tracing is on: the pipeline's spans
(the batch's and each message's, from a ``traceparent`` header, with the outcome), queued
by the ``BatchSpanProcessor`` and exported by OTLP/HTTP (protobuf) to a receiver in this
process that reads and drops them, as a collector would take them.

    .venv/bin/python bench/tracing.py [--events 50000] [--batch 500] [--rounds 5]

Two cases: every event's producer sampled its trace (``traceparent`` flag 01: every span is
recorded and exported, whatever the ratio), and events without a ``traceparent`` at
``<SERVICE>_OTLP_SAMPLE_RATIO=0.01`` (a span per event is still made, but not recorded).
The span queue is made large enough that nothing is dropped (a worker's default 2,048
drops spans when the exporter falls behind, which would hide the export's cost).

No servers: the messages are JetStream messages as nats-py builds them (subject, headers,
reply subject with the stream metadata), the events real chat envelopes. Measured as the
process's CPU time (every thread: the exporter's included), per event, median of the
rounds; printed next to ingest's CPU per event with no tracing (docs/operations.md, "What
observing costs": 63 µs) as a ratio, and next to the CPU of decoding the same events
against their contract, measured in the same run (a yardstick on a shared machine whose
speed varies). A worker without an endpoint runs none of this.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from nats.aio.msg import Msg  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: E402
    OTLPSpanExporter,
)

from contracts.chat import CHAT_EVENT  # noqa: E402
from services.runtime.pipeline import contract_decoder  # noqa: E402
from services.runtime.tracing import Tracing  # noqa: E402
from services.runtime.tracing_events import EventSpans, Outcome  # noqa: E402
from tests import factories  # noqa: E402

INGEST_CPU_US_PER_EVENT = 63.0  # docs/operations.md, bench/observe.py 2026-12-06


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def messages(count: int, traced: bool) -> list[tuple[Msg, object]]:
    cid = uuid.uuid4()
    out: list[tuple[Msg, object]] = []
    for seq in range(1, count + 1):
        event = factories.message(cid)
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        msg = Msg(
            _client=None,  # type: ignore[arg-type]
            subject=event.type,
            reply=f"$JS.ACK.CHAT.ingest.1.{seq}.{seq}.1765000000000000000.0",
            data=event.model_dump_json().encode(),
            headers={**event.headers(), "traceparent": f"00-{trace_id}-{span_id}-01"}
            if traced
            else event.headers(),
        )
        out.append((msg, event))
    return out


class Item:
    def __init__(self, msg: Msg, event: object) -> None:
        self.msg, self.event = msg, event


def one_round(events: list[tuple[Msg, object]], batch: int, port: int, ratio: float) -> float:
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    tracing = Tracing.exporting("ingest", exporter, sample_ratio=ratio)
    assert tracing.tracer is not None
    spans = EventSpans(tracing.tracer, "CHAT", "ingest")
    items = [Item(msg, event) for msg, event in events]
    started = time.process_time()
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        trace = spans.start(part, [])  # type: ignore[arg-type]
        new = {(e.tenant_id, e.event_id) for e in (item.event for item in part)}  # type: ignore[attr-defined]
        with spans.causes(part):  # type: ignore[arg-type]
            pass
        for item in part:
            spans.acked(item, new)  # type: ignore[arg-type]
        spans.settle(part[0].msg, Outcome.retried)  # no-op: settled already
        spans.end(trace)
    tracing.shutdown()  # the export of the last spans is part of the cost
    return (time.process_time() - started) / len(items) * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(args.events * 2)
    print(f"ingest without tracing: {INGEST_CPU_US_PER_EVENT:.0f} µs CPU per event")
    decode = contract_decoder(CHAT_EVENT)
    sample = messages(args.events, False)
    started = time.process_time()
    for msg, _ in sample:
        decode(msg)
    decoding = (time.process_time() - started) / len(sample) * 1e6
    print(f"decoding the same events (yardstick, this run): {decoding:.1f} µs per event")
    port = server.server_address[1]
    for label, traced, ratio in (
        ("sampled by the producer", True, 1.0),
        ("no traceparent, ratio 0.01", False, 0.01),
    ):
        events = messages(args.events, traced)
        costs = [one_round(events, args.batch, port, ratio) for _ in range(args.rounds)]
        median = statistics.median(costs)
        rounds = ", ".join(f"{c:.1f}" for c in costs)
        total = (INGEST_CPU_US_PER_EVENT + median) / INGEST_CPU_US_PER_EVENT
        print(
            f"{label}: +{median:.1f} µs per event (x{total:.2f} of ingest, "
            f"{median / decoding:.1f}x decoding); rounds {rounds}"
        )
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
