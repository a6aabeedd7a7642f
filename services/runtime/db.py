"""The asyncpg pool every service uses: JSON codecs, pgvector, and the service's own role.

Each service has four database roles (docs/security.md): ``engram_<svc>_owner`` (NOLOGIN,
owns the schema's objects), ``engram_<svc>`` (the worker's login), ``engram_<svc>_reader``
(what query paths act as: reads of one tenant) and ``engram_<svc>_all_tenants`` (what the
few cross-tenant jobs act as, explicitly, per transaction)."""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What a handler is given: a pooled connection (or a plain one in tools and tests).
Connection = asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True)
class Roles:
    """The database roles of one service."""

    service: str

    @property
    def worker(self) -> str:
        return f"engram_{self.service}"

    @property
    def owner(self) -> str:
        return f"engram_{self.service}_owner"

    @property
    def reader(self) -> str:
        return f"engram_{self.service}_reader"

    @property
    def all_tenants(self) -> str:
        return f"engram_{self.service}_all_tenants"


class PrivilegedLogin(RuntimeError):
    """A worker asked to log in as a role that could leave its schema or its tenants."""


# A session that would be exempt from row-level security, or could become any role.
_PRIVILEGED = """
SELECT r.rolname FROM pg_roles r
 WHERE r.rolname = session_user AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole)
"""


async def _refuse_privileged(conn: asyncpg.Connection) -> None:
    name = await conn.fetchval(_PRIVILEGED)
    if name is not None:
        raise PrivilegedLogin(
            f"the worker logs in as {name!r}, which bypasses row-level security: give "
            "DATABASE_URL the service's own login role (engram_<service>, created by "
            "`engram migrate`)"
        )


async def _init_connection(
    conn: asyncpg.Connection, role: str | None, vectors: bool, worker: bool
) -> None:
    if worker:
        await _refuse_privileged(conn)
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    if vectors:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
    if role:
        # A session-level SET ROLE survives the pool's RESET ALL, and RESET ROLE leads
        # back only to the login role.
        await conn.execute(f"SET ROLE {quote_ident(role)}")


TENANT_SETTING = "engram.tenant_id"


async def scope_tenant(conn: Connection, tenant: str, *, local: bool = True) -> None:
    """Row-level security (``engram.tenant_id``, read by every schema's policies): the
    rows of ``tenant``; until the end of the transaction (``local``), else of the
    session."""
    await conn.execute("SELECT set_config('engram.tenant_id', $1, $2)", tenant, local)


_SESSION_TENANT: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


async def scope_session(conn: Connection, tenant: str) -> None:
    """``scope_tenant(conn, tenant, local=False)`` unless this session is scoped to
    ``tenant`` already: a query pool that keeps its sessions (``keep_session``) reads a
    tenant's next page in one round trip, not two. Only for connections that are never in
    a transaction when scoped (a rollback would undo the setting, not this memory of it)."""
    raw = getattr(conn, "_con", None) or conn  # a pool hands out a proxy of the connection
    if _SESSION_TENANT.get(raw) != tenant:
        await scope_tenant(conn, tenant, local=False)
        _SESSION_TENANT[raw] = tenant


async def scope_tenants(conn: Connection, tenants: Iterable[str]) -> None:
    """The rows of these tenants, for the rest of the transaction: a batch writer's scope
    (a worker's policy reads the list; a reader's requires exactly one tenant). Tenant
    ids cannot contain a comma (contracts.envelope.TENANT_PATTERN)."""
    await scope_tenant(conn, ",".join(sorted(set(tenants))))


async def act_for_all_tenants(conn: Connection, roles: Roles, *, local: bool = True) -> None:
    """Act as the service's cross-tenant role until the end of the transaction
    (``local``), else of the session: the one explicit way past the tenant wall, for jobs
    that span tenants by design (queues, retention, re-embedding). Query paths never call
    it."""
    scope = "LOCAL " if local else ""
    await conn.execute(f"SET {scope}ROLE {quote_ident(roles.all_tenants)}")


def login_url(dsn: str, user: str, password: str | None = None) -> str:
    """``dsn`` with another login (and no password unless given)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))


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
    worker: bool = False,
    **kwargs: Any,
) -> asyncpg.Pool:
    """``role``: SET on each session (a query pool acts as the service's reader).
    ``worker``: a worker's pool, which refuses a login that bypasses row-level security.
    ``keep_session``: a released connection keeps its session settings (no ``RESET
    ALL``), for query pools whose settings are fixed per session; each query must then
    set its tenant (``scope_tenant(..., local=False)``) before it reads."""
    if keep_session:
        kwargs["reset"] = _keep_session

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn, role, vectors, worker)

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init, **kwargs)
    assert pool is not None
    return pool
