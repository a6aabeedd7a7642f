"""The audit service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.audit.settings import AuditSettings
from services.runtime.spec import Command, DevView, ServiceSpec

SPEC = ServiceSpec(
    name="audit",
    schema="audit",
    settings=AuditSettings,
    assemble="services.audit.app:assemble",
    description="Records every message of every stream once, in an append-only, "
    "hash-chained trail per tenant (verify with `engram audit verify`).",
    docs="audit.md",
    # Append-only: the audit role may only add and read rows.
    privileges="SELECT, INSERT",
    commands=(
        Command("audit", "services.audit.cli:audit_cli", "Audit trail: verify, export, retain."),
    ),
    dev_view=DevView(
        title="latest audit records",
        columns=("tenant", "position", "subject", "type", "received"),
        sql="""SELECT tenant_id, position, subject, type, received_at FROM audit.events
                ORDER BY received_at DESC LIMIT $1""",
    ),
)
