"""Reading any message as an audit record. Pure functions; never raises on content.

Whatever crossed the bus is recorded. A body that is a JSON object is parsed leniently
(each envelope field is taken when it has the right form, and kept verbatim in ``extra``
when not); anything else is recorded as its raw bytes and their SHA-256 under the tenant
``_malformed``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.envelope import TENANT_PATTERN
from services.audit import canonical as c
from services.audit.record import AuditRecord, record_id
from services.audit.redaction import RedactionPolicy, redact

# Chains of records that name no valid tenant; a real tenant id starts with a letter or
# digit (contracts.envelope.TENANT_PATTERN), so these never collide with one.
TENANT_UNKNOWN = "_unknown"
TENANT_MALFORMED = "_malformed"
UNREADABLE = "_unreadable"  # the stream of a message whose metadata could not be read
_TENANT = re.compile(TENANT_PATTERN)


def clean_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if not headers:
        return None
    clean = dict(headers)
    # jsonb cannot hold NUL or a lone surrogate; NATS headers practically never carry one
    # (nats-py decodes them as strict UTF-8, so only NUL is possible).
    if any("\x00" in k or "\x00" in v for k, v in clean.items()):
        clean = {_text(k): _text(v) for k, v in clean.items()}
    return clean


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def build_record(
    *,
    stream: str,
    stream_seq: int,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    received_at: datetime,
    policy: RedactionPolicy,
    keep_raw: bool = True,
) -> AuditRecord:
    """Any message as an audit record; never raises on the message's content."""
    rid = record_id(stream, stream_seq, data)
    try:
        body = c.loads(data)
        if not isinstance(body, dict):
            raise c.Unstorable(f"the body is JSON {type(body).__name__}, not an object")
    except ValueError as exc:  # Unstorable and JSON/UTF-8 errors are ValueErrors
        return raw_record(
            stream=stream,
            stream_seq=stream_seq,
            subject=subject,
            data=data,
            received_at=received_at,
            reason=f"{type(exc).__name__}: {exc}",
            keep_raw=keep_raw,
            headers=headers,
            rid=rid,
        )

    # The envelope's fields, each taken when it has its type; the rest stays in `extra`.
    pop = body.pop
    event_id = _uuid(body, "event_id")
    correlation_id = _uuid(body, "correlation_id")
    causation_id = _uuid(body, "causation_id")
    event_type = _text_field(body, "type")
    producer = _text_field(body, "producer")
    schema_version = _text_field(body, "schema_version")
    occurred_at = None
    occurred = body.get("occurred_at")
    if isinstance(occurred, str):
        try:
            occurred_at = c.parse_timestamp(occurred)
            del body["occurred_at"]
        except (ValueError, OverflowError):
            pass
    tenant = body.get("tenant_id")
    if isinstance(tenant, str) and _TENANT.fullmatch(tenant):
        del body["tenant_id"]
    else:
        tenant = TENANT_UNKNOWN

    payload_text = payload_sha = stored_digest = None
    redacted: list[str] = []
    if "payload" in body:
        payload = pop("payload")
        payload_json = c.canonical(payload)
        payload_sha = stored_digest = c.sha256(payload_json)
        for path in policy.paths_for(tenant):
            payload, hits = redact(payload, path)
            redacted += hits
        if redacted:
            payload_json = c.canonical(payload)
            stored_digest = c.sha256(payload_json)
        payload_text = payload_json.decode("utf-8")
    return AuditRecord(
        rid,
        tenant,
        stream,
        stream_seq,
        subject,
        received_at,
        event_id,
        event_type,
        producer,
        schema_version,
        correlation_id,
        causation_id,
        occurred_at,
        clean_headers(headers),
        payload_text=payload_text,
        extra=body or None,
        raw=None,
        redacted=tuple(redacted) or None,
        payload_sha256=payload_sha,
        payload_digest=stored_digest,
        raw_digest=None,
    ).seal()


def raw_record(
    *,
    stream: str,
    stream_seq: int,
    subject: str,
    data: bytes,
    received_at: datetime,
    reason: str,
    keep_raw: bool,
    headers: Mapping[str, str] | None = None,
    rid: UUID | None = None,
    id_salt: str = "",
) -> AuditRecord:
    """A message recorded as its bytes (and their SHA-256) under the tenant _malformed."""
    digest = c.sha256(data)
    return AuditRecord(
        rid or record_id(stream + id_salt, stream_seq, data),
        TENANT_MALFORMED,
        stream,
        stream_seq,
        subject,
        received_at,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        clean_headers(headers),
        payload_text=None,
        extra={"malformed": reason[:500]},
        raw=data if keep_raw else None,
        redacted=None,
        payload_sha256=digest,
        payload_digest=None,
        raw_digest=digest if keep_raw else None,
    ).seal()


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(body: dict[str, Any], name: str) -> str | None:
    """The field as a canonical UUID text (popped), or None (left in ``body`` if not one)."""
    value = body.get(name)
    if value is None:
        body.pop(name, None)
        return None
    if not isinstance(value, str):
        return None
    if not _CANONICAL_UUID.fullmatch(value):
        try:
            value = str(UUID(value))
        except ValueError:
            return None
    del body[name]
    return value


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if isinstance(value, str):
        del body[name]
        return value
    return None


def tenant_lock_key(tenant: str) -> int:
    """A signed 32-bit key per tenant for pg_advisory_xact_lock(AUDIT_LOCK_CLASS, key)."""
    return int.from_bytes(c.sha256(tenant.encode("utf-8"))[:4], "big", signed=True)
