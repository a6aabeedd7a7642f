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


ALL_TENANTS = "*"


async def scope_tenant(conn: Connection, tenant: str, *, local: bool = True) -> None:
    """Row-level security (``engram.tenant_id``, read by every schema's policies): the
    rows of ``tenant``, or of every tenant with ``ALL_TENANTS``; until the end of the
    transaction (``local``), else of the session."""
    await conn.execute("SELECT set_config('engram.tenant_id', $1, $2)", tenant, local)


async def _keep_session(conn: Connection) -> None:
    return None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_pool(
    dsn: str,
    *,
    role: str | None = None,
    min_size: int = 1,
    max_size: int = 4,
    vectors: bool = False,
    keep_session: bool = False,
    **kwargs: Any,
) -> asyncpg.Pool:
    """``keep_session``: a released connection keeps its session settings (no ``RESET
    ALL``), for query pools whose settings are fixed per session; each query must then
    set its tenant (``scope_tenant(..., local=False)``) before it reads."""
    if keep_session:
        kwargs["reset"] = _keep_session

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn, role, vectors)

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init, **kwargs)
    assert pool is not None
    return pool
