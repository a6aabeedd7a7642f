"""Audit records as verify sees them, shared by the audit unit tests."""

from __future__ import annotations

from services.audit import canonical as c
from services.audit.record import AuditRecord, stored_record


def read_back(r: AuditRecord) -> AuditRecord:
    """The record as verify rebuilds it from the stored columns (jsonb gives text back)."""
    return stored_record(
        tenant_id=r.tenant_id,
        record_id=r.record_id,
        event_id=r.source_event_id,
        stream=r.stream,
        stream_seq=r.stream_seq,
        subject=r.subject,
        type=r.event_type,
        producer=r.producer,
        schema_version=r.schema_version,
        correlation_id=r.correlation_id,
        causation_id=r.causation_id,
        occurred_at=r.occurred_at,
        received_at=r.received_at,
        headers=r.headers,
        payload=None if r.payload_text is None else c.loads(r.payload_text),
        has_payload=r.payload_text is not None,
        extra=None if r.extra is None else c.loads(c.dumps(r.extra)),
        raw=r.raw,
        redacted=r.redacted,
        payload_sha256=r.payload_sha256,
    )
