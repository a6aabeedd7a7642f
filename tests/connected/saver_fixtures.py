"""``saver_for``: EngramSavers as an agent holds them, for the LangGraph tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from engram_client.langgraph import EngramSaver
from services.runtime.nats_auth import PRODUCER, inbox_prefix
from tests.conftest import Env

Saver = Callable[..., AbstractAsyncContextManager[EngramSaver]]


@pytest.fixture(name="saver_for")
def saver_for_fixture(env: Env) -> Saver:
    """``async with saver_for(tenant)``: a saver on its own connection, as an agent's
    (the ``producer`` NATS user: it may ask queries, and holds no database login)."""

    @asynccontextmanager
    async def make(tenant: str = "acme", **options: Any) -> AsyncIterator[EngramSaver]:
        async with EngramSaver.connect(
            env.nats_login(PRODUCER),
            tenant_id=tenant,
            nats_options={"inbox_prefix": inbox_prefix(PRODUCER)},
            **options,
        ) as saver:
            yield saver

    return make
