"""`engram audit verify`: walk every chain in the database (or an export file) and report
the first broken link of each, or OK with the count and the rate.

The database is read in one REPEATABLE READ snapshot, so rows, heads and retention records
agree even while writers append. A chain starts at position 1 after the zero hash, or at
the end of its latest retained range (a retention record in the chain itself names it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from services.audit.chain import Anchor, Break, ChainWalker, StoredRow, anchor_from
from services.audit.export import read_export
from services.audit.repo import chain_heads, retention_summaries, row_from_db, stream_rows

Progress = Callable[[int], None]  # rows checked so far


@dataclass
class VerifyResult:
    rows: int = 0
    chains: int = 0
    seconds: float = 0.0
    breaks: list[Break] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


async def verify_database(
    conn: asyncpg.Connection,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    against: tuple[str, int, bytes] | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify every chain (or one tenant's); ``against`` = (tenant, position, hash) of an
    exported head the chain must still reach."""
    result = VerifyResult()
    started = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        heads = await chain_heads(conn, tenant)
        anchors = {} if since else await retention_summaries(conn, tenant)
        walker: ChainWalker | None = None
        seen: set[str] = set()

        def done(w: ChainWalker) -> None:
            head = heads.get(w.tenant)
            if head is None and w.rows:
                head_break = Break(
                    w.tenant,
                    w.position,
                    "no chain head recorded",
                    "a row in audit.chain_heads",
                    "none",
                )
                result.breaks.append(w.broken or head_break)
                return
            broken = w.finish(head)
            if broken:
                result.breaks.append(broken)

        def start(name: str) -> ChainWalker:
            seen.add(name)
            result.chains += 1
            anchor = Anchor(trusted=True) if since else anchor_from(anchors.get(name, []))
            if anchor.position:
                result.notes.append(f"{name}: starts after retained position {anchor.position}")
            expect = against[1:] if against and against[0] == name else None
            return ChainWalker(name, anchor, expect_head=expect)

        async for batch in stream_rows(conn, tenant=tenant, since=since):
            for rec in batch:
                if walker is None or rec[0] != walker.tenant:
                    if walker is not None:
                        done(walker)
                    walker = start(rec[0])
                if walker.broken is None:
                    walker.feed(row_from_db(rec))
            result.rows += len(batch)
            if progress:
                progress(result.rows)
        if walker is not None:
            done(walker)
        # Chains whose head is recorded but none of whose rows were found (cut entirely).
        missing = set(heads) - seen
        if against and against[0] not in heads and (tenant is None or tenant == against[0]):
            missing.add(against[0])
        for name in sorted(missing):
            if since and name in heads:
                continue  # no rows since then: nothing to check
            done(start(name))
    if tenant is not None and not result.chains:
        result.notes.append(f"there is no chain for tenant {tenant!r}")
    result.seconds = time.perf_counter() - started
    return result


def verify_file(path: Path, progress: Progress | None = None) -> VerifyResult:
    """Verify an export offline: its rows, from its start to the head in its trailer."""
    result = VerifyResult(chains=1)
    started = time.perf_counter()
    export = read_export(path)
    walker = ChainWalker(export.tenant, export.anchor)
    for row in _counted(export.rows(), result, progress):
        if walker.feed(row):
            break
    if walker.broken is None and export.head is None:
        walker.broken = Break(
            export.tenant,
            walker.position + 1,
            "export incomplete",
            "a trailer line with the chain head",
            "none",
        )
    broken = walker.finish(export.head, head_label="exported head")
    if broken:
        result.breaks.append(broken)
    if export.anchor.trusted:
        result.notes.append(
            f"exported with --since: starts at position "
            f"{walker.anchor.position + 1}, trusting its link"
        )
    result.seconds = time.perf_counter() - started
    return result


def _counted(
    rows: Iterator[StoredRow], result: VerifyResult, progress: Progress | None
) -> Iterator[StoredRow]:
    for row in rows:
        result.rows += 1
        if progress and result.rows % 2000 == 0:
            progress(result.rows)
        yield row
