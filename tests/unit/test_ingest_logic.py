from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.checkpointer.settings import CheckpointerSettings
from services.ingest.logic import (
    MESSAGE_COLUMNS,
    batch_locks,
    conversation_refs,
    foreign_parent,
    lock_key,
    message_columns,
    must_wait,
    runs,
)
from services.ingest.settings import IngestSettings
from tests import factories as f


def test_runs_keep_order_between_types() -> None:
    cid, mid = uuid4(), uuid4()
    events = [
        f.message(cid, mid),
        f.message(cid),
        f.edit(mid, "x"),
        f.message(cid),
        f.edit(mid, "y"),
    ]
    kinds = [(kind, len(run)) for kind, run in runs(events)]
    assert kinds == [
        ("chat.message.created", 2),
        ("chat.message.edited", 1),
        ("chat.message.created", 1),
        ("chat.message.edited", 1),
    ]


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


def test_batch_locks_share_message_conversations_and_hold_the_rest_alone() -> None:
    busy, quiet, mid = uuid4(), uuid4(), uuid4()
    events = [
        f.message(busy),
        f.message(quiet, mid),
        f.message(busy),
        f.conversation_update(quiet, title="t"),
        f.edit(mid, "x"),
    ]
    locks = batch_locks(events)
    assert [key for key, _ in locks] == sorted(key for key, _ in locks)
    assert dict(locks) == {lock_key(busy): False, lock_key(quiet): True, lock_key(mid): True}
    assert all(-(2**31) <= key < 2**31 for key, _ in locks)  # pg_advisory_xact_lock(int, int)


def test_only_services_whose_batches_commute_commit_more_than_one_at_once() -> None:
    assert IngestSettings().commits_in_flight == 2
    with pytest.raises(ValidationError, match="stream order"):
        CheckpointerSettings(commits_in_flight=2)


def test_a_batch_waits_for_one_it_conflicts_with() -> None:
    cid, mid = uuid4(), uuid4()
    created = [f.message(cid, mid), f.message(cid)]
    # New messages in the same conversations: both commit at once.
    assert not must_wait(created, [f.message(cid)])
    assert not must_wait(created, [f.message(cid), f.edit(uuid4(), "x")])
    # An edit of a message still being created, a change to a conversation in use.
    assert must_wait(created, [f.message(cid), f.edit(mid, "x")])
    assert must_wait(created, [f.delete(mid)])
    assert must_wait(created, [f.conversation_update(cid, title="t")])
    assert must_wait([f.conversation_update(cid, title="t")], created)
    assert not must_wait([f.edit(mid, "x")], [f.message(uuid4())])


def test_a_reply_to_another_tenants_message_in_the_same_batch_is_found() -> None:
    cid, gid, mid = uuid4(), uuid4(), uuid4()
    question = f.message(cid, mid, tenant="acme")
    own_reply = f.message(cid, tenant="acme", parent_message_id=mid)
    intruder = f.message(gid, tenant="globex", parent_message_id=mid)
    assert foreign_parent([question, own_reply]) is None
    assert foreign_parent([question, own_reply, intruder]) == intruder.payload.message_id
    # A parent not in the batch is the insert's to check; a message_id sent twice is
    # stored as its first sender's, so a reply from that tenant is fine.
    assert foreign_parent([intruder]) is None
    again = f.message(gid, mid, tenant="globex")
    assert foreign_parent([question, again, own_reply]) is None
    assert foreign_parent([again, question, own_reply]) == own_reply.payload.message_id
