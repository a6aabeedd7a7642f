"""The checkpointer service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.checkpointer.settings import CheckpointerSettings
from services.runtime.spec import Command, DevView, ServiceSpec

SPEC = ServiceSpec(
    name="checkpointer",
    schema="checkpoint",
    settings=CheckpointerSettings,
    assemble="services.checkpointer.app:assemble",
    description="Versioned agent state: every change a JSON Patch with its inverse, "
    "snapshots, restore, time travel, retention; answers query.state.*.",
    docs="checkpointer.md",
    commands=(Command("state", "services.checkpointer.cli:state_cli", "Agent state: retention."),),
    dev_view=DevView(
        title="agent states",
        columns=("tenant", "user", "agent", "version", "updated"),
        sql="""SELECT tenant_id, user_id, agent_id, version, updated_at
                 FROM checkpoint.agent_states ORDER BY updated_at DESC LIMIT $1""",
    ),
)
