"""The request/reply subjects of the ingest service, as the runtime's ``QueryRoute``s (one
queue group: replicas share the queries). Every reply is the query's result or a
``QueryError``: a request that breaks its contract (or sends a cursor that is not one) is
``invalid``, a query before the pool opened ``unavailable``, a missing conversation (or
another tenant's) ``not_found``, and a page that would not fit in one message is
shortened (``size_limited``)."""

from __future__ import annotations

from contracts.chat_queries import (
    ChatConversationsReply,
    ChatConversationsRequest,
    ChatHistoryReply,
    ChatHistoryRequest,
)
from services.ingest import queries
from services.ingest.queries import ChatReads
from services.runtime.router import QueryRoute


def query_routes(reads: ChatReads, max_workers: int) -> list[QueryRoute]:
    async def chat_history(request: ChatHistoryRequest, limit: int) -> ChatHistoryReply:
        return await queries.history(reads, request, limit)

    async def chat_conversations(
        request: ChatConversationsRequest, limit: int
    ) -> ChatConversationsReply:
        return await queries.conversations(reads, request, limit)

    return [
        QueryRoute(
            "query.chat.history",
            ChatHistoryRequest,
            chat_history,
            description="One conversation's messages, newest or oldest first, keyset "
            "pages; optionally every version of each message and the soft-deleted ones.",
            hint=queries.HISTORY_HINT,
            max_workers=max_workers,
        ),
        QueryRoute(
            "query.chat.conversations",
            ChatConversationsRequest,
            chat_conversations,
            description="A user's or an agent's conversations, most recently active "
            "first, with their counters; keyset pages.",
            hint=queries.CONVERSATIONS_HINT,
            max_workers=max_workers,
        ),
    ]
