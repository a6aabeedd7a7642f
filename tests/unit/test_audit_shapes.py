"""Every message is one record whatever its shape (issue 13): deep nesting, bytes that are
not UTF-8, JSON that is not an envelope. The record id comes from the stream position and
the bytes only, and what is stored hashes the same when verify or an export reads it back.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
import pytest
from nats.aio.msg import Msg

from services.audit import canonical as c
from services.audit import handlers
from services.audit.chain import StoredRow
from services.audit.export import row_from_json, row_json, write_line
from services.audit.logic import MAX_BODY_DEPTH, TENANT_MALFORMED, TENANT_UNKNOWN, build_record
from services.audit.record import AuditRecord, record_id
from services.audit.redaction import RedactionPolicy
from tests.unit.audit_records import read_back

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
EVENT_ID = str(uuid4())
MAX_PAYLOAD = 1024 * 1024  # NATS's default max_payload


def nest(levels: int, inner: bytes = b"") -> bytes:
    return b"[" * levels + inner + b"]" * levels


def envelope(payload: bytes, tenant: str = "acme") -> bytes:
    """An envelope around raw payload bytes: the body is one level deeper than them."""
    head = {"event_id": EVENT_ID, "type": "state.patch", "tenant_id": tenant, "producer": "p"}
    return json.dumps(head).encode()[:-1] + b', "payload": ' + payload + b"}"


def record(data: bytes, **kw: Any) -> AuditRecord:
    args: dict[str, Any] = {
        "stream": "STATE",
        "stream_seq": 41,
        "subject": "state.patch",
        "headers": {"Nats-Msg-Id": "x"},
        "received_at": AT,
        "policy": RedactionPolicy(),
    }
    return build_record(data=data, **(args | kw))


def exported(r: AuditRecord) -> AuditRecord:
    """The record written to an export line and read from it, as `verify --file` does."""
    out = io.StringIO()
    write_line(out, row_json(StoredRow(r, 1, AT, c.ZERO_HASH, c.ZERO_HASH)))
    return row_from_json(c.loads(out.getvalue())).record


def assert_verifiable(r: AuditRecord) -> None:
    assert read_back(r).record_text == r.record_text
    assert exported(r).record_text == r.record_text


# The body's depth: an envelope is one level deeper than its payload.
@pytest.mark.parametrize("body_depth", [2, 252, 253, 254, 255, 256, 300, 1023, 1024, 1025, 5000])
def test_envelopes_of_every_depth_are_one_verifiable_record(body_depth: int) -> None:
    data = envelope(nest(body_depth - 1))
    r = record(data)
    assert (r.stream, r.stream_seq, r.record_id) == ("STATE", 41, record_id("STATE", 41, data))
    assert record(data).record_text == r.record_text  # a redelivery: the very same record
    if body_depth <= MAX_BODY_DEPTH:
        assert r.raw is None and r.extra is None
        assert r.payload_text == nest(body_depth - 1).decode()
    else:
        assert r.raw == data and r.payload_text is None
        assert r.extra and "TooDeep" in r.extra["malformed"]
        assert r.payload_sha256 == r.raw_digest == c.sha256(data)
    if body_depth <= 1024:  # what orjson reads: the envelope's text fields are kept
        assert (r.tenant_id, r.source_event_id, r.event_type) == ("acme", EVENT_ID, "state.patch")
    else:
        assert r.tenant_id == TENANT_MALFORMED and r.source_event_id is None
    assert_verifiable(r)


@pytest.mark.parametrize("depth", [1, 253, 254, 255, 300, 1023, 1024, 1025])
def test_bare_arrays_of_every_depth_are_kept_raw(depth: int) -> None:
    data = nest(depth, b"1")
    r = record(data)
    assert r.tenant_id == TENANT_MALFORMED and r.raw == data and r.stream_seq == 41
    assert r.extra and "malformed" in r.extra
    assert_verifiable(r)


def test_a_deep_member_outside_the_payload_stays_within_what_export_writes() -> None:
    # extra holds the body's unknown members; in a record's fields and in an export row it
    # is one level deeper than in the body: at MAX_BODY_DEPTH that is still writable.
    deep = {"tenant_id": "acme", "future": json.loads(nest(MAX_BODY_DEPTH - 1))}
    r = record(json.dumps(deep).encode())
    assert r.tenant_id == "acme" and r.raw is None and r.extra is not None
    assert c.depth(r.extra) == MAX_BODY_DEPTH
    assert_verifiable(r)
    too_deep = {"tenant_id": "acme", "future": json.loads(nest(MAX_BODY_DEPTH))}
    r = record(json.dumps(too_deep).encode())
    assert r.tenant_id == "acme" and r.raw is not None
    assert_verifiable(r)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * MAX_PAYLOAD,  # unterminated, as deep as a message can be
        nest(MAX_PAYLOAD // 2),
        b'{"payload":' * (MAX_PAYLOAD // 11),
        envelope(nest(MAX_PAYLOAD // 2 - 100)),
    ],
    ids=["open", "closed", "objects", "envelope"],
)
def test_as_deep_as_the_max_payload(data: bytes) -> None:
    r = record(data)
    assert r.raw == data and r.tenant_id == TENANT_MALFORMED
    assert r.record_id == record_id("STATE", 41, data)
    assert_verifiable(r)


@pytest.mark.parametrize(
    ("data", "tenant"),
    [
        (b"\xff\xfe\x00binary", TENANT_MALFORMED),
        (b'{"tenant_id": "acme", "payload": "caf\xe9"}', TENANT_MALFORMED),  # Latin-1
        (b"[1, 2]", TENANT_MALFORMED),
        (b'"text"', TENANT_MALFORMED),
        (b"42", TENANT_MALFORMED),
        (b"null", TENANT_MALFORMED),
        (b"", TENANT_MALFORMED),
        (b'{"hello": "world"}', TENANT_UNKNOWN),  # an object, not an envelope
        (b'{"tenant_id": "acme", "payload": 1, "tenant_id": 5}', TENANT_UNKNOWN),
        (b'{"tenant_id": "acme", "payload": {"big": 123456789012345678901234567890}}', "acme"),
    ],
)
def test_any_other_shape_is_one_verifiable_record(data: bytes, tenant: str) -> None:
    r = record(data)
    assert r.tenant_id == tenant and (r.stream, r.stream_seq) == ("STATE", 41)
    assert r.record_id == record_id("STATE", 41, data)
    assert (r.raw == data) is (tenant == TENANT_MALFORMED)
    assert_verifiable(r)


def test_deep_envelope_keeps_no_unstorable_text() -> None:
    # jsonb and text columns cannot hold NUL: such a field is dropped, the rest kept.
    data = envelope(nest(400)).replace(b'"producer": "p"', b'"producer": "a\\u0000b"')
    r = record(data)
    assert r.tenant_id == "acme" and r.producer is None and r.raw == data
    assert_verifiable(r)


def test_deep_envelope_of_a_redacted_tenant_keeps_only_the_digest() -> None:
    data = envelope(b'[{"content": "secret"}' + b"," + nest(300) + b"]")
    policy = RedactionPolicy.parse([], {"acme": ["payload.*.content"]})
    r = record(data, policy=policy)
    assert r.tenant_id == "acme" and r.raw is None and r.payload_sha256 == c.sha256(data)
    assert r.extra and "cannot be redacted" in r.extra["malformed"]
    assert b"secret" not in r.record_text.encode()
    assert record(data, policy=RedactionPolicy.parse([], {"globex": ["payload.x"]})).raw == data
    assert_verifiable(r)


def test_loads_refuses_what_it_could_not_write() -> None:
    assert c.depth(c.loads(nest(c.MAX_DEPTH))) == c.MAX_DEPTH
    assert orjson.dumps(c.loads(nest(c.MAX_DEPTH)))  # the fast path can write it
    for levels in (c.MAX_DEPTH + 1, 300, 1024, 1025, 100_000):
        with pytest.raises(c.TooDeep):
            c.loads(nest(levels))
    with pytest.raises(c.TooDeep):
        c.loads(nest(10), max_depth=9)
    assert c.loads(nest(9), max_depth=9) == json.loads(nest(9))
    # The exact parser (an integer beyond 64 bits) applies the same limit.
    big = b"123456789012345678901234567890"
    assert c.depth(c.loads(nest(c.MAX_DEPTH, big))) == c.MAX_DEPTH
    with pytest.raises(c.TooDeep):
        c.loads(nest(c.MAX_DEPTH + 1, big))
    shapes: list[Any] = [1, [], {}, [[1], {"a": [{}]}]]
    assert [c.depth(v) for v in shapes] == [0, 1, 1, 4]


def js_msg(data: bytes, delivered: int, seq: int = 42) -> Msg:
    """A JetStream delivery as nats-py builds it: its reply subject carries the metadata."""
    reply = f"$JS.ACK.STATE.audit.{delivered}.{seq}.{seq + delivered}.1764000000123456789.0"
    return Msg(None, subject="state.patch", reply=reply, data=data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [envelope(nest(300)), nest(1023), b"\xff", b'{"tenant_id": "acme", "payload": 1}']
)
def test_the_decoder_keys_a_redelivery_to_the_same_record(data: bytes) -> None:
    decode = handlers.record_decoder(RedactionPolicy(), keep_raw=True)
    first, again = decode(js_msg(data, 1)), decode(js_msg(data, 5))
    assert (first.stream, first.stream_seq) == ("STATE", 42)
    assert first.record_id == again.record_id == record_id("STATE", 42, data)
    assert first.record_text == again.record_text
    assert decode(js_msg(data, 1, seq=43)).record_id != first.record_id


def test_a_bug_in_reading_still_keys_on_the_stream_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(**_: Any) -> AuditRecord:
        raise RuntimeError("a bug")

    monkeypatch.setattr(handlers, "build_record", broken)
    decode = handlers.record_decoder(RedactionPolicy(), keep_raw=True)
    first, again = decode(js_msg(b"{}", 1)), decode(js_msg(b"{}", 2))
    assert (first.stream, first.stream_seq, first.raw) == ("STATE", 42, b"{}")
    assert first.record_id == again.record_id == record_id("STATE", 42, b"{}")
    assert first.received_at == again.received_at  # the stream's time, not the clock
    assert first.extra and "a bug" in first.extra["malformed"]
