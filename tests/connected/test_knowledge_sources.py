"""Knowledge sources per agent, from the published contract (contracts/knowledge.py) like an
outsider: events published on the KNOWLEDGE stream, read back through
``query.knowledge.sources`` and ``query.knowledge.search`` with an agent scope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from nats.aio.client import Client as NatsClient

from contracts.chat import FileUploaded, FileUploadedPayload
from contracts.embedding import KnowledgeSearchReply
from contracts.knowledge import (
    KNOWLEDGE_SOURCES_REPLY,
    KNOWLEDGE_SOURCES_SUBJECT,
    DocumentPayload,
    DocumentUpserted,
    KnowledgeSourceInfo,
    KnowledgeSourcesReply,
    SourcePayload,
    SourceRegistered,
    SourceRemoved,
    SourceRemovedPayload,
    SourceUpdated,
)
from engram_client import EngramClient, Retry
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running, search
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures"]

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = "Bookings can be cancelled free of charge up to 48 hours before arrival."
NEW_POLICY = "Since December, cancellations are free only until 7 days before arrival."
PETS = "Dogs and cats are welcome in every room for a fee of 15 euros a night."


def _env(tenant: str, minutes: int) -> dict[str, Any]:
    return {
        "event_id": uuid4(),
        "tenant_id": tenant,
        "producer": "tests",
        "occurred_at": T0 + timedelta(minutes=minutes),
    }


def register(
    sid: UUID, agent: str, tenant: str = "acme", type_: str = "file", at: int = 0, **config: Any
) -> SourceRegistered:
    payload = SourcePayload(source_id=sid, agent_id=agent, type=type_, configuration=config)
    return SourceRegistered(**_env(tenant, at), payload=payload)


def document(sid: UUID, doc: str, text: str, tenant: str = "acme", at: int = 1) -> DocumentUpserted:
    payload = DocumentPayload(source_id=sid, document_id=doc, title=None, text=text)
    return DocumentUpserted(**_env(tenant, at), payload=payload)


def upload(text: str, conversation: UUID, at: int) -> FileUploaded:
    payload = FileUploadedPayload(
        file_id=uuid4(),
        conversation_id=conversation,
        filename="notes.txt",
        mime_type="text/plain",
        size_bytes=len(text),
        extracted_text=text,
    )
    return FileUploaded(**_env("acme", at), payload=payload)


async def sources(nc: NatsClient, agent: str, tenant: str = "acme") -> list[KnowledgeSourceInfo]:
    body = json.dumps({"tenant_id": tenant, "agent_id": agent}).encode()
    reply = KNOWLEDGE_SOURCES_REPLY.validate_json(
        (await nc.request(KNOWLEDGE_SOURCES_SUBJECT, body, timeout=10)).data
    )
    assert isinstance(reply, KnowledgeSourcesReply), reply
    return reply.sources


async def settled(nc: NatsClient, agent: str, want: dict[UUID, int], tenant: str = "acme") -> None:
    """Until the agent's sources are exactly ``want`` (source -> chunks), every chunk with
    its vector."""

    async def now() -> dict[UUID, tuple[int, int]]:
        return {
            s.source_id: (s.chunk_count, s.chunks_waiting) for s in await sources(nc, agent, tenant)
        }

    await eventually(now, lambda got: got == {k: (v, 0) for k, v in want.items()}, timeout=30)


async def scoped(
    nc: NatsClient, agent: str, text: str, tenant: str = "acme", **scope: Any
) -> KnowledgeSearchReply:
    return await search(nc, tenant, text, top_k=5, scope={"agent_id": agent, **scope})


def texts(reply: KnowledgeSearchReply) -> list[str]:
    return [h.text for h in reply.hits]


async def test_a_document_is_found_in_its_agents_scope_only(
    embedder: Running, nc: NatsClient
) -> None:
    mine, theirs, elsewhere = uuid4(), uuid4(), uuid4()
    await publish(
        nc,
        register(mine, "concierge"),
        register(theirs, "sales"),
        register(elsewhere, "concierge", tenant="globex"),
        document(mine, "policies/cancel.md", POLICY),
        document(theirs, "pets.md", PETS),
        document(elsewhere, "pets.md", PETS, tenant="globex"),
    )
    await settled(nc, "concierge", {mine: 1})
    await settled(nc, "sales", {theirs: 1})
    await settled(nc, "concierge", {elsewhere: 1}, tenant="globex")
    [info] = await sources(nc, "concierge")
    assert (info.status, info.documents, info.type) == ("ready", 1, "file")
    assert info.last_synced_at is not None

    found = await scoped(nc, "concierge", "until when can I cancel for free?")
    assert texts(found) == [POLICY]
    src = found.hits[0].source
    assert (src.source_type, src.knowledge_source_id, src.document_id, src.agent_id) == (
        "document",
        mine,
        "policies/cancel.md",
        "concierge",
    )
    assert POLICY not in texts(await scoped(nc, "sales", "until when can I cancel for free?"))
    assert texts(await scoped(nc, "concierge", "cancel", source_ids=[str(theirs)])) == []
    # another tenant's agent of the same name sees its own knowledge, never acme's
    assert texts(await scoped(nc, "concierge", "cancel for free", tenant="globex")) == [PETS]
    # existing callers are unchanged: an unscoped search covers messages and files only
    assert POLICY not in texts(await search(nc, "acme", "cancel for free"))

    # a re-upsert of the document replaces its chunks; an older one arriving late does not
    await publish(nc, document(mine, "policies/cancel.md", NEW_POLICY, at=5))
    await publish(nc, document(mine, "policies/cancel.md", POLICY, at=3))
    await eventually(
        lambda: scoped(nc, "concierge", "cancellation free until"),
        lambda r: texts(r) == [NEW_POLICY],
    )
    await settled(nc, "concierge", {mine: 1})

    # removal: the source, its chunks and its search results go; a late document is dropped
    await publish(
        nc,
        SourceRemoved(**_env("acme", 9), payload=SourceRemovedPayload(source_id=mine)),
        document(mine, "late.md", POLICY, at=10),
    )
    await settled(nc, "concierge", {})
    assert texts(await scoped(nc, "concierge", "cancellation free until")) == []
    assert texts(await scoped(nc, "sales", "dogs and cats")) == [PETS]  # others untouched


async def test_a_type_engram_cannot_read_fails_with_its_reason_until_documents_come(
    embedder: Running, nc: NatsClient
) -> None:
    sid = uuid4()
    await publish(nc, register(sid, "crawler", type_="url", url="https://example.com/faq"))
    [info] = await eventually(lambda: sources(nc, "crawler"), lambda s: len(s) == 1)
    assert info.status == "failed" and info.chunk_count == 0
    assert info.status_reason is not None and "url" in info.status_reason
    assert info.configuration == {"url": "https://example.com/faq"}
    # a connector sends what it fetched: then the source is ready
    await publish(nc, document(sid, "https://example.com/faq", PETS))
    await settled(nc, "crawler", {sid: 1})
    [info] = await sources(nc, "crawler")
    assert (info.status, info.status_reason) == ("ready", None)
    assert texts(await scoped(nc, "crawler", "are pets allowed?")) == [PETS]


async def test_a_file_source_covers_uploads_named_by_its_configuration(
    embedder: Running, nc: NatsClient
) -> None:
    conversation, sid = uuid4(), uuid4()
    before = upload("The spa opens at seven and closes at nine.", conversation, at=0)
    after = upload("Breakfast is served on the roof terrace.", conversation, at=2)
    other = upload("The spa of the other hotel is closed.", uuid4(), at=2)
    await publish(nc, before)
    await eventually(
        lambda: search(nc, "acme", "spa opening hours"), lambda r: len(r.hits) == 1
    )  # stored (as a chat file) before any source covers it
    await publish(nc, register(sid, "concierge", at=1, conversation_ids=[str(conversation)]))
    await publish(nc, after, other)
    await settled(nc, "concierge", {sid: 2})
    found = await scoped(nc, "concierge", "when does the spa open?")
    assert set(texts(found)) == {before.payload.extracted_text, after.payload.extracted_text}
    assert {h.source.document_id for h in found.hits} == {
        str(before.payload.file_id),
        str(after.payload.file_id),
    }

    # the configuration now names one upload: the other leaves the agent's scope
    narrowed = SourcePayload(
        source_id=sid,
        agent_id="concierge",
        type="file",
        configuration={"file_ids": [str(after.payload.file_id)]},
    )
    await publish(nc, SourceUpdated(**_env("acme", 4), payload=narrowed))
    await settled(nc, "concierge", {sid: 1})
    assert texts(await scoped(nc, "concierge", "when does the spa open?")) == [
        after.payload.extracted_text
    ]
    # the chat files themselves stay searchable as before (unscoped)
    assert len((await search(nc, "acme", "spa opening hours")).hits) == 3


async def test_an_update_before_its_registration_waits_for_it(
    embedder: Running, nc: NatsClient
) -> None:
    sid = uuid4()
    early = SourcePayload(source_id=sid, agent_id="ops", type="api", name="second")
    await publish(nc, SourceUpdated(**_env("acme", 5), payload=early))
    await publish(nc, register(sid, "ops", type_="api", at=0))
    [info] = await eventually(
        lambda: sources(nc, "ops"), lambda s: len(s) == 1 and s[0].name == "second", timeout=30
    )
    assert info.status == "failed"


@pytest.fixture
async def client(env: Env) -> AsyncIterator[EngramClient]:
    """An upstream producer's client, logged in with the producer's NATS rights."""
    async with await EngramClient.connect(
        env.nats_login("producer"), tenant_id="acme", retry=Retry(timeout_s=10.0)
    ) as engram:
        yield engram


async def test_the_client_registers_fills_lists_and_searches_a_source(
    embedder: Running, client: EngramClient
) -> None:
    ev = client.events
    source = ev.knowledge_source_registered("guide", "file", name="House rules")
    sid = source.payload.source_id
    await client.publish_many(
        [source, ev.knowledge_document(sid, "pets.md", PETS, title="Pets", metadata={"v": 1})]
    )
    listed = await eventually(
        lambda: client.knowledge_sources("guide"),
        lambda r: [(s.chunk_count, s.chunks_waiting) for s in r.sources] == [(1, 0)],
        timeout=30,
    )
    assert (listed.sources[0].name, listed.sources[0].status) == ("House rules", "ready")
    found = await client.knowledge_search("can I bring my dog?", scope={"agent_id": "guide"})
    assert [h.source.document_id for h in found.hits] == ["pets.md"]
    assert found.hits[0].text.startswith("Pets\n\n")  # the title leads the indexed text
    await client.publish(ev.knowledge_source_removed(sid))
    await eventually(lambda: client.knowledge_sources("guide"), lambda r: r.sources == [])
