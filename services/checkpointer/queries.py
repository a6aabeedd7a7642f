"""Answers to ``query.state.get``, ``query.state.history`` and ``query.state.diff``.

Each runs on the query pool's connection after setting ``engram.tenant_id`` (row-level
security), and every statement is filtered by the request's tenant as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from contracts.state import (
    PARTITIONS,
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
from services.checkpointer.history import NotReadable, StatePoint, rebuild
from services.checkpointer.logic import diff
from services.checkpointer.versions import canonical, loads, state_hash
from services.runtime.db import Connection, create_pool


@asynccontextmanager
async def scoped(pool: asyncpg.Pool, tenant: str) -> AsyncIterator[Connection]:
    """A connection of the query pool on which row-level security shows only ``tenant``.

    No transaction: a read is one ``locate`` and one ``base_and_patches`` statement, and a
    version's rows never change once written (pruning removes whole versions, which then
    read as "pruned"). The pool does not reset connections on release (see
    ``create_query_pool``): each query sets its tenant first.
    """
    async with pool.acquire() as conn:
        await repo_read.set_tenant(conn, tenant)
        yield conn


async def _no_reset(conn: Connection) -> None:
    return None


async def create_query_pool(dsn: str, role: str | None, size: int) -> asyncpg.Pool:
    return await create_pool(dsn, role=role, min_size=1, max_size=size, reset=_no_reset)


class _State:
    """A state's current row, as a base to rebuild versions from."""

    def __init__(self, conn: Connection, row: Any) -> None:
        self.conn = conn
        self.row = row
        self.head = repo.head_of(row)
        self.point = StatePoint(self.head.state_id, self.head.version, self.head.floor_version)

    async def current(self) -> dict[str, Any]:
        """The current document (from the located row when it came along)."""
        if self.row.get("head_needed"):
            texts = [self.row[c] for c in ("l", "sh", "se", "p")]
        else:
            texts = (await repo.load_partitions(self.conn, [self.head.state_id]))[
                self.head.state_id]
        return {name: loads(text) for name, text in zip(PARTITIONS, texts, strict=True)}

    async def at(self, version: int) -> dict[str, Any]:
        around = (self.row["below"], self.row["above"]) if version == self.row.get(
            "target", -1) else None
        return await rebuild(self.conn, self.point, version, self.current, around)


async def _find(conn: Connection, req: QueryKey, at_version: int | None = None,
                at_time: datetime | None = None) -> _State:
    key = (req.tenant_id, req.user_id, req.agent_id)
    row = await repo_read.locate(conn, key, at_version, at_time)
    if row is None:
        raise NotReadable("not_found", f"no state for user {req.user_id!r}, agent "
                          f"{req.agent_id!r} in tenant {req.tenant_id!r}")
    return _State(conn, dict(row))


def _error(err: NotReadable) -> QueryError:
    code = err.code if err.code in ("not_found", "pruned") else "internal"
    return QueryError(code=code, message=str(err))


async def get_state(pool: asyncpg.Pool, req: StateGetRequest) -> StateGetReply:
    async with scoped(pool, req.tenant_id) as conn:
        try:
            state = await _find(conn, req, req.at_version, req.at_time)
            floor_at = state.head.floor_at
            if req.at_time is not None and floor_at is not None and req.at_time < floor_at:
                raise NotReadable("pruned", f"{req.at_time.isoformat()} is before the "
                                  "retained history")
            version = state.row["target"]
            doc = await state.at(version)
        except NotReadable as err:
            return StateGetReply(error=_error(err))
    head = version == state.head.version
    view = StateView(
        version=version,
        state_hash=(state.head.state_hash if head else state_hash(canonical(doc))).hex(),
        applied_at=state.row["updated_at"] if head else state.row["target_applied_at"],
        **doc,
    )
    return StateGetReply(state=view, modification_count=(
        state.head.modification_count if head else None))


async def get_history(pool: asyncpg.Pool, req: StateHistoryRequest) -> StateHistoryReply:
    async with scoped(pool, req.tenant_id) as conn:
        try:
            state = await _find(conn, req)
        except NotReadable as err:
            return StateHistoryReply(error=_error(err))
        rows = await repo_read.history_page(conn, state.head.state_id, req.before_version,
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
        current_version=state.head.version,
        oldest_version=state.head.floor_version,
    )


async def get_diff(pool: asyncpg.Pool, req: StateDiffRequest) -> StateDiffReply:
    async with scoped(pool, req.tenant_id) as conn:
        try:
            state = await _find(conn, req)
            before = await state.at(req.from_version)
            after = await state.at(req.to_version)
        except NotReadable as err:
            return StateDiffReply(error=_error(err))
    return StateDiffReply(from_version=req.from_version, to_version=req.to_version,
                          patch=diff(before, after))
