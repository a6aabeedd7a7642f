"""Events at the server's max_payload, valid and invalid, on every service that reads CHAT.

Before the fix, a service that dead-lettered an event this big published its bytes plus
the Engram-* headers: over max_payload, the server answered -ERR, nats-py closed the
connection for good and the worker never consumed again (the next event was never stored).
Now the dead letter keeps its body in the object store and the worker goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import RawStreamMsg

from services.runtime.dlq import (
    BODY_BUCKET,
    HEADER_BODY,
    HEADER_BODY_DIGEST,
    HEADER_BODY_SIZE,
    body_digest,
    dead_letter_body,
)
from tests import factories as f
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.helpers import dlq_depth, drained, eventually, send_event

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

RunWorker = Callable[..., AbstractAsyncContextManager[Any]]
# Today, not the factories' fixed date: the memory service drops notes older than 7 days.
NOW = datetime.now(UTC)
SUBJECT = "chat.message.created"
# Prose, so the text is what a real long message looks like to a tokenizer.
PARAGRAPH = (
    "The night train to Vienna leaves at nine; the traveller asked twice about the "
    "sleeper berth, the vegetarian dinner and whether the bicycle can travel along. "
)


def filler(n: int) -> str:
    return (PARAGRAPH * (n // len(PARAGRAPH) + 1))[:n]


def exactly(size: int, build: Callable[[str], bytes]) -> bytes:
    """``build(padding)`` with the padding that makes it ``size`` bytes (ASCII: 1 byte
    per character, no JSON escapes)."""
    data = build(filler(size - len(build(""))))
    assert len(data) == size
    return data


def message_bytes(
    cid: UUID, mid: UUID, *, content: str | None = None, note: str | None = None, role: str = "user"
) -> bytes:
    """A chat.message.created as bytes; content (or a metadata note) is the bulk."""
    data = f.as_json(f.message(cid, mid, content="placeholder", at=NOW))
    data["payload"]["content"] = "a short question about trains" if content is None else content
    data["payload"]["role"] = role
    if note is not None:
        data["payload"]["metadata"] = {"tokens": 7, "transcript": note}
    return json.dumps(data, separators=(",", ":")).encode()


async def publish(nc: NatsClient, data: bytes) -> int:
    # No headers: the event alone is max_payload - 1 bytes, as a producer may send it.
    return int((await nc.jetstream().publish(SUBJECT, data)).seq)


async def letters(nc: NatsClient, prefix: str) -> list[RawStreamMsg]:
    js = nc.jetstream()
    last = (await js.stream_info("DLQ")).state.last_seq
    found = [await js.get_msg("DLQ", seq) for seq in range(1, last + 1)]
    return [m for m in found if (m.subject or "").startswith(prefix)]


async def assert_kept_in_full(nc: NatsClient, service: str, data: bytes, seq: int) -> None:
    """One dead letter, its body in the object store, read back whole and verified."""
    [letter] = await letters(nc, f"dlq.{service}.")
    headers = letter.headers or {}
    assert letter.subject == f"dlq.{service}.{SUBJECT}"
    assert headers["Engram-Dlq-Kind"] == "invalid"
    assert "payload.role" in headers["Engram-Dlq-Reason"]
    assert headers["Engram-Original-Sequence"] == str(seq)
    assert headers[HEADER_BODY].startswith(f"object:{BODY_BUCKET}/{service}/CHAT/{seq}/")
    assert headers[HEADER_BODY_SIZE] == str(len(data))
    assert headers[HEADER_BODY_DIGEST] == body_digest(data)
    assert not letter.data  # the DLQ message itself stays small
    assert await dead_letter_body(nc.jetstream(), letter) == data


class BigPair:
    """A valid and an invalid event of max_payload - 1 bytes, then a small good one."""

    def __init__(self, nc: NatsClient, *, bulk_in_metadata: bool = False) -> None:
        self.size = nc.max_payload - 1
        self.cid, self.big, self.after = uuid4(), uuid4(), uuid4()

        def valid(pad: str) -> bytes:
            if bulk_in_metadata:
                return message_bytes(self.cid, self.big, note=pad)
            return message_bytes(self.cid, self.big, content=pad)

        self.valid = exactly(self.size, valid)
        self.invalid = exactly(
            self.size, lambda pad: message_bytes(self.cid, uuid4(), content=pad, role="wizard")
        )

    async def publish(self, nc: NatsClient) -> int:
        """Publishes all four events; returns the invalid one's stream sequence."""
        await send_event(nc, f.conversation(self.cid, at=NOW))
        await publish(nc, self.valid)
        seq = await publish(nc, self.invalid)
        await send_event(nc, f.message(self.cid, self.after, content="the next one", at=NOW))
        return seq

    @property
    def big_content(self) -> str:
        return str(json.loads(self.valid)["payload"]["content"])


