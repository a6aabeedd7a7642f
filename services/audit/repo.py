"""SQL of the audit writer. ``append`` runs inside the caller's transaction.

Appending to a chain, for a batch of records:

1. take each tenant's transaction-scoped advisory lock, in key order (no deadlock between
   replicas whose batches share tenants);
2. only then read the heads and the clock (a separate statement: a statement's snapshot
   is taken when it starts, so a head read together with the lock wait could be stale);
3. number and hash the rows in Python, in batch order;
4. insert them in one statement and move the heads.

The locks are held until COMMIT, so the next appender of a tenant reads the committed head:
a chain never forks, however many writers run.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.audit import canonical as c
from services.audit.chain import StoredRow
from services.audit.logic import tenant_lock_key
from services.audit.record import AUDIT_STREAM, RETAINED, AuditRecord, chain_hash, stored_record
from services.runtime.db import Connection

# pg_advisory_xact_lock(class, key): the class keeps audit's keys apart from other users'.
LOCK_CLASS = 0x41554454  # "AUDT"
# Partitions are created ahead; when the clock comes this close to the last one's end,
# the next months are created (once a month per process, outside any tenant lock).
PARTITION_MARGIN = timedelta(days=35)

LOCK_TENANTS = """
SELECT count(pg_advisory_xact_lock($1, k))
  FROM (SELECT DISTINCT k FROM unnest($2::int[]) AS k ORDER BY k) AS keys"""

READ_HEADS = """
SELECT clock_timestamp() AS now, h.tenant_id, h.position, h.hash, h.recorded_at
  FROM (SELECT 1) AS one
  LEFT JOIN audit.chain_heads h ON h.tenant_id = ANY($1::text[])"""

COLUMNS = (
    "tenant_id",
    "position",
    "record_id",
    "event_id",
    "stream",
    "stream_seq",
    "subject",
    "type",
    "producer",
    "schema_version",
    "correlation_id",
    "causation_id",
    "occurred_at",
    "received_at",
    "recorded_at",
    "headers",
    "payload",
    "extra",
    "raw",
    "redacted",
    "payload_sha256",
    "prev_hash",
    "hash",
)

UPSERT_HEADS = """
INSERT INTO audit.chain_heads AS h (tenant_id, position, hash, recorded_at)
SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[], $4::timestamptz[])
ON CONFLICT (tenant_id) DO UPDATE
   SET position = EXCLUDED.position, hash = EXCLUDED.hash, recorded_at = EXCLUDED.recorded_at"""


@dataclass
class Head:
    position: int
    hash: bytes


@dataclass
class Partitions:
    """Until when this process knows monthly partitions exist."""

    months_ahead: int = 2
    ready_until: datetime | None = None
    _margin: timedelta = field(default=PARTITION_MARGIN, repr=False)

    async def ensure(self, conn: Connection, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        if self.ready_until is not None and at + self._margin < self.ready_until:
            return
        self.ready_until = await conn.fetchval(
            "SELECT audit.ensure_partitions($1, $2)", at, self.months_ahead
        )


async def append(conn: Connection, records: Sequence[AuditRecord]) -> datetime:
    """Chain and insert ``records`` (in this order per tenant); returns their recorded_at."""
    tenants = list(dict.fromkeys(r.tenant_id for r in records))
    await conn.execute(LOCK_TENANTS, LOCK_CLASS, [tenant_lock_key(t) for t in tenants])
    heads: dict[str, Head] = {}
    now: datetime | None = None
    latest: datetime | None = None
    for row in await conn.fetch(READ_HEADS, tenants):
        now = row["now"]
        if row["tenant_id"] is not None:
            heads[row["tenant_id"]] = Head(row["position"], row["hash"])
            latest = row["recorded_at"] if latest is None else max(latest, row["recorded_at"])
    assert now is not None
    # Never before a head of the batch: within a chain, recorded_at only grows, so
    # dropping a month's partition removes a prefix of each chain.
    recorded_at = now if latest is None or now >= latest else latest
    rows = chain_rows(records, heads, recorded_at)
    await copy_rows(conn, rows)
    names = list(heads)
    await conn.execute(
        UPSERT_HEADS,
        names,
        [heads[t].position for t in names],
        [heads[t].hash for t in names],
        [recorded_at] * len(names),
    )
    return recorded_at


def chain_rows(
    records: Sequence[AuditRecord], heads: dict[str, Head], recorded_at: datetime
) -> list[tuple[Any, ...]]:
    """Rows of audit.events (COLUMNS) with positions and hashes, in ``records`` order;
    moves ``heads`` (a new tenant starts at position 1 after the zero hash)."""
    at_us = c.to_micros(recorded_at)
    rows = []
    for r in records:
        head = heads.get(r.tenant_id)
        if head is None:
            head = heads[r.tenant_id] = Head(0, c.ZERO_HASH)
        position = head.position + 1
        digest = chain_hash(r.record_text, position, at_us, head.hash)
        rows.append(
            (
                r.tenant_id,
                position,
                r.record_id,
                r.source_event_id,
                r.stream,
                r.stream_seq,
                r.subject,
                r.event_type,
                r.producer,
                r.schema_version,
                r.correlation_id,
                r.causation_id,
                r.occurred_at,
                r.received_at,
                recorded_at,
                None if r.headers is None else c.dumps(r.headers),
                r.payload_text,
                None if r.extra is None else c.dumps(r.extra),
                r.raw,
                r.redacted,
                r.payload_sha256,
                head.hash,
                digest,
            )
        )
        head.position, head.hash = position, digest
    return rows


# Connections (by identity) whose jsonb codec takes JSON text in binary form: COPY is
# binary, and the runtime pool's jsonb codec is a text-format one (json.dumps), which
# asyncpg cannot use in a binary COPY. Only the audit writer's own pool is touched.
_COPY_READY: weakref.WeakSet[Any] = weakref.WeakSet()


def _jsonb_encode(value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    return b"\x01" + text.encode("utf-8")  # jsonb binary format: version 1, then the text


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


# PostgreSQL refuses COPY into a table under row-level security, so a batch is copied into
# a session's temporary table (emptied at each commit) and moved by one INSERT … SELECT,
# which the tenant policies check.
STAGE = "audit_events_stage"
CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS {STAGE}
    (LIKE audit.events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
MOVE_STAGE = (
    f"INSERT INTO audit.events ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(COLUMNS)} FROM pg_temp.{STAGE}"
)


async def copy_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY into audit.events (through the stage); JSON columns are given as (canonical)
    JSON text."""
    raw = getattr(conn, "_con", None) or conn  # a pool proxy's connection
    if raw not in _COPY_READY:
        await conn.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            format="binary",
            encoder=_jsonb_encode,
            decoder=_jsonb_decode,
        )
        _COPY_READY.add(raw)
    await conn.execute(CREATE_STAGE)
    await conn.copy_records_to_table(STAGE, schema_name="pg_temp", columns=COLUMNS, records=rows)
    await conn.execute(MOVE_STAGE)


