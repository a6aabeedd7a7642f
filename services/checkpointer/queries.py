"""Answers to ``query.state.get``, ``query.state.history`` and ``query.state.diff``.

Every statement is filtered by the request's tenant, and row-level security on
``engram.tenant_id`` is the second wall: a read sets it inside its one statement
(``checkpoint.read_version``), the history page sets it first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from contracts.state import (
    QueryError,
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
from services.checkpointer.logic import diff
from services.checkpointer.versions import loads
from services.runtime.db import Connection, create_pool, scope_tenant


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


async def create_query_pool(dsn: str, role: str | None, size: int) -> asyncpg.Pool:
    return await create_pool(dsn, role=role, min_size=1, max_size=size, keep_session=True)


def _missing(req: QueryKey) -> NotReadable:
    return NotReadable("not_found", f"no state for user {req.user_id!r}, agent "
                       f"{req.agent_id!r} in tenant {req.tenant_id!r}")


async def _read(conn: Connection, req: QueryKey, at_version: int | None = None,
                at_time: datetime | None = None) -> tuple[Any, dict[str, Any], bytes]:
    """The state's row, and the document and hash of the version asked for: one round
    trip (the function scopes the connection to the tenant before it reads)."""
    key = (req.tenant_id, req.user_id, req.agent_id)
    row = await repo_read.read_version(conn, key, at_version, at_time)
    if row is None:
        raise _missing(req)
    floor_at = row["history_floor_at"]
    if at_time is not None and floor_at is not None and at_time < floor_at:
        raise NotReadable("pruned", f"{at_time.isoformat()} is before the retained history")
    doc, digest = rebuilt(row)
    return row, doc, digest


def _error(err: NotReadable) -> QueryError:
    code = err.code if err.code in ("not_found", "pruned") else "internal"
    return QueryError(code=code, message=str(err))


async def get_state(pool: asyncpg.Pool, req: StateGetRequest) -> StateGetReply:
    async with pool.acquire() as conn:
        try:
            row, doc, digest = await _read(conn, req, req.at_version, req.at_time)
        except NotReadable as err:
            return StateGetReply(error=_error(err))
    head = row["target"] == row["version"]
    view = StateView(version=row["target"], state_hash=digest.hex(),
                     applied_at=row["target_applied_at"], **doc)
    return StateGetReply(state=view, modification_count=(
        row["modification_count"] if head else None))


async def get_history(pool: asyncpg.Pool, req: StateHistoryRequest) -> StateHistoryReply:
    async with scoped(pool, req.tenant_id) as conn:
        found = await repo_read.head(conn, (req.tenant_id, req.user_id, req.agent_id))
        if found is None:
            return StateHistoryReply(error=_error(_missing(req)))
        state = repo.head_of(found)
        rows = await repo_read.history_page(conn, state.state_id, req.before_version,
                                            req.limit + 1, req.include_patches)
    page = rows[: req.limit]
    items = [
        TransitionView(
            version=r["version"], kind=r["kind"], trigger=r["trigger"], actor=r["actor"],
            event_id=r["event_id"], state_hash=bytes(r["state_hash"]).hex(),
            op_count=r["op_count"], occurred_at=r["occurred_at"], applied_at=r["applied_at"],
            patch=loads(r[9]) if r[9] is not None else None,
            inverse=loads(r[10]) if r[10] is not None else None,
        )
        for r in page
    ]
    more = len(rows) > req.limit
    return StateHistoryReply(
        items=items,
        next_before_version=page[-1]["version"] if more and page else None,
        current_version=state.version,
        oldest_version=state.floor_version,
    )


async def get_diff(pool: asyncpg.Pool, req: StateDiffRequest) -> StateDiffReply:
    async with pool.acquire() as conn:
        try:
            _, before, _ = await _read(conn, req, req.from_version)
            _, after, _ = await _read(conn, req, req.to_version)
        except NotReadable as err:
            return StateDiffReply(error=_error(err))
    return StateDiffReply(from_version=req.from_version, to_version=req.to_version,
                          patch=diff(before, after))
