"""Memory tools: ``memory_search`` (query.memory.search), ``memory_write`` (memory.write)
and ``memory_forget`` (memory.forget), all for the configured tenant and agent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from contracts.embedding import MAX_QUERY_CHARS, MAX_TOP_K
from contracts.errors import ErrorCode
from contracts.memory import (
    MAX_MEMORY_TEXT_CHARS,
    EpisodicContent,
    MemoryType,
    ProceduralContent,
    SemanticContent,
    WorkingContent,
)
from contracts.memory_search import MemorySearchReply
from engram_client.events import MEMORY_TYPES
from engram_client.mcp.errors import Refused, answer
from engram_client.mcp.scope import Scope

Content = EpisodicContent | SemanticContent | ProceduralContent | WorkingContent


MEMORY_EX = "3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"
EVENT_EX = "0b9a8f3e-1d2c-4b5a-8e7f-6a5b4c3d2e1f"


class MemoryWritten(BaseModel):
    memory_id: UUID = Field(
        description="The memory's id (give it to memory_forget).", examples=[MEMORY_EX]
    )
    event_id: UUID = Field(
        description="The memory.write event stored on the bus.", examples=[EVENT_EX]
    )
    duplicate: bool = Field(
        description="The bus had this event already (stored once).", examples=[False]
    )
    note: str = Field(description="What happens next.", examples=["stored on the bus; ..."])


class ForgetAccepted(BaseModel):
    memory_ids: list[UUID] = Field(
        description="The memories that will be erased.", examples=[[MEMORY_EX]]
    )
    event_id: UUID = Field(
        description="The memory.forget event stored on the bus.", examples=[EVENT_EX]
    )


def default_content(memory_type: MemoryType, text: str) -> Content:
    """The typed content of a memory given only as text."""
    if memory_type is MemoryType.episodic:
        return EpisodicContent(event=text, temporal={"occurred_at": datetime.now(UTC)})
    if memory_type is MemoryType.procedural:
        return ProceduralContent(skill=text[:500], steps=[text])
    if memory_type is MemoryType.working:
        return WorkingContent(items=[text], capacity=7)
    return SemanticContent(concept=text[:500], definition=text)


def register(server: MCPServer[Any], scope: Scope) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def memory_search(
        query: Annotated[
            str,
            Field(
                min_length=1, max_length=MAX_QUERY_CHARS, description="What to recall, in words."
            ),
        ],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Most memories.")] = 10,
        types: Annotated[
            list[MemoryType] | None, Field(min_length=1, description="Only these memory types.")
        ] = None,
        min_importance: Annotated[
            float | None, Field(ge=0, le=1, description="Only memories at least this important.")
        ] = None,
        conversation_id: Annotated[
            UUID | None, Field(description="Only memories formed in this conversation.")
        ] = None,
    ) -> Annotated[CallToolResult, MemorySearchReply]:
        """Search the agent's long-term memories by meaning, ranked by similarity,
        importance and recency. A memory written a moment ago is searchable once it has
        its vector (`pending` counts those not yet)."""
        filters: dict[str, Any] = {"types": types, "min_importance": min_importance}
        filters["conversation_id"] = conversation_id
        # Hits about another user are dropped below: ask for more so top_k can still fill.
        ask = min(MAX_TOP_K, top_k * 2) if scope.user else top_k

        async def run() -> MemorySearchReply:
            reply = await scope.client.memory_search(
                query, agent_id=scope.agent, top_k=ask, filters=filters, tenant_id=scope.tenant
            )
            hits = [h for h in reply.hits if h.user_id in (None, scope.user)][:top_k]
            scope.seen.add(h.memory_id for h in hits)
            return reply.model_copy(update={"hits": hits})

        return await answer(run())

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    async def memory_write(
        text: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_MEMORY_TEXT_CHARS,
                description="The memory as plain text: what is embedded and searched.",
            ),
        ],
        memory_type: Annotated[
            MemoryType,
            Field(
                description="episodic: something that happened; semantic: a fact; "
                "procedural: how to do something; working: what to keep in view now."
            ),
        ] = MemoryType.semantic,
        importance: Annotated[
            float, Field(ge=0, le=1, description="0 (trivial) to 1 (vital).")
        ] = 0.5,
        content: Annotated[
            Content | None,
            Field(
                description="Typed content matching memory_type (episodic: event + temporal; "
                "semantic: concept + definition; procedural: skill + steps; working: items + "
                "capacity). Default: built from text."
            ),
        ] = None,
        conversation_id: Annotated[
            UUID | None, Field(description="The conversation it was formed in.")
        ] = None,
    ) -> Annotated[CallToolResult, MemoryWritten]:
        """Remember something: publishes memory.write for this agent (and user). Stored
        once the bus has it; searchable a moment later."""

        async def run() -> MemoryWritten:
            typed = content if content is not None else default_content(memory_type, text)
            given = MEMORY_TYPES[type(typed)]
            if given != memory_type.value:
                raise Refused(
                    ErrorCode.invalid,
                    f"content is {given} content, memory_type is {memory_type.value}",
                )
            event = scope.client.events.memory_write(
                scope.agent,
                text,
                typed,
                importance,
                memory_id=uuid4(),
                user_id=scope.user,
                conversation_id=conversation_id,
            )
            published = await scope.client.publish(event)
            memory_id = event.payload.memory_id
            scope.seen.add([memory_id])
            return MemoryWritten(
                memory_id=memory_id,
                event_id=event.event_id,
                duplicate=published.duplicate,
                note="stored on the bus; the memory service applies it and it becomes "
                "searchable once embedded (usually within seconds)",
            )

        return await answer(run())

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False))
    async def memory_forget(
        memory_ids: Annotated[
            list[UUID],
            Field(
                min_length=1,
                max_length=1000,
                description="Ids returned by memory_search or memory_write of this server.",
            ),
        ],
        reason: Annotated[str | None, Field(max_length=1000, description="Why.")] = None,
    ) -> Annotated[CallToolResult, ForgetAccepted]:
        """Erase memories for good (text and vector; a tombstone keeps who asked). Only
        memories this server has shown or written can be erased."""

        async def run() -> ForgetAccepted:
            unknown = scope.seen.unknown(memory_ids)
            if unknown:
                raise Refused(
                    ErrorCode.not_found,
                    f"{len(unknown)} memory id(s) not seen through this server",
                    hint="memory_search for them first; only memories of this agent (and "
                    "user) can be forgotten",
                    detail={"unknown": [str(u) for u in unknown]},
                )
            event = scope.client.events.memory_forget(
                scope.actor, memory_ids=list(memory_ids), reason=reason
            )
            await scope.client.publish(event)
            scope.seen.drop(memory_ids)
            return ForgetAccepted(memory_ids=list(memory_ids), event_id=event.event_id)

        return await answer(run())
