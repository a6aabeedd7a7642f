"""The AsyncAPI documents are complete (issue 14, item 6): every subject each worker
consumes, publishes or answers, request and reply payloads, the dead letter and its
headers, the Nats-Msg-Id rule, and an example of every message that its own schema in the
document accepts."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest

from contracts.registry import EVENTS, QUERIES
from services.catalog import SERVICES, create_worker
from services.runtime.bus import STREAMS, subject_matches
from services.runtime.dlq import HEADER_KIND, HEADER_REASON, HEADER_SUBJECT
from services.runtime.docs_bundle import COMBINED, all_documents

Document = dict[str, Any]


@pytest.fixture(scope="module")
def documents() -> dict[str, Document]:
    return all_documents(SERVICES)


def operations(document: Document) -> list[tuple[str, str, Document]]:
    """(action, address, operation) of every operation."""
    channels = document["channels"]
    found = []
    for operation in document["operations"].values():
        key = unquote(operation["channel"]["$ref"].removeprefix("#/channels/"))
        found.append((operation["action"], channels[key]["address"], operation))
    return found


def message(document: Document, ref: str) -> Document:
    """The component message a channel or operation reference leads to."""
    parts = [unquote(p) for p in ref.removeprefix("#/").split("/")]
    channel_message = document["channels"][parts[1]]["messages"][parts[3]]
    return document["components"]["messages"][unquote(channel_message["$ref"].rsplit("/", 1)[-1])]


@pytest.mark.parametrize("service", SERVICES.names)
def test_every_subject_a_worker_touches_is_documented(
    documents: dict[str, Document], service: str
) -> None:
    _, worker = create_worker(service)
    assembly = worker.assembly
    document = documents[service]
    received = {a for action, a, _ in operations(document) if action == "receive"}
    sent = {a for action, a, _ in operations(document) if action == "send"}
    for consumes in assembly.consumes:
        on_stream = [
            e.model_fields["type"].default
            for e in EVENTS
            if any(subject_matches(p, e.model_fields["type"].default) for p in consumes.subjects)
        ]
        assert set(on_stream) <= received, (service, consumes.stream.name)
    for route in assembly.queries:
        assert route.subject in received
    assert {e.model_fields["type"].default for e in assembly.publishes} <= sent
    assert f"dlq.{service}.>" in sent
    asked = {a for action, a, op in operations(document) if action == "send" and "reply" in op}
    assert set(assembly.asks) <= asked
    assert documents[COMBINED]["channels"].items() >= document["channels"].items()


def test_audit_lists_every_event_and_the_dead_letters(documents: dict[str, Document]) -> None:
    received = {a for action, a, _ in operations(documents["audit"]) if action == "receive"}
    every_event = {e.model_fields["type"].default for e in EVENTS}
    assert every_event <= received
    dead_letters = next(s for s in STREAMS if s.name == "DLQ").subjects
    assert set(dead_letters) <= received


def test_queries_have_typed_requests_and_both_replies(documents: dict[str, Document]) -> None:
    engram = documents[COMBINED]
    answered = {
        a: op for action, a, op in operations(engram) if action == "receive" and "reply" in op
    }
    assert set(answered) == set(QUERIES)
    schemas = engram["components"]["schemas"]
    for subject, operation in answered.items():
        request = message(engram, operation["messages"][0]["$ref"])
        assert request["payload"] == {
            "$ref": f"#/components/schemas/{QUERIES[subject][0].__name__}"
        }
        assert schemas[QUERIES[subject][0].__name__]["properties"], subject
        reply = message(engram, operation["reply"]["messages"][0]["$ref"])
        statuses = {e["payload"]["status"] for e in reply["examples"]}
        assert statuses == {"ok", "error"}, subject
        assert [
            e["payload"]["code"] for e in reply["examples"] if e["payload"]["status"] == "error"
        ]


def test_embedding_ready_is_sent_by_the_embedder_and_received_by_memory(
    documents: dict[str, Document],
) -> None:
    sent = {a for action, a, _ in operations(documents["embedder"]) if action == "send"}
    received = {a for action, a, _ in operations(documents["memory"]) if action == "receive"}
    assert "engram.embedding.ready" in sent & received


@pytest.mark.parametrize("service", SERVICES.names)
def test_dead_letters_document_their_headers(documents: dict[str, Document], service: str) -> None:
    document = documents[service]
    for _action, address, operation in operations(document):
        if not address.startswith("dlq."):
            continue
        letter = message(document, operation["messages"][0]["$ref"])
        headers = letter["headers"]
        assert {HEADER_KIND, HEADER_REASON, HEADER_SUBJECT} <= set(headers["required"])
        assert headers["properties"][HEADER_KIND]["enum"] == ["invalid", "poison", "exhausted"]
        assert letter["examples"][0]["headers"][HEADER_KIND] == "invalid"


@pytest.mark.parametrize("name", [COMBINED, *SERVICES.names])
def test_every_message_has_examples_its_schemas_accept(
    documents: dict[str, Document], name: str
) -> None:
    document = documents[name]
    assert "Nats-Msg-Id: <tenant_id>:<event_id>" in document["info"]["description"]
    for key, found in document["components"]["messages"].items():
        assert found.get("examples"), key
        for example in found["examples"]:
            check(document, found["payload"], example["payload"])
            if "headers" in found:
                check(document, found["headers"], example["headers"])
            if "Nats-Msg-Id" in found.get("headers", {}).get("properties", {}):
                expected = f"{example['payload']['tenant_id']}:{example['payload']['event_id']}"
                assert example["headers"]["Nats-Msg-Id"] == expected, key


def test_an_example_that_breaks_its_schema_is_caught(documents: dict[str, Document]) -> None:
    document = documents["ingest"]
    found = next(m for m in document["components"]["messages"].values() if "headers" in m)
    wrong = dict(found["examples"][0]["payload"], tenant_id="not a tenant!")
    with pytest.raises(jsonschema.ValidationError):
        check(document, found["payload"], wrong)
    with pytest.raises(jsonschema.ValidationError):
        check(document, found["headers"], {"Nats-Msg-Id": "0b6f3f0e"})


def check(document: Document, schema: Document, value: Any) -> None:
    """Validate against ``schema``, resolving its ``#/components/...`` references in the
    document (the document is the root; its other keys are not JSON Schema keywords)."""
    root = {
        **document,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/x-checked",
    }
    root["x-checked"] = schema
    jsonschema.Draft202012Validator(root).validate(value)


@pytest.mark.parametrize("name", [COMBINED, *SERVICES.names])
def test_every_schema_is_used(documents: dict[str, Document], name: str) -> None:
    """No placeholder of FastStream's is left behind the documented payloads."""
    document = documents[name]
    text = unquote(json.dumps(document))
    for schema in document["components"]["schemas"]:
        assert f'"#/components/schemas/{schema}"' in text, schema
