"""``knowledge_search`` (query.knowledge.search: the tenant's messages and files) and
``conversation_history`` (query.chat.history: one conversation's messages)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import nats.errors
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from contracts.embedding import (
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    KnowledgeSearchReply,
    KnowledgeSource,
    SearchMode,
)
from contracts.errors import ErrorCode, QueryError
from contracts.registry import QUERIES
from engram_client.errors import RequestTimeout, rejection
from engram_client.mcp.errors import Refused, answer
from engram_client.mcp.scope import Scope
from engram_client.queries import build

CHAT_HISTORY = "query.chat.history"


def register(server: MCPServer[Any], scope: Scope) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def knowledge_search(
        *,
        query: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")
        ],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Most hits.")] = 10,
        mode: Annotated[
            SearchMode, Field(description="hybrid (meaning and words), vector or text.")
        ] = SearchMode.hybrid,
        conversation_ids: Annotated[
            list[UUID] | None,
            Field(min_length=1, max_length=100, description="Only these conversations."),
        ] = None,
        source_types: Annotated[
            list[KnowledgeSource] | None, Field(min_length=1, description="messages, files.")
        ] = None,
        since: Annotated[
            datetime | None, Field(description="Only sources created at or after (with zone).")
        ] = None,
        until: Annotated[
            datetime | None, Field(description="Only sources created before (with zone).")
        ] = None,
    ) -> Annotated[CallToolResult, KnowledgeSearchReply]:
        """Search the tenant's chat messages and shared files by meaning and words."""
        filters = {
            "conversation_ids": conversation_ids,
            "source_types": source_types,
            "since": since,
            "until": until,
        }
        return await answer(
            scope.client.knowledge_search(
                query, top_k=top_k, mode=mode, filters=filters, tenant_id=scope.tenant
            )
        )

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def conversation_history(
        conversation_id: Annotated[UUID, Field(description="The conversation to read.")],
        limit: Annotated[int, Field(ge=1, le=500, description="Page size.")] = 50,
        order: Annotated[
            Literal["newest_first", "oldest_first"], Field(description="By creation time.")
        ] = "newest_first",
        cursor: Annotated[
            str | None,
            Field(min_length=1, max_length=1000, description="next_cursor of the last page."),
        ] = None,
    ) -> CallToolResult:
        """A page of one conversation's messages (current text, role, sender, time) with
        the conversation's counters; next_cursor continues."""
        request = {
            "tenant_id": scope.tenant,
            "conversation_id": str(conversation_id),
            "limit": limit,
            "order": order,
            "cursor": cursor,
        }

        async def run() -> dict[str, Any]:
            reply = await ask(scope, CHAT_HISTORY, request)
            # The query is scoped by tenant; this server by agent and user too.
            owner = reply.get("conversation") or {}
            mine = owner.get("agent_id") in (None, scope.agent) and (
                scope.user is None or owner.get("user_id") in (None, scope.user)
            )
            if not mine:
                raise Refused(ErrorCode.not_found, f"no conversation {conversation_id} here")
            return reply

        return await answer(run())


async def ask(scope: Scope, subject: str, request: dict[str, Any]) -> dict[str, Any]:
    """A query by subject: through its contract when this client has it (validated, typed
    errors), else as plain JSON over the bus (a newer server's query), read by ``status``."""
    if subject in QUERIES:
        typed = build(QUERIES[subject][0], request)
        answer: BaseModel = await scope.client.query(typed)
        return answer.model_dump(mode="json", by_alias=True)
    body = json.dumps({k: v for k, v in request.items() if v is not None}).encode()
    timeout = scope.settings.query_timeout_s
    try:
        msg = await scope.client.nc.request(subject, body, timeout=timeout)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise RequestTimeout(subject, 1, timeout, type(exc).__name__) from exc
    reply: dict[str, Any] = json.loads(msg.data)
    if reply.get("status") == "error":
        raise rejection(subject, QueryError.model_validate(reply))
    return reply
