"""Answers to ``query.chat.history`` and ``query.chat.conversations``.

``ChatReads`` is the component that owns the query pool: connections that act as
``engram_ingest_reader`` (reads of exactly the one tenant set in ``engram.tenant_id``,
sql/ingest/002 and services/runtime/tenancy.py) and are not reset on release, so each
query sets its tenant first (unless the session serves that tenant already) and is then
one statement (a history page with every version: two). A conversation of another
tenant is invisible to the reader: it is ``not_found``, word for word as a missing one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from contracts.chat_queries import (
    ChatConversationsReply,
    ChatConversationsRequest,
    ChatHistoryReply,
    ChatHistoryRequest,
    ConversationSummary,
    MessageVersionView,
    MessageView,
    Order,
)
from contracts.errors import ErrorCode
from services.ingest import cursor, repo_read
from services.ingest.cursor import BadCursor, Position
from services.runtime.db import Connection, create_pool, scope_session
from services.runtime.own_pool import OwnPool
from services.runtime.replies import QueryFailed, fit_items
from services.runtime.settings import WorkerSettings

HISTORY_HINT = "ask for a smaller limit, or without include_versions"
CONVERSATIONS_HINT = "ask for a smaller limit"


class ChatReads(OwnPool):
    """The connections the chat queries read with, apart from the writer's pool: a burst
    of reads never waits for a batch's connection, nor a batch for a read."""

    name = "chat-reads"

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        return await create_pool(
            settings.database_url,
            role=settings.roles.reader,
            worker=True,
            min_size=1,
            max_size=self.size,
            keep_session=True,
            # Each page's first-page sentinels and flags are constants of its own plan.
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )

    @asynccontextmanager
    async def scoped(self, tenant: str) -> AsyncIterator[Connection]:
        """A connection on which row-level security shows only ``tenant`` (no transaction:
        each page is one statement, consistent on its own)."""
        async with self.pool.acquire() as conn:
            await scope_session(conn, tenant)  # no round trip when it serves this tenant
            yield conn


def bad_cursor(err: BadCursor) -> QueryFailed:
    """The same shape as any broken field (``detail.errors``), plus what to do."""
    return QueryFailed(
        ErrorCode.invalid,
        f"bad request: cursor: {err}",
        hint="send back the next_cursor of the previous page of this same listing, or no "
        "cursor to start again",
        detail={"errors": [{"loc": ["request", "cursor"], "msg": str(err)}]},  # as a field
    )


def _position(token: str | None, kind: str, order: str, scope: str) -> Position | None:
    if token is None:
        return None
    try:
        return cursor.decode(token, kind, order, scope)
    except BadCursor as err:
        raise bad_cursor(err) from None


def summary(row: asyncpg.Record | dict[str, Any]) -> ConversationSummary:
    return ConversationSummary.model_validate(dict(row))


async def history(reads: ChatReads, req: ChatHistoryRequest, limit: int) -> ChatHistoryReply:
    scope = cursor.listing(req.tenant_id, req.conversation_id, req.include_deleted)
    after = _position(req.cursor, cursor.HISTORY, req.order.value, scope)
    newest = req.order is Order.newest_first
    async with reads.scoped(req.tenant_id) as conn:
        found, rows = await repo_read.page(
            conn,
            req.tenant_id,
            req.conversation_id,
            newest_first=newest,
            after=(after.at, after.id) if after else None,
            include_deleted=req.include_deleted,
            limit=req.limit + 1,
            budget=limit,
        )
        if found is None:
            raise QueryFailed(
                ErrorCode.not_found,
                f"no conversation {req.conversation_id} in tenant {req.tenant_id!r}",
            )
        page = rows[: req.limit]
        # Content past the reply's budget was not read: the page stops before it.
        kept = [r for r in page if r["content"] is not None]
        by_message: dict[UUID, list[MessageVersionView]] = {}
        if req.include_versions and kept:
            ids = [r["message_id"] for r in kept]
            for v in await repo_read.versions(conn, req.tenant_id, ids, limit):
                if v["content"] is None:
                    break  # past the budget: the page stops before this message
                view = MessageVersionView.model_validate(dict(v))
                by_message.setdefault(v["message_id"], []).append(view)
            kept = _with_every_version(kept, by_message)
    items = [_message(r, by_message if req.include_versions else None) for r in kept]
    more = len(rows) > req.limit or len(kept) < len(page)

    def next_after(view: MessageView) -> str:
        pos = Position(view.created_at, view.message_id)
        return cursor.encode(cursor.HISTORY, req.order.value, scope, pos)

    reply = ChatHistoryReply(
        conversation=summary(found),
        order=req.order,
        items=items,
        next_cursor=next_after(items[-1]) if more and items else None,
        size_limited=len(kept) < len(page),
    )
    fitted, omitted = fit_items(reply, "items", limit)
    if not omitted:
        return reply
    if not fitted.items:  # one message alone (with its versions) is over the limit
        first = items[0]
        raise QueryFailed(
            ErrorCode.too_large,
            f"message {first.message_id} alone does not fit in one reply",
            hint="read past it with detail.next_cursor, or ask without include_versions",
            detail={
                "message_id": str(first.message_id),
                "limit": limit,
                "next_cursor": next_after(first),
            },
        )
    return fitted.model_copy(
        update={"size_limited": True, "next_cursor": next_after(fitted.items[-1])}
    )


def _with_every_version(
    rows: list[asyncpg.Record], by_message: dict[UUID, list[MessageVersionView]]
) -> list[asyncpg.Record]:
    """The leading messages whose versions were all read (at least the first: if even its
    versions do not fit, the reply is too_large)."""
    complete = []
    for row in rows:
        if len(by_message.get(row["message_id"], ())) != row["version"]:
            break
        complete.append(row)
    return complete or rows[:1]


def _message(
    row: asyncpg.Record, versions: dict[UUID, list[MessageVersionView]] | None
) -> MessageView:
    values = dict(row)
    values["deleted"] = row["deleted_at"] is not None
    if versions is not None:
        values["versions"] = versions.get(row["message_id"], [])
    return MessageView.model_validate(values)


async def conversations(
    reads: ChatReads, req: ChatConversationsRequest, limit: int
) -> ChatConversationsReply:
    status = req.status.value if req.status else None
    scope = cursor.listing(req.tenant_id, req.user_id, req.agent_id, status)
    after = _position(req.cursor, cursor.CONVERSATIONS, "newest_first", scope)
    async with reads.scoped(req.tenant_id) as conn:
        rows = await repo_read.conversations(
            conn,
            req.tenant_id,
            user_id=req.user_id,
            agent_id=req.agent_id,
            status=status,
            after=(after.at, after.id) if after else None,
            limit=req.limit + 1,
        )
    items = [summary(r) for r in rows[: req.limit]]

    def next_after(view: ConversationSummary) -> str:
        pos = Position(view.last_activity_at, view.conversation_id)
        return cursor.encode(cursor.CONVERSATIONS, "newest_first", scope, pos)

    reply = ChatConversationsReply(
        items=items, next_cursor=next_after(items[-1]) if len(rows) > req.limit else None
    )
    fitted, omitted = fit_items(reply, "items", limit)
    if not omitted:
        return reply
    if not fitted.items:
        raise QueryFailed(
            ErrorCode.too_large, "one conversation alone does not fit", hint=CONVERSATIONS_HINT
        )
    return fitted.model_copy(
        update={"size_limited": True, "next_cursor": next_after(fitted.items[-1])}
    )
