"""The one envelope every event on the bus travels in.

Contracts are versioned ``MAJOR.MINOR``: a consumer accepts any minor version of
the major it knows (unknown newer fields are ignored, never an error), and
rejects another major or a payload that breaks its contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.0"

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every model on the bus: tolerant of newer fields, strict on types."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Envelope(Contract):
    """Fields common to every event. Subclasses pin ``type`` and type ``payload``."""

    event_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this event; also sent as the `Nats-Msg-Id` header, "
        "so JetStream and every consumer's inbox drop duplicates.",
        examples=["0b6f3f0e-5d1b-4a53-9f7e-8a51f3c1a9d2"],
    )
    type: str = Field(
        description="Event type; equal to the NATS subject it is published on.",
        examples=["chat.message.created"],
    )
    occurred_at: datetime = Field(
        default_factory=utcnow,
        description="When it happened at the producer (RFC 3339, with a time zone).",
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

    def headers(self) -> dict[str, str]:
        """Headers to publish with: JetStream de-duplicates on Nats-Msg-Id."""
        return {"Nats-Msg-Id": str(self.event_id)}
