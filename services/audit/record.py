"""An audit record, its canonical form, and the chain hash over it.

    hash = SHA-256(prev_hash || canonical record)

The canonical record is the canonical JSON (canonical.py) of

    {"position": N, "prev_hash": "<hex>", "record": {<record_fields>},
     "recorded_at": <microseconds since the epoch>, "v": 1}

where ``record_fields`` holds every stored column of the row, with the payload and raw
bytes by their SHA-256. The writer and verify build it with the same functions: the
writer from the message, verify from what is stored (stored_record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from services.audit import canonical as c

HASH_VERSION = 1
AUDIT_STREAM = "_audit"  # the chain's own records (not from the bus)
RETAINED = "audit.retained"


@dataclass(slots=True)
class AuditRecord:
    """One bus message as it will be stored (everything but its place in the chain)."""

    record_id: UUID  # first 16 bytes of SHA-256(stream, sequence, bytes): the inbox key
    tenant_id: str
    stream: str
    stream_seq: int
    subject: str
    received_at: datetime  # when JetStream stored it (the same on every redelivery)
    source_event_id: str | None  # the envelope's event_id (column event_id), canonical text
    event_type: str | None
    producer: str | None
    schema_version: str | None
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime | None
    headers: dict[str, str] | None
    payload_text: str | None  # canonical JSON of the stored (redacted) payload
    extra: dict[str, Any] | None  # envelope fields that are unknown or not of their type
    raw: bytes | None  # the bytes of a body that is not a JSON object
    redacted: tuple[str, ...] | None  # paths replaced by their digest
    payload_sha256: bytes | None  # of the payload as received (or of the raw bytes)
    payload_digest: bytes | None  # of payload_text: what the chain hash covers
    raw_digest: bytes | None
    record_text: str = ""  # canonical JSON of record_fields(): set by seal()

    @property
    def event_id(self) -> UUID:
        """The pipeline's inbox key: one bus message, whatever its envelope says."""
        return self.record_id

    @property
    def type(self) -> str:
        return self.subject

    def seal(self) -> AuditRecord:
        self.record_text = c.dumps(record_fields(self))
        return self


def record_id(stream: str, stream_seq: int, data: bytes) -> UUID:
    # A redelivery has the same stream, sequence and bytes: the same id, recorded once. The
    # bytes keep a recreated stream (sequences restarting) from looking like a redelivery.
    digest = hashlib.sha256(f"{stream}:{stream_seq}:".encode())
    digest.update(data)
    return UUID(bytes=digest.digest()[:16])


def record_fields(r: AuditRecord) -> dict[str, Any]:
    """Every stored field of a record, in JSON: the payload and raw bytes by their SHA-256,
    times as microseconds since the Unix epoch (exact, like PostgreSQL's timestamptz)."""
    return {
        "tenant_id": r.tenant_id,
        "record_id": str(r.record_id),
        "event_id": r.source_event_id,
        "stream": r.stream,
        "stream_seq": r.stream_seq,
        "subject": r.subject,
        "type": r.event_type,
        "producer": r.producer,
        "schema_version": r.schema_version,
        "correlation_id": r.correlation_id,
        "causation_id": r.causation_id,
        "occurred_at": c.micros(r.occurred_at),
        "received_at": c.micros(r.received_at),
        "headers": r.headers,
        "payload": c.hex_or_none(r.payload_digest),
        "extra": r.extra,
        "raw": c.hex_or_none(r.raw_digest),
        "redacted": list(r.redacted) if r.redacted else None,
        "payload_sha256": c.hex_or_none(r.payload_sha256),
    }


def chain_hash(record_text: str, position: int, recorded_at_us: int, prev_hash: bytes) -> bytes:
    """hash = SHA-256(prev_hash || canonical record), where the canonical record is

        {"position":N,"prev_hash":"<hex>","record":{...record_fields...},
         "recorded_at":<us>,"v":1}

    i.e. exactly ``canonical.canonical()`` of that object (its keys are in sorted order),
    assembled from the record's precomputed text so the append itself stays cheap."""
    text = (
        f'{{"position":{position},"prev_hash":"{prev_hash.hex()}","record":{record_text},'
        f'"recorded_at":{recorded_at_us},"v":{HASH_VERSION}}}'
    )
    return c.sha256(prev_hash + text.encode("utf-8"))


def stored_record(
    *,
    tenant_id: str,
    record_id: UUID,
    event_id: str | None,
    stream: str,
    stream_seq: int,
    subject: str,
    type: str | None,
    producer: str | None,
    schema_version: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    occurred_at: datetime | None,
    received_at: datetime,
    headers: dict[str, str] | None,
    payload: Any,
    has_payload: bool,
    extra: dict[str, Any] | None,
    raw: bytes | None,
    redacted: Sequence[str] | None,
    payload_sha256: bytes | None,
) -> AuditRecord:
    """A record as read back (from the database or an export), digests recomputed from
    what is stored: what verify hashes and compares with the stored hash."""
    payload_json = c.canonical(payload) if has_payload else None
    return AuditRecord(
        record_id,
        tenant_id,
        stream,
        stream_seq,
        subject,
        received_at,
        event_id,
        type,
        producer,
        schema_version,
        correlation_id,
        causation_id,
        occurred_at,
        headers,
        payload_text=None if payload_json is None else payload_json.decode("utf-8"),
        extra=extra,
        raw=raw,
        redacted=tuple(redacted) if redacted else None,
        payload_sha256=payload_sha256,
        payload_digest=None if payload_json is None else c.sha256(payload_json),
        raw_digest=None if raw is None else c.sha256(raw),
    ).seal()


def retention_record(tenant: str, summary: dict[str, Any], at: datetime) -> AuditRecord:
    """The record `engram audit retain` appends to a chain before dropping a month of it:
    where the dropped range ended (last position and hash), so verify can start there."""
    text = c.dumps(summary)
    digest = c.sha256_text(text)
    rid = record_id(AUDIT_STREAM, 0, f"{tenant}:{text}".encode())
    return AuditRecord(
        rid,
        tenant,
        AUDIT_STREAM,
        0,
        RETAINED,
        at,
        None,
        RETAINED,
        "engram audit retain",
        None,
        None,
        None,
        at,
        None,
        payload_text=text,
        extra=None,
        raw=None,
        redacted=None,
        payload_sha256=digest,
        payload_digest=digest,
        raw_digest=None,
    ).seal()
