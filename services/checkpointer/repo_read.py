"""SQL that reads history (queries, restore and prune). JSON comes back as text."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from services.checkpointer.repo import HEAD_COLUMNS, Key
from services.runtime.db import Connection


async def checkpoint_around(
    conn: Connection, state_id: int, version: int
) -> tuple[int | None, int | None]:
    """Versions of the nearest checkpoints at or below, and at or above, ``version``."""
    row = await conn.fetchrow(
        """SELECT (SELECT max(version) FROM checkpoint.checkpoints
                    WHERE state_id = $1 AND version <= $2),
                  (SELECT min(version) FROM checkpoint.checkpoints
                    WHERE state_id = $1 AND version >= $2)""",
        state_id,
        version,
    )
    assert row is not None
    return row[0], row[1]


async def read_version(
    conn: Connection, key: Key, at_version: int | None, at_time: datetime | None
) -> asyncpg.Record | None:
    """One round trip for a read (``checkpoint.read_version``, sql/checkpoint): scopes the
    connection to the key's tenant, then returns the state's row, the version asked for
    (``target``) and what rebuilds it (``direction``, the base document, the patches as
    one JSON array); None when there is no such state."""
    return await conn.fetchrow(
        """SELECT state_id, version, state_hash, modification_count, history_floor_version,
                  history_floor_at, updated_at, target, target_applied_at, target_hash,
                  direction, base, snapshot, compression, head_doc, patches
             FROM checkpoint.read_version($1, $2, $3, $4, $5)""",
        *key,
        at_version,
        at_time,
    )


async def head(conn: Connection, key: Key) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {HEAD_COLUMNS} FROM checkpoint.agent_states s WHERE s.tenant_id = $1 "
        "AND s.user_id = $2 AND s.agent_id = $3",
        *key,
    )


async def base_and_patches(
    conn: Connection, state_id: int, base: int, low: int, high: int, *, inverse: bool
) -> list[asyncpg.Record]:
    """The snapshot at ``base`` (part 0, if any) and transitions low..high (part 1), as
    (part, version, snapshot, compression, ops text, state_hash), in one round trip."""
    column = "inverse" if inverse else "patch"
    return await conn.fetch(
        f"""(SELECT 0 AS part, version, snapshot, compression, NULL::text AS ops, state_hash
               FROM checkpoint.checkpoints WHERE state_id = $1 AND version = $2
              ORDER BY (compression = 'none') DESC LIMIT 1)
            UNION ALL
            (SELECT 1, version, NULL, NULL, {column}::text, state_hash
               FROM checkpoint.transitions
              WHERE state_id = $1 AND version BETWEEN $3 AND $4 ORDER BY version)""",
        state_id,
        base,
        low,
        high,
    )


async def checkpoint_by_id(
    conn: Connection, tenant_id: str, state_id: int, checkpoint_id: UUID
) -> asyncpg.Record | None:
    """A checkpoint of the state (checkpoint ids are chosen by producers: per tenant)."""
    return await conn.fetchrow(
        """SELECT checkpoint_id, version, snapshot, compression, state_hash
             FROM checkpoint.checkpoints
            WHERE tenant_id = $1 AND checkpoint_id = $2 AND state_id = $3""",
        tenant_id,
        checkpoint_id,
        state_id,
    )


async def checkpoint_taken(conn: Connection, tenant_id: str, checkpoint_id: UUID) -> bool:
    """Whether the tenant has a checkpoint ``checkpoint_id`` (of any of its states)."""
    taken: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT FROM checkpoint.checkpoints
                           WHERE tenant_id = $1 AND checkpoint_id = $2)""",
        tenant_id,
        checkpoint_id,
    )
    return taken


async def version_at(conn: Connection, state_id: int, at: datetime) -> int | None:
    version: int | None = await conn.fetchval(
        """SELECT max(version) FROM checkpoint.transitions
            WHERE state_id = $1 AND applied_at <= $2""",
        state_id,
        at,
    )
    return version


async def history_page(
    conn: Connection, state_id: int, before: int | None, limit: int, with_patches: bool
) -> list[asyncpg.Record]:
    patch_cols = "patch::text, inverse::text" if with_patches else "NULL, NULL"
    return await conn.fetch(
        f"""SELECT version, kind, coalesce(trigger, CASE kind WHEN 'reset'
                       THEN 'chat.session.ended' WHEN 'restore' THEN 'state.restore'
                       ELSE 'state.patch' END) AS trigger, actor, event_id, state_hash,
                   json_array_length(patch) AS op_count, occurred_at, applied_at, {patch_cols}
              FROM checkpoint.transitions
             WHERE state_id = $1 AND ($2::bigint IS NULL OR version < $2)
             ORDER BY version DESC LIMIT $3""",
        state_id,
        before,
        limit,
    )
