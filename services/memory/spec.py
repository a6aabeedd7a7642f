"""The memory service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.memory.settings import MemorySettings
from services.runtime.spec import Command, DevView, ServiceSpec

SPEC = ServiceSpec(
    name="memory",
    schema="memory",
    settings=MemorySettings,
    assemble="services.memory.app:assemble",
    description="Typed agent memories (episodic, semantic, procedural, working) with "
    "importance, decay, access counts and expiry; session summaries; consolidation jobs "
    "(expire, merge, abstract, summarize, decay); answers query.memory.search.",
    docs="memory.md",
    commands=(
        Command("trigger", "services.memory.cli:trigger_cli", "Jobs for schedulers: consolidate."),
    ),
    dev_view=DevView(
        title="latest memories",
        columns=("tenant", "agent", "type", "importance", "content"),
        sql="""SELECT tenant_id, agent_id, memory_type, round(importance::numeric, 2), text
                 FROM memory.memories WHERE status = 'active'
                ORDER BY updated_at DESC LIMIT $1""",
    ),
)
