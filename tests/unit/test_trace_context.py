"""``trace_context`` reads a ``traceparent`` as OpenTelemetry's propagator does: what it
finds valid is a parent there, with the same ids and the same sampled flag."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from services.runtime.trace_context import declined, sampled, trace_of, traceparent, unsampled
from services.runtime.tracing import parent_of

TRACE, SPAN = "a" * 32, "1" * 16
HEADERS = [
    None,
    {},
    {"Nats-Msg-Id": "x"},
    {"traceparent": ""},
    {"traceparent": "garbage"},
    {"traceparent": f"00-{'0' * 32}-{SPAN}-01"},  # zero trace id
    {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # zero span id
    {"traceparent": f"00-{TRACE}-{SPAN}-01"},
    {"traceparent": f"00-{TRACE}-{SPAN}-00"},
    {"traceparent": f"00-{TRACE}-{SPAN}-03"},  # sampled and random
    {"traceparent": f"00-{TRACE}-{SPAN}-02"},  # random only
    {"traceparent": f"00-{TRACE}-{SPAN}-0f"},
    {"traceparent": f"00-{TRACE}-{SPAN}-ff"},
    {"traceparent": f"00-{'A' * 32}-{SPAN}-01"},  # upper case is not hex here
    {"traceparent": f"00-{TRACE}-{SPAN}-01-more"},  # version 00 has nothing more
    {"traceparent": f"01-{TRACE}-{SPAN}-01-more"},  # a later version may
    {"traceparent": f"01-{TRACE}-{SPAN}-00"},
    {"traceparent": f"ff-{TRACE}-{SPAN}-01"},  # version ff is invalid
    {"traceparent": f" 00-{TRACE}-{SPAN}-01 "},
    {"traceparent": f"00-{TRACE}-{SPAN}-0"},
    {"traceparent": f"00-{TRACE}-{SPAN}-01\n"},
    {"traceparent": f"00-{TRACE}-{SPAN}-01" + " " * 600},  # past the length limit
]


@pytest.mark.parametrize("headers", HEADERS)
def test_as_the_propagator_reads_it(headers: dict[str, str] | None) -> None:
    context = parent_of(headers)
    parsed = traceparent(headers)
    if context is None:
        assert parsed is None and sampled(headers) is None and not unsampled(headers)
        return
    expected = trace.get_current_span(context).get_span_context()
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.flags) == (
        expected.trace_id,
        expected.span_id,
        expected.trace_flags,
    )
    assert sampled(headers) is expected.trace_flags.sampled
    assert unsampled(headers) is not expected.trace_flags.sampled


def test_trace_of_copies_only_the_trace_context() -> None:
    assert trace_of(None) == {}
    headers = {"traceparent": "tp", "tracestate": "ts", "Nats-Msg-Id": "x", "other": "y"}
    assert trace_of(headers) == {"traceparent": "tp", "tracestate": "ts"}
    assert trace_of({"traceparent": "tp", "tracestate": ""}) == {"traceparent": "tp"}


@pytest.mark.parametrize("headers", [h for h in HEADERS if h and h.get("traceparent")])
def test_declined_never_contradicts_the_propagator(headers: dict[str, str]) -> None:
    # Declined: not sampled if valid at all (a span of it in a batch not sampled is not
    # recorded either way).
    if declined(headers["traceparent"]):
        assert sampled(headers) is not True
