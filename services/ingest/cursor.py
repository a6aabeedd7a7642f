"""Keyset cursors of the chat queries (pure): where a page ended, as an opaque string.

A cursor is the last item's sort key — (created_at, message_id) of a message, or
(last_activity_at, conversation_id) of a conversation — with what it is a cursor of: the
query, the order, and a digest of the listing (tenant and conversation, or tenant, owner
and filter). It is base64url of a short JSON array, not signed: decoding one gives
nothing a client could not ask for anyway (row-level security still shows one tenant),
so the checks are there to tell a client that sent the wrong cursor, not to stop one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

FORMAT = 1
HISTORY, CONVERSATIONS = "h", "c"


@dataclass(frozen=True)
class Position:
    """A sort key: the page goes on after (or before) this item."""

    at: datetime
    id: UUID


class BadCursor(ValueError):
    """The cursor is not one this listing handed out; the message says why."""


def listing(*parts: object) -> str:
    """A short digest naming one listing (tenant, conversation or owner, filters)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(kind: str, order: str, scope: str, pos: Position) -> str:
    raw = json.dumps([FORMAT, kind, order, scope, pos.at.isoformat(), str(pos.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, kind: str, order: str, scope: str) -> Position:
    """The position in ``token``, which must be a cursor of this very listing."""
    fields = _fields(token)
    if fields[1] != kind:
        raise BadCursor("the cursor is from another query")
    if fields[3] != scope:
        raise BadCursor("the cursor is from another listing (tenant, conversation or owner)")
    if fields[2] != order:
        raise BadCursor(f"the cursor is from a listing in the other order ({fields[2]})")
    try:
        at = datetime.fromisoformat(fields[4])
        id_ = UUID(fields[5])
    except (TypeError, ValueError):
        raise BadCursor("the cursor's position is damaged") from None
    if at.tzinfo is None:
        raise BadCursor("the cursor's position is damaged")
    return Position(at, id_)


def _fields(token: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("the cursor is not one this service handed out") from None
    if not isinstance(fields, list) or len(fields) != 6 or fields[0] != FORMAT:
        raise BadCursor("the cursor is not one this service handed out")
    if not all(isinstance(f, str) for f in fields[1:]):
        raise BadCursor("the cursor is not one this service handed out")
    return fields
