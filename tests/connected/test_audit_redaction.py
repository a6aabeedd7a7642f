"""Redaction: configured paths are stored as the SHA-256 of their value, never the text."""

from __future__ import annotations

import hashlib
import json
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.audit import canonical as c
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.audit_fixtures import RunAudit, recorded, verify
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected

SECRET = "my secret diagnosis: 🫀 arrhythmia"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_redacted_paths_hold_hashes_not_text(
    run_audit: RunAudit, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    cid = uuid4()
    acme = f.message(cid, content=SECRET, metadata={"email": "jo@acme.test", "tokens": 9})
    globex = f.message(
        uuid4(), tenant="globex", content=SECRET, metadata={"email": "kim@globex.test"}
    )
    upload = f.file(extracted_text=f"scan: {SECRET}")
    async with run_audit(
        redact=["payload.content", "payload.extracted_text"],
        redact_tenants={"acme": ["payload.metadata.email"]},
    ):
        await publish(nc, acme, globex, upload)
        await eventually(lambda: recorded(db), (3).__eq__)

    # Nowhere in the table, in any column, is the text.
    leaks = await db.fetchval(
        "SELECT count(*) FROM audit.events e WHERE e::text LIKE '%arrhythmia%' "
        "OR e::text LIKE '%jo@acme%'"
    )
    assert leaks == 0
    rows = {r["event_id"]: r for r in await db.fetch("SELECT * FROM audit.events")}

    stored = json.loads(rows[acme.event_id]["payload"])
    assert stored["content"] == {"redacted_sha256": sha(SECRET)}
    assert stored["metadata"]["email"] == {"redacted_sha256": sha("jo@acme.test")}
    assert stored["metadata"]["tokens"] == 9
    assert rows[acme.event_id]["redacted"] == ["payload.content", "payload.metadata.email"]
    # The digest of the payload as received proves the original to whoever holds it.
    original = c.canonical(acme.model_dump(mode="json")["payload"])
    assert bytes(rows[acme.event_id]["payload_sha256"]) == hashlib.sha256(original).digest()

    other = json.loads(rows[globex.event_id]["payload"])  # only the global paths for globex
    assert other["content"] == {"redacted_sha256": sha(SECRET)}
    assert other["metadata"]["email"] == "kim@globex.test"
    assert json.loads(rows[upload.event_id]["payload"])["extracted_text"] == {
        "redacted_sha256": sha(f"scan: {SECRET}")
    }
    assert (await verify(env)).ok
