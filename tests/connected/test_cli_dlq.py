"""`engram dlq` as an operator runs it, against dead letters a real ingest worker sent:
list them with their reasons, show one, replay a fixed event (applied once), replay an
event already applied (nothing changes), purge a selection."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import ObjectNotFoundError

from services.runtime.dlq import DeadKind, DeadLetters
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.cli_run import engram, urls
from tests.helpers import dead_letters, eventually, publish, publish_raw

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]


def broken(event: Any, **changes: Any) -> bytes:
    data = json.loads(event.model_dump_json())
    data["payload"].update(changes)
    return json.dumps(data).encode()


async def inbox_rows(db: asyncpg.Connection, event_id: UUID) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM ingest.inbox WHERE event_id = $1", event_id
    )
    return count


async def messages(db: asyncpg.Connection, cid: UUID) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM ingest.messages WHERE conversation_id = $1", cid
    )
    return count


async def settled(nc: NatsClient) -> None:
    """Ingest has acked everything on CHAT."""

    async def left() -> int:
        info = await nc.jetstream().consumer_info("CHAT", "ingest")
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    await eventually(left, (0).__eq__)


async def test_list_show_and_purge_invalid_events(
    env: Env, nc: NatsClient, run_ingest: RunIngest
) -> None:
    cid = uuid4()
    role = f.message(cid, content="role", tenant="acme")
    other = f.message(cid, content="other tenant", tenant="globex")
    async with run_ingest():
        await publish(nc, f.conversation(cid))
        await publish_raw(nc, role.type, broken(role, role="wizard"), str(uuid4()))
        await publish_raw(nc, other.type, broken(other, role="wizard"), str(uuid4()))
        await publish_raw(nc, "chat.message.created", b"{not json", str(uuid4()))
        await dead_letters(nc, "dlq.ingest.>", expect=3)
    operator = urls(env)

    listed = await engram("dlq", "list", "--json", env=operator)
    assert listed.code == 0, listed.stderr
    letters = listed.json()
    assert isinstance(letters, list) and len(letters) == 3
    assert {x["kind"] for x in letters} == {"invalid"}
    assert {x["service"] for x in letters} == {"ingest"}
    assert all("contract violation" in x["reason"] for x in letters)
    assert sum("payload.role" in x["reason"] for x in letters) == 2
    by_event = {x["event_id"]: x for x in letters}
    assert by_event[str(role.event_id)]["tenant_id"] == "acme"

    only = await engram("dlq", "list", "--json", "--tenant", "globex", env=operator)
    assert [x["event_id"] for x in only.json()] == [str(other.event_id)]  # type: ignore[union-attr]
    for selection in (["--kind", "exhausted"], ["--service", "memory"], ["--since", "1s"]):
        none = await engram("dlq", "list", "--json", *selection, env=operator)
        assert none.code == 0 and none.json() == [], (selection, none.stderr)
    table = await engram("dlq", "list", env=operator)
    assert table.stdout.startswith("3 dead letters\n") and "payload.role" in table.stdout

    seq = str(by_event[str(role.event_id)]["sequence"])
    shown = await engram("dlq", "show", seq, env=operator)
    assert shown.code == 0, shown.stderr
    assert "payload.role" in shown.stdout and '"content": "role"' in shown.stdout
    as_json = (await engram("dlq", "show", seq, "--json", env=operator)).json()
    assert isinstance(as_json, dict)
    assert as_json["event"]["event_id"] == str(role.event_id)
    assert as_json["deliveries"] == 1
    missing = await engram("dlq", "show", "999", env=operator)
    assert missing.code == 2 and missing.stderr.count("\n") == 1, missing.stderr

    unasked = await engram("dlq", "purge", "--tenant", "acme", env=operator)
    assert unasked.code == 2 and "--yes" in unasked.stderr  # no terminal to confirm on
    assert len((await engram("dlq", "list", "--json", env=operator)).json()) == 3  # type: ignore[arg-type]
    purged = await engram("dlq", "purge", "--tenant", "acme", "--yes", "--json", env=operator)
    assert purged.code == 0, purged.stderr
    assert purged.json() == {"purged": 1, "sequences": [int(seq)]}
    rest = (await engram("dlq", "list", "--json", env=operator)).json()
    assert isinstance(rest, list)
    assert {x["event_id"] for x in rest} == {str(other.event_id), None}


async def test_replay_applies_a_fixed_event_once_and_an_applied_one_not_again(
    env: Env, nc: NatsClient, db: asyncpg.Connection, run_ingest: RunIngest
) -> None:
    cid = uuid4()
    conversation = f.conversation(cid)
    lost = f.message(cid, content="lost while the grant was missing")
    operator = urls(env)
    async with run_ingest() as worker:
        await publish(nc, conversation)
        await eventually(lambda: inbox_rows(db, conversation.event_id), (1).__eq__)
        await db.execute("REVOKE INSERT ON ingest.messages FROM engram_ingest")
        # Published with a bare event id (as producers did before tenant:event_id), so
        # that JetStream's duplicate window of it does not hold back the replay below.
        await publish_raw(nc, lost.type, lost.model_dump_json().encode(), str(lost.event_id))
        # ingest retries a missing grant max_deliver (4) times, then dead-letters it.
        (letter,) = await dead_letters(nc, "dlq.ingest.>", expect=1, timeout=30)
        assert letter[1]["Engram-Dlq-Kind"] == "exhausted"
        listed = (await engram("dlq", "list", "--json", env=operator)).json()
        assert isinstance(listed, list) and listed[0]["deliveries"] == 4
        await db.execute("GRANT INSERT ON ingest.messages TO engram_ingest")

        dry = await engram(
            "dlq", "replay", "--kind", "exhausted", "--dry-run", "--json", env=operator
        )
        assert dry.code == 0, dry.stderr
        assert [r["outcome"] for r in dry.json()] == ["would replay"]  # type: ignore[union-attr]
        assert await messages(db, cid) == 0

        done = await engram("dlq", "replay", "--kind", "exhausted", "--json", env=operator)
        assert done.code == 0, done.stderr
        assert [r["outcome"] for r in done.json()] == ["replayed"]  # type: ignore[union-attr]
        await eventually(lambda: messages(db, cid), (1).__eq__)
        await settled(nc)
        assert await inbox_rows(db, lost.event_id) == 1
        assert (await engram("dlq", "list", "--json", env=operator)).json() == []

        # Letters of events applied meanwhile: `applied` was re-published by hand under
        # another Nats-Msg-Id, so the replay reaches the worker, whose inbox drops it;
        # `lost` was replayed a moment ago under tenant:event_id, so JetStream drops the
        # replay and its letter is held for a replay after the duplicate window.
        applied = f.message(cid, content="applied by hand")
        await publish_raw(nc, applied.type, applied.model_dump_json().encode(), "by-hand")
        await eventually(lambda: inbox_rows(db, applied.event_id), (1).__eq__)
        letters = DeadLetters(nc.jetstream(), "ingest")
        for event, sequence in ((applied, 1001), (lost, 1002)):
            await letters.send_raw(
                event.type,
                event.model_dump_json().encode(),
                stream="CHAT",
                sequence=sequence,
                deliveries=4,
                kind=DeadKind.exhausted,
                reason="test",
            )
        again = await engram("dlq", "replay", "--service", "ingest", "--json", env=operator)
        assert again.code == 1, again.stderr  # not everything could be replayed
        outcomes = {r["event_id"]: r["outcome"] for r in again.json()}  # type: ignore[union-attr]
        assert outcomes == {str(applied.event_id): "replayed", str(lost.event_id): "held"}
        await settled(nc)
        assert worker.stats.dead == 1
    assert await messages(db, cid) == 2
    assert await inbox_rows(db, applied.event_id) == 1
    assert await inbox_rows(db, lost.event_id) == 1
    held = (await engram("dlq", "list", "--json", env=operator)).json()
    assert isinstance(held, list)
    assert [x["event_id"] for x in held] == [str(lost.event_id)]


async def test_replay_needs_a_selection_and_skips_what_it_cannot_replay(
    env: Env, nc: NatsClient, run_ingest: RunIngest
) -> None:
    async with run_ingest():
        await publish_raw(nc, "chat.message.created", b"[1, 2]", str(uuid4()))
        await dead_letters(nc, "dlq.ingest.>", expect=1)
    operator = urls(env)
    nothing = await engram("dlq", "replay", env=operator)
    assert nothing.code == 2 and "name a letter" in nothing.stderr
    skipped = await engram("dlq", "replay", "--service", "ingest", env=operator)
    assert skipped.code == 1
    assert "skipped" in skipped.stderr and "no event_id" in skipped.stderr
    assert len((await engram("dlq", "list", "--json", env=operator)).json()) == 1  # type: ignore[arg-type]


async def test_a_big_letter_is_shown_and_replayed_from_the_object_store(
    env: Env, nc: NatsClient
) -> None:
    js = nc.jetstream()
    event_id, size = str(uuid4()), nc.max_payload - 600  # fits alone, not with the headers
    head = json.dumps({"event_id": event_id, "tenant_id": "acme", "pad": ""}).encode()
    body = head[:-2] + b"x" * (size - len(head)) + head[-2:]
    await DeadLetters(js, "ingest").send_raw(
        "chat.message.created", body, stream="CHAT", sequence=77, deliveries=1,
        kind=DeadKind.poison, reason="too big to handle",
    )  # fmt: skip
    operator = urls(env)
    (listed,) = (await engram("dlq", "list", "--json", env=operator)).json()  # type: ignore[misc]
    assert listed["body"].startswith("object:engram-dlq-bodies/")
    assert listed["tenant_id"] is None  # not read for a list without --tenant
    by_tenant = await engram("dlq", "list", "--json", "--tenant", "acme", env=operator)
    assert [x["event_id"] for x in by_tenant.json()] == [event_id]  # type: ignore[union-attr]
    shown = (await engram("dlq", "show", str(listed["sequence"]), "--json", env=operator)).json()
    assert isinstance(shown, dict) and len(shown["event"]["pad"]) == size - len(head)

    done = await engram("dlq", "replay", str(listed["sequence"]), "--json", env=operator)
    assert done.code == 0, done.stderr
    assert [r["outcome"] for r in done.json()] == ["replayed"]  # type: ignore[union-attr]
    info = await js.stream_info("CHAT", subjects_filter="chat.message.created")
    assert (info.state.subjects or {}).get("chat.message.created") == 1
    stored = await js.get_last_msg("CHAT", "chat.message.created")
    assert stored.data == body
    assert (await engram("dlq", "list", "--json", env=operator)).json() == []
    bodies = await js.object_store("engram-dlq-bodies")
    with pytest.raises(ObjectNotFoundError):  # deleted with its letter
        await bodies.get_info(listed["body"].split("/", 1)[1])
