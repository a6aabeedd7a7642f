"""PROVISIONAL: the part of ``query.chat.history`` (issue 16 §1, answered by ingest) the
context service reads, mirrored here until ``contracts/chat_queries.py`` lands on main.

Mirrors ``ChatHistoryRequest`` (tenant_id, conversation_id, order, limit) and the fields
of ``ChatHistoryReply.items`` (``MessageView``) a build uses; every other field is
ignored (``Contract`` ignores unknown fields), so the full reply parses. Once the contract
is on main, import ``ChatHistoryRequest`` and ``CHAT_HISTORY_REPLY`` from it and delete
this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter

from contracts.envelope import Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

CHAT_HISTORY_SUBJECT = "query.chat.history"


class HistoryRequest(Contract):
    tenant_id: str
    conversation_id: UUID
    order: Literal["newest_first", "oldest_first"] = "newest_first"
    limit: int = Field(default=50, ge=1, le=500)


class HistoryMessage(Contract):
    message_id: UUID
    role: str
    content: str
    created_at: datetime
    deleted: bool = False


class HistoryReply(Reply):
    items: list[HistoryMessage] = Field(default_factory=list)


HISTORY_REPLY = TypeAdapter[HistoryReply | QueryError](
    Annotated[HistoryReply | QueryError, ERROR_DISCRIMINATOR]
)
