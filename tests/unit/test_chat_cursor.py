"""Keyset cursors of query.chat.*: a cursor works only for the listing that handed it out."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.ingest.cursor import CONVERSATIONS, HISTORY, BadCursor, Position, decode, encode
from services.ingest.cursor import listing as scope_of

AT = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)


def test_a_cursor_gives_back_its_position_to_the_microsecond() -> None:
    pos = Position(AT, uuid4())
    scope = scope_of("acme", uuid4(), False)
    token = encode(HISTORY, "newest_first", scope, pos)
    assert "=" not in token and token.isascii()
    assert decode(token, HISTORY, "newest_first", scope) == pos


@pytest.mark.parametrize(
    ("kind", "order", "scope", "why"),
    [
        (CONVERSATIONS, "newest_first", "s", "another query"),
        (HISTORY, "oldest_first", "s", "other order"),
        (HISTORY, "newest_first", "t", "another listing"),
    ],
)
def test_a_cursor_of_another_listing_is_refused(
    kind: str, order: str, scope: str, why: str
) -> None:
    token = encode(HISTORY, "newest_first", "s", Position(AT, uuid4()))
    with pytest.raises(BadCursor, match=why):
        decode(token, kind, order, scope)


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "!!!!",
        "bnVsbA",
        "WzEsImgiXQ",
        "WzIsImgiLCJuIiwicyIsIngiLCJ5Il0",
        "WzEsImgiLCJuZXdlc3RfZmlyc3QiLCJzIiwibm90IGEgdGltZSIsIngiXQ",
    ],
)
def test_garbage_is_refused_with_a_reason(token: str) -> None:
    with pytest.raises(BadCursor):
        decode(token, HISTORY, "newest_first", "s")


def test_the_listing_digest_tells_tenants_and_filters_apart() -> None:
    cid = uuid4()
    assert scope_of("acme", cid, False) != scope_of("globex", cid, False)
    assert scope_of("acme", cid, False) != scope_of("acme", cid, True)
    assert scope_of("acme", "u", None, None) != scope_of("acme", None, "u", None)
