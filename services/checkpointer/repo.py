"""SQL of the checkpointer. Write functions run inside the batch's transaction; JSON goes
in and out as text (orjson on our side), never through the pool's json codec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from services.runtime.db import Connection

Key = tuple[str, str, str]  # tenant_id, user_id, agent_id
PARTITION_COLUMNS = ("local_state", "shared_state", "session_state", "persistent_state")


@dataclass
class Head:
    """The locked current row of one state (its document is loaded separately)."""

    state_id: int
    key: Key
    version: int
    state_hash: bytes
    modification_count: int
    floor_version: int = 0
    floor_at: datetime | None = None


def _head(row: Any) -> Head:
    return Head(row["state_id"], (row["tenant_id"], row["user_id"], row["agent_id"]),
                row["version"], bytes(row["state_hash"]), row["modification_count"],
                row["history_floor_version"], row["history_floor_at"])


_HEAD_COLUMNS = """s.state_id, s.tenant_id, s.user_id, s.agent_id, s.version, s.state_hash,
    s.modification_count, s.history_floor_version, s.history_floor_at"""


async def lock_states(
    conn: Connection, keys: Sequence[Key], empty_hash: bytes, empty_size: int, *, create: bool
) -> dict[Key, Head]:
    """Lock the states' rows in key order (no deadlock between replicas), creating missing
    ones at version 0 when ``create``."""
    tenants, users, agents = (list(c) for c in zip(*keys, strict=True))
    if create:
        await conn.execute(
            """INSERT INTO checkpoint.agent_states (tenant_id, user_id, agent_id, state_hash,
                   size_bytes)
               SELECT t, u, a, $4, $5 FROM unnest($1::text[], $2::text[], $3::text[]) k(t, u, a)
                ORDER BY t, u, a
               ON CONFLICT (tenant_id, user_id, agent_id) DO NOTHING""",
            tenants, users, agents, empty_hash, empty_size,
        )
    rows = await conn.fetch(
        f"""SELECT {_HEAD_COLUMNS}
              FROM checkpoint.agent_states s
              JOIN unnest($1::text[], $2::text[], $3::text[]) k(t, u, a)
                ON s.tenant_id = k.t AND s.user_id = k.u AND s.agent_id = k.a
             ORDER BY s.tenant_id, s.user_id, s.agent_id
               FOR UPDATE OF s""",
        tenants, users, agents,
    )
    return {head.key: head for head in map(_head, rows)}


async def lock_user_states(conn: Connection, tenant: str, user: str) -> list[Head]:
    rows = await conn.fetch(
        f"""SELECT {_HEAD_COLUMNS} FROM checkpoint.agent_states s
             WHERE s.tenant_id = $1 AND s.user_id = $2
             ORDER BY s.tenant_id, s.user_id, s.agent_id FOR UPDATE""",
        tenant, user,
    )
    return [_head(row) for row in rows]


async def clock(conn: Connection) -> datetime:
    """Taken after the locks: versions of one state get increasing times."""
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


async def load_partitions(conn: Connection, state_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = await conn.fetch(
        """SELECT state_id, local_state::text, shared_state::text, session_state::text,
                  persistent_state::text
             FROM checkpoint.agent_states WHERE state_id = ANY($1::bigint[])""",
        list(state_ids),
    )
    return {row[0]: [row[1], row[2], row[3], row[4]] for row in rows}


async def insert_transitions(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    cols = [list(c) for c in zip(*rows, strict=True)]
    await conn.execute(
        """INSERT INTO checkpoint.transitions (state_id, version, tenant_id, kind, patch,
               inverse, state_hash, trigger, actor, event_id, restored_from_version,
               restored_from_checkpoint, occurred_at, applied_at)
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
               $5::text[]::json[], $6::text[]::json[], $7::bytea[], $8::text[],
               $9::text[], $10::uuid[], $11::bigint[], $12::uuid[], $13::timestamptz[],
               $14::timestamptz[])""",
        *cols,
    )


CHECKPOINT_COLUMNS = (
    "checkpoint_id", "state_id", "tenant_id", "version", "checkpoint_type", "label", "retention",
    "expires_at", "compression", "size_bytes", "snapshot", "state_hash", "metadata", "event_id",
)


async def insert_checkpoints(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO checkpoint.checkpoints ({", ".join(CHECKPOINT_COLUMNS)})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14)""",
        rows,
    )


