"""Folding events over the stored state of their sources (services/embedder/plan.py)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

from contracts.embedding import SourceType
from services.embedder.logic import content_hash
from services.embedder.plan import (
    Change,
    SourceKey,
    SourceState,
    change_of,
    fold,
)
from tests import factories as f
from tests.unit.test_embedder_contracts import memory_write

ROLES = frozenset({"user", "assistant", "tool"})
T0 = f.T0


def changes(*events: object) -> list[Change]:
    return [change_of(e, ROLES) for e in events]  # type: ignore[arg-type]


def key(mid: UUID, tenant: str = "acme") -> SourceKey:
    return SourceKey(tenant, SourceType.message, mid)


def stored(
    text: str, *, at_min: int = 0, deleted: bool = False, indexed: bool = True
) -> SourceState:
    return SourceState(
        uuid4(),
        None,
        T0,
        content_hash(text),
        T0 + timedelta(minutes=at_min),
        indexed,
        deleted,
        uuid4(),
    )


def test_create_then_edit_in_one_batch_chunks_only_the_final_text() -> None:
    cid, mid = uuid4(), uuid4()
    plan = fold(changes(f.message(cid, mid, content="v1"), f.edit(mid, "v2")), {})
    write = plan.writes[key(mid)]
    assert write.rechunk and write.text == "v2"
    assert write.state.content_hash == content_hash("v2")
    assert write.state.conversation_id == cid and write.state.source_at == T0
    assert plan.retry == {}


def test_edit_before_create_is_retried() -> None:
    mid = uuid4()
    event = f.edit(mid, "early")
    plan = fold(changes(event), {})
    assert plan.writes == {} and "not stored yet" in plan.retry[event.event_id]


def test_same_text_again_is_not_rechunked() -> None:
    mid = uuid4()
    plan = fold(
        changes(f.edit(mid, "same", at=T0 + timedelta(minutes=5))), {key(mid): stored("same")}
    )
    write = plan.writes[key(mid)]
    assert not write.rechunk and write.text is None
    assert write.state.text_at == T0 + timedelta(minutes=5)


def test_older_edit_arriving_late_is_ignored() -> None:
    mid = uuid4()
    plan = fold(
        changes(f.edit(mid, "old", at=T0 + timedelta(minutes=1))),
        {key(mid): stored("newer", at_min=3)},
    )
    assert plan.writes == {} and plan.retry == {}


def test_delete_leaves_a_tombstone_that_later_events_respect() -> None:
    cid, mid = uuid4(), uuid4()
    plan = fold(
        changes(
            f.delete(mid), f.message(cid, mid, content="late create"), f.edit(mid, "late edit")
        ),
        {},
    )
    write = plan.writes[key(mid)]
    assert write.state.deleted and write.rechunk and write.text is None
    # and against a stored tombstone
    again = fold(
        changes(f.message(cid, mid, content="redelivered")), {key(mid): stored("", deleted=True)}
    )
    assert again.writes == {}


def test_delete_of_a_stored_message_drops_its_chunks() -> None:
    mid = uuid4()
    plan = fold(changes(f.delete(mid)), {key(mid): stored("text")})
    write = plan.writes[key(mid)]
    assert write.state.deleted and write.rechunk and write.text is None
    assert write.state.content_hash == content_hash("text")


def test_touch_after_rechunk_keeps_the_rechunk() -> None:
    cid, mid = uuid4(), uuid4()
    plan = fold(changes(f.message(cid, mid, content="a"), f.edit(mid, "a")), {})
    write = plan.writes[key(mid)]
    assert write.rechunk and write.text == "a"


def test_another_tenants_source_with_the_same_id_is_a_source_of_its_own() -> None:
    cid, mid = uuid4(), uuid4()
    theirs = {key(mid, "acme"): stored("acme's text")}
    # an edit in globex does not find acme's message: it waits for globex's own create
    early = f.edit(mid, "globex's edit", tenant="globex")
    plan = fold(changes(early), theirs)
    assert plan.writes == {} and "not stored yet" in plan.retry[early.event_id]
    # globex's create, edit and delete under acme's id are globex's alone
    plan = fold(
        changes(
            f.message(cid, mid, tenant="globex", content="globex's text"),
            f.edit(mid, "globex's edit", tenant="globex"),
        ),
        theirs,
    )
    assert set(plan.writes) == {key(mid, "globex")} and plan.retry == {}
    assert plan.writes[key(mid, "globex")].text == "globex's edit"
    plan = fold(changes(f.delete(mid, tenant="globex")), theirs)
    assert set(plan.writes) == {key(mid, "globex")}
    # and acme's edit in the same batch still applies to acme's message
    plan = fold(
        changes(
            f.message(cid, mid, tenant="globex", content="globex's text"),
            f.edit(mid, "acme's edit", tenant="acme", at=T0 + timedelta(minutes=9)),
        ),
        theirs,
    )
    assert plan.writes[key(mid, "acme")].text == "acme's edit"
    assert plan.writes[key(mid, "globex")].text == "globex's text"


def test_system_messages_are_stored_but_not_embedded_nor_their_edits() -> None:
    cid, mid = uuid4(), uuid4()
    plan = fold(
        changes(
            f.message(cid, mid, content="You are helpful.", role="system"),
            f.edit(mid, "You are terse."),
        ),
        {},
    )
    write = plan.writes[key(mid)]
    assert not write.state.indexed and write.text is None


def test_file_without_text_is_not_embedded_and_agent_is_kept() -> None:
    fid = uuid4()
    plan = fold(changes(f.file(fid)), {})
    write = plan.writes[SourceKey("acme", SourceType.file, fid)]
    assert not write.state.indexed and write.text is None
    cid, mid = uuid4(), uuid4()
    plan = fold(changes(f.message(cid, mid, role="assistant", sender_agent_id="bot")), {})
    assert plan.writes[key(mid)].state.agent_id == "bot"


def test_memory_write_sets_its_text() -> None:
    event = memory_write(text="The user prefers quiet rooms.")
    plan = fold(changes(event), {})
    write = plan.writes[SourceKey("acme", SourceType.memory, event.payload.memory_id)]
    assert write.text == "The user prefers quiet rooms."
    assert write.state.agent_id == event.payload.agent_id
