#!/usr/bin/env python
"""The CPU a worker spends on tracing one event: the pipeline's spans (the batch's and each
message's, from a ``traceparent`` header, with the outcome), queued by the
``BatchSpanProcessor`` and exported by OTLP/HTTP (protobuf) to a receiver in this process
that reads and drops them, as a collector would take them.

    .venv/bin/python bench/tracing.py [--events 50000] [--batch 500] [--rounds 5]

Each round replays the pipeline's calls into ``EventSpans`` for every batch (``start``,
``traceparent`` per event for the inbox and ``acked`` per event when it asks for them,
``causes``, ``end``); the same loop with tracing off (what the pipeline does without
spans) is measured in the same run and subtracted, so a figure is what tracing adds. The
cases:

- every event's producer sampled its trace (``traceparent`` flag 01): every span recorded
  and exported, whatever the ratio;
- no ``traceparent`` at ``<SERVICE>_OTLP_SAMPLE_RATIO`` 1.0 (the worker samples every
  batch), 0.01 and 0 (nothing sampled: the unsampled path alone). At 0.01 a batch is
  sampled one time in 100 and then costs as much as the first case for each of its
  events, so a round's figure depends on how many of its batches drew it: the median
  shows the unsampled path, the mean tends to it plus 1% of the sampled cost;
- every event's producer did not sample its trace (flag 00), ratio 0.01: a producer that
  samples at its edge and propagates its decision, the common case under load.

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
from services.runtime.tracing import Tracing, causing  # noqa: E402
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


def messages(count: int, flags: str | None) -> list[tuple[Msg, object]]:
    """Chat events as JetStream messages; ``flags``: their ``traceparent``'s (none: no
    header)."""
    cid = uuid.uuid4()
    out: list[tuple[Msg, object]] = []
    for seq in range(1, count + 1):
        event = factories.message(cid)
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        headers = event.headers()
        if flags is not None:
            headers["traceparent"] = f"00-{trace_id}-{span_id}-{flags}"
        msg = Msg(
            _client=None,  # type: ignore[arg-type]
            subject=event.type,
            reply=f"$JS.ACK.CHAT.ingest.1.{seq}.{seq}.1765000000000000000.0",
            data=event.model_dump_json().encode(),
            headers=headers,
        )
        out.append((msg, event))
    return out


class Item:
    def __init__(self, msg: Msg, event: object) -> None:
        self.msg, self.event = msg, event


def untraced_round(items: list[Item], batch: int) -> float:
    """What the pipeline does around the spans' calls with tracing off: the baseline."""
    started = time.process_time()
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        new: set[object] = set()
        with causing({}):
            pass
        for _item in part:
            pass
        new.clear()
    return (time.process_time() - started) / len(items) * 1e6


def one_round(items: list[Item], batch: int, port: int, ratio: float) -> float:
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    tracing = Tracing.exporting("ingest", exporter, sample_ratio=ratio)
    assert tracing.tracer is not None
    spans = EventSpans(tracing.tracer, "CHAT", "ingest")
    parts = [items[i : i + batch] for i in range(0, len(items), batch)]
    # What the inbox answers (every event new), which the pipeline has with or without spans.
    fresh = [{(e.tenant_id, e.event_id) for e in (i.event for i in part)} for part in parts]  # type: ignore[attr-defined]
    started = time.process_time()
    for part, keys in zip(parts, fresh, strict=True):
        trace = spans.start(part, [])  # type: ignore[arg-type]
        if spans.recording:  # the pipeline's inbox claim
            [spans.traceparent(item.msg) for item in part]
        with spans.causes(part):  # type: ignore[arg-type]
            pass
        if spans.recording:  # the pipeline's acks
            new = set(keys)
            for item in part:
                spans.acked(item, new)  # type: ignore[arg-type]
        spans.settle(part[0].msg, Outcome.retried)  # no-op: settled already
        spans.end(trace)
    tracing.shutdown()  # the export of the last spans is part of the cost
    return (time.process_time() - started) / len(items) * 1e6


CASES = (
    ("producers sampled (flag 01)", "01", 1.0),
    ("no traceparent, ratio 1.0", None, 1.0),
    ("no traceparent, ratio 0.01", None, 0.01),
    ("no traceparent, ratio 0", None, 0.0),
    ("producers did not sample (flag 00), ratio 0.01", "00", 0.01),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="run the cases whose label contains this")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(args.events * 2)
    print(f"ingest without tracing: {INGEST_CPU_US_PER_EVENT:.0f} µs CPU per event")
    decode = contract_decoder(CHAT_EVENT)
    sample = messages(args.events, None)
    started = time.process_time()
    for msg, _ in sample:
        decode(msg)
    decoding = (time.process_time() - started) / len(sample) * 1e6
    print(f"decoding the same events (yardstick, this run): {decoding:.1f} µs per event")
    port = server.server_address[1]
    for label, flags, ratio in CASES:
        if args.only and args.only not in label:
            continue
        items = [Item(msg, event) for msg, event in messages(args.events, flags)]
        costs = []
        for _ in range(args.rounds):
            off = untraced_round(items, args.batch)
            costs.append(one_round(items, args.batch, port, ratio) - off)
        median, mean = statistics.median(costs), statistics.mean(costs)
        rounds = ", ".join(f"{c:.2f}" for c in costs)
        total = (INGEST_CPU_US_PER_EVENT + median) / INGEST_CPU_US_PER_EVENT
        print(
            f"{label}: +{median:.2f} µs per event (mean {mean:.2f}; x{total:.3f} of ingest, "
            f"{median / decoding:.2f}x decoding); rounds {rounds}"
        )
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
