"""Answers to ``query.state.get``, ``query.state.history`` and ``query.state.diff``.

Every statement is filtered by the request's tenant, and row-level security on
``engram.tenant_id`` is the second wall: a read sets it inside its one statement
(``checkpoint.read_version``), the history page sets it first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from contracts.errors import ErrorCode
from contracts.state import PARTITIONS
from contracts.state_queries import (
    QueryKey,
    StateDiffReply,
    StateDiffRequest,
    StateGetReply,
    StateGetRequest,
    StateHistoryReply,
    StateHistoryRequest,
    StateView,
    TransitionView,
)
from services.checkpointer import repo, repo_read
from services.checkpointer.history import NotReadable, rebuilt
from services.checkpointer.patch import Document
from services.checkpointer.patch_diff import diff
from services.checkpointer.versions import dumps, loads
from services.runtime.db import Connection, create_pool, scope_tenant
from services.runtime.replies import PACK_SLACK, QueryFailed, fit_items, json_size

GET_HINT = "ask for fewer partitions (`partitions`; detail.partition_bytes gives each size)"
HISTORY_HINT = "ask with include_patches=false, or a smaller limit"
DIFF_HINT = "diff a shorter range of versions, or page through query.state.history"


@asynccontextmanager
async def scoped(pool: asyncpg.Pool, tenant: str) -> AsyncIterator[Connection]:
    """A connection of the query pool on which row-level security shows only ``tenant``.

    No transaction: a version's rows never change once written (pruning removes whole
    versions, which then read as "pruned"). The pool does not reset connections on
    release (see ``create_query_pool``): each query sets its tenant first.
    """
    async with pool.acquire() as conn:
        await scope_tenant(conn, tenant, local=False)
        yield conn


async def create_query_pool(dsn: str, reader: str, size: int) -> asyncpg.Pool:
    """Connections that act as the service's reader: reads of the one tenant set."""
    return await create_pool(
        dsn, role=reader, worker=True, min_size=1, max_size=size, keep_session=True
    )


def _missing(req: QueryKey) -> NotReadable:
    return NotReadable(
        "not_found",
        f"no state for user {req.user_id!r}, agent {req.agent_id!r} in tenant {req.tenant_id!r}",
    )


async def _read(
    conn: Connection, req: QueryKey, at_version: int | None = None, at_time: datetime | None = None
) -> tuple[asyncpg.Record, Document, bytes]:
    """The state's row, and the document and hash of the version asked for: one round
    trip (the function scopes the connection to the tenant before it reads)."""
    key = (req.tenant_id, req.user_id, req.agent_id)
    row = await repo_read.read_version(conn, key, at_version, at_time)
    if row is None or row["version"] == 0:  # version 0: a conflict's key, not a state
        raise _missing(req)
    floor_at = row["history_floor_at"]
    if at_time is not None and floor_at is not None and at_time < floor_at:
        raise NotReadable("pruned", f"{at_time.isoformat()} is before the retained history")
    doc, digest = rebuilt(row)
    return row, doc, digest


def _failed(err: NotReadable) -> QueryFailed:
    code = ErrorCode(err.code) if err.code in ("not_found", "pruned") else ErrorCode.internal
    return QueryFailed(code, str(err))


async def get_state(pool: asyncpg.Pool, req: StateGetRequest, limit: int) -> StateGetReply:
    async with pool.acquire() as conn:
        try:
            row, doc, digest = await _read(conn, req, req.at_version, req.at_time)
        except NotReadable as err:
            raise _failed(err) from None
    head = row["target"] == row["version"]
    wanted = set(req.partitions or PARTITIONS)
    view = StateView(
        version=row["target"],
        state_hash=digest.hex(),
        applied_at=row["target_applied_at"],
        **{p: doc[p] if p in wanted else None for p in PARTITIONS},
    )
    reply = StateGetReply(
        state=view, modification_count=(row["modification_count"] if head else None)
    )
    size = json_size(reply)
    if size > limit:
        raise _state_too_large(doc, wanted, size, limit)
    return reply


def _state_too_large(doc: Document, wanted: set[str], size: int, limit: int) -> QueryFailed:
    """``too_large`` with each partition's size, and which of them fit one reply."""
    sizes = {p: len(dumps(doc[p]).encode()) for p in PARTITIONS if p in wanted}
    room = limit - PACK_SLACK - 600  # the view's version, hash and times
    fitting = [p for p in PARTITIONS if p in sizes and sizes[p] <= room]
    hint = (
        f"ask for fewer partitions: each of {fitting} fits on its own"
        if fitting
        else "no asked-for partition fits in one message on its own; "
        "read the changes with query.state.history (include_patches) instead"
    )
    return QueryFailed(
        ErrorCode.too_large,
        f"the state is {size} bytes as a reply; one message carries at most {limit}",
        hint=hint,
        detail={"size": size, "limit": limit, "partition_bytes": sizes},
    )


async def get_history(
    pool: asyncpg.Pool, req: StateHistoryRequest, limit: int
) -> StateHistoryReply:
    async with scoped(pool, req.tenant_id) as conn:
        found = await repo_read.head(conn, (req.tenant_id, req.user_id, req.agent_id))
        if found is None or found["version"] == 0:
            raise _failed(_missing(req))
        state = repo.head_of(found)
        rows = await repo_read.history_page(
            conn, state.state_id, req.before_version, req.limit + 1, req.include_patches
        )
    page = rows[: req.limit]
    items = [
        TransitionView(
            version=r["version"],
            kind=r["kind"],
            trigger=r["trigger"],
            actor=r["actor"],
            event_id=r["event_id"],
            state_hash=bytes(r["state_hash"]).hex(),
            op_count=r["op_count"],
            occurred_at=r["occurred_at"],
            applied_at=r["applied_at"],
            patch=loads(r[9]) if r[9] is not None else None,
            inverse=loads(r[10]) if r[10] is not None else None,
        )
        for r in page
    ]
    more = len(rows) > req.limit
    reply = StateHistoryReply(
        items=items,
        next_before_version=page[-1]["version"] if more and page else None,
        current_version=state.version,
        oldest_version=state.floor_version,
    )
    fitted, omitted = fit_items(reply, "items", limit)
    if not omitted:
        return reply
    if not fitted.items:  # one transition alone is over the limit
        raise QueryFailed(
            ErrorCode.too_large,
            f"version {items[0].version}'s patches alone do not fit in one message",
            hint=HISTORY_HINT,
            detail={"version": items[0].version, "limit": limit},
        )
    return fitted.model_copy(
        update={"size_limited": True, "next_before_version": fitted.items[-1].version}
    )


async def get_diff(pool: asyncpg.Pool, req: StateDiffRequest, limit: int) -> StateDiffReply:
    del limit  # a diff is whole or nothing: what does not fit is too_large (DIFF_HINT)
    async with pool.acquire() as conn:
        try:
            _, before, _ = await _read(conn, req, req.from_version)
            _, after, _ = await _read(conn, req, req.to_version)
        except NotReadable as err:
            raise _failed(err) from None
    return StateDiffReply(
        from_version=req.from_version, to_version=req.to_version, patch=diff(before, after)
    )
