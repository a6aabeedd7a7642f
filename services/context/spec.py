"""The context service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.context.settings import ContextSettings
from services.runtime.spec import DevView, ServiceSpec

SPEC = ServiceSpec(
    name="context",
    schema="context",
    settings=ContextSettings,
    assemble="services.context.app:assemble",
    description="Assembles the context of a model call under a token budget from the "
    "other services' answers (messages, memories, knowledge, state), records every build; "
    "answers query.context.*.",
    docs="context.md",
    dev_view=DevView(
        title="context builds",
        columns=("tenant", "agent", "tokens", "budget", "segments", "ms"),
        sql="""SELECT tenant_id, agent_id, total_tokens, token_budget, segment_count,
                      round(build_ms::numeric, 1)
                 FROM context.snapshots ORDER BY created_at DESC LIMIT $1""",
    ),
)
