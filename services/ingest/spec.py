"""The ingest service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.ingest.settings import IngestSettings
from services.runtime.spec import DevView, ServiceSpec

SPEC = ServiceSpec(
    name="ingest",
    schema="ingest",
    settings=IngestSettings,
    assemble="services.ingest.app:assemble",
    description="Stores conversations, messages with full edit history, sessions with "
    "counters, and files, exactly once in effect.",
    docs="ingest.md",
    dev_view=DevView(
        title="latest messages",
        columns=("tenant", "conversation", "role", "v", "content", "state"),
        sql="""SELECT m.tenant_id, coalesce(c.title, '(placeholder)'), m.role, m.version,
                      m.content,
                      CASE WHEN m.deleted_at IS NOT NULL THEN 'deleted'
                           WHEN m.version > 1 THEN 'edited' ELSE '' END
                 FROM ingest.messages m
                 JOIN ingest.conversations c USING (tenant_id, conversation_id)
                ORDER BY m.created_at DESC LIMIT $1""",
    ),
)
