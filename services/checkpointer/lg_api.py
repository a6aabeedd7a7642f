"""The ``query.langgraph.*`` subjects as the runtime's ``QueryRoute``s (see api.py).

Each answers after its transaction committed: ``put`` returned means the checkpoint is
durable and every replica's next read sees it. Several requests of one subject run at
once (``langgraph_concurrency``): concurrent graphs never wait on one lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from pydantic import BaseModel

from contracts.langgraph import (
    COMMANDS,
    CopyThreadRequest,
    DeleteForRunsRequest,
    DeleteThreadRequest,
    DoneReply,
    GetTupleReply,
    GetTupleRequest,
    ListReply,
    ListRequest,
    PruneRequest,
    PutReply,
    PutRequest,
    PutWritesRequest,
)
from services.checkpointer import lg_maintain
from services.checkpointer.components import QueryPool
from services.checkpointer.lg_commands import LangGraphStore, put_writes
from services.runtime.db import create_pool
from services.runtime.own_pool import OwnPool
from services.runtime.replies import fit_items
from services.runtime.router import QueryRoute
from services.runtime.settings import WorkerSettings

HINT = "a thread's checkpoint must fit in one NATS message (see docs/langgraph.md)"
LIST_PAGE = 100  # rows read per list request when no limit is asked


class WritePool(OwnPool):
    """The connections query.langgraph.* writes with: the worker's role, apart from the
    batches' pool, so a burst of checkpoints does not wait for the STATE consumer."""

    name = "langgraph-pool"

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        # No RESET ALL round trip on release: every command sets its tenant first.
        return await create_pool(
            settings.database_url, worker=True, min_size=1, max_size=self.size, keep_session=True
        )


class LangGraphReadPool(QueryPool):
    """The connections query.langgraph.* reads with (the reader role): its own, as only
    these commands scope its sessions, so a session keeps its tenant between reads
    (``runtime.db.scope_session``); query.state.* set theirs inside their statements."""

    name = "langgraph-read-pool"


def langgraph_routes(
    store: LangGraphStore, writes: WritePool, reads: QueryPool, concurrency: int
) -> list[QueryRoute]:
    async def put(req: PutRequest, limit: int) -> PutReply:
        stored, new = await store.put(writes.pool, req)
        return PutReply(
            checkpoint_id=req.checkpoint_id,
            stored_bytes=stored,
            blob_ids={channel: blob_id for channel, (blob_id, _) in new.items()},
            depths={channel: depth for channel, (_, depth) in new.items()},
        )

    async def writes_(req: PutWritesRequest, limit: int) -> DoneReply:
        return DoneReply(checkpoints=await put_writes(writes.pool, req))

    async def get_tuple(req: GetTupleRequest, limit: int) -> GetTupleReply:
        view = await store.get_tuple(
            reads.pool,
            req.tenant_id,
            req.thread_id,
            req.checkpoint_ns,
            req.checkpoint_id,
            held=req.held,
        )
        return GetTupleReply(checkpoint=view)

    async def list_(req: ListRequest, limit: int) -> ListReply:
        filters = [req.thread_id, req.checkpoint_ns, req.checkpoint_id, req.filter, req.before]
        rows = min(req.limit or LIST_PAGE, LIST_PAGE)
        items = await store.list(reads.pool, req.tenant_id, filters, rows)
        more = len(items) == rows and (req.limit is None or req.limit > rows)
        reply = ListReply(items=items, size_limited=more)
        fitted, omitted = fit_items(reply, "items", limit)
        if not omitted:
            return reply
        return fitted.model_copy(update={"size_limited": True})

    async def delete_thread(req: DeleteThreadRequest, limit: int) -> DoneReply:
        n = await lg_maintain.delete_threads(
            writes.pool, store.cache, req.tenant_id, [req.thread_id]
        )
        return DoneReply(checkpoints=n)

    async def delete_for_runs(req: DeleteForRunsRequest, limit: int) -> DoneReply:
        return DoneReply(
            checkpoints=await lg_maintain.delete_for_runs(writes.pool, store.cache, req)
        )

    async def copy_thread(req: CopyThreadRequest, limit: int) -> DoneReply:
        return DoneReply(checkpoints=await lg_maintain.copy_thread(writes.pool, req))

    async def prune(req: PruneRequest, limit: int) -> DoneReply:
        return DoneReply(checkpoints=await lg_maintain.prune(writes.pool, store.cache, req))

    handlers: dict[str, Callable[[Any, int], Awaitable[BaseModel]]] = {
        "query.langgraph.put": put,
        "query.langgraph.put_writes": writes_,
        "query.langgraph.get_tuple": get_tuple,
        "query.langgraph.list": list_,
        "query.langgraph.delete_thread": delete_thread,
        "query.langgraph.delete_for_runs": delete_for_runs,
        "query.langgraph.copy_thread": copy_thread,
        "query.langgraph.prune": prune,
    }
    return [
        QueryRoute(
            subject,
            COMMANDS[subject][0],
            handle,
            description=f"LangGraph checkpointer: {subject.rsplit('.', 1)[-1]} "
            "(answers after COMMIT).",
            hint=HINT,
            max_workers=concurrency,
        )
        for subject, handle in handlers.items()
    ]
