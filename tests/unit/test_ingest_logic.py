from __future__ import annotations

from uuid import uuid4

from services.ingest.logic import MESSAGE_COLUMNS, conversation_refs, message_columns, runs
from tests import factories as f


def test_runs_keep_order_between_types() -> None:
    cid, mid = uuid4(), uuid4()
    events = [f.message(cid, mid), f.message(cid), f.edit(mid, "x"), f.message(cid),
              f.edit(mid, "y")]
    kinds = [(kind, len(run)) for kind, run in runs(events)]
    assert kinds == [("chat.message.created", 2), ("chat.message.edited", 1),
                     ("chat.message.created", 1), ("chat.message.edited", 1)]


def test_message_columns_are_aligned() -> None:
    cid = uuid4()
    events = [f.message(cid, content=f"m{i}", metadata={"tokens": i}) for i in range(3)]
    cols = message_columns(events)
    assert len(cols) == len(MESSAGE_COLUMNS)
    named = dict(zip(MESSAGE_COLUMNS, cols, strict=True))
    assert named["content"] == ["m0", "m1", "m2"]
    assert named["tokens"] == [0, 1, 2]
    assert named["metadata"][2] == {"tokens": 2}
    assert named["event_id"] == [e.event_id for e in events]


def test_conversation_refs_skip_events_without_one() -> None:
    cid = uuid4()
    refs = conversation_refs([f.message(cid), f.edit(uuid4(), "x")])
    assert [r[0] for r in refs] == [cid]
