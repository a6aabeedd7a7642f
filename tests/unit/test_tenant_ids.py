"""Idempotency keys per tenant, without a server: the Nats-Msg-Id every envelope is
published with, the outbox's copy of it, what the AsyncAPI documents promise, and how the
pipeline keeps one event id to one tenant per apply."""

from __future__ import annotations

import re
from typing import cast
from uuid import UUID, uuid4

import jsonschema
from nats.aio.msg import Msg

from contracts.envelope import Envelope
from services.runtime.docs import EVENT_HEADERS
from services.runtime.outbox import Outgoing
from services.runtime.pipeline import Item, one_tenant_per_id
from tests import factories as f


def event(tenant: str, event_id: UUID) -> Envelope:
    return f.conversation(uuid4(), tenant=tenant).model_copy(update={"event_id": event_id})


def test_the_msg_id_is_the_tenant_and_the_event_id() -> None:
    eid = uuid4()
    for tenant in ("acme", "umbrella:eu"):  # a tenant id may hold ':' itself
        e = event(tenant, eid)
        assert e.msg_id == f"{tenant}:{eid}"
        assert e.headers() == {"Nats-Msg-Id": e.msg_id}
        assert UUID(e.msg_id.rsplit(":", 1)[1]) == eid  # the id is what follows the last ':'
    assert event("acme", eid).msg_id != event("globex", eid).msg_id


def test_the_outbox_publishes_an_envelope_under_its_tenant_scoped_id() -> None:
    e = event("globex", uuid4())
    out = Outgoing.event(e)
    assert out.msg_id == e.msg_id == out.headers["Nats-Msg-Id"]


def test_the_asyncapi_header_schema_takes_the_documented_id_and_refuses_a_bare_one() -> None:
    e = event("umbrella:eu", uuid4())
    jsonschema.validate(e.headers(), EVENT_HEADERS)
    pattern = EVENT_HEADERS["properties"]["Nats-Msg-Id"]["pattern"]
    assert re.fullmatch(pattern, e.msg_id)
    assert not re.fullmatch(pattern, str(e.event_id))  # what producers sent before
    assert "<tenant_id>:<event_id>" in EVENT_HEADERS["properties"]["Nats-Msg-Id"]["description"]


def items(*events: Envelope) -> list[Item[Envelope]]:
    return [Item(cast(Msg, None), e) for e in events]


def test_a_batch_without_an_id_shared_across_tenants_is_applied_whole() -> None:
    a, b = uuid4(), uuid4()
    # acme's `a` twice is a plain duplicate: one part, the inbox drops the copy.
    batch = items(event("acme", a), event("globex", b), event("acme", a))
    assert one_tenant_per_id(batch) == [batch]
    assert one_tenant_per_id([]) == [[]]


def test_a_batch_is_cut_in_stream_order_wherever_an_id_comes_again_under_another_tenant() -> None:
    shared, other = uuid4(), uuid4()
    batch = items(
        event("acme", shared),
        event("acme", other),
        event("globex", shared),
        event("initech", other),
        event("initech", shared),
        event("initech", uuid4()),
    )
    parts = one_tenant_per_id(batch)
    assert parts == [batch[:2], batch[2:4], batch[4:]]
    assert [i for part in parts for i in part] == batch  # nothing lost, nothing reordered
    for part in parts:
        tenants: dict[UUID, set[str]] = {}
        for item in part:
            tenants.setdefault(item.event.event_id, set()).add(item.event.tenant_id)
        assert all(len(t) == 1 for t in tenants.values())