# --- reading, for verify and export ----------------------------------------------------

ROW_COLUMNS = """tenant_id, position, record_id, event_id::text, stream, stream_seq, subject,
    type, producer, schema_version, correlation_id::text, causation_id::text, occurred_at,
    received_at, recorded_at, headers::text, payload::text, extra::text, raw, redacted,
    payload_sha256, prev_hash, hash"""


def row_from_db(rec: asyncpg.Record) -> StoredRow:
    headers, payload, extra = rec[15], rec[16], rec[17]
    record = stored_record(
        tenant_id=rec[0],
        record_id=rec[2],
        event_id=rec[3],
        stream=rec[4],
        stream_seq=rec[5],
        subject=rec[6],
        type=rec[7],
        producer=rec[8],
        schema_version=rec[9],
        correlation_id=rec[10],
        causation_id=rec[11],
        occurred_at=rec[12],
        received_at=rec[13],
        headers=None if headers is None else c.loads(headers),
        payload=None if payload is None else c.loads(payload),
        has_payload=payload is not None,
        extra=None if extra is None else c.loads(extra),
        raw=rec[18],
        redacted=rec[19],
        payload_sha256=rec[20],
    )
    return StoredRow(record, rec[1], rec[14], rec[21], rec[22])


async def stream_rows(
    conn: asyncpg.Connection,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    batch: int = 5000,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Rows in (tenant, position) order, in batches; call inside a transaction."""
    where, args = _filter(tenant, since)
    cursor = await conn.cursor(
        f"SELECT {ROW_COLUMNS} FROM audit.events {where} ORDER BY tenant_id, position", *args
    )
    while rows := await cursor.fetch(batch):
        yield rows


def _filter(tenant: str | None, since: datetime | None) -> tuple[str, list[Any]]:
    # Literal conditions, not "$1 IS NULL OR ...": the planner then prunes partitions.
    clauses: list[str] = []
    args: list[Any] = []
    if tenant is not None:
        args.append(tenant)
        clauses.append(f"tenant_id = ${len(args)}")
    if since is not None:
        args.append(since)
        clauses.append(f"recorded_at >= ${len(args)}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


async def chain_heads(conn: asyncpg.Connection, tenant: str | None) -> dict[str, tuple[int, bytes]]:
    where, args = _filter(tenant, None)
    rows = await conn.fetch(
        f"SELECT tenant_id, position, hash FROM audit.chain_heads {where}", *args
    )
    return {r["tenant_id"]: (r["position"], r["hash"]) for r in rows}


async def retention_summaries(
    conn: asyncpg.Connection, tenant: str | None
) -> dict[str, list[dict[str, Any]]]:
    where, args = _filter(tenant, None)
    where = (where + " AND" if where else "WHERE") + f" stream = '{AUDIT_STREAM}'"
    rows = await conn.fetch(
        f"SELECT tenant_id, type, payload::text FROM audit.events {where}", *args
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["type"] == RETAINED and r["payload"] is not None:
            found.setdefault(r["tenant_id"], []).append(c.loads(r["payload"]))
    return found
