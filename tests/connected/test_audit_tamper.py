"""What a superuser can do to the trail, and where `verify` points for each."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from services.audit import canonical as c
from services.audit.record import chain_hash
from services.audit.repo import ROW_COLUMNS, row_from_db
from services.audit.verify import verify_file
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import append_now, export, records_for, tamper, verify

pytestmark = pytest.mark.connected


@pytest.fixture
async def trail(env: Env) -> None:
    """acme: 30 messages (positions 1..30); globex: 5."""
    cid = uuid4()
    acme = [f.message(cid, content=f"message {i}") for i in range(30)]
    globex = [f.message(uuid4(), tenant="globex") for _ in range(5)]
    await append_now(env, records_for(acme) + records_for(globex, first_seq=31))
    assert (await verify(env)).ok


async def only_break(env: Env, **kwargs: object) -> tuple[int, str]:
    result = await verify(env, **kwargs)  # type: ignore[arg-type]
    assert len(result.breaks) == 1, result.breaks
    broken = result.breaks[0]
    assert broken.tenant == "acme"
    return broken.position, broken.problem


async def test_superuser_update_of_a_payload(trail: None, env: Env, db: asyncpg.Connection) -> None:
    await tamper(
        db,
        """UPDATE audit.events SET payload = jsonb_set(payload, '{content}',
                        '"I never said that"') WHERE tenant_id = 'acme' AND position = 7""",
    )
    position, problem = await only_break(env)
    assert (position, problem.split(" (")[0]) == (7, "row altered")


async def test_delete_of_a_row(trail: None, env: Env, db: asyncpg.Connection) -> None:
    await tamper(db, "DELETE FROM audit.events WHERE tenant_id = 'acme' AND position = 12")
    result = await verify(env)
    [broken] = result.breaks
    assert (broken.position, broken.problem) == (12, "missing rows")
    assert (broken.expected, broken.found) == ("position 12", "position 13")
    assert broken.row and broken.row["seq"] == 13  # the row found instead


async def test_swapping_two_rows_positions(trail: None, env: Env, db: asyncpg.Connection) -> None:
    await tamper(
        db,
        """UPDATE audit.events SET position = CASE position WHEN 5 THEN 9 ELSE 5 END
                         WHERE tenant_id = 'acme' AND position IN (5, 9)""",
    )
    position, problem = await only_break(env)
    assert position == 5 and problem.startswith("broken link")


async def forge_row(db: asyncpg.Connection, position: int, *, rehash: bool) -> None:
    """Insert a copy of acme's row before ``position`` at ``position`` with other content,
    linked to the row before it; with ``rehash`` its own hash is recomputed from what it
    holds, as a forger who knows the (public) hash function would."""
    await tamper(
        db,
        """INSERT INTO audit.events SELECT e.tenant_id, $1::bigint, gen_random_uuid(), e.event_id,
                  e.stream, e.stream_seq + 1000, e.subject, e.type, e.producer,
                  e.schema_version, e.correlation_id, e.causation_id, e.occurred_at,
                  e.received_at, e.recorded_at, e.headers,
                  jsonb_set(e.payload, '{content}', '"a message nobody sent"'), e.extra,
                  e.raw, e.redacted, e.payload_sha256, e.hash, e.hash
             FROM audit.events e WHERE e.tenant_id = 'acme' AND e.position = $1::bigint - 1""",
        position,
    )
    if not rehash:
        return
    forged = row_from_db(
        await db.fetchrow(
            f"""SELECT {ROW_COLUMNS} FROM audit.events WHERE tenant_id = 'acme'
                 AND position = $1 AND payload->>'content' = 'a message nobody sent'""",
            position,
        )
    )
    digest = chain_hash(
        forged.record.record_text, position, c.to_micros(forged.recorded_at), forged.prev_hash
    )
    await tamper(
        db,
        "UPDATE audit.events SET hash = $2 WHERE record_id = $1",
        forged.record.record_id,
        digest,
    )


@pytest.mark.parametrize(
    ("rehash", "expected"),
    [(False, (10, "row altered")), (True, (11, "broken link"))],
    ids=["copied-hash", "recomputed-hash"],
)
async def test_inserting_a_forged_row_in_the_middle(
    trail: None, env: Env, db: asyncpg.Connection, rehash: bool, expected: tuple[int, str]
) -> None:
    """Rows 10..30 moved up one, a forged row put at 10. With its hash recomputed the
    forged row is, alone, a valid link; the first row that can tell is the next one,
    whose prev_hash names the real row 9's successor."""
    await tamper(
        db,
        "UPDATE audit.events SET position = position + 1 WHERE tenant_id = 'acme' "
        "AND position >= 10",
    )
    await forge_row(db, 10, rehash=rehash)
    position, problem = await only_break(env)
    assert (position, problem.split(" (")[0]) == expected


async def test_appending_a_forged_row_after_the_head(
    trail: None, env: Env, db: asyncpg.Connection
) -> None:
    """A perfect link after the last row: the recorded chain head is not the last row."""
    await forge_row(db, 31, rehash=True)
    position, problem = await only_break(env)
    assert position == 31 and problem.startswith("the chain head is not the last row")


async def test_recomputing_the_tail_is_caught_by_the_head(
    trail: None, env: Env, db: asyncpg.Connection
) -> None:
    """Deleting the last rows: the recorded chain head still names the real end."""
    await tamper(db, "DELETE FROM audit.events WHERE tenant_id = 'acme' AND position > 27")
    position, problem = await only_break(env)
    assert position == 28 and problem.startswith("tail cut")


async def test_truncating_the_tail_after_a_retained_export(
    trail: None, env: Env, db: asyncpg.Connection, tmp_path: Path
) -> None:
    exported = tmp_path / "acme.jsonl"
    rows, head = await export(env, "acme", exported)
    assert rows == 30 and head is not None and head[0] == 30
    assert verify_file(exported).ok

    # Cut the last three rows and move the recorded head back: consistent in the database.
    await tamper(db, "DELETE FROM audit.events WHERE tenant_id = 'acme' AND position > 27")
    await db.execute("""UPDATE audit.chain_heads h SET position = e.position, hash = e.hash
                          FROM audit.events e WHERE h.tenant_id = 'acme'
                           AND e.tenant_id = 'acme' AND e.position = 27""")
    assert (await verify(env)).ok  # nothing inside the database can tell any more...
    position, problem = await only_break(env, against=("acme", *head))
    assert position == 28 and problem.startswith("tail cut (the exported head")


async def test_exports_are_verified_offline(
    trail: None, env: Env, db: asyncpg.Connection, tmp_path: Path
) -> None:
    exported = tmp_path / "acme.jsonl"
    await export(env, "acme", exported)
    original = exported.read_text().splitlines()
    assert len(original) == 32  # header, 30 rows, trailer
    lines = list(original)

    row = json.loads(lines[10])  # position 10
    row["payload"]["content"] = "edited in the file"
    lines[10] = json.dumps(row)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    [broken] = verify_file(tampered).breaks
    assert (broken.position, broken.problem.split(" (")[0]) == (10, "row altered")

    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(original[:20]) + "\n")  # no trailer: rows 1..19
    [broken] = verify_file(cut).breaks
    assert broken.problem == "export incomplete"
