"""SQL that reads history (queries, restore and prune). JSON comes back as text."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

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
        state_id, version,
    )
    assert row is not None
    return row[0], row[1]


LOCATE = f"""
WITH s AS (
    SELECT {HEAD_COLUMNS}, s.updated_at,
           CASE WHEN $4::bigint IS NOT NULL THEN $4::bigint
                WHEN $5::timestamptz IS NOT NULL THEN least(s.version, greatest(
                    s.history_floor_version,
                    coalesce((SELECT max(t.version) FROM checkpoint.transitions t
                               WHERE t.state_id = s.state_id AND t.applied_at <= $5), 0)))
                ELSE s.version END AS target
      FROM checkpoint.agent_states s
     WHERE s.tenant_id = $1 AND s.user_id = $2 AND s.agent_id = $3
), a AS (
    SELECT s.*,
           (SELECT max(c.version) FROM checkpoint.checkpoints c
             WHERE c.state_id = s.state_id AND c.version <= s.target) AS below,
           (SELECT min(c.version) FROM checkpoint.checkpoints c
             WHERE c.state_id = s.state_id AND c.version >= s.target) AS above,
           (SELECT t.applied_at FROM checkpoint.transitions t
             WHERE t.state_id = s.state_id AND t.version = s.target) AS target_applied_at
      FROM s
)
SELECT a.*, h.head_needed,
       CASE WHEN h.head_needed THEN st.local_state::text END AS l,
       CASE WHEN h.head_needed THEN st.shared_state::text END AS sh,
       CASE WHEN h.head_needed THEN st.session_state::text END AS se,
       CASE WHEN h.head_needed THEN st.persistent_state::text END AS p
  FROM a
  JOIN checkpoint.agent_states st ON st.state_id = a.state_id
 CROSS JOIN LATERAL (SELECT a.target = a.version OR (
        (a.above IS NULL OR a.above >= a.version)
        AND a.version - a.target <= a.target - coalesce(
            a.below, CASE WHEN a.history_floor_version = 0 THEN 0 ELSE -{1 << 60} END))
       AS head_needed) h"""


async def locate(
    conn: Connection, key: Key, at_version: int | None, at_time: datetime | None
) -> Any:
    """One round trip for a read: the state's row, the version asked for (``target``),
    the nearest checkpoints around it, and the current partitions if a rebuild starts
    from them."""
    return await conn.fetchrow(LOCATE, *key, at_version, at_time)


async def base_and_patches(
    conn: Connection, state_id: int, base: int, low: int, high: int, *, inverse: bool
) -> list[Any]:
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
        state_id, base, low, high,
    )


async def checkpoint_by_id(conn: Connection, state_id: int, checkpoint_id: UUID) -> Any:
    return await conn.fetchrow(
        """SELECT checkpoint_id, version, snapshot, compression, state_hash
             FROM checkpoint.checkpoints WHERE state_id = $1 AND checkpoint_id = $2""",
        state_id, checkpoint_id,
    )


async def version_at(conn: Connection, state_id: int, at: datetime) -> int | None:
    version: int | None = await conn.fetchval(
        """SELECT max(version) FROM checkpoint.transitions
            WHERE state_id = $1 AND applied_at <= $2""",
        state_id, at,
    )
    return version


async def history_page(
    conn: Connection, state_id: int, before: int | None, limit: int, with_patches: bool
) -> list[Any]:
    patch_cols = "patch::text, inverse::text" if with_patches else "NULL, NULL"
    return await conn.fetch(
        f"""SELECT version, kind, coalesce(trigger, CASE kind WHEN 'reset'
                       THEN 'chat.session.ended' WHEN 'restore' THEN 'state.restore'
                       ELSE 'state.patch' END) AS trigger, actor, event_id, state_hash,
                   json_array_length(patch) AS op_count, occurred_at, applied_at, {patch_cols}
              FROM checkpoint.transitions
             WHERE state_id = $1 AND ($2::bigint IS NULL OR version < $2)
             ORDER BY version DESC LIMIT $3""",
        state_id, before, limit,
    )


async def set_tenant(conn: Connection, tenant: str) -> None:
    """Row-level security for this connection from now on (see sql/checkpoint). Only the
    query pool's connections get a tenant, and every query sets it first."""
    await conn.execute("SELECT set_config('engram.tenant_id', $1, false)", tenant)
