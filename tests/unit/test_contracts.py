from __future__ import annotations

import json
from uuid import uuid4

import pytest
from nats.aio.msg import Msg

from contracts.chat import CHAT_EVENT, MessageCreated
from contracts.registry import all_contracts
from services.runtime.errors import InvalidEvent
from services.runtime.pipeline import contract_decoder
from tests import factories as f

_decode = contract_decoder(CHAT_EVENT)


def decode(subject: str, data: bytes) -> object:
    return _decode(Msg(_client=None, subject=subject, data=data))  # type: ignore[arg-type]


def raw(**changes: object) -> dict[str, object]:
    data = json.loads(f.message(uuid4(), content="hi").model_dump_json())
    for key, value in changes.items():
        if key.startswith("payload."):
            data["payload"][key.removeprefix("payload.")] = value
        else:
            data[key] = value
    return data


def test_round_trip_keeps_every_field() -> None:
    event = f.message(uuid4(), content="héllo 🌍", metadata={"tokens": 3, "custom": "kept"})
    back = decode(event.type, event.model_dump_json().encode())
    assert isinstance(back, MessageCreated)
    assert back == event
    assert back.payload.metadata.model_dump()["custom"] == "kept"


def test_newer_minor_and_unknown_fields_are_accepted() -> None:
    data = raw(schema_version="1.7", new_top_level="x", **{"payload.new_field": 1})
    event = decode("chat.message.created", json.dumps(data).encode())
    assert event.schema_version == "1.7"


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"schema_version": "2.0"}, "major 2"),
        ({"occurred_at": "2026-11-01T09:00:00"}, "time zone"),
        ({"payload.role": "robot"}, "payload.role: Input should be"),
        ({"tenant_id": "bad tenant!"}, "tenant_id"),
        ({"payload.content": None}, "content"),
        ({"type": "chat.nope"}, "type"),
    ],
)
def test_contract_violations_name_the_field(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        decode("chat.message.created", json.dumps(raw(**changes)).encode())
    assert needle in str(err.value)


def test_subject_must_match_type() -> None:
    event = f.message(uuid4())
    with pytest.raises(InvalidEvent, match=r"published on subject 'chat\.message\.edited'"):
        decode("chat.message.edited", event.model_dump_json().encode())


def test_not_json_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="contract violation"):
        decode("chat.message.created", b"\xff{not json")


def test_every_event_has_a_documented_schema() -> None:
    contracts = all_contracts()
    assert {n for n in contracts if n.startswith("chat.")} == {
        "chat.conversation.created",
        "chat.conversation.updated",
        "chat.conversation.archived",
        "chat.message.created",
        "chat.message.edited",
        "chat.message.deleted",
        "chat.file.uploaded",
        "chat.session.started",
        "chat.session.ended",
    }
    for name, model in contracts.items():
        if "payload" not in model.model_fields:
            continue  # a query request or reply
        schema = model.model_json_schema()
        ref = schema["properties"]["payload"].get("$ref")
        if ref is None:
            continue  # a union of payloads (memory.write): each documented on its own
        payload = schema["$defs"][ref.split("/")[-1]]
        for field_name, spec in payload["properties"].items():
            assert spec.get("description"), f"{name}.payload.{field_name} has no description"
