"""SQL of the ordering gate's parking lot (ordering.py): messages that wait for earlier
messages of their state, stored in the batch's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID

import asyncpg

from services.checkpointer.repo import Key
from services.runtime.db import Connection


class ParkedRow(NamedTuple):
    """A message that waits for earlier messages of its state (stream sequences and ids)."""

    stream_seq: int
    state_id: int
    tenant_id: str
    event_id: UUID
    waits_seq: list[int]
    waits_id: list[UUID]
    data: bytes


class StillParked(NamedTuple):
    """What a parked message still waits for."""

    stream_seq: int
    waits_seq: list[int]
    waits_id: list[UUID]


async def parked_for(conn: Connection, state_ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT stream_seq, state_id, event_id, waits_seq, waits_id, data
             FROM checkpoint.parked WHERE state_id = ANY($1::bigint[])
            ORDER BY stream_seq FOR UPDATE""",
        list(state_ids),
    )


async def park(conn: Connection, rows: Sequence[ParkedRow]) -> None:
    if rows:
        await conn.executemany(
            """INSERT INTO checkpoint.parked (stream_seq, state_id, tenant_id, event_id,
                   waits_seq, waits_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            rows,
        )


async def still_parked(conn: Connection, rows: Sequence[StillParked]) -> None:
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
