"""A history page is one statement on a session that keeps its tenant: the edges of that
path, from the published contract. A conversation with no messages yet is an empty page
(not ``not_found``); one reader connection that serves two tenants in turn shows each
only its own conversation, whichever it served before."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID, uuid4

import orjson
from nats.aio.client import Client as NatsClient

from contracts.chat_queries import CHAT_HISTORY_REPLY, ChatHistoryReply
from contracts.errors import ErrorCode, QueryError
from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import drained, eventually, publish


async def ask(nc: NatsClient, tenant: str, cid: UUID) -> Any:
    body = {"tenant_id": tenant, "conversation_id": str(cid), "limit": 5}
    msg = await nc.request("query.chat.history", orjson.dumps(body), timeout=10)
    return CHAT_HISTORY_REPLY.validate_json(msg.data)


async def test_an_empty_conversation_and_tenants_in_turn_on_one_connection(
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]], nc: NatsClient
) -> None:
    empty, acme, globex = uuid4(), uuid4(), uuid4()
    async with run_ingest(query_pool_max=1):  # every query on the same session
        await publish(
            nc,
            f.conversation(empty, tenant="acme", user_id="u-1"),
            f.conversation(acme, tenant="acme", user_id="u-1"),
            f.conversation(globex, tenant="globex", user_id="u-1"),
            f.message(acme, uuid4(), "acme", "acme's message", f.T0),
            f.message(globex, uuid4(), "globex", "globex's message", f.T0),
        )
        await eventually(lambda: drained(nc), timeout=60)

        page = await ask(nc, "acme", empty)
        assert isinstance(page, ChatHistoryReply), page
        assert page.items == [] and page.next_cursor is None
        assert page.conversation.conversation_id == empty
        assert page.conversation.message_count == 0

        for tenant, mine, theirs in [
            ("acme", acme, globex),
            ("globex", globex, acme),
            ("globex", globex, acme),
            ("acme", acme, globex),
        ]:
            own = await ask(nc, tenant, mine)
            assert isinstance(own, ChatHistoryReply), own
            assert [m.content for m in own.items] == [f"{tenant}'s message"]
            other = await ask(nc, tenant, theirs)
            assert isinstance(other, QueryError) and other.code is ErrorCode.not_found
