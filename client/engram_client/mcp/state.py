"""State tools: ``state_get`` (query.state.get), ``state_patch`` (state.patch, then waits to
see it applied) and ``state_history`` (query.state.history), for the configured tenant,
user and agent. Offered only when a user is configured: a state belongs to a user and an
agent."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any
from uuid import UUID

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from contracts.state_queries import Partition, StateGetReply, StateHistoryReply
from engram_client.errors import EngramError, NotFound
from engram_client.mcp.errors import answer
from engram_client.mcp.scope import Scope
from engram_client.options import NO_RETRY

POLL_S = 0.1


class StatePatched(BaseModel):
    event_id: UUID = Field(
        description="The state.patch event stored on the bus.",
        examples=["0b9a8f3e-1d2c-4b5a-8e7f-6a5b4c3d2e1f"],
    )
    applied: bool = Field(
        description="Seen applied within the wait. False: still queued, or refused "
        "(expected_version did not match): read state_get.",
        examples=[True],
    )
    version: int | None = Field(
        default=None, description="The version it made, if applied.", examples=[7]
    )
    state_hash: str | None = Field(
        default=None,
        description="The state's hash after it.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


def register(server: MCPServer[Any], scope: Scope, user: str) -> None:
    client = scope.client

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def state_get(
        at_version: Annotated[
            int | None, Field(ge=0, description="A past version (default: current).")
        ] = None,
        partitions: Annotated[
            list[Partition] | None,
            Field(
                min_length=1,
                max_length=4,
                description="Only these partitions (default: all of local, shared, session, "
                "persistent); a large state is read a partition at a time.",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, StateGetReply]:
        """The agent's state for this user: four JSON partitions and a version."""
        return await answer(
            client.state_get(
                user_id=user,
                agent_id=scope.agent,
                at_version=at_version,
                partitions=partitions,
                tenant_id=scope.tenant,
            )
        )

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    async def state_patch(
        merge_patch: Annotated[
            dict[str, Any] | None,
            Field(
                description="RFC 7386 JSON Merge Patch over the whole state, e.g. "
                '{"session": {"topic": "Lisbon"}} (null removes a key).'
            ),
        ] = None,
        patch: Annotated[
            list[dict[str, Any]] | None,
            Field(
                description="RFC 6902 JSON Patch instead, e.g. "
                '[{"op": "add", "path": "/session/cart/-", "value": {"sku": "A1"}}].'
            ),
        ] = None,
        expected_version: Annotated[
            int | None,
            Field(ge=0, description="Apply only if the state is still at this version."),
        ] = None,
    ) -> Annotated[CallToolResult, StatePatched]:
        """Change the agent's state for this user: exactly one of merge_patch and patch.
        Returns once the bus has it and, within a few seconds, the version it made."""

        async def run() -> StatePatched:
            event = client.events.state_patch(
                user,
                scope.agent,
                patch=patch,
                merge_patch=merge_patch,
                expected_version=expected_version,
                actor=scope.actor,
                trigger="mcp",
            )
            await client.publish(event)
            return await _applied(scope, user, event.event_id)

        return await answer(run())

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def state_history(
        limit: Annotated[int, Field(ge=1, le=500, description="Page size.")] = 20,
        before_version: Annotated[
            int | None, Field(ge=1, description="Next page: versions below this.")
        ] = None,
        include_patches: Annotated[
            bool, Field(description="Include each change's patch and inverse.")
        ] = True,
    ) -> Annotated[CallToolResult, StateHistoryReply]:
        """How the state changed, newest first: version, kind, actor, time, patch."""
        return await answer(
            client.state_history(
                user_id=user,
                agent_id=scope.agent,
                before_version=before_version,
                limit=limit,
                include_patches=include_patches,
                tenant_id=scope.tenant,
            )
        )


async def _applied(scope: Scope, user: str, event_id: UUID) -> StatePatched:
    """Read-your-writes for the model: wait (bounded) until the history shows the patch."""
    deadline = time.monotonic() + scope.settings.state_wait_s
    while time.monotonic() < deadline:
        try:
            page = await scope.client.state_history(
                user_id=user,
                agent_id=scope.agent,
                limit=50,
                include_patches=False,
                tenant_id=scope.tenant,
                retry=NO_RETRY,
            )
        except NotFound:
            page = None  # the state's first patch is not applied yet
        except EngramError:
            break  # the patch is stored: report it as not seen applied, not as a failure
        for item in page.items if page else ():
            if item.event_id == event_id:
                return StatePatched(
                    event_id=event_id,
                    applied=True,
                    version=item.version,
                    state_hash=item.state_hash,
                )
        await asyncio.sleep(POLL_S)
    return StatePatched(event_id=event_id, applied=False)
