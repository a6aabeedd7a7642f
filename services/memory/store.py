"""``query.store.batch`` and ``query.store.sweep``: LangGraph's long-term store, answered
by the memory service after COMMIT (contracts.store; client engram_client.store).

A batch's texts (indexed texts of its puts, queries of its searches) are embedded first,
in one ``query.embed`` request per 256 texts; then its operations run in order in one
transaction scoped to the tenant, so the reply means: committed, and a search right
after finds what was put. An indexed item is also a semantic memory of the store's agent
(``repo_store.upsert_memory``), found by ``query.memory.search``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

import asyncpg
import numpy as np
from nats.aio.client import Client as NatsClient

from contracts.embedding import EMBED_REPLY, EMBED_SUBJECT, MAX_EMBED_TEXTS, EmbedRequest
from contracts.errors import ErrorCode, QueryError
from contracts.store import (
    COMMANDS,
    STORE_BATCH_SUBJECT,
    STORE_SWEEP_SUBJECT,
    GetOp,
    GetResult,
    ListNamespacesOp,
    NamespacesResult,
    PutOp,
    PutResult,
    SearchOp,
    SearchResult,
    StoreBatchReply,
    StoreBatchRequest,
    StoreResult,
    StoreSweepReply,
    StoreSweepRequest,
)
from services.memory import repo, repo_store
from services.memory.logic import content_hash, derived_id, estimate_tokens
from services.memory.query_vector import EmbedderUnavailable
from services.memory.settings import MemorySettings
from services.memory.store_sql import FilterError
from services.runtime.component import NotStarted, WorkerContext
from services.runtime.db import Connection, create_pool, scope_tenant
from services.runtime.errors import describe
from services.runtime.own_pool import OwnPool
from services.runtime.replies import QueryFailed
from services.runtime.router import QueryRoute
from services.runtime.settings import WorkerSettings

MAX_MEMORY_TEXT = 100_000  # characters of an item's memory text (its indexed texts joined)
Vectors = dict[str, np.ndarray]


def memory_text(op: PutOp) -> str:
    """What the item says, as one memory text: its indexed texts in order."""
    return "\n".join(t.text for t in op.texts)[:MAX_MEMORY_TEXT]


def importance_of(value: dict[str, object], default: float) -> float:
    """``value["importance"]`` when it is a number in [0, 1], else the default."""
    x = value.get("importance")
    if isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1:
        return float(x)
    return default


def memory_id_of(tenant: str, namespace: Sequence[str], key: str) -> UUID:
    """Stable per item: the same item is the same memory, put after put."""
    return derived_id("store", tenant, json.dumps([list(namespace), key]))


def texts_of(ops: Sequence[object]) -> list[str]:
    """Every distinct text the batch needs a vector for, in first-seen order."""
    texts: dict[str, None] = {}
    for op in ops:
        if isinstance(op, PutOp) and op.value is not None and op.texts:
            texts.update(dict.fromkeys(t.text for t in op.texts))
            texts[memory_text(op)] = None
        elif isinstance(op, SearchOp) and op.query:
            texts[op.query] = None
    return list(texts)


async def embed_texts(nc: NatsClient, texts: list[str], timeout: float) -> tuple[str, Vectors]:
    model_id, vectors = "", Vectors()
    for start in range(0, len(texts), MAX_EMBED_TEXTS):
        chunk = texts[start : start + MAX_EMBED_TEXTS]
        try:
            msg = await nc.request(
                EMBED_SUBJECT, EmbedRequest(texts=chunk).model_dump_json().encode(), timeout=timeout
            )
        except Exception as exc:
            raise EmbedderUnavailable(f"query.embed did not answer: {describe(exc)}") from exc
        reply = EMBED_REPLY.validate_json(msg.data)
        if isinstance(reply, QueryError):
            raise EmbedderUnavailable(f"query.embed: {reply.message}")
        model_id = reply.model_id
        for text, v in zip(chunk, reply.vectors, strict=True):
            vectors[text] = np.asarray(v, dtype=np.float32)
    return model_id, vectors


class StoreCommands(OwnPool):
    """The component behind query.store.*: its own connections (the worker's role: it
    writes), the worker's NATS connection for query.embed."""

    name = "langgraph-store"

    def __init__(self, settings: MemorySettings) -> None:
        super().__init__(settings.store_pool_max)
        self.settings = settings
        self._nc: NatsClient | None = None
        self._indexed: set[str] = set()  # models whose HNSW index on memories exists

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        return await create_pool(
            settings.database_url, worker=True, min_size=1, max_size=self.size, vectors=True
        )

    async def start(self, ctx: WorkerContext) -> None:
        await super().start(ctx)
        self._nc = ctx.nc

    def _started(self) -> tuple[asyncpg.Pool, NatsClient]:
        if self._nc is None:
            raise NotStarted("the store commands")
        return self.pool, self._nc

    async def batch(self, req: StoreBatchRequest, limit: int) -> StoreBatchReply:
        pool, nc = self._started()
        model_id, vectors = "", Vectors()
        if texts := texts_of(req.ops):
            model_id, vectors = await embed_texts(nc, texts, self.settings.embed_timeout_s)
        results: list[StoreResult] = []
        async with pool.acquire() as conn, conn.transaction():
            await scope_tenant(conn, req.tenant_id)
            if vectors and model_id not in self._indexed:
                dims = len(next(iter(vectors.values())))
                await repo.ensure_model_index(conn, model_id, dims)
            for op in req.ops:
                results.append(await self._run(conn, req, op, model_id, vectors))
        if vectors:
            self._indexed.add(model_id)
        return StoreBatchReply(results=results)

    async def _run(
        self,
        conn: Connection,
        req: StoreBatchRequest,
        op: GetOp | PutOp | SearchOp | ListNamespacesOp,
        model_id: str,
        vectors: Vectors,
    ) -> StoreResult:
        tenant = req.tenant_id
        if isinstance(op, GetOp):
            item = await repo_store.get(conn, tenant, op.namespace, op.key, op.refresh_ttl)
            return GetResult(item=item)
        if isinstance(op, SearchOp):
            query = (model_id, vectors[op.query]) if op.query else None
            try:
                items = await repo_store.search(conn, tenant, op, query)
            except FilterError as exc:
                raise QueryFailed(ErrorCode.invalid, str(exc)) from None
            return SearchResult(items=items)
        if isinstance(op, ListNamespacesOp):
            return NamespacesResult(namespaces=await repo_store.list_namespaces(conn, tenant, op))
        return await self._put(conn, req, op, model_id, vectors)

    async def _put(
        self,
        conn: Connection,
        req: StoreBatchRequest,
        op: PutOp,
        model_id: str,
        vectors: Vectors,
    ) -> PutResult:
        tenant = req.tenant_id
        if op.value is None:
            await repo_store.delete(conn, tenant, op.namespace, op.key)
            return PutResult()
        memory_id = memory_id_of(tenant, op.namespace, op.key) if op.texts else None
        await repo_store.put(
            conn,
            tenant,
            op.namespace,
            op.key,
            value=op.value,
            ttl_minutes=op.ttl_minutes,
            memory_id=memory_id,
        )
        if memory_id is None:
            return PutResult()
        await repo_store.add_vectors(
            conn,
            tenant,
            op.namespace,
            op.key,
            model_id=model_id,
            vectors=[(t.path, vectors[t.text]) for t in op.texts],
        )
        text = memory_text(op)
        s = self.settings
        memory = repo_store.StoreMemory(
            memory_id=memory_id,
            agent_id=req.agent_id,
            concept=op.key,
            text=text,
            content_hash=content_hash(text),
            tokens=estimate_tokens(text),
            importance=importance_of(op.value, s.store_importance),
            decay_rate=s.decay_rates.get("semantic", 0.005),
            model_id=model_id,
            vector=vectors[text],
        )
        await repo_store.upsert_memory(conn, tenant, memory, op.ttl_minutes)
        return PutResult(memory_id=str(memory_id))

    async def sweep(self, req: StoreSweepRequest, limit: int) -> StoreSweepReply:
        pool, _ = self._started()
        async with pool.acquire() as conn, conn.transaction():
            await scope_tenant(conn, req.tenant_id)
            return StoreSweepReply(deleted=await repo_store.sweep(conn, req.tenant_id))

    def routes(self) -> list[QueryRoute]:
        return [
            QueryRoute(
                STORE_BATCH_SUBJECT,
                COMMANDS[STORE_BATCH_SUBJECT][0],
                self.batch,
                description="LangGraph store: one abatch (get, put/delete, search, "
                "list_namespaces in order; answers after COMMIT).",
                hint="search with a smaller limit, or split the batch",
                unavailable=(EmbedderUnavailable,),
                max_workers=self.settings.store_concurrency,
            ),
            QueryRoute(
                STORE_SWEEP_SUBJECT,
                COMMANDS[STORE_SWEEP_SUBJECT][0],
                self.sweep,
                description="LangGraph store: delete the tenant's expired items now.",
                hint="",
                max_workers=1,
            ),
        ]