async def update_states(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """(state_id, version, hash, size, modification_count, 4 x partition JSON or None):
    a partition given as None keeps its stored value (and its TOAST chunks)."""
    await conn.executemany(
        """UPDATE checkpoint.agent_states
              SET version = $2, state_hash = $3, size_bytes = $4, modification_count = $5,
                  local_state = coalesce($6::text::json, local_state),
                  shared_state = coalesce($7::text::json, shared_state),
                  session_state = coalesce($8::text::json, session_state),
                  persistent_state = coalesce($9::text::json, persistent_state),
                  updated_at = now()
            WHERE state_id = $1""",
        rows,
    )


async def insert_conflicts(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        await conn.executemany(
            """INSERT INTO checkpoint.conflicts (conflict_id, state_id, tenant_id, event_id,
                   event_type, expected_version, current_version, payload)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)
               ON CONFLICT (conflict_id) DO NOTHING""",
            rows,
        )


OUTBOX_CHANNEL = "checkpoint_outbox"


async def enqueue(conn: Connection, rows: Sequence[tuple[str, str, str, bytes]]) -> None:
    """(subject, msg_id, headers JSON, data) to publish after commit; NOTIFY is delivered
    at commit."""
    if rows:
        await conn.executemany(
            """INSERT INTO checkpoint.outbox (subject, msg_id, headers, data)
               VALUES ($1, $2, $3::text::jsonb, $4)""",
            rows,
        )
        await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


async def take_outbox(conn: Connection, limit: int) -> list[Any]:
    return await conn.fetch(
        """SELECT id, subject, msg_id, headers::text, data FROM checkpoint.outbox ORDER BY id
            LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )


async def delete_outbox(conn: Connection, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM checkpoint.outbox WHERE id = ANY($1::bigint[])", list(ids))


async def applied_events(conn: Connection, ids: Sequence[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "SELECT event_id FROM checkpoint.inbox WHERE event_id = ANY($1::uuid[])", list(ids)
    )
    return {row[0] for row in rows}


# ---- the parking lot of the ordering gate ----


async def parked_for(conn: Connection, state_ids: Sequence[int]) -> list[Any]:
    return await conn.fetch(
        """SELECT stream_seq, state_id, event_id, waits_seq, waits_id, data
             FROM checkpoint.parked WHERE state_id = ANY($1::bigint[])
            ORDER BY stream_seq FOR UPDATE""",
        list(state_ids),
    )


async def park(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """(stream_seq, state_id, tenant_id, event_id, waits_seq, waits_id, data)."""
    if rows:
        await conn.executemany(
            """INSERT INTO checkpoint.parked (stream_seq, state_id, tenant_id, event_id,
                   waits_seq, waits_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            rows,
        )


async def still_parked(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """(stream_seq, waits_seq, waits_id): what a parked message still waits for."""
    if rows:
        await conn.executemany(
            "UPDATE checkpoint.parked SET waits_seq = $2, waits_id = $3 WHERE stream_seq = $1",
            rows,
        )


async def unpark(conn: Connection, seqs: Sequence[int]) -> None:
    if seqs:
        await conn.execute(
            "DELETE FROM checkpoint.parked WHERE stream_seq = ANY($1::bigint[])", list(seqs)
        )


async def parked_keys(conn: Connection, limit: int) -> list[Key]:
    rows = await conn.fetch(
        """SELECT DISTINCT s.tenant_id, s.user_id, s.agent_id
             FROM checkpoint.parked p JOIN checkpoint.agent_states s USING (state_id)
            LIMIT $1""",
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


# ---- reading history (writer, queries and prune) ----


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
    SELECT {_HEAD_COLUMNS}, s.updated_at,
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


async def snapshot_at(conn: Connection, state_id: int, version: int) -> Any:
    return await conn.fetchrow(
        """SELECT checkpoint_id, version, snapshot, compression, state_hash
             FROM checkpoint.checkpoints WHERE state_id = $1 AND version = $2
            ORDER BY (compression = 'none') DESC LIMIT 1""",
        state_id, version,
    )


async def checkpoint_by_id(conn: Connection, state_id: int, checkpoint_id: UUID) -> Any:
    return await conn.fetchrow(
        """SELECT checkpoint_id, version, snapshot, compression, state_hash
             FROM checkpoint.checkpoints WHERE state_id = $1 AND checkpoint_id = $2""",
        state_id, checkpoint_id,
    )


async def patches(
    conn: Connection, state_id: int, low: int, high: int, *, inverse: bool
) -> list[Any]:
    """Transitions low..high inclusive: (version, patch or inverse as text, state_hash)."""
    column = "inverse" if inverse else "patch"
    return await conn.fetch(
        f"""SELECT version, {column}::text, state_hash FROM checkpoint.transitions
             WHERE state_id = $1 AND version BETWEEN $2 AND $3 ORDER BY version""",
        state_id, low, high,
    )


async def version_at(conn: Connection, state_id: int, at: datetime) -> int | None:
    version: int | None = await conn.fetchval(
        """SELECT max(version) FROM checkpoint.transitions
            WHERE state_id = $1 AND applied_at <= $2""",
        state_id, at,
    )
    return version


async def applied_at(conn: Connection, state_id: int, version: int) -> datetime | None:
    at: datetime | None = await conn.fetchval(
        "SELECT applied_at FROM checkpoint.transitions WHERE state_id = $1 AND version = $2",
        state_id, version,
    )
    return at


async def find_state(conn: Connection, key: Key) -> Any:
    return await conn.fetchrow(
        f"""SELECT {_HEAD_COLUMNS}, s.updated_at FROM checkpoint.agent_states s
             WHERE s.tenant_id = $1 AND s.user_id = $2 AND s.agent_id = $3""",
        *key,
    )


def head_of(row: Any) -> Head:
    return _head(row)


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
