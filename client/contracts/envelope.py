"""The one envelope every event on the bus travels in.

Contracts are versioned ``MAJOR.MINOR``: a consumer accepts any minor version of
the major it knows (unknown newer fields are ignored, never an error), and
rejects another major or a payload that breaks its contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.0"

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# NATS's default max_payload: the largest event (its JSON bytes) the bus carries.
MAX_EVENT_BYTES = 1_048_576
# Free-form JSON objects (metadata) nest at most this deep: deeper JSON is where parsers
# and PostgreSQL's jsonb start to disagree, and no real metadata needs it.
MAX_METADATA_DEPTH = 32
# Where a contract that replaces U+0000 lists the fields it replaced it in.
NUL_RECORD_KEY = "engram_nul_replaced"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every model on the bus: tolerant of newer fields, strict on types."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class NulRule(StrEnum):
    """What a contract does with U+0000 in a string (PostgreSQL text and jsonb cannot hold
    it)."""

    reject = "reject"  # exact round trip matters: the event is invalid (dead-lettered)
    substitute = "substitute"  # U+0000 becomes U+FFFD; the fields are listed in the metadata


NUL_RULES = {
    NulRule.reject: "A string holding U+0000 makes the event invalid (it is dead-lettered "
    "with the path of the field): this contract round-trips exactly.",
    NulRule.substitute: "U+0000 in any string is replaced by U+FFFD when the event is read "
    "(PostgreSQL cannot store it; a chat message with a stray NUL is still a message); the "
    f"dotted paths of the replaced fields are listed in `payload.metadata.{NUL_RECORD_KEY}` "
    "where the payload has metadata.",
}


def _event_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    # Every event's published schema states the size limit and its NUL rule.
    rules = (
        f"At most {MAX_EVENT_BYTES} bytes of JSON (the bus's max_payload). "
        + NUL_RULES[cls.nul_rule]
    )
    schema["description"] = f"{schema.get('description', '')}\n\n{rules}".strip()


class Envelope(Contract):
    """Fields common to every event. Subclasses pin ``type`` and type ``payload``."""

    model_config = Contract.model_config | {"json_schema_extra": _event_rules}
    nul_rule: ClassVar[NulRule] = NulRule.reject

    event_id: UUID = Field(
        description="Unique id of this event within its tenant, chosen by the producer and "
        "kept across its retries; also sent, after the tenant, as the `Nats-Msg-Id` header "
        "(`<tenant_id>:<event_id>`), so JetStream drops a re-published copy and every "
        "consumer's inbox drops any other. Two tenants may use the same event_id. Required: "
        "without it a retried event could not be told from a new one.",
        examples=["0b6f3f0e-5d1b-4a53-9f7e-8a51f3c1a9d2"],
    )
    type: str = Field(
        description="Event type; equal to the NATS subject it is published on.",
        examples=["chat.message.created"],
    )
    occurred_at: datetime = Field(
        description="When it happened at the producer (RFC 3339, with a time zone). "
        "Required: it orders a message's edits and a memory's recency, so it must not "
        "depend on when a copy is delivered.",
        examples=["2026-11-22T10:15:00Z"],
    )
    tenant_id: str = Field(
        pattern=TENANT_PATTERN,
        description="The tenant that owns the data; every read and write is scoped by it.",
        examples=["acme"],
    )
    producer: str = Field(
        min_length=1,
        max_length=200,
        description="The service (and instance) that published the event.",
        examples=["chat-api@7c9f"],
    )
    schema_version: str = Field(
        default=SCHEMA_VERSION,
        pattern=r"^\d+\.\d+$",
        description="Contract version MAJOR.MINOR. Any minor of a known major is accepted.",
        examples=[SCHEMA_VERSION],
    )
    correlation_id: UUID | None = Field(
        default=None,
        description="Id shared by every event of one user-visible operation.",
        examples=["5f0c2d47-3f0c-4b71-a8a4-1c9a8f5e2b10"],
    )
    causation_id: UUID | None = Field(
        default=None,
        description="The event_id of the event that caused this one, if any.",
        examples=[None],
    )
    payload: Any

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (e.g. a trailing Z)")
        return value

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, value: str) -> str:
        major = int(value.split(".", 1)[0])
        if major != SCHEMA_MAJOR:
            raise ValueError(
                f"schema_version {value} has major {major}; "
                f"this consumer reads major {SCHEMA_MAJOR}"
            )
        return value

    @property
    def msg_id(self) -> str:
        """The ``Nats-Msg-Id`` to publish with: ``<tenant_id>:<event_id>``. JetStream's
        duplicate window keys on the bare header, and two tenants may choose the same
        event_id; the tenant in it keeps one from dropping the other's event. (A tenant id
        may hold ``:``; the event id is the fixed-length part after the last one.)"""
        return f"{self.tenant_id}:{self.event_id}"

    def headers(self) -> dict[str, str]:
        """Headers to publish with: JetStream de-duplicates on Nats-Msg-Id."""
        return {"Nats-Msg-Id": self.msg_id}


def json_depth(value: object) -> int:
    """How deep JSON containers nest (a scalar is 0, ``{}`` and ``[]`` are 1)."""
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


def shallow_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A validator of free-form metadata: at most ``MAX_METADATA_DEPTH`` levels deep."""
    if value is not None and json_depth(value) > MAX_METADATA_DEPTH:
        raise ValueError(f"nests deeper than {MAX_METADATA_DEPTH} levels")
    return value


def nul_paths(value: object, path: str = "") -> list[str]:
    """Dotted paths of the strings (or keys) that hold U+0000."""
    if isinstance(value, str):
        return [path or "<root>"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(where)
            found.extend(nul_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(nul_paths(item, f"{path}.{index}"))
    return found


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(k): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nul(v) for v in value]
    return value


def without_nul(event: Envelope, paths: list[str]) -> Envelope:
    """The event with U+0000 replaced by U+FFFD everywhere, and ``paths`` (where it was)
    recorded under ``NUL_RECORD_KEY`` in the payload's metadata when it has one."""
    data = _replace_nul(event.model_dump(mode="json", by_alias=True))
    payload = data.get("payload")
    if isinstance(payload, dict) and "metadata" in payload:
        where = [_replace_nul(path) for path in paths]  # a key's path holds its NUL too
        payload["metadata"] = {**(payload["metadata"] or {}), NUL_RECORD_KEY: where}
    return type(event).model_validate(data)
