"""AsyncAPI for the stream consumers, from the same declarations the worker runs.

The pull loops are engram's own (natural batching, per-event outcomes), so FastStream
does not see them; this builds a never-connected broker that declares each consumed
subject with its contract, which FastStream's generator turns into the document.
``asyncapi_document`` then corrects and completes what FastStream cannot know: the
correlation id is the envelope's body field ``correlation_id`` (not a header); an event
(an envelope, with ``event_id``) requires the ``Nats-Msg-Id`` header
(``<tenant_id>:<event_id>``); each query's reply union; the dead letter's headers; an
example of every message (``docs_examples``); one NATS server. The documents are checked
by the official AsyncAPI parser (tests/unit/test_asyncapi_validate.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faststream.nats import JStream, NatsBroker, PullSub
from pydantic import BaseModel

from contracts.envelope import TENANT_PATTERN
from services.runtime.bus import DLQ, subject_matches
from services.runtime.docs_dlq import document_dead_letters

if TYPE_CHECKING:
    from faststream import FastStream

    from contracts.envelope import Envelope
    from services.runtime.spec import Consumes

SCHEMA_REF = "#/components/schemas/"
# contracts.envelope.TENANT_PATTERN, a colon, a UUID (Envelope.msg_id).
MSG_ID_PATTERN = (
    TENANT_PATTERN.removesuffix("$")
    + ":[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["Nats-Msg-Id"],
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "pattern": MSG_ID_PATTERN,
            "examples": ["acme:0b6f3f0e-5d1b-4a53-9f7e-8a51f3c1a9d2"],
            "description": "Required: the envelope's tenant_id and event_id, joined by a "
            "colon (`<tenant_id>:<event_id>`). JetStream's duplicate window drops a "
            "re-publish with the same id, and the tenant in it lets two tenants use the "
            "same event_id. Consumers do not depend on it: every consumer's inbox applies "
            "an event once per (tenant_id, event_id), whatever the header says (a bare "
            "event_id, as producers sent before, or none).",
        },
    },
}
CORRELATION = {
    "location": "$message.payload#/correlation_id",
    "description": "The envelope's correlation_id body field (not a header): shared by "
    "every event of one user-visible operation.",
}


MSG_ID_RULE = (
    "Every event is one JSON envelope published to JetStream on the subject equal to its "
    "`type`, with the header `Nats-Msg-Id: <tenant_id>:<event_id>`: JetStream's duplicate "
    "window drops a re-published copy, and every consumer's inbox applies an event once "
    "per (tenant_id, event_id). Queries are core NATS request/reply; each reply is the "
    "query's result (`status: ok`) or the one `QueryError` (`status: error`). Messages a "
    "worker cannot apply go to `dlq.<service>.<subject>` with `Engram-*` headers."
)
SERVER = {
    "host": "localhost:4222",
    "protocol": "nats",
    "description": "The NATS server of NATS_URL (JetStream enabled).",
}


def asyncapi_document(app: FastStream) -> dict[str, Any]:
    """The worker's AsyncAPI document, as ``engram asyncapi`` and ``engram docs`` give it."""
    document = finish_document(app.schema.to_specification().to_jsonable())
    document_replies(document)
    document_dead_letters(document)
    document_examples(document)
    one_server(document)
    info = document.setdefault("info", {})
    info["description"] = f"{info.get('description', '')}\n\n{MSG_ID_RULE}".strip()
    return document


def one_server(document: dict[str, Any]) -> None:
    """One ``nats`` server for every channel (FastStream lists one per broker it saw)."""
    document["servers"] = {"nats": dict(SERVER)}
    for channel in document.get("channels", {}).values():
        channel["servers"] = [{"$ref": "#/servers/nats"}]


def document_examples(document: dict[str, Any]) -> None:
    """An example of every message whose payload is a contract, from the contract."""
    from services.runtime.docs_examples import message_examples

    models = contract_models()
    for message in document.get("components", {}).get("messages", {}).values():
        name = (message.get("payload") or {}).get("$ref", "").removeprefix(SCHEMA_REF)
        if name in models and "examples" not in message:
            message["examples"] = [e.jsonable() for e in message_examples(models[name])]


def contract_models() -> dict[str, type[BaseModel]]:
    """Every contract on the bus by its schema name."""
    from contracts.registry import EVENTS, QUERIES

    found: dict[str, type[BaseModel]] = {m.__name__: m for m in EVENTS}
    for request, reply in QUERIES.values():
        found[request.__name__], found[reply.__name__] = request, reply
    return found


