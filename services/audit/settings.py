from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.audit.redaction import RedactionPolicy, parse_path
from services.runtime.settings import WorkerSettings


class AuditSettings(WorkerSettings):
    """Env prefix AUDIT_ (e.g. AUDIT_REDACT); NATS_URL and DATABASE_URL are shared.

    List and map settings are JSON: AUDIT_REDACT='["payload.content"]',
    AUDIT_REDACT_TENANTS='{"acme": ["payload.metadata.email"]}'.
    """

    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "audit"

    # A record that gives up goes to the DLQ, and is recorded there rather than in its own
    # stream's family: the audit writer keeps retrying far longer than other services
    # (with the 30 s cap, 1,000 deliveries are about 8 hours of database outage).
    max_deliver: int = Field(
        default=1_000, ge=2, description="Deliveries before a message goes to the DLQ."
    )
    # Bigger batches than other services: per-batch costs (the pull request, five
    # statements, the commit) are spread over more rows; measured on a 2-core machine,
    # 2,000 gives about a third more events/s than 500. Natural batching keeps a single
    # event's latency low when there is no backlog. Two batches of each replica may be in
    # flight (the consumer decodes the next while one commits), hence the ack limit.
    batch_size: int = Field(
        default=2_000, ge=1, le=10_000, description="Most messages in one transaction."
    )
    max_ack_pending: int = Field(default=10_000, ge=1)
    redact: list[str] = Field(
        default_factory=list,
        description="JSON paths stored as their SHA-256 for every tenant, e.g. "
        '["payload.content", "payload.extracted_text"]; "*" matches any key or element.',
        examples=[["payload.content", "payload.extracted_text"]],
    )
    redact_tenants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="More paths to redact for some tenants.",
        examples=[{"acme": ["payload.metadata.email"]}],
    )
    keep_malformed_raw: bool = Field(
        default=True,
        description="Store the bytes of a message that is not a JSON object (else only "
        "their SHA-256). Such bytes cannot be redacted by path.",
    )
    partitions_ahead: int = Field(
        default=2, ge=1, le=24, description="Monthly partitions kept created ahead."
    )

    @field_validator("redact")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            parse_path(path)
        return value

    @field_validator("redact_tenants")
    @classmethod
    def _tenant_paths(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for paths in value.values():
            for path in paths:
                parse_path(path)
        return value

    def redaction(self) -> RedactionPolicy:
        return RedactionPolicy.parse(self.redact, self.redact_tenants)
