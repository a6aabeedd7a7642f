"""SQL of the checkpointer. Write functions run inside the batch's transaction; JSON goes
in and out as text (orjson on our side), never through the pool's json codec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg

from services.runtime.db import Connection
from services.runtime.inbox import ANY_TENANT, InboxKey

Key = tuple[str, str, str]  # tenant_id, user_id, agent_id


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


def _head(row: asyncpg.Record) -> Head:
    return Head(
        row["state_id"],
        (row["tenant_id"], row["user_id"], row["agent_id"]),
        row["version"],
        bytes(row["state_hash"]),
        row["modification_count"],
        row["history_floor_version"],
        row["history_floor_at"],
    )


def head_of(row: asyncpg.Record) -> Head:
    return _head(row)


HEAD_COLUMNS = """s.state_id, s.tenant_id, s.user_id, s.agent_id, s.version, s.state_hash,
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
            tenants,
            users,
            agents,
            empty_hash,
            empty_size,
        )
    rows = await conn.fetch(
        f"""SELECT {HEAD_COLUMNS}
              FROM checkpoint.agent_states s
              JOIN unnest($1::text[], $2::text[], $3::text[]) k(t, u, a)
                ON s.tenant_id = k.t AND s.user_id = k.u AND s.agent_id = k.a
             ORDER BY s.tenant_id, s.user_id, s.agent_id
               FOR UPDATE OF s""",
        tenants,
        users,
        agents,
    )
    return {head.key: head for head in map(_head, rows)}


async def lock_user_states(conn: Connection, tenant: str, user: str) -> list[Head]:
    rows = await conn.fetch(
        f"""SELECT {HEAD_COLUMNS} FROM checkpoint.agent_states s
             WHERE s.tenant_id = $1 AND s.user_id = $2
             ORDER BY s.tenant_id, s.user_id, s.agent_id FOR UPDATE""",
        tenant,
        user,
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


class TransitionRow(NamedTuple):
    """One version of a state: its patch and inverse (JSON text) and where it came from."""

    state_id: int
    version: int
    tenant_id: str
    kind: str
    patch: str
    inverse: str
    state_hash: bytes
    trigger: str | None  # None: the event type, implied by the kind
    actor: str | None
    event_id: UUID
    restored_from_version: int | None
    restored_from_checkpoint: UUID | None
    occurred_at: datetime
    applied_at: datetime


async def insert_transitions(conn: Connection, rows: Sequence[TransitionRow]) -> None:
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


class CheckpointRow(NamedTuple):
    """One snapshot (the fields are the columns of checkpoint.checkpoints, in order)."""

    checkpoint_id: UUID
    state_id: int
    tenant_id: str
    version: int
    checkpoint_type: str
    label: str | None
    retention: str
    expires_at: datetime | None
    compression: str
    size_bytes: int
    snapshot: bytes
    state_hash: bytes
    metadata: str  # JSON text
    event_id: UUID | None  # None: written by the checkpointer itself


CHECKPOINT_COLUMNS = CheckpointRow._fields


async def insert_checkpoints(conn: Connection, rows: Sequence[CheckpointRow]) -> None:
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO checkpoint.checkpoints ({", ".join(CHECKPOINT_COLUMNS)})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14)""",
        rows,
    )


class StateUpdate(NamedTuple):
    """The new current row of a state. A partition given as None keeps its stored value
    (and its TOAST chunks)."""

    state_id: int
    version: int
    state_hash: bytes
    size_bytes: int
    modification_count: int
    local_state: str | None
    shared_state: str | None
    session_state: str | None
    persistent_state: str | None


async def update_states(conn: Connection, rows: Sequence[StateUpdate]) -> None:
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


class ConflictRow(NamedTuple):
    """An event refused because its expected_version was not the current one."""

    conflict_id: UUID
    state_id: int
    tenant_id: str
    event_id: UUID
    event_type: str
    expected_version: int
    current_version: int
    payload: str  # the refused event's payload, JSON text


async def insert_conflicts(conn: Connection, rows: Sequence[ConflictRow]) -> None:
    if rows:
        await conn.executemany(
            """INSERT INTO checkpoint.conflicts (conflict_id, state_id, tenant_id, event_id,
                   event_type, expected_version, current_version, payload)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)
               ON CONFLICT (tenant_id, conflict_id) DO NOTHING""",
            rows,
        )


async def applied_events(conn: Connection, keys: Sequence[InboxKey]) -> set[InboxKey]:
    """The keys already in the inbox (a pre-004 row of tenant ``*`` counts for every
    tenant, as in the claim)."""
    rows = await conn.fetch(
        f"""SELECT k.tenant_id, k.event_id
              FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, event_id)
             WHERE EXISTS (SELECT FROM checkpoint.inbox AS i WHERE i.event_id = k.event_id
                              AND i.tenant_id IN (k.tenant_id, '{ANY_TENANT}'))""",
        [k.tenant_id for k in keys],
        [k.event_id for k in keys],
    )
    return {InboxKey(row[0], row[1]) for row in rows}
