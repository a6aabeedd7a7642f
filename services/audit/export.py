"""`engram audit export`: one tenant's chain as JSON Lines, verifiable offline.

    {"kind": "header", "format": "engram-audit-export", "version": 1, "tenant": ...,
     "start": {"position": P, "hash": "<hex>"}, "since": null, ...}
    {"kind": "row", <every column of audit.events>}            one per row, in order
    {"kind": "trailer", "rows": N, "head": {"position": ..., "hash": "<hex>"}}

Hashes are hex, raw bytes base64, times RFC 3339 with microseconds. ``start`` is where the
first row links to: position 0 and the zero hash, or the end of a retained range (which a
retention record in the rows confirms), or, for an export made with --since, simply the
first row's own link. Keep the trailer's head somewhere else too: `engram audit verify
--against FILE` then proves the database still holds the chain up to it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import asyncpg

from services.audit import canonical as c
from services.audit.chain import Anchor, StoredRow
from services.audit.record import stored_record
from services.audit.repo import row_from_db, stream_rows

FORMAT = "engram-audit-export"
VERSION = 1


class ExportError(ValueError):
    """The file is not an audit export this version can read."""


def row_json(row: StoredRow) -> dict[str, Any]:
    r = row.record
    out: dict[str, Any] = {
        "kind": "row",
        "tenant_id": r.tenant_id,
        "position": row.position,
        "record_id": str(r.record_id),
        "event_id": r.source_event_id,
        "stream": r.stream,
        "stream_seq": r.stream_seq,
        "subject": r.subject,
        "type": r.event_type,
        "producer": r.producer,
        "schema_version": r.schema_version,
        "correlation_id": r.correlation_id,
        "causation_id": r.causation_id,
        "occurred_at": c.timestamp(r.occurred_at),
        "received_at": c.timestamp(r.received_at),
        "recorded_at": c.timestamp(row.recorded_at),
        "headers": r.headers,
        "extra": r.extra,
        "raw": None if r.raw is None else base64.b64encode(r.raw).decode(),
        "redacted": list(r.redacted) if r.redacted else None,
        "payload_sha256": c.hex_or_none(r.payload_sha256),
        "prev_hash": row.prev_hash.hex(),
        "hash": row.hash.hex(),
    }
    if r.payload_text is not None:  # absent: the message had no payload at all
        out["payload"] = c.loads(r.payload_text)
    return out


def row_from_json(d: dict[str, Any]) -> StoredRow:
    def when(key: str) -> datetime | None:
        value = d.get(key)
        return None if value is None else datetime.fromisoformat(value)

    def digest(key: str) -> bytes | None:
        value = d.get(key)
        return None if value is None else bytes.fromhex(value)

    record = stored_record(
        tenant_id=d["tenant_id"],
        record_id=UUID(d["record_id"]),
        event_id=d.get("event_id"),
        stream=d["stream"],
        stream_seq=d["stream_seq"],
        subject=d["subject"],
        type=d.get("type"),
        producer=d.get("producer"),
        schema_version=d.get("schema_version"),
        correlation_id=d.get("correlation_id"),
        causation_id=d.get("causation_id"),
        occurred_at=when("occurred_at"),
        received_at=when("received_at") or datetime.min.replace(tzinfo=UTC),
        headers=d.get("headers"),
        payload=d.get("payload"),
        has_payload="payload" in d,
        extra=d.get("extra"),
        raw=None if d.get("raw") is None else base64.b64decode(d["raw"]),
        redacted=d.get("redacted"),
        payload_sha256=digest("payload_sha256"),
    )
    recorded = when("recorded_at")
    assert recorded is not None
    return StoredRow(
        record, d["position"], recorded, bytes.fromhex(d["prev_hash"]), bytes.fromhex(d["hash"])
    )


def header_json(tenant: str, start: tuple[int, bytes], since: datetime | None) -> dict[str, Any]:
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "tenant": tenant,
        "exported_at": c.timestamp(datetime.now(UTC)),
        "since": c.timestamp(since),
        "start": {"position": start[0], "hash": start[1].hex()},
    }


def trailer_json(rows: int, head: tuple[int, bytes] | None) -> dict[str, Any]:
    return {
        "kind": "trailer",
        "rows": rows,
        "head": None if head is None else {"position": head[0], "hash": head[1].hex()},
    }


def write_line(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(c.dumps(obj))
    out.write("\n")


@dataclass
class Export:
    """An export file opened for reading: its header, a row iterator, then its trailer."""

    path: Path
    tenant: str
    anchor: Anchor
    head: tuple[int, bytes] | None = None  # set once rows() has been read to the end
    rows_in_trailer: int | None = None
    _lines: Callable[[], Iterator[str]] | None = None

    def rows(self) -> Iterator[StoredRow]:
        assert self._lines is not None
        for number, line in enumerate(self._lines(), start=2):
            try:
                d = c.loads(line)
                kind = d.get("kind")
                if kind == "row":
                    yield row_from_json(d)
                elif kind == "trailer":
                    head = d.get("head")
                    self.rows_in_trailer = d.get("rows")
                    if head is not None:
                        self.head = (int(head["position"]), bytes.fromhex(head["hash"]))
                    return
                else:
                    raise ExportError(f"unexpected line kind {kind!r}")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ExportError(f"{self.path}:{number}: not an export row: {exc}") from None


def read_head(path: Path) -> tuple[int, bytes] | None:
    """The chain head in an export's trailer (its last line), without reading the rows."""
    last = ""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                last = line
    try:
        trailer = c.loads(last)
        head = trailer["head"] if trailer.get("kind") == "trailer" else None
        return None if head is None else (int(head["position"]), bytes.fromhex(head["hash"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: unreadable trailer: {exc}") from None


def read_export(path: Path) -> Export:
    with path.open(encoding="utf-8") as f:
        first = f.readline()
    try:
        header = c.loads(first)
        if header.get("format") != FORMAT or header.get("kind") != "header":
            raise ExportError(f"{path} is not an {FORMAT} file (first line is not its header)")
        if header.get("version") != VERSION:
            raise ExportError(f"{path}: export version {header.get('version')} is not supported")
        start = header["start"]
        anchor = Anchor(
            int(start["position"]),
            bytes.fromhex(start["hash"]),
            trusted=header.get("since") is not None,
        )
        tenant = str(header["tenant"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: unreadable export header: {exc}") from None

    def lines() -> Iterator[str]:
        with path.open(encoding="utf-8") as f:
            f.readline()
            yield from f

    return Export(path, tenant, anchor, _lines=lines)


async def export_tenant(
    conn: asyncpg.Connection,
    tenant: str,
    out: IO[str],
    *,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, tuple[int, bytes] | None]:
    """Write the tenant's chain (from ``since``) to ``out``; returns (rows, head written).
    One REPEATABLE READ snapshot: the file is a consistent prefix of the chain."""
    rows = 0
    head: tuple[int, bytes] | None = None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for batch in stream_rows(conn, tenant=tenant, since=since):
            for rec in batch:
                row = row_from_db(rec)
                if head is None:
                    write_line(out, header_json(tenant, (row.position - 1, row.prev_hash), since))
                write_line(out, row_json(row))
                head = (row.position, row.hash)
            rows += len(batch)
            if progress:
                progress(rows)
        if head is None:  # nothing to export: the file still says so, verifiably
            write_line(out, header_json(tenant, (0, c.ZERO_HASH), since))
        write_line(out, trailer_json(rows, head))
    return rows, head
