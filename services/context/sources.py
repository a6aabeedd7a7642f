"""The fan-out: one request per source over core NATS request/reply, all at once, each
with its own timeout. Data crosses into this service only as these replies (typed by
``contracts/``); a source that fails, errs or does not answer in time becomes a
``Source`` with the reason it is missing, and the build goes on without it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from contracts.chat_queries import CHAT_HISTORY_REPLY, ChatHistoryReply, ChatHistoryRequest
from contracts.context import ContextBuildRequest, SegmentKind
from contracts.embedding import (
    EMBED_SUBJECT,
    KNOWLEDGE_SEARCH_REPLY,
    KNOWLEDGE_SEARCH_SUBJECT,
    KnowledgeScope,
    KnowledgeSearchReply,
    KnowledgeSearchRequest,
)
from contracts.memory_search import (
    MEMORY_SEARCH_REPLY,
    MEMORY_SEARCH_SUBJECT,
    MemoryFilters,
    MemorySearchReply,
    MemorySearchRequest,
)
from contracts.state import PARTITIONS
from contracts.state_queries import STATE_GET_REPLY, StateGetReply, StateGetRequest
from services.context.asking import SourceFailed, Timeouts, Vector, ask, embed, with_vector
from services.context.budget import Item, Source

log = logging.getLogger("engram.context.sources")

STATE_GET_SUBJECT = "query.state.get"
CHAT_HISTORY_SUBJECT = "query.chat.history"
SUMMARY_TOP_K = 10
# Every subject a build asks: the service's NATS user may publish these and no others
# (nats_auth.py), and its AsyncAPI document shows them with their contracts.
ASKS = (
    CHAT_HISTORY_SUBJECT,
    MEMORY_SEARCH_SUBJECT,
    KNOWLEDGE_SEARCH_SUBJECT,
    STATE_GET_SUBJECT,
    EMBED_SUBJECT,
)


async def history(nc: NatsClient, req: ContextBuildRequest, timeout: float) -> Source:
    assert req.conversation_id is not None
    ask_for = ChatHistoryRequest(
        tenant_id=req.tenant_id,
        conversation_id=req.conversation_id,
        limit=req.options.history_limit,
    )
    found: ChatHistoryReply | None = await ask(
        nc, CHAT_HISTORY_SUBJECT, ask_for, CHAT_HISTORY_REPLY, timeout
    )
    items = [
        Item(
            str(m.message_id),
            f"{m.role}: {m.content}",
            m.content,
            (str(m.message_id),),
            m.created_at,
        )
        for m in (found.items if found else [])
        if not m.deleted
    ]
    return Source(SegmentKind.messages, tuple(items), newest_first=True)


async def memories(
    nc: NatsClient, req: ContextBuildRequest, timeout: float, vector: Vector | None
) -> Source:
    query_vector, timeout = await with_vector(vector, timeout)
    ask_for = MemorySearchRequest(
        tenant_id=req.tenant_id,
        agent_id=req.agent_id,
        text=req.query,
        top_k=req.options.memory_top_k,
        filters=MemoryFilters(user_id=req.user_id),
        query_vector=query_vector,
    )
    found: MemorySearchReply | None = await ask(
        nc, MEMORY_SEARCH_SUBJECT, ask_for, MEMORY_SEARCH_REPLY, timeout
    )
    items = [
        Item(str(h.memory_id), f"- {h.text}", h.text, (str(h.memory_id),))
        for h in (found.hits if found else [])
    ]
    return Source(SegmentKind.memories, tuple(items))


def _began(content: dict[str, Any]) -> str:
    temporal = content.get("temporal")
    return str(temporal.get("occurred_at", "")) if isinstance(temporal, dict) else ""


def _ended(content: dict[str, Any]) -> datetime | None:
    """The end of the span a summary covers (its start when it has no end); None when its
    content has no readable time."""
    temporal = content.get("temporal")
    if not isinstance(temporal, dict):
        return None
    try:
        at = datetime.fromisoformat(str(temporal.get("ended_at") or temporal["occurred_at"]))
    except (KeyError, ValueError):
        return None
    return at if at.tzinfo is not None else None  # the contract requires a zone


async def summaries(
    nc: NatsClient, req: ContextBuildRequest, timeout: float, vector: Vector | None
) -> Source:
    """The conversation's session summaries (episodic memories the memory service writes
    when a session ends), newest first."""
    assert req.conversation_id is not None
    query_vector, timeout = await with_vector(vector, timeout)
    ask_for = MemorySearchRequest(
        tenant_id=req.tenant_id,
        agent_id=req.agent_id,
        text=req.query,
        top_k=SUMMARY_TOP_K,
        filters=MemoryFilters(types=["episodic"], conversation_id=req.conversation_id),
        query_vector=query_vector,
    )
    found: MemorySearchReply | None = await ask(
        nc, MEMORY_SEARCH_SUBJECT, ask_for, MEMORY_SEARCH_REPLY, timeout
    )
    hits = sorted(found.hits if found else [], key=lambda h: _began(h.content), reverse=True)
    items = [
        Item(str(h.memory_id), h.text, h.text, (str(h.memory_id),), _ended(h.content)) for h in hits
    ]
    return Source(SegmentKind.summary, tuple(items), newest_first=True)


def older_summaries(found: list[Source]) -> list[Source]:
    """Summaries only of turns older than the oldest recent message the history returned:
    a summary whose session ended at or after it covers turns the messages segment shows
    (or may show), so it is left out, and nothing is shown twice. A summary with no
    readable time is left out too; without recent messages (none, not asked, or missing)
    every summary stays."""
    shown = [i.at for s in found if s.kind is SegmentKind.messages for i in s.items if i.at]
    if not shown:
        return found
    oldest = min(shown)
    return [
        replace(s, items=tuple(i for i in s.items if i.at is not None and i.at < oldest))
        if s.kind is SegmentKind.summary
        else s
        for s in found
    ]


async def knowledge(
    nc: NatsClient, req: ContextBuildRequest, timeout: float, vector: Vector | None
) -> Source:
    query_vector, timeout = await with_vector(vector, timeout)
    options = req.options
    ask_for = KnowledgeSearchRequest(
        tenant_id=req.tenant_id,
        text=req.query,
        top_k=options.knowledge_top_k,
        query_vector=query_vector,
        # the agent's own knowledge sources, when asked (docs/context.md)
        scope=KnowledgeScope(agent_id=req.agent_id, source_ids=options.knowledge_source_ids)
        if options.knowledge_scope == "agent"
        else None,
    )
    found: KnowledgeSearchReply | None = await ask(
        nc, KNOWLEDGE_SEARCH_SUBJECT, ask_for, KNOWLEDGE_SEARCH_REPLY, timeout
    )
    items = [
        Item(
            f"{h.source.source_id}:{h.source.chunk_index}",
            f"- {h.text}",
            h.text,
            (str(h.source.source_id),),  # a chunk of a message already shown is dropped
        )
        for h in (found.hits if found else [])
    ]
    return Source(SegmentKind.knowledge, tuple(items))


async def state(nc: NatsClient, req: ContextBuildRequest, timeout: float) -> Source:
    ask_for = StateGetRequest(tenant_id=req.tenant_id, user_id=req.user_id, agent_id=req.agent_id)
    found: StateGetReply | None = await ask(
        nc, STATE_GET_SUBJECT, ask_for, STATE_GET_REPLY, timeout
    )
    if found is None:
        return Source(SegmentKind.state)
    view = found.state
    parts = {p: getattr(view, p) for p in PARTITIONS if getattr(view, p)}
    if not parts:
        return Source(SegmentKind.state)
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    item = Item(f"{req.user_id}/{req.agent_id}@{view.version}", f"state: {text}")
    return Source(SegmentKind.state, (item,))


Fetch = Callable[[NatsClient, ContextBuildRequest, float], Awaitable[Source]]
Search = Callable[[NatsClient, ContextBuildRequest, float, Vector | None], Awaitable[Source]]


def sharing(search: Search, vector: Vector | None) -> Fetch:
    """A search that is handed the build's one query vector."""

    async def fetch(nc: NatsClient, req: ContextBuildRequest, timeout: float) -> Source:
        return await search(nc, req, timeout, vector)

    return fetch


