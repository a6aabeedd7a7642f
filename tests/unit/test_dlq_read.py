"""The DLQ read in batches tells a letter's stored time exactly as ``get_msg`` does."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.api import RawStreamMsg

from services.runtime.dlq_read import stream_time


def as_get_msg_reads(iso: str) -> datetime | None:
    """The time nats-py's ``get_msg`` gives for the server's RFC 3339 nanosecond time."""
    time: datetime | None = RawStreamMsg.from_response({"time": iso}).time
    return time


def test_the_ack_subject_time_is_get_msgs_time() -> None:
    nanos = 1_795_913_600_123_456_789  # a float of seconds would round this microsecond
    v1 = f"$JS.ACK.DLQ.scan1.1.42.42.{nanos}.0"
    v2 = f"$JS.ACK.domain.accounthash.DLQ.scan1.1.42.42.{nanos}.0.token"
    expected = as_get_msg_reads("2026-11-29T00:53:20.123456789Z")
    assert expected == datetime(2026, 11, 29, 0, 53, 20, 123456, tzinfo=UTC)
    assert stream_time(v1) == expected
    assert stream_time(v2) == expected


def test_a_subject_without_a_time_gives_none() -> None:
    assert stream_time("_INBOX.abc") is None
    assert stream_time("$JS.ACK.DLQ.scan1.1.42.42.notanumber.0") is None
