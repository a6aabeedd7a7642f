"""The pure parts of `engram dlq` and `engram status`: reading a dead letter's headers,
what its body says, which consumer a dead letter belongs to, and the one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js.api import RawStreamMsg

from services.runtime import dlq
from services.runtime.cli_connect import Unreachable, nats_where, postgres_where
from services.runtime.cli_errors import EXIT_ENVIRONMENT, EXIT_UNEXPECTED, explain
from services.runtime.dlq_tool import Filters, event_of, letter_of, matches
from services.runtime.status import dead_by_consumer

T = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def raw(body: bytes, **headers: str) -> RawStreamMsg:
    base = {
        dlq.HEADER_KIND: "invalid",
        dlq.HEADER_REASON: "contract violation: payload.role",
        dlq.HEADER_SUBJECT: "chat.message.created",
        dlq.HEADER_STREAM: "CHAT",
        dlq.HEADER_SEQUENCE: "41",
        dlq.HEADER_DELIVERIES: "1",
        dlq.HEADER_BODY: "inline",
        dlq.HEADER_BODY_SIZE: str(len(body)),
    }
    return RawStreamMsg(
        subject="dlq.ingest.chat.message.created",
        seq=7,
        data=body,
        headers={**base, **headers},
        time=T,
    )


def test_a_letter_reads_its_headers_and_its_events_ids() -> None:
    letter = letter_of(raw(b'{"event_id": "e-1", "tenant_id": "acme", "payload": {}}'))
    assert (letter.sequence, letter.service, letter.subject, letter.stream) == (
        7,
        "ingest",
        "chat.message.created",
        "CHAT",
    )
    assert (letter.original_sequence, letter.deliveries, letter.kind) == (41, 1, "invalid")
    assert (letter.event.event_id, letter.event.tenant_id) == ("e-1", "acme")
    assert letter.summary()["reason"] == "contract violation: payload.role"


@pytest.mark.parametrize("body", [b"\xff\xfe", b"{not json", b"[1, 2]", b'{"event_id": 5}'])
def test_a_body_without_ids_has_none(body: bytes) -> None:
    event = event_of(body)
    assert (event.event_id, event.tenant_id) == (None, None)


def test_a_body_in_the_object_store_is_not_guessed() -> None:
    letter = letter_of(raw(b"", **{dlq.HEADER_BODY: "object:engram-dlq-bodies/x"}))
    assert letter.event.event_id is None and letter.body_location.startswith("object:")


def test_filters() -> None:
    letter = letter_of(raw(b"{}"))
    assert Filters().stream_subject == "dlq.*.>"
    assert Filters(service="ingest", subject="chat.message.*").stream_subject == (
        "dlq.ingest.chat.message.*"
    )
    assert matches(letter, Filters(kind=dlq.DeadKind.invalid))
    assert not matches(letter, Filters(kind=dlq.DeadKind.exhausted))
    assert matches(letter, Filters(subject="chat.>"))
    assert not matches(letter, Filters(subject="chat.file.*"))
    assert matches(letter, Filters(since=T - timedelta(1), until=T))
    assert not matches(letter, Filters(since=T + timedelta(seconds=1)))


def test_dead_letters_belong_to_the_consumer_of_their_original_stream() -> None:
    counts = {
        "dlq.memory.memory.write": 2,
        "dlq.memory.chat.session.ended": 1,
        "dlq.ingest.chat.message.created": 4,
        "dlq.ingest.chat.message.updated": 1,
        "dlq.odd": 9,  # not a dead letter's subject
    }
    assert dead_by_consumer(counts) == {
        ("MEMORY", "memory"): 2,
        ("CHAT", "memory"): 1,
        ("CHAT", "ingest"): 5,
    }


def test_where_never_shows_a_password() -> None:
    where = nats_where("nats://engram_admin:secret-password-1234@n1:4222,nats://n2:4222")
    assert str(where) == "NATS at n1:4222, n2:4222"
    assert str(postgres_where("postgresql://u:pw@db:5432/engram")) == "PostgreSQL at db:5432/engram"


def test_errors_in_one_line() -> None:
    assert explain(Unreachable("cannot reach NATS at h:1")) == (
        "cannot reach NATS at h:1",
        EXIT_ENVIRONMENT,
    )
    line, code = explain(asyncpg.InvalidCatalogNameError('database "x" does not exist'))
    assert "database name of DATABASE_URL" in line and code == EXIT_ENVIRONMENT
    line, code = explain(RuntimeError("boom"))
    assert "--debug" in line and code == EXIT_UNEXPECTED
