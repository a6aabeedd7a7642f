"""Typed methods of the queries that read conversations back, build a model call's
context and list an agent's knowledge sources (``query.chat.*``, ``query.context.*``,
``query.knowledge.sources``); the same rules as ``queries``: keyword
arguments are the request's fields, ``tenant_id`` defaults to the client's, a
``QueryError`` reply raises its ``QueryRejected`` subclass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from contracts.chat_queries import (
    ChatConversationsReply,
    ChatConversationsRequest,
    ChatHistoryReply,
    ChatHistoryRequest,
    ConversationStatus,
    Order,
)
from contracts.context import (
    ContextBuildReply,
    ContextBuildRequest,
    ContextOptions,
    ContextSnapshotReply,
    ContextSnapshotRequest,
    InlineSegment,
)
from contracts.knowledge import KnowledgeSourcesReply, KnowledgeSourcesRequest
from engram_client.options import Retry
from engram_client.queries import QueryBase, build

READ_METHODS = {
    "query.chat.history": "chat_history",
    "query.chat.conversations": "chat_conversations",
    "query.context.build": "context_build",
    "query.context.snapshot": "context_snapshot",
    "query.knowledge.sources": "knowledge_sources",
}


class ReadMethods(QueryBase):
    async def chat_history(
        self,
        conversation_id: UUID | str,
        *,
        order: Order | str = Order.newest_first,
        limit: int = 50,
        cursor: str | None = None,
        include_versions: bool = False,
        include_deleted: bool = False,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> ChatHistoryReply:
        """``query.chat.history``: a page of one conversation's messages; send the reply's
        ``next_cursor`` back as ``cursor`` for the next page."""
        request = build(
            ChatHistoryRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                conversation_id=conversation_id,
                order=order,
                limit=limit,
                cursor=cursor,
                include_versions=include_versions,
                include_deleted=include_deleted,
            ),
        )
        return await self._ask("query.chat.history", request, ChatHistoryReply, retry)

    async def chat_conversations(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        status: ConversationStatus | str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> ChatConversationsReply:
        """``query.chat.conversations``: a user's or an agent's conversations, most recently
        active first, with their counters."""
        request = build(
            ChatConversationsRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                user_id=user_id,
                agent_id=agent_id,
                status=status,
                limit=limit,
                cursor=cursor,
            ),
        )
        return await self._ask("query.chat.conversations", request, ChatConversationsReply, retry)

    async def context_build(
        self,
        query: str,
        *,
        agent_id: str,
        user_id: str,
        token_budget: int,
        conversation_id: UUID | str | None = None,
        message_id: UUID | str | None = None,
        template: str | None = None,
        segments: Sequence[InlineSegment | dict[str, Any]] = (),
        variables: dict[str, str] | None = None,
        options: ContextOptions | dict[str, Any] | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> ContextBuildReply:
        """``query.context.build``: what the next model call should see, in at most
        ``token_budget`` tokens, recorded as a snapshot."""
        request = build(
            ContextBuildRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                agent_id=agent_id,
                user_id=user_id,
                query=query,
                token_budget=token_budget,
                conversation_id=conversation_id,
                message_id=message_id,
                template=template,
                segments=list(segments),
                variables=variables or {},
                options=options or {},
            ),
        )
        return await self._ask("query.context.build", request, ContextBuildReply, retry)

    async def context_snapshot(
        self,
        *,
        snapshot_id: UUID | str | None = None,
        message_id: UUID | str | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> ContextSnapshotReply:
        """``query.context.snapshot``: a recorded build, by its id or its message's."""
        request = build(
            ContextSnapshotRequest,
            dict(tenant_id=self._tenant(tenant_id), snapshot_id=snapshot_id, message_id=message_id),
        )
        return await self._ask("query.context.snapshot", request, ContextSnapshotReply, retry)

    async def knowledge_sources(
        self, agent_id: str, *, tenant_id: str | None = None, retry: Retry | None = None
    ) -> KnowledgeSourcesReply:
        """``query.knowledge.sources``: an agent's knowledge sources with status and counts."""
        request = build(
            KnowledgeSourcesRequest, {"tenant_id": self._tenant(tenant_id), "agent_id": agent_id}
        )
        return await self._ask("query.knowledge.sources", request, KnowledgeSourcesReply, retry)
