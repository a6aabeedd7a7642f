"""Every contract by a stable name, for `engram schema` and the docs: events by their type
(= subject), request/reply queries as `<subject>.request` and `<subject>.reply`.

A query's `.reply` is the union its service answers with: the query's result
(`status: "ok"`) or `contracts.errors.QueryError` (`status: "error"`), discriminated by
`status` (a `RootModel`, so its JSON Schema is that `oneOf`)."""

from __future__ import annotations

from pydantic import BaseModel

from contracts import (
    chat_queries,
    context,
    context_templates,
    embedding,
    knowledge,
    langgraph,
    memory_jobs,
    memory_search,
    state,
    state_queries,
    store,
)
from contracts.chat import CHAT_EVENT_TYPES
from contracts.envelope import Envelope
from contracts.memory import MEMORY_EVENT_TYPES

EVENTS: tuple[type[Envelope], ...] = (
    *CHAT_EVENT_TYPES,
    *MEMORY_EVENT_TYPES,
    *memory_jobs.MEMORY_JOB_EVENT_TYPES,
    *memory_jobs.MEMORY_NOTICE_TYPES,
    *state.STATE_EVENT_TYPES,
    state.StateConflict,
    *embedding.EMBEDDING_EVENT_TYPES,
    *context_templates.TEMPLATE_EVENT_TYPES,
    *knowledge.KNOWLEDGE_EVENT_TYPES,
)
QUERIES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "query.embed": (embedding.EmbedRequest, embedding.EmbedAnswer),
    "query.knowledge.search": (embedding.KnowledgeSearchRequest, embedding.KnowledgeSearchAnswer),
    "query.knowledge.sources": (
        knowledge.KnowledgeSourcesRequest,
        knowledge.KnowledgeSourcesAnswer,
    ),
    "query.memory.search": (memory_search.MemorySearchRequest, memory_search.MemorySearchAnswer),
    "query.state.get": (state_queries.StateGetRequest, state_queries.StateGetAnswer),
    "query.state.history": (state_queries.StateHistoryRequest, state_queries.StateHistoryAnswer),
    "query.state.diff": (state_queries.StateDiffRequest, state_queries.StateDiffAnswer),
    "query.chat.history": (chat_queries.ChatHistoryRequest, chat_queries.ChatHistoryAnswer),
    "query.chat.conversations": (
        chat_queries.ChatConversationsRequest,
        chat_queries.ChatConversationsAnswer,
    ),
    **{subject: (req, answer) for subject, (req, answer, _) in langgraph.COMMANDS.items()},
    **{subject: (req, answer) for subject, (req, answer, _) in store.COMMANDS.items()},
    "query.context.build": (context.ContextBuildRequest, context.ContextBuildAnswer),
    "query.context.snapshot": (context.ContextSnapshotRequest, context.ContextSnapshotAnswer),
}


def all_contracts() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {m.model_fields["type"].default: m for m in EVENTS}
    for subject, (request, reply) in QUERIES.items():
        found[f"{subject}.request"] = request
        found[f"{subject}.reply"] = reply
    return found
