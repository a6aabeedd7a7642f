"""The request/reply subjects of the checkpointer, served through
``services.runtime.replies`` (one queue group: replicas share the queries). Every reply is
the query's result or a ``QueryError``; a request that breaks its contract gets
``invalid`` instead of a timeout, and a reply that would not fit in one message is
shortened (history) or answered ``too_large`` with what to ask instead."""

from __future__ import annotations

from typing import cast

import asyncpg
from faststream.nats import NatsBroker

from contracts.state import StateConflict
from contracts.state_queries import (
    StateDiffReply,
    StateDiffRequest,
    StateGetReply,
    StateGetRequest,
    StateHistoryReply,
    StateHistoryRequest,
)
from services.checkpointer import queries
from services.runtime.replies import serve_query


def register_queries(broker: NatsBroker, queue: str) -> None:
    def pool() -> asyncpg.Pool:
        # Set by app.py before the subscribers start. Looked up here, not injected with
        # Context(): FastStream resolves an injected Context in a worker thread
        # (anyio.to_thread), a thread hop per request that shows in read latency, more so
        # on a busy machine.
        return cast(asyncpg.Pool, broker.context.get("query_pool"))

    async def state_get(request: StateGetRequest, limit: int) -> StateGetReply:
        return await queries.get_state(pool(), request, limit)

    async def state_history(request: StateHistoryRequest, limit: int) -> StateHistoryReply:
        return await queries.get_history(pool(), request, limit)

    async def state_diff(request: StateDiffRequest, limit: int) -> StateDiffReply:
        return await queries.get_diff(pool(), request, limit)

    serve_query(
        broker,
        "query.state.get",
        StateGetRequest,
        state_get,
        queue=queue,
        hint=queries.GET_HINT,
        description="The current state, or the version at_version / at_time.",
    )
    serve_query(
        broker,
        "query.state.history",
        StateHistoryRequest,
        state_history,
        queue=queue,
        hint=queries.HISTORY_HINT,
        description="Transitions newest first, with patches; paginated.",
    )
    serve_query(
        broker,
        "query.state.diff",
        StateDiffRequest,
        state_diff,
        queue=queue,
        hint=queries.DIFF_HINT,
        description="RFC 6902 patch from one version to another.",
    )
    # Documentation only: conflicts are published by the outbox drain (outbox.py).
    broker.publisher(
        "engram.state.conflict",
        title="engram.state.conflict",
        description=(StateConflict.__doc__ or "").strip(),
        schema=StateConflict,
    )
