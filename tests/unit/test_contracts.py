from __future__ import annotations

import json
from uuid import uuid4

import pytest
from nats.aio.msg import Msg

from contracts.chat import CHAT_EVENT, MessageCreated
from contracts.envelope import MAX_METADATA_DEPTH, NUL_RECORD_KEY
from contracts.registry import all_contracts
from contracts.state import STATE_EVENT
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


@pytest.mark.parametrize("field", ["event_id", "occurred_at"])
def test_ids_and_times_are_required_on_the_wire_and_in_the_schema(field: str) -> None:
    data = raw()
    del data[field]
    with pytest.raises(InvalidEvent, match=f"{field}: Field required"):
        decode("chat.message.created", json.dumps(data).encode())
    for name, model in all_contracts().items():
        if not name.endswith((".request", ".reply")):
            assert field in model.model_json_schema()["required"], name


def test_nul_in_chat_is_replaced_and_recorded_but_rejected_in_state() -> None:
    data = raw(**{"payload.content": "a\x00b", "payload.metadata": {"k\x00": ["\x00"]}})
    event = decode("chat.message.created", json.dumps(data).encode())
    assert isinstance(event, MessageCreated)
    assert event.payload.content == "a\ufffdb"
    extra = event.payload.metadata.model_dump()
    assert extra["k\ufffd"] == ["\ufffd"]
    assert extra[NUL_RECORD_KEY] == [
        "payload.content",
        "payload.metadata.k\ufffd",
        "payload.metadata.k\ufffd.0",
    ]
    state = {
        "event_id": str(uuid4()),
        "type": "state.patch",
        "occurred_at": "2026-11-01T09:00:00Z",
        "tenant_id": "acme",
        "producer": "t",
        "payload": {"user_id": "u", "agent_id": "a", "merge_patch": {"local": {"x": "\x00"}}},
    }
    decode_state = contract_decoder(STATE_EVENT)
    with pytest.raises(InvalidEvent, match=r"merge_patch\.local\.x: contains a NUL"):
        decode_state(Msg(_client=None, subject="state.patch", data=json.dumps(state).encode()))  # type: ignore[arg-type]


def test_metadata_depth_is_limited() -> None:
    deep: dict[str, object] = {}
    for _ in range(MAX_METADATA_DEPTH):
        deep = {"x": deep}
    with pytest.raises(InvalidEvent, match="deeper than"):
        decode("chat.message.created", json.dumps(raw(**{"payload.metadata": deep})).encode())
    ok = deep["x"]
    decode("chat.message.created", json.dumps(raw(**{"payload.metadata": ok})).encode())