async def test_ingest_at_max_payload(
    run_ingest: RunWorker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    pair = BigPair(nc)
    seq = await pair.publish(nc)
    async with run_ingest() as worker:
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM ingest.messages WHERE message_id = $1",
                                pair.after),
            timeout=30,
        )  # fmt: skip
        await eventually(lambda: drained(nc), timeout=30)
        assert worker.stats.dead == 1
    stored = await db.fetchval(
        "SELECT content FROM ingest.messages WHERE message_id = $1", pair.big
    )
    assert stored == pair.big_content
    await assert_kept_in_full(nc, "ingest", pair.invalid, seq)


async def test_embedder_at_max_payload(
    run_embedder: RunWorker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    # The bulk of the valid event is metadata, which is not embedded: the test stays
    # about the size of the message, not about encoding a megabyte of text on 2 cores.
    pair = BigPair(nc, bulk_in_metadata=True)
    seq = await pair.publish(nc)

    async def chunked() -> set[UUID]:
        rows = await db.fetch("SELECT DISTINCT source_id FROM embedder.chunks")
        return {r[0] for r in rows}

    async with run_embedder():
        await eventually(chunked, lambda ids: {pair.big, pair.after} <= ids, timeout=60)
        await eventually(lambda: drained(nc, consumer="embedder"), timeout=30)
    await assert_kept_in_full(nc, "embedder", pair.invalid, seq)


async def test_memory_at_max_payload(
    run_memory: RunWorker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    pair = BigPair(nc)
    seq = await pair.publish(nc)

    async def notes() -> dict[UUID, str]:
        rows = await db.fetch("SELECT message_id, text FROM memory.session_notes")
        return {r[0]: r[1] for r in rows}

    async with run_memory():
        found = await eventually(notes, lambda n: pair.after in n, timeout=30)
        await eventually(lambda: drained(nc, consumer="memory"), timeout=30)
    assert found[pair.big] == pair.big_content
    await assert_kept_in_full(nc, "memory", pair.invalid, seq)


async def test_audit_at_max_payload(
    run_audit: RunWorker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    # The audit writer dead-letters nothing for being invalid: it records every message,
    # the invalid one included (that is what an audit trail is for).
    pair = BigPair(nc)
    seq = await pair.publish(nc)

    async def recorded() -> list[int]:
        rows = await db.fetch(
            "SELECT stream_seq FROM audit.events WHERE stream = 'CHAT' ORDER BY stream_seq"
        )
        return [r[0] for r in rows]

    async with run_audit():
        await eventually(recorded, lambda seqs: len(seqs) == 4, timeout=30)
        await eventually(lambda: drained(nc, consumer="audit"), timeout=30)
    assert await recorded() == [seq - 2, seq - 1, seq, seq + 1]
    assert await dlq_depth(nc) == 0


async def test_embedder_embeds_a_message_of_max_payload(
    run_embedder: RunWorker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """The whole megabyte is content this time: chunked, every chunk embedded, and the next
    event still stored."""
    pair = BigPair(nc)
    await pair.publish(nc)

    async def progress() -> tuple[int, int, int]:
        row = await db.fetchrow(
            """SELECT (SELECT count(*) FROM embedder.chunks WHERE source_id = $1),
                      (SELECT count(*) FROM embedder.chunks WHERE source_id = $2),
                      (SELECT count(*) FROM embedder.embed_queue)""",
            pair.big,
            pair.after,
        )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    async with run_embedder():
        big, _, _ = await eventually(
            progress, lambda p: p[0] > 0 and p[1] > 0 and p[2] == 0, timeout=240, interval=1
        )
    assert big > 100  # a megabyte of prose is many chunks
    unembedded = await db.fetchval(
        """SELECT count(*) FROM embedder.chunks c WHERE c.source_id = $1 AND NOT EXISTS (
               SELECT 1 FROM embedder.chunk_vectors v WHERE v.chunk_id = c.chunk_id)""",
        pair.big,
    )
    assert unembedded == 0
