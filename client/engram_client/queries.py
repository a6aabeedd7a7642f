"""One typed method per query of ``contracts.registry.QUERIES``: keyword arguments are the
request's fields, the return value is the reply's result model; a ``QueryError`` reply
raises its ``QueryRejected`` subclass (engram_client.errors). ``tenant_id`` defaults to the
client's. A test checks that every registered query has its method here or in
``queries_read`` (the query.langgraph.* commands are EngramSaver's, engram_client.langgraph)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.embedding import (
    EmbedReply,
    EmbedRequest,
    KnowledgeFilters,
    KnowledgeScope,
    KnowledgeSearchReply,
    KnowledgeSearchRequest,
    SearchMode,
)
from contracts.errors import ErrorCode, QueryError
from contracts.memory_search import MemoryFilters, MemorySearchReply, MemorySearchRequest
from contracts.state_queries import (
    Partition,
    StateDiffReply,
    StateDiffRequest,
    StateGetReply,
    StateGetRequest,
    StateHistoryReply,
    StateHistoryRequest,
)
from engram_client.errors import InvalidRequest
from engram_client.options import Retry

R = TypeVar("R", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

# The method of each query subject (checked against QUERIES by a test).
METHODS = {
    "query.embed": "embed",
    "query.knowledge.search": "knowledge_search",
    "query.memory.search": "memory_search",
    "query.state.get": "state_get",
    "query.state.history": "state_history",
    "query.state.diff": "state_diff",
}


def build(model: type[M], fields: dict[str, Any]) -> M:
    """The request, or ``InvalidRequest`` (as the service would answer) if it breaks its
    contract: one exception for a bad request, wherever it is caught."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = QueryError(
            code=ErrorCode.invalid,
            message=f"{model.__name__}: {exc.error_count()} invalid field(s)",
            detail={"errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]},
        )
        raise InvalidRequest("(client)", error) from exc


class QueryBase:
    """What every typed query method stands on: the client's ask and default tenant."""

    tenant_id: str | None

    async def _ask(
        self, subject: str, request: BaseModel, reply: type[R], retry: Retry | None = None
    ) -> R:
        raise NotImplementedError

    def _tenant(self, tenant_id: str | None) -> str:
        tenant = tenant_id or self.tenant_id
        if tenant is None:
            raise ValueError("no tenant_id: give one here or to the client")
        return tenant


class QueryMethods(QueryBase):
    async def embed(self, texts: Sequence[str], *, retry: Retry | None = None) -> EmbedReply:
        """``query.embed``: vectors of ``texts`` with the active model."""
        return await self._ask(
            "query.embed", build(EmbedRequest, {"texts": list(texts)}), EmbedReply, retry
        )

    async def knowledge_search(
        self,
        text: str,
        *,
        top_k: int = 10,
        filters: KnowledgeFilters | dict[str, Any] | None = None,
        mode: SearchMode | str = SearchMode.hybrid,
        scope: KnowledgeScope | dict[str, Any] | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> KnowledgeSearchReply:
        """``query.knowledge.search``: a tenant's messages and files by meaning and words;
        with ``scope={"agent_id": ...}`` (and ``source_ids``), one agent's knowledge sources
        instead."""
        request = build(
            KnowledgeSearchRequest,
            {
                "tenant_id": self._tenant(tenant_id),
                "text": text,
                "top_k": top_k,
                "filters": filters or {},
                "mode": mode,
                "scope": scope,
            },
        )
        return await self._ask("query.knowledge.search", request, KnowledgeSearchReply, retry)

    async def memory_search(
        self,
        text: str,
        *,
        agent_id: str,
        top_k: int = 10,
        filters: MemoryFilters | dict[str, Any] | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> MemorySearchReply:
        """``query.memory.search``: an agent's memories ranked for ``text``."""
        request = build(
            MemorySearchRequest,
            {
                "tenant_id": self._tenant(tenant_id),
                "agent_id": agent_id,
                "text": text,
                "top_k": top_k,
                "filters": filters or {},
            },
        )
        return await self._ask("query.memory.search", request, MemorySearchReply, retry)

    async def state_get(
        self,
        *,
        user_id: str,
        agent_id: str,
        at_version: int | None = None,
        at_time: datetime | None = None,
        partitions: Sequence[Partition] | None = None,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> StateGetReply:
        """``query.state.get``: an agent's state now, at a version or at a time."""
        request = build(
            StateGetRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                user_id=user_id,
                agent_id=agent_id,
                at_version=at_version,
                at_time=at_time,
                partitions=list(partitions) if partitions is not None else None,
            ),
        )
        return await self._ask("query.state.get", request, StateGetReply, retry)

    async def state_history(
        self,
        *,
        user_id: str,
        agent_id: str,
        before_version: int | None = None,
        limit: int = 50,
        include_patches: bool = True,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> StateHistoryReply:
        """``query.state.history``: a page of transitions, newest first."""
        request = build(
            StateHistoryRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                user_id=user_id,
                agent_id=agent_id,
                before_version=before_version,
                limit=limit,
                include_patches=include_patches,
            ),
        )
        return await self._ask("query.state.history", request, StateHistoryReply, retry)

    async def state_diff(
        self,
        *,
        user_id: str,
        agent_id: str,
        from_version: int,
        to_version: int,
        tenant_id: str | None = None,
        retry: Retry | None = None,
    ) -> StateDiffReply:
        """``query.state.diff``: the JSON Patch from one version to another."""
        request = build(
            StateDiffRequest,
            dict(
                tenant_id=self._tenant(tenant_id),
                user_id=user_id,
                agent_id=agent_id,
                from_version=from_version,
                to_version=to_version,
            ),
        )
        return await self._ask("query.state.diff", request, StateDiffReply, retry)
