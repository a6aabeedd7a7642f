"""contracts/memory.py and contracts/embedding.py: valid shapes, refused ones, docs."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from contracts import embedding as emb
from contracts import memory as mem
from contracts.errors import ErrorCode, QueryError
from services.runtime.errors import InvalidEvent
from services.runtime.pipeline import contract_decoder

CONTENT: dict[str, dict[str, Any]] = {
    "episodic": {
        "event": "Booked Hotel Alfama",
        "temporal": {"occurred_at": "2026-11-17T14:30:00Z"},
    },
    "semantic": {"concept": "Alfama", "definition": "The oldest district of Lisbon."},
    "procedural": {"skill": "Book a hotel", "steps": ["Search", "Compare", "Pay"]},
    "working": {"items": ["budget 150 EUR/night"], "capacity": 7},
}


def memory_write(
    memory_type: str = "semantic",
    tenant: str = "acme",
    text: str = "Alfama is old.",
    **payload: Any,
) -> mem.MemoryWrite:
    """A valid memory.write (shared by the embedder's tests)."""
    data = {
        "memory_id": str(uuid4()),
        "agent_id": "travel-bot",
        "memory_type": memory_type,
        "content": CONTENT[memory_type],
        "text": text,
        "importance": 0.6,
        **payload,
    }
    return mem.MemoryWrite.model_validate(
        {
            "event_id": uuid4(),
            "occurred_at": "2026-11-01T09:00:00Z",
            "tenant_id": tenant,
            "producer": "tests",
            "payload": data,
        }
    )


_decode = contract_decoder(mem.MEMORY_WRITE)


def decode(data: dict[str, Any]) -> mem.MemoryWrite:
    return _decode(Msg(_client=None, subject="memory.write", data=json.dumps(data).encode()))  # type: ignore[arg-type]


@pytest.mark.parametrize("memory_type", list(CONTENT))
def test_each_memory_type_round_trips(memory_type: str) -> None:
    event = memory_write(memory_type, links=[{"memory_id": str(uuid4()), "relation": "related"}])
    back = decode(json.loads(event.model_dump_json()))
    assert back == event
    assert back.payload.memory_type == memory_type


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"content": CONTENT["procedural"]}, "semantic.content.concept"),  # wrong variant
        ({"memory_type": "dream"}, "memory_type"),
        ({"importance": 1.5}, "importance"),
        ({"text": ""}, "text"),
        ({"expires_at": "2027-01-01T00:00:00"}, "time zone"),
        ({"links": [{"memory_id": str(uuid4()), "relation": "Not Snake"}]}, "relation"),
    ],
)
def test_bad_memory_writes_name_the_field(change: dict[str, Any], needle: str) -> None:
    data = json.loads(memory_write().model_dump_json())
    data["payload"].update(change)
    with pytest.raises(InvalidEvent) as err:
        decode(data)
    assert needle in str(err.value)


def test_content_rules_per_type() -> None:
    with pytest.raises(ValidationError, match="exceed the capacity"):
        mem.WorkingContent(items=["a", "b", "c"], capacity=2)
    with pytest.raises(ValidationError, match="before occurred_at"):
        mem.Temporal(occurred_at="2026-11-17T14:30:00Z", ended_at="2026-11-17T14:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        mem.ProceduralContent(skill="x", steps=[])


def test_embedding_ready_checks_the_vector_length() -> None:
    payload = {
        "source_type": "memory",
        "source_id": str(uuid4()),
        "model_id": "m",
        "dimensions": 3,
        "vector": [0.1, 0.2],
        "content_hash": "0" * 64,
    }
    with pytest.raises(ValidationError, match="not 3"):
        emb.EmbeddingReadyPayload.model_validate(payload)
    payload["vector"] = [0.1, 0.2, 0.3]
    assert emb.EmbeddingReadyPayload.model_validate(payload).dimensions == 3


def test_replies_are_read_by_status() -> None:
    ok = emb.KNOWLEDGE_SEARCH_REPLY.validate_json(
        emb.KnowledgeSearchReply(model_id="m", hits=[]).model_dump_json()
    )
    assert isinstance(ok, emb.KnowledgeSearchReply)
    error = emb.EMBED_REPLY.validate_json(
        QueryError(code=ErrorCode.invalid, message="x").model_dump_json()
    )
    assert isinstance(error, QueryError)


def test_search_request_defaults_and_limits() -> None:
    request = emb.KnowledgeSearchRequest(tenant_id="acme", text="hotel")
    assert request.top_k == 10 and request.mode is emb.SearchMode.hybrid
    with pytest.raises(ValidationError):
        emb.KnowledgeSearchRequest(tenant_id="bad tenant!", text="x")
    with pytest.raises(ValidationError, match="until must be after since"):
        emb.KnowledgeFilters(since="2026-12-01T00:00:00Z", until="2026-11-01T00:00:00Z")  # type: ignore[arg-type]


MODELS: list[type[BaseModel]] = [
    mem.Temporal,
    mem.EpisodicContent,
    mem.SemanticContent,
    mem.ProceduralContent,
    mem.WorkingContent,
    mem.MemoryLink,
    mem.EpisodicMemory,
    mem.SemanticMemory,
    mem.ProceduralMemory,
    mem.WorkingMemory,
    emb.EmbeddingReadyPayload,
    QueryError,
    emb.EmbedRequest,
    emb.EmbedReply,
    emb.KnowledgeFilters,
    emb.KnowledgeSearchRequest,
    emb.SourceRef,
    emb.KnowledgeHit,
    emb.KnowledgeSearchReply,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_is_documented_with_an_example(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
        assert field.examples, f"{model.__name__}.{name} has no examples"
