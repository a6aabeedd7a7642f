"""W3C trace context in NATS headers, read without OpenTelemetry.

A worker that traces with a parent-based sampler (``tracing.Tracing.exporting``) records
no span of a message whose producer did not sample its trace: the ``traceparent``'s flags
say so. Reading that flag here, with one regular expression, lets the pipeline, the
router and the outbox skip the span altogether (the SDK's ``extract`` and an unrecorded
span cost ~30x more) and pass the producer's own trace context on instead, so the next
hop follows the same decision. The dead-letter code reads the headers here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

TRACE_HEADERS = ("traceparent", "tracestate")

# The same rules as opentelemetry's TraceContextTextMapPropagator.extract, so that what is
# valid here is a parent there (tests/unit/test_trace_context.py compares the two).
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_CANONICAL = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MAX_LENGTH = 512
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_SAMPLED = frozenset("13579bdf")  # the flags' low hex digit with bit 0 (sampled) set


class Traceparent(NamedTuple):
    """A valid ``traceparent``'s ids and flags."""

    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def _fields(headers: Mapping[str, str] | None) -> tuple[str, str, str] | None:
    """The trace id, span id and flags (hex) of a valid ``traceparent``, else None."""
    if not headers:
        return None
    value = headers.get("traceparent")
    if not value or len(value) > _MAX_LENGTH:
        return None
    match = _TRACEPARENT.search(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or version == "ff":
        return None
    if version == "00" and rest:
        return None
    return trace_id, span_id, flags


def traceparent(headers: Mapping[str, str] | None) -> Traceparent | None:
    """The headers' ``traceparent``, or None without a valid one (a span of the message
    is then a root, or its batch's child)."""
    fields = _fields(headers)
    if fields is None:
        return None
    trace_id, span_id, flags = fields
    return Traceparent(int(trace_id, 16), int(span_id, 16), int(flags, 16))


def sampled(headers: Mapping[str, str] | None) -> bool | None:
    """The sampled flag of the headers' ``traceparent``; None without a valid one. Read
    for every message that has one while the worker traces, so the usual form (version
    00, 55 characters) is checked first, without the groups."""
    if not headers:
        return None
    value = headers.get("traceparent")
    if (
        value is not None
        and len(value) == 55
        and _CANONICAL.fullmatch(value) is not None
        and value[3:35] != _ZERO_TRACE
        and value[36:52] != _ZERO_SPAN
    ):
        return value[54] in _SAMPLED
    fields = _fields(headers)
    return None if fields is None else fields[2][1] in _SAMPLED


def declined(value: str) -> bool:
    """Whether a ``traceparent`` value is, if valid at all, not sampled, told from the low
    digit of the flags of its usual form alone. For a message of a batch not sampled: its
    span would not be recorded whether the value is valid (not sampled) or not (then the
    batch's child), so none is made without validating it; what passes it on validates
    it (``unsampled``)."""
    return len(value) == 55 and value[54] not in _SAMPLED


def unsampled(headers: Mapping[str, str] | None) -> bool:
    """Whether the message's producer chose not to sample its trace: under a parent-based
    sampler no span of it would be recorded, so none is made."""
    return sampled(headers) is False


def trace_of(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The W3C trace context among ``headers`` (none when they hold none)."""
    if not headers:
        return {}
    return {name: headers[name] for name in TRACE_HEADERS if headers.get(name)}
