"""Fixtures and helpers of the embedder's connected tests: the real model (loaded once
per test session), the real worker in this process, and the queries over real NATS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import pytest
from faststream import FastStream
from nats.aio.client import Client as NatsClient

from contracts.embedding import (
    EMBED_REPLY,
    EMBED_SUBJECT,
    KNOWLEDGE_SEARCH_REPLY,
    KNOWLEDGE_SEARCH_SUBJECT,
    EmbedReply,
    KnowledgeSearchReply,
)
from contracts.errors import QueryError
from services.embedder.active_model import ActiveModel
from services.embedder.app import create_app, parts
from services.embedder.handlers import ApplyStats
from services.embedder.model import LoadedModel, load, resolve
from services.embedder.pump import Pump
from services.embedder.settings import DEFAULT_MODEL, EmbedderSettings
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings
from tests.helpers import eventually

FAST = {
    **FAST_TIMINGS, "max_deliver": 4, "drain_timeout_s": 10.0,
    "poll_s": 1.0, "model_check_s": 0.5, "model_max_wait_s": 0.02,
    # fp32 torch, the model the session loads once (int8: test_embedder_runtime*.py)
    "runtime": "torch",
}  # fmt: skip


@dataclass
class Running:
    app: FastStream
    worker: Worker

    @property
    def active(self) -> ActiveModel:
        return parts(self.worker).active

    @property
    def pump(self) -> Pump:
        return parts(self.worker).pump

    @property
    def stats(self) -> ApplyStats:
        return parts(self.worker).writer.stats


def embedder_settings(env: Env, **overrides: Any) -> EmbedderSettings:
    return worker_settings(EmbedderSettings, env, FAST, **overrides)


@pytest.fixture(scope="session")
def embedding_model() -> LoadedModel:
    """The default model, loaded once for the whole session (workers reuse it)."""
    return load(resolve(DEFAULT_MODEL))


@pytest.fixture
def run_embedder(
    env: Env, embedding_model: LoadedModel
) -> Callable[..., AbstractAsyncContextManager[Running]]:
    """``async with run_embedder(**settings) as running``: the real worker, in this process."""
    return in_process(create_app, partial(embedder_settings, env), Running)


@pytest.fixture
async def embedder(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
) -> AsyncIterator[Running]:
    async with run_embedder() as running:
        yield running


async def search(nc: NatsClient, tenant: str, text: str, **request: Any) -> KnowledgeSearchReply:
    body = {"tenant_id": tenant, "text": text, **request}
    reply = await nc.request(KNOWLEDGE_SEARCH_SUBJECT, json.dumps(body).encode(), timeout=10)
    result = KNOWLEDGE_SEARCH_REPLY.validate_json(reply.data)
    assert isinstance(result, KnowledgeSearchReply), result
    return result


async def search_error(nc: NatsClient, body: bytes) -> QueryError:
    reply = await nc.request(KNOWLEDGE_SEARCH_SUBJECT, body, timeout=10)
    result = KNOWLEDGE_SEARCH_REPLY.validate_json(reply.data)
    assert isinstance(result, QueryError), result
    return result


async def embed(nc: NatsClient, texts: list[str]) -> EmbedReply:
    reply = await nc.request(EMBED_SUBJECT, json.dumps({"texts": texts}).encode(), timeout=10)
    result = EMBED_REPLY.validate_json(reply.data)
    assert isinstance(result, EmbedReply), result
    return result


async def settled(
    db: asyncpg.Connection, sources: int, events: int | None = None, within: float = 30.0
) -> None:
    """Wait until ``events`` events are applied (default: ``sources``), ``sources``
    sources are stored, and every chunk has its vector of the active model."""

    async def state() -> tuple[int, int, int, int]:
        row = await db.fetchrow(
            """SELECT (SELECT count(*) FROM embedder.inbox),
                      (SELECT count(*) FROM embedder.sources),
                      (SELECT count(*) FROM embedder.embed_queue),
                      (SELECT count(*) FROM embedder.chunks c WHERE NOT EXISTS (
                          SELECT 1 FROM embedder.chunk_vectors v
                           JOIN embedder.models m ON m.model_id = v.model_id
                          WHERE v.chunk_id = c.chunk_id AND m.state = 'active'))"""
        )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    want = (events if events is not None else sources, sources, 0, 0)
    await eventually(state, lambda s: s[0] >= want[0] and s[1:] == want[1:], timeout=within)