def asyncapi_discriminators(schema: Any) -> None:
    """AsyncAPI's ``discriminator`` is the property's name, not OpenAPI's object (which
    pydantic writes and the AsyncAPI parser rejects); the ``oneOf`` keeps the variants."""
    if isinstance(schema, dict):
        found = schema.get("discriminator")
        if isinstance(found, dict) and "propertyName" in found:
            schema["discriminator"] = found["propertyName"]
        for value in schema.values():
            asyncapi_discriminators(value)
    elif isinstance(schema, list):
        for value in schema:
            asyncapi_discriminators(value)


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Replace FastStream's header correlation id by the body field where the payload has
    one (else drop it), and require ``Nats-Msg-Id`` on every envelope."""
    components = document.get("components", {})
    schemas = components.get("schemas", {})
    for message in components.get("messages", {}).values():
        ref = (message.get("payload") or {}).get("$ref", "")
        schema = (
            schemas.get(ref.removeprefix(SCHEMA_REF), {})
            if ref.startswith(SCHEMA_REF)
            else message.get("payload") or {}
        )
        fields = schema.get("properties", {})
        if "correlation_id" in fields:
            message["correlationId"] = dict(CORRELATION)
        else:
            message.pop("correlationId", None)
        if "event_id" in fields:
            message["headers"] = copy.deepcopy(EVENT_HEADERS)
    asyncapi_discriminators(schemas)
    return document


def document_replies(document: dict[str, Any]) -> dict[str, Any]:
    """Give each query's operation its `reply`: the published reply schema of
    `contracts.registry.QUERIES` (the result, `status: "ok"`, or the one `QueryError`,
    `status: "error"`), which FastStream cannot see (the handlers return bytes)."""
    from contracts.registry import QUERIES

    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    messages = components.setdefault("messages", {})
    channels = document.get("channels", {})
    for operation in document.get("operations", {}).values():
        key = operation.get("channel", {}).get("$ref", "").removeprefix("#/channels/")
        address = channels.get(key, {}).get("address")
        if address not in QUERIES:  # answered ("receive") or asked ("send")
            continue
        model = QUERIES[address][1]
        schema = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
        asyncapi_discriminators(schemas)
        message = f"{address}:Reply"
        messages[message] = {"title": message, "payload": {"$ref": SCHEMA_REF + model.__name__}}
        channels[key].setdefault("messages", {})["Reply"] = {
            "$ref": f"#/components/messages/{message}"
        }
        operation["reply"] = {"messages": [{"$ref": f"#/channels/{key}/messages/Reply"}]}
    return document


def describe_consumers(
    service: str,
    consumes: Sequence[Consumes],
    publishes: Sequence[type[Envelope]] = (),
    asks: Sequence[str] = (),
) -> NatsBroker:
    """A never-connected broker declaring what the service consumes, publishes and asks
    (the queries it sends to other services; ``document_replies`` adds their replies)."""
    from contracts.registry import QUERIES

    broker = NatsBroker(name=f"engram-{service}")
    for subject in asks:
        broker.publisher(
            subject,
            title=f"{service}:{subject}",
            schema=QUERIES[subject][0],
            description=f"{service} asks this query (core NATS request/reply).",
        )
    for event in publishes:
        subject = event.model_fields["type"].default
        broker.publisher(
            subject,
            title=subject,
            schema=event,
            description=(event.__doc__ or "").strip() or None,
        )
    for item in consumes:
        stream = JStream(item.stream.name, subjects=list(item.stream.subjects), declare=False)
        if item.stream == DLQ:  # a reader of the dead letters (audit)
            dead_letters_reader(broker, service, stream, item.subjects)
        for contract in item.contracts or contracts_on(item.subjects):
            subject = contract.model_fields["type"].default

            async def handler(event: Any) -> None:  # documentation only; never started
                return None

            handler.__annotations__["event"] = contract
            broker.subscriber(
                subject,
                stream=stream,
                durable=service,
                pull_sub=PullSub(),
                title=f"{service}:{subject}",
                description=(contract.__doc__ or "").strip() or None,
            )(handler)
    broker.publisher(
        f"dlq.{service}.>",
        stream=JStream("DLQ", declare=False),
        title=f"dlq.{service}",
        description="Dead letters: original bytes; reason, kind, original "
        "subject, stream and sequence in Engram-* headers.",
    )
    return broker


def contracts_on(subjects: Sequence[str]) -> list[type[Envelope]]:
    """Every event contract published on ``subjects``: what a consumer that reads a whole
    stream as it comes (audit) receives."""
    from contracts.registry import EVENTS

    return [
        event
        for event in EVENTS
        if any(subject_matches(p, event.model_fields["type"].default) for p in subjects)
    ]


def dead_letters_reader(
    broker: NatsBroker, service: str, stream: JStream, subjects: Sequence[str]
) -> None:
    async def handler(letter: bytes) -> None:  # documentation only; never started
        return None

    for subject in subjects:
        broker.subscriber(
            subject,
            stream=stream,
            durable=service,
            pull_sub=PullSub(),
            title=f"{service}:{subject}",
        )(handler)