def wanted(
    req: ContextBuildRequest, timeouts: Timeouts, vector: Vector | None = None
) -> list[tuple[SegmentKind, Fetch, float]]:
    """The sources to ask for this request, in context order."""
    asked = set(req.options.sources)
    chat = req.conversation_id is not None
    table: list[tuple[SegmentKind, Fetch, float, bool]] = [
        (SegmentKind.state, state, timeouts.state, True),
        (SegmentKind.summary, sharing(summaries, vector), timeouts.memory, chat),
        (SegmentKind.memories, sharing(memories, vector), timeouts.memory, True),
        (SegmentKind.knowledge, sharing(knowledge, vector), timeouts.knowledge, True),
        (SegmentKind.messages, history, timeouts.history, chat),
    ]
    return [(kind, fetch, t) for kind, fetch, t, can in table if can and kind in asked]


SEARCHES = frozenset({SegmentKind.summary, SegmentKind.memories, SegmentKind.knowledge})


async def gather(nc: NatsClient, req: ContextBuildRequest, timeouts: Timeouts) -> list[Source]:
    """Every wanted source, asked at once; each failure is that source's reason. The query
    is embedded once, while state and history are asked, and its vector goes with each
    search (each would embed the same text again otherwise)."""
    vector = None
    if any(kind in SEARCHES for kind, _, _ in wanted(req, timeouts)):
        vector = asyncio.ensure_future(embed(nc, req.query, timeouts.embed))
    plan = wanted(req, timeouts, vector)

    async def one(kind: SegmentKind, fetch: Fetch, timeout: float) -> Source:
        try:
            return await fetch(nc, req, timeout)
        except SourceFailed as exc:
            return Source(kind, missing=str(exc))
        except (nats.errors.Error, OSError) as exc:
            return Source(kind, missing=f"{type(exc).__name__}: {exc}")

    return older_summaries(list(await asyncio.gather(*(one(k, f, t) for k, f, t in plan))))
