"""EngramSaver sends a channel's next version as a delta on the version it put before
(``BlobIn.base_id``), through the real checkpointer worker, nats-server and PostgreSQL:
what crosses NATS, what is stored, what another saver reads, and the bases the service
refuses (another thread's, another tenant's, one deleted since)."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import asyncpg
import nats
import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from nats.aio.msg import Msg

from contracts.errors import ErrorCode, QueryError
from contracts.langgraph import BlobIn, PutAnswer, PutReply, PutRequest, Typed
from engram_client.langgraph import EngramSaver
from engram_client.lg_held import delta
from services.runtime.nats_auth import ADMIN
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    checkpointer_fixture,
    run_checkpointer_fixture,
)
from tests.connected.saver_fixtures import Saver, saver_for_fixture  # noqa: F401

pytestmark = pytest.mark.connected
EVERY = 8  # the saver's keyframe_every in these tests: a few chains in 30 steps


def conversation(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"message {i}: " + "lorem ipsum " * 20} for i in range(n)]


async def _step(saver: EngramSaver, thread: str, step: int, parent: str | None) -> str:
    version = saver.get_next_version(None if step == 0 else f"{step:012}.0", None)
    cp = generate_checkpoint(
        channel_values={"messages": conversation(step + 1)}, channel_versions={"messages": version}
    )
    config = generate_config(thread)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent
    stored = await saver.aput(config, cp, generate_metadata(step=step), {"messages": version})
    return str(stored["configurable"]["checkpoint_id"])


async def test_a_grown_channel_crosses_nats_as_a_delta_and_reads_back_whole(
    checkpointer: Worker, saver_for: Saver, env: Env, db: asyncpg.Connection
) -> None:
    thread, puts = str(uuid4()), []
    spy = await nats.connect(env.nats_login(ADMIN))  # sees each put as the worker does

    async def seen(msg: Msg) -> None:
        puts.append(PutRequest.model_validate_json(msg.data))

    sub = await spy.subscribe("query.langgraph.put", cb=seen)
    await spy.flush()
    ids: list[str] = []
    try:
        async with saver_for(keyframe_every=EVERY) as saver:
            for step in range(30):
                ids.append(await _step(saver, thread, step, ids[-1] if ids else None))
        await asyncio.sleep(0.2)  # the spy's last messages
    finally:
        await sub.unsubscribe()
        await spy.close()
    blobs = [p.blobs[0] for p in puts if p.thread_id == thread]
    assert len(blobs) == 30
    deltas = [b for b in blobs if b.base_id is not None]
    assert len(deltas) >= 18, [b.base_id for b in blobs]
    for b in deltas:  # about one message each, not the whole conversation
        assert b.raw_bytes is not None and b.data is not None
        assert len(b.data) * 10 < b.raw_bytes
    rows = await db.fetch(
        "SELECT codec, depth FROM checkpoint.lg_blobs WHERE thread_id = $1 ORDER BY blob_id",
        thread,
    )
    assert len(rows) == 30 and max(r["depth"] for r in rows) < EVERY  # chains stay short
    async with saver_for(held_bytes=0) as cold:  # holds nothing: the service decodes
        for step, checkpoint_id in enumerate(ids):
            config = generate_config(thread)
            config["configurable"]["checkpoint_id"] = checkpoint_id
            got = await cold.aget_tuple(config)
            assert got is not None
            assert got.checkpoint["channel_values"]["messages"] == conversation(step + 1)


async def _ask_put(saver: EngramSaver, request: PutRequest) -> PutReply | QueryError:
    msg = await saver.nc.request("query.langgraph.put", request.model_dump_json().encode(), 10)
    reply: PutReply | QueryError = PutAnswer.model_validate_json(msg.data).root
    return reply


def _put_request(tenant: str, thread: str, blob: BlobIn) -> PutRequest:
    return PutRequest(
        tenant_id=tenant,
        thread_id=thread,
        checkpoint_id=str(uuid4()),
        body=Typed(type="json", data=b"{}"),
        channel_versions={blob.channel: blob.version},
        blobs=[blob],
    )


async def test_a_delta_on_a_base_outside_its_thread_and_tenant_is_refused(
    checkpointer: Worker, saver_for: Saver
) -> None:
    thread, other = str(uuid4()), str(uuid4())
    first = ("lorem ipsum " * 200).encode()
    second = first + b" and one more message"
    frame = delta(second, first)
    assert frame is not None
    async with saver_for() as saver:
        base = BlobIn(channel="messages", version="1", type="bytes", data=first)
        stored = await _ask_put(saver, _put_request("acme", thread, base))
        assert isinstance(stored, PutReply)
        base_id = stored.blob_ids["messages"]
        on = BlobIn(
            channel="messages",
            version="2",
            type="bytes",
            data=frame,
            base_id=base_id,
            raw_bytes=len(second),
        )
        for tenant, where, blob in (
            ("acme", other, on),  # another thread's row
            ("globex", thread, on),  # the same thread name, another tenant
            ("acme", thread, on.model_copy(update={"channel": "other"})),  # another channel
            ("acme", thread, on.model_copy(update={"base_id": base_id + 10**9})),  # no row
        ):
            refused = await _ask_put(saver, _put_request(tenant, where, blob))
            assert isinstance(refused, QueryError) and refused.code == ErrorCode.pruned, refused
        accepted = await _ask_put(saver, _put_request("acme", thread, on))
        assert isinstance(accepted, PutReply) and accepted.depths == {"messages": 1}
    async with saver_for(held_bytes=0) as cold:
        config = generate_config(thread)  # by id: these ids (uuid4) do not sort in time
        config["configurable"]["checkpoint_id"] = accepted.checkpoint_id
        got = await cold.aget_tuple(config)
        assert got is not None
        assert got.checkpoint["channel_values"]["messages"] == second


async def test_a_saver_whose_base_was_deleted_sends_the_value_whole(
    checkpointer: Worker, saver_for: Saver
) -> None:
    thread = str(uuid4())
    async with saver_for() as saver, saver_for() as other:
        parent = None
        for step in range(6):
            parent = await _step(saver, thread, step, parent)
        await other.adelete_thread(thread)  # the saver still holds its bases
        await _step(saver, thread, 6, parent)
        got = await other.aget_tuple(generate_config(thread))
        assert got is not None
        assert got.checkpoint["channel_values"]["messages"] == conversation(7)


async def test_a_request_that_breaks_its_contract_is_answered_invalid_and_counted(
    checkpointer: Worker, saver_for: Saver
) -> None:
    # query.langgraph.* are answered on the NATS connection, not through FastStream: the
    # same errors and per-subject stats as every route.
    async with saver_for() as saver:
        for body in (b'{"tenant_id": "acme"}', b"not json"):
            msg = await saver.nc.request("query.langgraph.put", body, 10)
            reply = PutAnswer.model_validate_json(msg.data).root
            assert isinstance(reply, QueryError) and reply.code == ErrorCode.invalid, reply
    assert checkpointer.queries.subjects["query.langgraph.put"].errors["invalid"] >= 2
