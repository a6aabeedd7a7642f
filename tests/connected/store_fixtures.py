"""Fixtures of the EngramStore tests: a store on the real memory and embedder workers,
and SQL past the tenant wall (the superuser) to look at or backdate rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from engram_client.store import EngramStore
from services.runtime.nats_auth import PRODUCER, inbox_prefix
from services.runtime.worker import Worker
from tests.conftest import Env

Store = Callable[..., AbstractAsyncContextManager[EngramStore]]
INDEX: dict[str, Any] = {"dims": 384, "fields": ["text"]}


@pytest.fixture(name="store_for")
def store_for_fixture(env: Env, memory: Worker) -> Store:
    """``async with store_for(tenant, **options)``: a store on its own connection, as an
    agent's (the ``producer`` NATS user; no database login)."""

    @asynccontextmanager
    async def make(tenant: str = "acme", **options: Any) -> AsyncIterator[EngramStore]:
        async with EngramStore.connect(
            env.nats_login(PRODUCER),
            tenant_id=tenant,
            nats_options={"inbox_prefix": inbox_prefix(PRODUCER)},
            **options,
        ) as store:
            yield store

    return make


async def sql(env: Env, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(env.database_url)  # the superuser: past the tenant wall
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def expire_now(env: Env, ns: tuple[str, ...], key: str) -> None:
    """Backdate an item's expiry (unswept), as LangGraph's _aexpire_now does."""
    await sql(
        env,
        "UPDATE memory.store_items SET expires_at = now() - interval '1 minute'"
        " WHERE namespace = $1 AND key = $2",
        list(ns),
        key,
    )


async def expires_at(env: Env, ns: tuple[str, ...], key: str) -> datetime:
    rows = await sql(
        env,
        "SELECT expires_at FROM memory.store_items WHERE namespace = $1 AND key = $2",
        list(ns),
        key,
    )
    return rows[0]["expires_at"]  # type: ignore[no-any-return]
