"""Reading any message as a record; redaction; the chain hash's canonical form."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.audit import canonical as c
from services.audit.logic import TENANT_MALFORMED, TENANT_UNKNOWN, build_record, tenant_lock_key
from services.audit.record import AuditRecord, chain_hash, record_fields
from services.audit.redaction import RedactionPolicy, parse_path, redact
from services.audit.settings import AuditSettings
from tests import factories as f
from tests.unit.audit_records import read_back

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def record(data: bytes, policy: RedactionPolicy | None = None, **kw: Any) -> AuditRecord:
    args: dict[str, Any] = {
        "stream": "CHAT",
        "stream_seq": 7,
        "subject": "chat.message.created",
        "headers": {"Nats-Msg-Id": "x"},
        "received_at": AT,
    }
    return build_record(data=data, policy=policy or RedactionPolicy(), **(args | kw))


def test_an_envelope_fills_its_columns() -> None:
    event = f.message(uuid4(), content="hi", correlation_id=None)
    r = record(event.model_dump_json().encode())
    assert (r.tenant_id, r.event_type, r.producer) == ("acme", event.type, "tests")
    assert r.source_event_id == str(event.event_id) and r.occurred_at == event.occurred_at
    assert r.payload_text is not None
    assert json.loads(r.payload_text) == event.model_dump(mode="json")["payload"]
    assert r.payload_sha256 == r.payload_digest == hashlib.sha256(r.payload_text.encode()).digest()
    assert r.extra is None and r.raw is None and r.redacted is None
    assert r.event_id == r.record_id and r.type == r.subject  # what the pipeline uses


def test_redelivery_has_the_same_id_other_messages_not() -> None:
    data = f.conversation(uuid4()).model_dump_json().encode()
    assert record(data).record_id == record(data).record_id
    assert record(data).record_id != record(data, stream_seq=8).record_id
    assert record(data).record_id != record(data, stream="DLQ").record_id
    assert record(data).record_id != record(data + b" ").record_id


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[1, 2]", b'"text"', b"", b'{"a": NaN}'])
def test_malformed_bytes_are_kept_raw_and_hashed(data: bytes) -> None:
    r = record(data)
    assert r.tenant_id == TENANT_MALFORMED and r.raw == data
    assert r.payload_sha256 == r.raw_digest == hashlib.sha256(data).digest()
    assert r.extra and "malformed" in r.extra
    hidden = record(data, keep_raw=False)
    assert hidden.raw is None and hidden.payload_sha256 == hashlib.sha256(data).digest()


def test_fields_of_the_wrong_form_stay_in_extra() -> None:
    body = {
        "event_id": "nope",
        "tenant_id": "bad tenant!",
        "occurred_at": "2026-11-01",
        "type": 5,
        "correlation_id": "6B1D3C529A0E5F418C7D2E4F6A8B0C13",
        "new": [1],
    }
    r = record(json.dumps(body).encode())
    assert r.tenant_id == TENANT_UNKNOWN and r.payload_text is None
    assert r.extra == {
        "event_id": "nope",
        "tenant_id": "bad tenant!",
        "occurred_at": "2026-11-01",
        "type": 5,
        "new": [1],
    }
    assert r.correlation_id == "6b1d3c52-9a0e-5f41-8c7d-2e4f6a8b0c13"  # normalized


def test_redaction_paths_and_markers() -> None:
    payload = {"content": "secret", "items": [{"text": "a"}, {"text": None}], "n": 3}
    out, hits = redact(payload, parse_path("payload.items.*.text"))
    assert hits == ["payload.items.0.text"]  # null is left alone
    assert out["items"][0] == {"text": {"redacted_sha256": hashlib.sha256(b"a").hexdigest()}}
    assert payload["items"][0] == {"text": "a"}  # copy on write
    out, hits = redact(payload, parse_path("payload.n"))
    assert out["n"] == {"redacted_sha256": hashlib.sha256(b"3").hexdigest()}
    assert redact(payload, parse_path("payload.missing.deep")) == (payload, [])
    for bad in ("content", "payload..x", "metadata.email"):
        with pytest.raises(ValueError, match="must start with 'payload'"):
            parse_path(bad)


def test_redaction_per_tenant_and_digest_of_the_original() -> None:
    policy = RedactionPolicy.parse(["payload.content"], {"acme": ["payload.metadata.email"]})
    event = f.message(uuid4(), content="secret", metadata={"email": "a@b.c"})
    r = record(event.model_dump_json().encode(), policy)
    assert r.redacted == ("payload.content", "payload.metadata.email")
    assert r.payload_text is not None and "secret" not in r.payload_text
    original = c.canonical(event.model_dump(mode="json")["payload"])
    assert r.payload_sha256 == hashlib.sha256(original).digest() != r.payload_digest
    other = record(
        f.message(uuid4(), tenant="globex", metadata={"email": "a@b.c"}).model_dump_json().encode(),
        policy,
    )
    assert other.redacted == ("payload.content",)


def test_settings_read_redaction_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_REDACT", '["payload.content"]')
    monkeypatch.setenv("AUDIT_REDACT_TENANTS", '{"acme": ["payload.metadata.email"]}')
    policy = AuditSettings().redaction()
    assert policy.paths_for("acme") == (("content",), ("metadata", "email"))
    assert policy.paths_for("globex") == (("content",),)
    monkeypatch.setenv("AUDIT_REDACT", '["content"]')
    with pytest.raises(ValueError, match="must start with 'payload'"):
        AuditSettings()


def test_chain_hash_is_sha256_of_prev_and_the_canonical_record() -> None:
    r = record(f.conversation(uuid4()).model_dump_json().encode())
    prev = hashlib.sha256(b"previous").digest()
    canonical = c.canonical(
        {
            "position": 3,
            "prev_hash": prev.hex(),
            "record": record_fields(r),
            "recorded_at": c.to_micros(AT),
            "v": 1,
        }
    )
    assert (
        chain_hash(r.record_text, 3, c.to_micros(AT), prev)
        == hashlib.sha256(prev + canonical).digest()
    )


@pytest.mark.parametrize(
    "data",
    [
        f.message(uuid4(), content="héllo", metadata={"latency_ms": 1e-7})
        .model_dump_json()
        .encode(),
        b'{"tenant_id": "acme", "payload": null, "x": {"y": 1e16}}',
        b"not json",
    ],
)
def test_what_verify_rebuilds_from_stored_columns_hashes_the_same(data: bytes) -> None:
    r = record(data, RedactionPolicy.parse(["payload.content"], {}))
    back = read_back(r)
    assert back.record_text == r.record_text


def test_lock_keys_are_stable_signed_32_bit() -> None:
    assert tenant_lock_key("acme") == tenant_lock_key("acme") != tenant_lock_key("globex")
    assert all(-(2**31) <= tenant_lock_key(t) < 2**31 for t in ("a", "b", "_malformed"))


def test_the_decoder_never_raises() -> None:
    from services.audit.handlers import record_decoder

    class Broken:
        subject, data, headers, reply = "chat.message.created", b"{}", None, "$JS.ACK.bad"

        @property
        def metadata(self) -> object:
            raise ValueError("not a JetStream message")

    decode = record_decoder(RedactionPolicy(), keep_raw=True)
    r = decode(Broken())  # type: ignore[arg-type]
    assert r.tenant_id == TENANT_MALFORMED and r.stream == "_unreadable" and r.raw == b"{}"
    assert r.extra and "not a JetStream message" in r.extra["malformed"]
