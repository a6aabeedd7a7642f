"""The one reply path of every query (services/runtime/replies.py): failures mapped to the
one error model, replies kept under the message limit, and the replies documented in the
AsyncAPI documents (issue 11, sections 4 and 5)."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from contracts.embedding import KnowledgeSearchReply
from contracts.errors import ErrorCode, QueryError
from contracts.memory_search import MemorySearchRequest
from contracts.registry import QUERIES
from services.catalog import create_worker
from services.runtime.docs import asyncapi_document
from services.runtime.replies import QueryFailed, fit, fit_items, json_size, query_failure


def test_failures_map_to_one_error_model() -> None:
    with pytest.raises(ValidationError) as bad:
        MemorySearchRequest.model_validate({"tenant_id": "acme", "agent_id": "a", "text": ""})
    invalid = query_failure(bad.value, "query.memory.search")
    assert invalid.code is ErrorCode.invalid and "text" in invalid.message
    assert invalid.detail is not None and invalid.detail["errors"][0]["loc"] == ["text"]
    down = query_failure(asyncpg.CannotConnectNowError("starting"), "q")
    assert down.code is ErrorCode.unavailable
    assert query_failure(OSError("refused"), "q").code is ErrorCode.unavailable
    own = query_failure(QueryFailed(ErrorCode.not_found, "no such", hint="h"), "q")
    assert (own.code, own.message, own.hint) == (ErrorCode.not_found, "no such", "h")
    bug = query_failure(KeyError("x"), "q")
    assert bug.code is ErrorCode.internal and "x" not in bug.message


def test_a_reply_over_the_limit_becomes_too_large_with_the_hint() -> None:
    reply = KnowledgeSearchReply(model_id="m" * 500, hits=[])
    assert fit(reply, 10_000, "q", "ask for less") == reply.model_dump_json().encode()
    error = QueryError.model_validate_json(fit(reply, 100, "query.x", "ask for less"))
    assert error.code is ErrorCode.too_large and error.hint == "ask for less"
    assert error.detail == {"size": json_size(reply), "limit": 100}


def test_items_are_kept_whole_and_in_order_while_they_fit() -> None:
    hit = {
        "source": {
            "source_type": "message",
            "source_id": "9a3e7b52-1c4d-4f60-8b2a-3d5e6f708192",
            "chunk_index": 0,
            "occurred_at": "2026-11-17T14:30:00Z",
        },
        "score": 1.0,
    }
    hits = [{**hit, "text": f"{i}" + "é" * 1000} for i in range(5)]
    reply = KnowledgeSearchReply.model_validate({"model_id": "m", "hits": hits})
    limit = json_size(reply) - 500  # UTF-8 bytes, not characters, are what count
    fitted, omitted = fit_items(reply, "hits", limit)
    assert omitted >= 1 and [h.text[0] for h in fitted.hits] == [str(i) for i in range(5 - omitted)]
    assert json_size(fitted) <= limit
    same, none = fit_items(reply, "hits", 10 * json_size(reply))
    assert same is reply and none == 0


@pytest.mark.parametrize("service", ["embedder", "memory", "checkpointer"])
def test_asyncapi_documents_each_query_with_its_reply_union(service: str) -> None:
    app, _ = create_worker(service)
    document = asyncapi_document(app)
    answered = {
        document["channels"][op["channel"]["$ref"].removeprefix("#/channels/")]["address"]: op
        for op in document["operations"].values()
        if "reply" in op and op["action"] == "receive"  # (a "send" is a query it asks)
    }
    assert answered and set(answered) <= set(QUERIES)
    schemas = document["components"]["schemas"]
    for subject, operation in answered.items():
        reply = document["components"]["messages"][f"{subject}:Reply"]["payload"]["$ref"]
        union = schemas[reply.removeprefix("#/components/schemas/")]
        # AsyncAPI's discriminator is the property's name (the parser refuses OpenAPI's
        # object); the variants are the oneOf.
        assert union["discriminator"] == "status", subject
        assert {"$ref": "#/components/schemas/QueryError"} in union["oneOf"]
        request = operation["messages"][0]["$ref"]
        assert request.endswith("/SubscribeMessage"), subject
    assert "QueryError" in schemas and "too_large" in schemas["ErrorCode"]["enum"]
