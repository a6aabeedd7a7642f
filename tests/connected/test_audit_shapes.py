"""Every stored message is one audit row whatever its shape (issue 13), also when every
message is delivered again after it was recorded: JSON nested 253 to 1,024 levels (orjson
reads it but cannot write it), as deep as a message can be, bytes that are not UTF-8,
JSON that is not an envelope. Each row carries the message's real stream and sequence,
and every chain verifies, in the database and as an export."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from hashlib import sha256
from pathlib import Path
from typing import NamedTuple
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.audit.logic import MAX_BODY_DEPTH, TENANT_MALFORMED, TENANT_UNKNOWN
from services.audit.record import record_id
from services.audit.verify import verify_file
from services.runtime.bus import STREAMS, ConsumerSpec, ensure_consumer
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.audit_fixtures import RunAudit, export, recorded, verify
from tests.helpers import drained, eventually

pytestmark = pytest.mark.connected


class Sent(NamedTuple):
    name: str
    subject: str
    data: bytes
    tenant: str  # the chain it must be recorded in
    raw: bool  # recorded as its bytes (not as JSON columns)
    stream: str = ""
    seq: int = 0


def nest(levels: int, inner: bytes = b"") -> bytes:
    return b"[" * levels + inner + b"]" * levels


def envelope(subject: str, payload: bytes, tenant: str = "acme") -> bytes:
    head = {"event_id": str(uuid4()), "type": subject, "tenant_id": tenant, "producer": "t"}
    return json.dumps(head).encode()[:-1] + b', "payload": ' + payload + b"}"


def shapes(max_payload: int) -> list[Sent]:
    """Messages of every shape on every stream, with the chain each belongs to."""
    out: list[Sent] = []
    subjects = (
        "state.patch",
        "chat.message.created",
        "memory.write",
        "engram.embedding.ready",
        "dlq.ingest.chat.message.created",
    )
    for subject in subjects:
        for body_depth in (2, MAX_BODY_DEPTH, 254, 255, 300, 1023, 1024):
            data = envelope(subject, nest(body_depth - 1))
            # Kept as bytes beyond MAX_BODY_DEPTH; orjson reads the tenant up to 1,024.
            raw = body_depth > MAX_BODY_DEPTH
            out.append(Sent(f"envelope {body_depth} deep", subject, data, "acme", raw))
        data = envelope(subject, nest(1024))
        out.append(Sent("envelope 1025 deep", subject, data, TENANT_MALFORMED, True))
        for depth in (254, 255, 300, 1023, 5000):
            data = nest(depth, b"1")
            out.append(Sent(f"array {depth} deep", subject, data, TENANT_MALFORMED, True))
        out += [
            Sent("not UTF-8", subject, b"\xff\xfe{\x00}", TENANT_MALFORMED, True),
            Sent("Latin-1", subject, b'{"tenant_id": "acme", "x": "\xe9"}', TENANT_MALFORMED, True),
            Sent("JSON string", subject, b'"just text"', TENANT_MALFORMED, True),
            Sent("JSON number", subject, b"42", TENANT_MALFORMED, True),
            Sent("empty", subject, b"", TENANT_MALFORMED, True),
            Sent("not an envelope", subject, b'{"hello": "world"}', TENANT_UNKNOWN, False),
            Sent("envelope", subject, envelope(subject, b'{"n": 1}', "globex"), "globex", False),
        ]
    # As deep as a message can be (the rest of max_payload is for headers).
    size = max_payload - 4096
    out.append(Sent("max payload, open", "state.patch", b"[" * size, TENANT_MALFORMED, True))
    data = envelope("state.patch", nest(size // 2 - 200))
    out.append(Sent("max payload, envelope", "state.patch", data, TENANT_MALFORMED, True))
    return out


async def publish_all(nc: NatsClient, sent: list[Sent]) -> list[Sent]:
    js = nc.jetstream()
    stored = []
    for s in sent:
        ack = await js.publish(s.subject, s.data)
        stored.append(s._replace(stream=ack.stream, seq=ack.seq))
    return stored


async def settled(nc: NatsClient) -> bool:
    """The writer acked everything on every stream it reads."""
    return all([await drained(nc, stream.name, "audit") for stream in STREAMS])


async def check_rows(db: asyncpg.Connection, sent: list[Sent]) -> None:
    """Exactly one row per stored message, at its stream position, in its chain."""
    rows = await db.fetch(
        "SELECT stream, stream_seq, record_id, tenant_id, sha256(raw) AS raw_sha256 "
        "FROM audit.events"
    )
    by_place = {(r["stream"], r["stream_seq"]): r for r in rows}
    assert len(rows) == len(by_place) == len(sent), (len(rows), len(by_place), len(sent))
    for s in sent:
        row = by_place.get((s.stream, s.seq))
        assert row is not None, f"{s.name} on {s.subject} ({s.stream} #{s.seq}) not recorded"
        assert row["record_id"] == record_id(s.stream, s.seq, s.data), s.name
        assert row["tenant_id"] == s.tenant, (s.name, s.subject, row["tenant_id"])
        assert row["raw_sha256"] == (sha256(s.data).digest() if s.raw else None), s.name


async def replay_everything(nc: NatsClient, specs: list[ConsumerSpec]) -> int:
    """Make every message come back to the writer after it was recorded: each consumer is
    lost and created again from the start of its stream (with the writer's settings, so the
    writer takes it as it is), and each message is delivered once and given back (nak)
    first, so that what the writer gets is a redelivery, with another reply subject."""
    js = nc.jetstream()
    given_back = 0
    for spec in specs:
        stored = (await js.stream_info(spec.stream.name)).state.messages
        await js.delete_consumer(spec.stream.name, spec.durable)
        await ensure_consumer(js, spec)
        sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream.name)
        held: list[Msg] = []
        try:
            deadline = time.monotonic() + 30
            while len(held) < stored and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    held += await sub.fetch(stored - len(held), timeout=1)
            for msg in held:  # only now: a message given back earlier would come back here
                await msg.nak()
        finally:
            await sub.unsubscribe()
        given_back += len({msg.metadata.sequence.stream for msg in held})
    return given_back


async def test_every_shape_is_recorded_once_with_its_stream_position(
    run_audit: RunAudit, nc: NatsClient, db: asyncpg.Connection, env: Env, tmp_path: Path
) -> None:
    sent = await publish_all(nc, shapes(nc.max_payload))
    total = len(sent)  # (not len(sent) in asserts: pytest would print every message)
    async with run_audit(batch_size=20) as worker:
        await eventually(lambda: recorded(db), total.__le__, timeout=90)
        await eventually(lambda: settled(nc), timeout=30)
        specs = [consumer.spec for consumer in worker.consumers]
    await check_rows(db, sent)
    result = await verify(env)
    assert result.ok, result.breaks

    # Every message again, now that each is recorded: none may be recorded twice.
    given_back = await replay_everything(nc, specs)
    assert given_back == total
    async with run_audit(batch_size=20) as worker:

        async def seen_again() -> int:
            return worker.stats.duplicates + worker.stats.applied

        await eventually(seen_again, total.__le__, timeout=90)
        await eventually(lambda: settled(nc), timeout=30)
        assert worker.stats.duplicates == total, worker.stats
        assert worker.stats.applied == 0, worker.stats
    await check_rows(db, sent)
    result = await verify(env)
    assert result.ok, result.breaks
    assert result.rows == total

    # And offline: each chain exported and verified from the file.
    for tenant in ("acme", "globex", TENANT_MALFORMED, TENANT_UNKNOWN):
        path = tmp_path / f"{tenant}.jsonl"
        rows, _ = await export(env, tenant, path)
        assert rows == sum(s.tenant == tenant for s in sent)
        checked = await asyncio.to_thread(verify_file, path)
        assert checked.ok and checked.rows == rows, checked.breaks
