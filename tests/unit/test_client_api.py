"""engram_client without a bus: the error hierarchy follows the one error model, retries
are bounded, and the event builder fills valid envelopes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.errors import ErrorCode, QueryError
from contracts.memory import EpisodicContent, MemoryWrite, ProceduralContent, Temporal
from contracts.state import StatePatch
from engram_client import (
    ConnectFailed,
    Connection,
    EngramClient,
    EngramError,
    EventBuilder,
    InvalidRequest,
    QueryRejected,
    Retry,
)
from engram_client.errors import REJECTIONS, rejection
from engram_client.queries import build

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_raises_its_own_class(code: ErrorCode) -> None:
    error = QueryError(code=code, message="why", hint="ask less", detail={"size": 2})
    exc = rejection("query.x", error)
    assert type(exc) is REJECTIONS[code] and exc.code is code
    assert isinstance(exc, QueryRejected) and isinstance(exc, EngramError)
    assert (exc.message, exc.hint, exc.detail) == ("why", "ask less", {"size": 2})
    assert "query.x" in str(exc) and code.value in str(exc)
    assert len(set(REJECTIONS.values())) == len(ErrorCode)


def test_a_request_that_breaks_its_contract_is_invalid_before_sending() -> None:
    from contracts.memory_search import MemorySearchRequest

    with pytest.raises(InvalidRequest) as caught:
        build(MemorySearchRequest, {"tenant_id": "bad tenant!", "agent_id": "a", "text": ""})
    assert caught.value.detail is not None
    assert {e["loc"][-1] for e in caught.value.detail["errors"]} == {"tenant_id", "text"}


def test_retry_delays_grow_and_stay_bounded() -> None:
    policy = Retry(attempts=6, base_s=0.1, max_s=0.3)
    for _ in range(200):
        delays = list(policy.delays())
        assert len(delays) == 5
        ceilings = [0.1, 0.2, 0.3, 0.3, 0.3]
        assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert list(Retry(attempts=1).delays()) == []
    with pytest.raises(ValueError, match="bad retry policy"):
        Retry(attempts=0)


def test_the_builder_fills_the_envelope() -> None:
    events = EventBuilder(tenant_id="acme", producer="chat-api")
    cid = uuid4()
    one = events.message_created(cid, "user", "hi", sender_user_id="u-1")
    two = events.message_created(cid, "assistant", "hello", occurred_at=NOW)
    assert one.event_id != two.event_id and one.payload.message_id != two.payload.message_id
    assert (
        one.tenant_id == "acme"
        and one.producer == "chat-api"
        and one.type == "chat.message.created"
    )
    assert one.occurred_at.tzinfo is not None and two.occurred_at == NOW
    assert one.payload.sender_user_id == "u-1" and one.correlation_id is None
    assert one.headers() == {"Nats-Msg-Id": f"acme:{one.event_id}"}

    turn = events.correlated()
    a, b = turn.session_started(cid), turn.state_patch("u-1", "bot", merge_patch={"x": 1})
    assert a.correlation_id is not None and a.correlation_id == b.correlation_id
    assert isinstance(b, StatePatch)
    other = events.conversation_created(tenant_id="globex", causation_id=a.event_id)
    assert other.tenant_id == "globex" and other.causation_id == a.event_id


def test_memory_type_follows_the_content() -> None:
    events = EventBuilder(tenant_id="acme")
    episodic = EpisodicContent(event="Booked", temporal=Temporal(occurred_at=NOW))
    write = events.memory_write("bot", "Booked a hotel", episodic, 0.9, user_id="u-1")
    assert isinstance(write, MemoryWrite) and write.payload.memory_type == "episodic"
    how = ProceduralContent(skill="Book", steps=["search", "pay"])
    assert events.memory_write("bot", "How to book", how, 0.5).payload.memory_type == "procedural"


def test_the_builder_refuses_what_the_contract_refuses() -> None:
    events = EventBuilder(tenant_id="acme")
    with pytest.raises(ValidationError):
        events.state_patch("u-1", "bot")  # neither patch nor merge_patch
    with pytest.raises(ValidationError):
        events.memory_forget("u-1")  # no target
    with pytest.raises(ValueError, match="no tenant_id"):
        EventBuilder().conversation_created()
    with pytest.raises(TypeError, match="not envelope fields"):
        events.envelope(StatePatch, {}, tenant="acme")


def test_the_inbox_prefix_follows_engrams_users() -> None:
    assert Connection("nats://engram_producer:secret@h:4222").inbox() == "_INBOX_producer"
    assert Connection("nats://h:4222", user="engram_memory").inbox() == "_INBOX_memory"
    assert Connection("nats://alice:pw@h:4222").inbox() == "_INBOX"
    assert Connection("nats://h:4222").inbox() == "_INBOX"
    assert Connection("nats://engram_producer:pw@h", inbox_prefix="_X").inbox() == "_X"
    options = Connection(("nats://a:1", "nats://b:2"), token="t").nats_options()
    assert options["servers"] == ["nats://a:1", "nats://b:2"] and options["token"] == "t"
    assert "password" not in options and "tls" not in options


async def test_an_unreachable_server_fails_in_bounded_time_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectFailed) as failed:
        await EngramClient.connect(
            "nats://engram_producer:s3cret-pass@127.0.0.1:1", connect_within_s=1.5
        )
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(failed.value) and "s3cret" not in str(failed.value)
