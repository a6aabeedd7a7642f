from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.checkpointer.settings import CheckpointerSettings
from services.ingest.logic import (
    MESSAGE_COLUMNS,
    batch_locks,
    conversation_refs,
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


def test_a_batch_waits_only_for_its_own_tenants_message() -> None:
    # Ids are per tenant: globex's edit of a message_id acme is creating edits globex's
    # message of that id, which acme's batch does not create.
    mid = uuid4()
    acme_creates = [f.message(uuid4(), mid, tenant="acme")]
    assert must_wait(acme_creates, [f.edit(mid, "x", tenant="acme")])
    assert must_wait(acme_creates, [f.delete(mid, tenant="acme")])
    assert must_wait(acme_creates, [f.file(uuid4(), tenant="acme", message_id=mid)])
    assert not must_wait(acme_creates, [f.edit(mid, "x", tenant="globex")])
    assert not must_wait(acme_creates, [f.delete(mid, tenant="globex")])
    assert not must_wait(acme_creates, [f.file(uuid4(), tenant="globex", message_id=mid)])


def test_two_tenants_using_one_id_share_its_lock() -> None:
    # The lock key is the id's alone: harmless (they only wait for each other), and it
    # never lets two batches of one tenant run past each other.
    cid = uuid4()
    acme = f.conversation_update(cid, tenant="acme")
    globex = f.conversation_update(cid, tenant="globex")
    assert batch_locks([acme]) == batch_locks([globex]) == [(lock_key(cid), True)]
    assert batch_locks([acme, globex]) == [(lock_key(cid), True)]
    assert must_wait([acme], [globex])
