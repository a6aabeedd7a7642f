"""The request/reply subjects, as FastStream subscribers on the worker's broker (one queue
group: replicas share the queries). A request that breaks its contract gets a reply with
``error.code = "invalid"`` instead of a timeout."""

from __future__ import annotations

import logging
from typing import Any, cast

import asyncpg
from faststream import ExceptionMiddleware
from faststream.nats import NatsBroker, NatsRouter
from pydantic import ValidationError

from contracts.state import (
    StateConflict,
    StateDiffReply,
    StateDiffRequest,
    StateGetReply,
    StateGetRequest,
    StateHistoryReply,
    StateHistoryRequest,
)
from services.checkpointer import queries
from services.runtime.errors import describe
from services.runtime.replies import validation_message

log = logging.getLogger("engram.checkpointer.api")


def _invalid(exc: ValidationError) -> dict[str, Any]:
    problems = validation_message(exc)
    return {"error": {"code": "invalid", "message": f"bad request: {problems}"}}


def _internal(exc: Exception) -> dict[str, Any]:
    log.exception("query failed")
    return {"error": {"code": "internal", "message": describe(exc)}}


def query_router(queue: str, broker: NatsBroker) -> NatsRouter:
    router = NatsRouter(middlewares=[ExceptionMiddleware(
        publish_handlers={ValidationError: _invalid, Exception: _internal}
    )])

    def pool() -> asyncpg.Pool:
        # Set by app.py before the subscribers start. Looked up here, not injected with
        # Context(): FastStream resolves an injected Context in a worker thread
        # (anyio.to_thread), a thread hop per request that shows in read latency, more so
        # on a busy machine.
        return cast(asyncpg.Pool, broker.context.get("query_pool"))

    @router.subscriber("query.state.get", queue=queue, title="query.state.get",
                       description="The current state, or the version at_version / at_time.")
    async def state_get(request: StateGetRequest) -> StateGetReply:
        return await queries.get_state(pool(), request)

    @router.subscriber("query.state.history", queue=queue, title="query.state.history",
                       description="Transitions newest first, with patches; paginated.")
    async def state_history(request: StateHistoryRequest) -> StateHistoryReply:
        return await queries.get_history(pool(), request)

    @router.subscriber("query.state.diff", queue=queue, title="query.state.diff",
                       description="RFC 6902 patch from one version to another.")
    async def state_diff(request: StateDiffRequest) -> StateDiffReply:
        return await queries.get_diff(pool(), request)

    return router


def register_queries(broker: NatsBroker, queue: str) -> None:
    broker.include_router(query_router(queue, broker))
    # Documentation only: conflicts are published by the outbox drain (outbox.py).
    broker.publisher("engram.state.conflict", title="engram.state.conflict",
                     description=(StateConflict.__doc__ or "").strip(), schema=StateConflict)
