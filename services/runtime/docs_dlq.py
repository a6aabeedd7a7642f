"""The dead-letter message in the AsyncAPI documents: its body and its ``Engram-*``
headers, from the names ``services/runtime/dlq.py`` sends them with."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any
from urllib.parse import unquote

from services.runtime.dlq import (
    BODY_BUCKET,
    HEADER_BODY,
    HEADER_BODY_DIGEST,
    HEADER_BODY_SIZE,
    HEADER_DELIVERIES,
    HEADER_KIND,
    HEADER_REASON,
    HEADER_SEQUENCE,
    HEADER_STREAM,
    HEADER_SUBJECT,
    MAX_REASON,
    DeadKind,
)

DIGITS = "^[0-9]+$"
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": [
        HEADER_KIND,
        HEADER_REASON,
        HEADER_SUBJECT,
        HEADER_STREAM,
        HEADER_SEQUENCE,
        HEADER_DELIVERIES,
    ],
    "properties": {
        HEADER_KIND: {
            "type": "string",
            "enum": [kind.value for kind in DeadKind],
            "description": "invalid: breaks its contract (never retried); poison: valid, but "
            "applying it fails for a reason retries cannot fix; exhausted: still failing "
            "after max_deliver deliveries (replay it once the cause is fixed).",
        },
        HEADER_REASON: {
            "type": "string",
            "maxLength": MAX_REASON,
            "description": "Why, on one line (cut so the headers always fit in one message).",
        },
        HEADER_SUBJECT: {
            "type": "string",
            "description": "The subject the message was published on; a replay goes there.",
        },
        HEADER_STREAM: {"type": "string", "description": "The stream that stored it."},
        HEADER_SEQUENCE: {
            "type": "string",
            "pattern": DIGITS,
            "description": "Its sequence number in that stream.",
        },
        HEADER_DELIVERIES: {
            "type": "string",
            "pattern": DIGITS,
            "description": "How many times it had been delivered.",
        },
        HEADER_BODY: {
            "type": "string",
            "pattern": f"^(inline|object:{BODY_BUCKET}/.+)$",
            "description": "Where the original bytes are: `inline` (this message's body) or "
            f"`object:{BODY_BUCKET}/<name>`, an object in the JetStream object store, when "
            "headers and body would not fit in one message (the body is then empty). "
            "Absent on dead letters from before this header: inline.",
        },
        HEADER_BODY_SIZE: {
            "type": "string",
            "pattern": DIGITS,
            "description": "Length of the original bytes.",
        },
        HEADER_BODY_DIGEST: {
            "type": "string",
            "pattern": "^SHA-256=[A-Za-z0-9_-]+=*$",
            "description": "`SHA-256=<base64url>` of the original bytes, checked on reading.",
        },
    },
}
DEAD_LETTER_PAYLOAD: dict[str, Any] = {
    "description": "The original message's bytes, unchanged: usually an engram event's JSON, "
    "but anything when it was invalid (not JSON, not UTF-8). Empty when "
    f"`{HEADER_BODY}` names an object.",
}
DEAD_LETTER_DESCRIPTION = (
    "A message a worker could not apply, on `dlq.<service>.<original subject>` (stream "
    "DLQ). It is terminated on its original consumer, so it never blocks the stream; "
    "`engram dlq` lists, shows, replays (to the original subject, same event id, so an "
    "event already applied stays a no-op) and purges them."
)


def dead_letter_example() -> dict[str, Any]:
    """An invalid chat message, dead-lettered at once."""
    body = json.dumps({"event_id": "not-a-uuid", "type": "chat.message.created"}).encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    return {
        "name": "invalid",
        "summary": "An event that breaks its contract, dead-lettered at once.",
        "headers": {
            HEADER_KIND: DeadKind.invalid.value,
            HEADER_REASON: "event_id: Input should be a valid UUID",
            HEADER_SUBJECT: "chat.message.created",
            HEADER_STREAM: "CHAT",
            HEADER_SEQUENCE: "1042",
            HEADER_DELIVERIES: "1",
            HEADER_BODY: "inline",
            HEADER_BODY_SIZE: str(len(body)),
            HEADER_BODY_DIGEST: f"SHA-256={digest}",
        },
        "payload": json.loads(body),
    }


def document_dead_letters(document: dict[str, Any]) -> None:
    """Give every message of a ``dlq.`` channel the dead letter's body, headers and an
    example (FastStream sees only an untyped publisher)."""
    components = document.get("components", {})
    messages, schemas = components.get("messages", {}), components.get("schemas", {})
    for channel in document.get("channels", {}).values():
        if not str(channel.get("address", "")).startswith("dlq."):
            continue
        channel["description"] = DEAD_LETTER_DESCRIPTION
        for ref in channel.get("messages", {}).values():
            message = messages[unquote(ref["$ref"].rsplit("/", 1)[-1])]
            # FastStream's placeholder for the untyped body, referenced by this message only.
            untyped = unquote((message.get("payload") or {}).get("$ref", "").rsplit("/", 1)[-1])
            schemas.pop(untyped, None)
            message["payload"] = dict(DEAD_LETTER_PAYLOAD)
            message["headers"] = copy.deepcopy(DEAD_LETTER_HEADERS)
            message["examples"] = [dead_letter_example()]
            message.pop("correlationId", None)
