"""The chain walker on rows built in memory, and export files verified offline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from services.audit import canonical as c
from services.audit.chain import Anchor, ChainWalker, StoredRow
from services.audit.export import header_json, row_json, trailer_json, write_line
from services.audit.logic import build_record
from services.audit.record import AuditRecord, retention_record
from services.audit.redaction import RedactionPolicy
from services.audit.repo import Head, chain_rows
from services.audit.verify import verify_file
from tests import factories as f

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def records(n: int, tenant: str = "acme") -> list[AuditRecord]:
    cid = uuid4()
    return [
        build_record(
            stream="CHAT",
            stream_seq=i + 1,
            subject="chat.message.created",
            data=f.message(cid, tenant=tenant, content=f"m{i}").model_dump_json().encode(),
            headers=None,
            received_at=AT,
            policy=RedactionPolicy(),
        )
        for i in range(n)
    ]


def chain(recs: list[AuditRecord], heads: dict[str, Head] | None = None) -> list[StoredRow]:
    rows = chain_rows(recs, {} if heads is None else heads, AT)
    return [StoredRow(r, row[1], AT, row[21], row[22]) for r, row in zip(recs, rows, strict=True)]


def walk(rows: list[StoredRow], head: tuple[int, bytes] | None, **kw: object) -> ChainWalker:
    walker = ChainWalker("acme", **kw)  # type: ignore[arg-type]
    for row in rows:
        walker.feed(row)
    walker.finish(head)
    return walker


def head_of(rows: list[StoredRow]) -> tuple[int, bytes]:
    return rows[-1].position, rows[-1].hash


def test_an_intact_chain_walks_to_its_head() -> None:
    rows = chain(records(10))
    assert [r.position for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == c.ZERO_HASH and rows[1].prev_hash == rows[0].hash
    walker = walk(rows, head_of(rows))
    assert walker.broken is None and walker.rows == 10


def delete(rows: list[StoredRow]) -> None:
    rows.pop(4)


def duplicate(rows: list[StoredRow]) -> None:
    rows.insert(5, rows[4])


def swap(rows: list[StoredRow]) -> None:  # positions 3 and 5 exchanged
    rows[2], rows[4] = (
        dataclasses.replace(rows[4], position=3),
        dataclasses.replace(rows[2], position=5),
    )


def alter(rows: list[StoredRow]) -> None:
    record = dataclasses.replace(rows[6].record, producer="mallory").seal()
    rows[6] = dataclasses.replace(rows[6], record=record)


def backdate(rows: list[StoredRow]) -> None:
    rows[6] = dataclasses.replace(rows[6], recorded_at=datetime(2020, 1, 1, tzinfo=UTC))


def cut_tail(rows: list[StoredRow]) -> None:
    rows.pop()


@pytest.mark.parametrize(
    ("tamper", "position", "problem"),
    [
        (delete, 5, "missing rows"),
        (duplicate, 6, "position repeated"),
        (swap, 3, "broken link"),
        (alter, 7, "row altered"),
        (backdate, 7, "row altered"),
        (cut_tail, 10, "tail cut"),
    ],
)
def test_each_kind_of_tampering_is_found_at_its_row(
    tamper: Callable[[list[StoredRow]], None], position: int, problem: str
) -> None:
    rows = chain(records(10))
    head = head_of(rows)
    tamper(rows)
    broken = walk(rows, head).broken
    assert broken is not None
    assert (broken.position, broken.problem.split(" (")[0]) == (position, problem)


def test_a_retained_prefix_is_confirmed_by_its_record() -> None:
    rows = chain(records(10))
    heads = {"acme": Head(10, rows[-1].hash)}
    summary = {"last_position": 6, "last_hash": rows[5].hash.hex()}
    rest = chain([retention_record("acme", summary, AT)], heads)
    kept = rows[6:] + rest
    walker = walk(kept, head_of(kept), anchor=Anchor(6, rows[5].hash))
    assert walker.broken is None and walker.rows == 5
    forged = walk(kept, head_of(kept), anchor=Anchor(5, rows[4].hash))
    assert forged.broken is not None and forged.broken.problem.startswith("missing rows")
    unconfirmed = walk(rows[6:], head_of(rows), anchor=Anchor(6, rows[5].hash))
    assert unconfirmed.broken is not None
    assert unconfirmed.broken.problem.startswith("start not confirmed")


def write_export(path: Path, rows: list[StoredRow], head: tuple[int, bytes] | None) -> None:
    with path.open("w") as out:
        write_line(out, header_json("acme", (rows[0].position - 1, rows[0].prev_hash), None))
        for row in rows:
            write_line(out, row_json(row))
        write_line(out, trailer_json(len(rows), head))


def test_export_files_verify_offline(tmp_path: Path) -> None:
    recs = records(5)
    recs.append(
        build_record(
            stream="CHAT",
            stream_seq=99,
            subject="chat.message.created",
            data=b"\x00raw",
            headers={"a": "b"},
            received_at=AT,
            policy=RedactionPolicy(),
        )
    )
    recs[-1].tenant_id = "acme"  # one chain for the test
    recs[-1].seal()
    rows = chain(recs)
    good = tmp_path / "good.jsonl"
    write_export(good, rows, head_of(rows))
    result = verify_file(good)
    assert result.ok and result.rows == 6

    wrong_head = tmp_path / "wrong-head.jsonl"
    write_export(wrong_head, rows, (7, rows[-1].hash))
    [broken] = verify_file(wrong_head).breaks
    assert broken.problem.startswith("tail cut")


def test_retention_cutoff_keeps_whole_months() -> None:
    from services.audit.retain import cutoff

    may = datetime(2026, 5, 15, 12, tzinfo=UTC)
    assert cutoff(may, 3) == datetime(2026, 2, 1, tzinfo=UTC)  # keeps Feb, Mar, Apr, May
    assert cutoff(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2025, 12, 1, tzinfo=UTC)
    assert cutoff(datetime(2026, 3, 1, tzinfo=UTC), 14) == datetime(2025, 1, 1, tzinfo=UTC)
