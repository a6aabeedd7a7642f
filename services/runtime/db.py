"""The asyncpg pool every service uses: JSON codecs, pgvector, and the service's own role."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What a handler is given: a pooled connection (or a plain one in tools and tests).
Connection = asyncpg.Connection | PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection, role: str | None, vectors: bool) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    if vectors:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
    if role:
        # Each service writes only its own schema: its role has no rights elsewhere.
        await conn.execute(f"SET ROLE {quote_ident(role)}")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_pool(
    dsn: str,
    *,
    role: str | None = None,
    min_size: int = 1,
    max_size: int = 4,
    vectors: bool = False,
    **kwargs: Any,
) -> asyncpg.Pool:
    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn, role, vectors)

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init, **kwargs)
    assert pool is not None
    return pool
