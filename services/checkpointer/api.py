"""The request/reply subjects of the checkpointer, as the runtime's ``QueryRoute``s (one
queue group: replicas share the queries). Every reply is the query's result or a
``QueryError``; a request that breaks its contract gets ``invalid`` instead of a timeout,
a query before the query pool opened gets ``unavailable``, and a reply that would not fit
in one message is shortened (history) or answered ``too_large`` with what to ask
instead."""

from __future__ import annotations

from contracts.state_queries import (
    StateDiffReply,
    StateDiffRequest,
    StateGetReply,
    StateGetRequest,
    StateHistoryReply,
    StateHistoryRequest,
)
from services.checkpointer import queries
from services.checkpointer.components import QueryPool
from services.runtime.router import QueryRoute


def query_routes(reads: QueryPool) -> list[QueryRoute]:
    # The pool is looked up per request (``reads.pool``): it opens when the worker has
    # started, after the subscriptions, and raises NotStarted until then.
    async def state_get(request: StateGetRequest, limit: int) -> StateGetReply:
        return await queries.get_state(reads.pool, request, limit)

    async def state_history(request: StateHistoryRequest, limit: int) -> StateHistoryReply:
        return await queries.get_history(reads.pool, request, limit)

    async def state_diff(request: StateDiffRequest, limit: int) -> StateDiffReply:
        return await queries.get_diff(reads.pool, request, limit)

    return [
        QueryRoute(
            "query.state.get",
            StateGetRequest,
            state_get,
            description="The current state, or the version at_version / at_time.",
            hint=queries.GET_HINT,
        ),
        QueryRoute(
            "query.state.history",
            StateHistoryRequest,
            state_history,
            description="Transitions newest first, with patches; paginated.",
            hint=queries.HISTORY_HINT,
        ),
        QueryRoute(
            "query.state.diff",
            StateDiffRequest,
            state_diff,
            description="RFC 6902 patch from one version to another.",
            hint=queries.DIFF_HINT,
        ),
    ]
