"""Reading any message as an audit record. Pure functions; never raises on content.

Whatever crossed the bus is recorded, once: the record id comes from the message's stream,
stream sequence and bytes only, so every delivery of it builds the same record. A body that
is a JSON object is parsed leniently (each envelope field is taken when it has the right
form, and kept verbatim in ``extra`` when not); anything else is recorded as its raw bytes
and their SHA-256 under the tenant ``_malformed``. An object nested deeper than
``MAX_BODY_DEPTH`` is kept as raw bytes too, but with its envelope's text fields (its
tenant among them) when they can be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple
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
# A body's members are stored one level deeper than in the body: in a record's fields
# (what the chain hashes) and in an export row. Both must stay within what orjson writes.
MAX_BODY_DEPTH = c.MAX_DEPTH - 1


class Fields(NamedTuple):
    """The envelope's fields that have their form (the others stay in the body)."""

    tenant_id: str
    event_id: str | None = None
    event_type: str | None = None
    producer: str | None = None
    schema_version: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    occurred_at: datetime | None = None


def _record(
    rid: UUID,
    fields: Fields,
    where: tuple[str, int, str, datetime],
    headers: Mapping[str, str] | None,
    **body: Any,
) -> AuditRecord:
    """A record of the envelope's ``fields`` found at ``where`` (stream, sequence,
    subject, received at): the one place both kinds of record are built."""
    stream, stream_seq, subject, received_at = where
    return AuditRecord(
        rid,
        fields.tenant_id,
        stream,
        stream_seq,
        subject,
        received_at,
        fields.event_id,
        fields.event_type,
        fields.producer,
        fields.schema_version,
        fields.correlation_id,
        fields.causation_id,
        fields.occurred_at,
        clean_headers(headers),
        **body,
    )


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

    def raw(reason: str, fields: Fields | None = None, keep: bool = keep_raw) -> AuditRecord:
        return raw_record(
            stream=stream,
            stream_seq=stream_seq,
            subject=subject,
            data=data,
            received_at=received_at,
            reason=reason,
            keep_raw=keep,
            headers=headers,
            rid=rid,
            fields=fields,
        )

    try:
        body = c.loads(data, max_depth=MAX_BODY_DEPTH)
        if not isinstance(body, dict):
            raise c.Unstorable(f"the body is JSON {type(body).__name__}, not an object")
    except c.TooDeep as exc:
        members = c.string_members(data)
        fields = None if members is None else read_fields(members)
        if fields and policy.paths_for(fields.tenant_id):
            # Its tenant's payloads are redacted, and bytes cannot be: keep their digest only.
            return raw(f"{type(exc).__name__}: {exc}; not kept: cannot be redacted", fields, False)
        return raw(f"{type(exc).__name__}: {exc}", fields)
    except Exception as exc:  # Unstorable, JSON and UTF-8 errors (ValueErrors), or a bug
        return raw(f"{type(exc).__name__}: {exc}")
    try:
        return _envelope_record(
            body,
            policy,
            rid=rid,
            stream=stream,
            stream_seq=stream_seq,
            subject=subject,
            headers=headers,
            received_at=received_at,
        )
    except Exception as exc:  # a bug must not lose the message, nor give it another id
        return raw(f"not read: {type(exc).__name__}: {exc}")


def _envelope_record(
    body: dict[str, Any],
    policy: RedactionPolicy,
    *,
    rid: UUID,
    stream: str,
    stream_seq: int,
    subject: str,
    headers: Mapping[str, str] | None,
    received_at: datetime,
) -> AuditRecord:
    fields = read_fields(body)
    payload_text = payload_sha = stored_digest = None
    redacted: list[str] = []
    if "payload" in body:
        payload = body.pop("payload")
        payload_json = c.canonical(payload)
        payload_sha = stored_digest = c.sha256(payload_json)
        for path in policy.paths_for(fields.tenant_id):
            payload, hits = redact(payload, path)
            redacted += hits
        if redacted:
            payload_json = c.canonical(payload)
            stored_digest = c.sha256(payload_json)
        payload_text = payload_json.decode("utf-8")
    return _record(
        rid,
        fields,
        (stream, stream_seq, subject, received_at),
        headers,
        payload_text=payload_text,
        extra=body or None,
        raw=None,
        redacted=tuple(redacted) or None,
        payload_sha256=payload_sha,
        payload_digest=stored_digest,
        raw_digest=None,
    ).seal()


def read_fields(body: dict[str, Any]) -> Fields:
    """The envelope's fields, each taken (popped) when it has its form; the rest stays in
    ``body``, verbatim. No valid tenant_id: the tenant ``_unknown``."""
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
    return Fields(
        tenant,
        event_id,
        event_type,
        producer,
        schema_version,
        correlation_id,
        causation_id,
        occurred_at,
    )


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
    fields: Fields | None = None,
) -> AuditRecord:
    """A message recorded as its bytes (and their SHA-256), with the ``fields`` read from
    its envelope if any: in its tenant's chain when they name one, else in _malformed."""
    if fields is None:
        fields = Fields(TENANT_MALFORMED)
    elif fields.tenant_id == TENANT_UNKNOWN:
        fields = fields._replace(tenant_id=TENANT_MALFORMED)
    digest = c.sha256(data)
    return _record(
        rid or record_id(stream + id_salt, stream_seq, data),
        fields,
        (stream, stream_seq, subject, received_at),
        headers,
        payload_text=None,
        extra={"malformed": _text(reason[:500])},
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
