"""Knowledge sources, the pure rules (services/embedder/knowledge_logic.py) and the
contract's own checks (contracts/knowledge.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.embedding import KnowledgeSearchRequest
from contracts.knowledge import (
    KNOWLEDGE_EVENT,
    FileSourceConfig,
    KnowledgeSourceType,
    SourcePayload,
    SourceStatus,
)
from services.embedder.knowledge_logic import (
    Action,
    StoredSource,
    covers,
    decide,
    document_uuid,
    file_config,
    shown_status,
    status_of,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)
LIVE = StoredSource("bot", KnowledgeSourceType.file, {}, T0, removed=False)
GONE = StoredSource("bot", KnowledgeSourceType.file, {}, T0, removed=True)


@pytest.mark.parametrize(
    ("kind", "stored", "at", "action"),
    [
        ("source.registered", None, T0, Action.create),
        ("source.registered", LIVE, T0 + timedelta(1), Action.update),  # again: an update
        ("source.registered", LIVE, T0 - timedelta(1), Action.ignore),  # older
        ("source.registered", GONE, T0 + timedelta(1), Action.ignore),  # removed for good
        ("source.updated", None, T0, Action.retry),  # before its registration
        ("source.updated", LIVE, T0 + timedelta(1), Action.update),
        ("source.updated", LIVE, T0 - timedelta(1), Action.ignore),
        ("source.updated", GONE, T0 + timedelta(1), Action.ignore),
        ("source.removed", None, T0, Action.retry),
        ("source.removed", LIVE, T0 - timedelta(1), Action.remove),  # removal always wins
        ("source.removed", GONE, T0, Action.ignore),  # removed twice
        ("document.upserted", None, T0, Action.retry),  # unknown source
        ("document.upserted", LIVE, T0 - timedelta(1), Action.document),  # plan.py orders docs
        ("document.upserted", GONE, T0, Action.ignore),  # removed source: dropped
    ],
)
def test_what_an_event_does(
    kind: str, stored: StoredSource | None, at: datetime, action: Action
) -> None:
    assert decide(kind, at, stored) is action


def test_status_from_documents() -> None:
    assert status_of(KnowledgeSourceType.file, 2) == (SourceStatus.ready, None)
    assert status_of(KnowledgeSourceType.url, 1) == (SourceStatus.ready, None)
    status, reason = status_of(KnowledgeSourceType.file, 0)
    assert status is SourceStatus.pending and reason
    for kind in ("url", "database", "api", "folder"):
        status, reason = status_of(KnowledgeSourceType(kind), 0)
        assert status is SourceStatus.failed
        assert reason is not None and kind in reason and "knowledge.document.upserted" in reason
    assert shown_status(SourceStatus.ready, 3) is SourceStatus.syncing
    assert shown_status(SourceStatus.ready, 0) is SourceStatus.ready
    assert shown_status(SourceStatus.failed, 3) is SourceStatus.failed


def test_which_uploads_a_file_source_covers() -> None:
    file_id, conversation = uuid4(), uuid4()
    by_file = FileSourceConfig(file_ids=[file_id])
    by_conversation = FileSourceConfig(conversation_ids=[conversation])
    assert covers(by_file, file_id, None)
    assert not covers(by_file, uuid4(), conversation)
    assert covers(by_conversation, uuid4(), conversation)
    assert not covers(by_conversation, file_id, None)
    # only file sources cover uploads, whatever another type's configuration says
    assert file_config(KnowledgeSourceType.url, {"file_ids": [str(file_id)]}) == (
        FileSourceConfig()
    )


def test_a_document_keeps_its_id_across_upserts_and_sources() -> None:
    source = uuid4()
    assert document_uuid(source, "a.md") == document_uuid(source, "a.md")
    assert document_uuid(source, "a.md") != document_uuid(source, "b.md")
    assert document_uuid(source, "a.md") != document_uuid(uuid4(), "a.md")


def test_a_file_source_with_a_bad_configuration_breaks_the_contract() -> None:
    with pytest.raises(ValidationError, match="file_ids"):
        SourcePayload(
            source_id=uuid4(), agent_id="bot", type="file", configuration={"file_ids": ["x"]}
        )
    # another type's configuration is recorded as given
    SourcePayload(source_id=uuid4(), agent_id="bot", type="url", configuration={"any": [1]})


def test_events_and_the_scope_parse_from_json() -> None:
    event = KNOWLEDGE_EVENT.validate_json(
        f'{{"event_id": "{uuid4()}", "type": "knowledge.source.removed", "tenant_id": "acme",'
        f' "producer": "t", "occurred_at": "2026-12-01T00:00:00Z",'
        f' "payload": {{"source_id": "{uuid4()}"}}}}'
    )
    assert event.type == "knowledge.source.removed"
    request = KnowledgeSearchRequest.model_validate(
        {"tenant_id": "acme", "text": "x", "scope": {"agent_id": "bot"}}
    )
    assert request.scope is not None and request.scope.source_ids is None
    assert KnowledgeSearchRequest(tenant_id="acme", text="x").scope is None  # unchanged
    with pytest.raises(ValidationError):
        KnowledgeSearchRequest.model_validate(
            {"tenant_id": "acme", "text": "x", "scope": {"agent_id": "bot", "source_ids": []}}
        )
