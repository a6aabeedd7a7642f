"""Fixtures and builders of the memory service's connected tests: the real memory worker
and the real embedder (its vectors and query.embed) in this process, over real NATS and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.memory import MemoryWrite
from contracts.memory_jobs import ConsolidatePayload, MemoryConsolidate, MemoryForget
from contracts.memory_search import MEMORY_SEARCH_REPLY, MEMORY_SEARCH_SUBJECT, MemorySearchReply
from services.memory.app import create_app
from services.memory.settings import MemorySettings
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings
from tests.helpers import eventually, publish

FAST = {**FAST_TIMINGS, "max_deliver": 20, "job_poll_s": 0.2, "access_flush_s": 0.1}
TENANT, AGENT = "acme", "travel-bot"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def memory_settings(env: Env, **overrides: Any) -> MemorySettings:
    return worker_settings(MemorySettings, env, FAST, **overrides)


@pytest.fixture
def run_memory(env: Env) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """``async with run_memory(**settings) as worker``: the real worker here; its parts
    are ``worker.component(JobRunner)`` and the like."""
    return in_process(create_app, partial(memory_settings, env))


@pytest.fixture
async def memory(
    embedder: Running, run_memory: Callable[..., AbstractAsyncContextManager[Worker]]
) -> AsyncIterator[Worker]:
    async with run_memory() as worker:
        yield worker


def write(
    text: str,
    memory_type: str = "semantic",
    *,
    memory_id: UUID | None = None,
    tenant: str = TENANT,
    agent: str = AGENT,
    at: datetime = T0,
    content: dict[str, Any] | None = None,
    **payload: Any,
) -> MemoryWrite:
    if content is None:
        content = {
            "episodic": {"event": text, "temporal": {"occurred_at": at.isoformat()}},
            "semantic": {"concept": text.split(maxsplit=1)[0], "definition": text},
            "procedural": {"skill": text, "steps": ["do it"]},
            "working": {"items": [text], "capacity": 3},
        }[memory_type]
    payload.setdefault("importance", 0.5)
    return MemoryWrite.model_validate(
        {
            "event_id": uuid4(),
            "tenant_id": tenant,
            "producer": "tests",
            "occurred_at": at,
            "payload": {
                "memory_id": memory_id or uuid4(),
                "agent_id": agent,
                "text": text,
                "memory_type": memory_type,
                "content": content,
                **payload,
            },
        }
    )


def forget(tenant: str = TENANT, at: datetime = T0, **payload: Any) -> MemoryForget:
    payload.setdefault("requested_by", "u-1")
    return MemoryForget.model_validate(
        {
            "event_id": uuid4(),
            "tenant_id": tenant,
            "producer": "tests",
            "occurred_at": at,
            "payload": payload,
        }
    )


def consolidate(at: datetime = T0, tenant: str = TENANT, **payload: Any) -> MemoryConsolidate:
    payload.setdefault("job_id", uuid4())
    payload.setdefault("agent_id", AGENT)
    return MemoryConsolidate(
        event_id=uuid4(),
        tenant_id=tenant,
        producer="tests",
        occurred_at=at,
        payload=ConsolidatePayload(**payload),
    )


async def msearch(nc: NatsClient, text: str, **request: Any) -> MemorySearchReply:
    body = {"tenant_id": TENANT, "agent_id": AGENT, "text": text, **request}
    reply = await nc.request(MEMORY_SEARCH_SUBJECT, json.dumps(body).encode(), timeout=10)
    result = MEMORY_SEARCH_REPLY.validate_json(reply.data)
    assert isinstance(result, MemorySearchReply), result
    return result


async def with_vectors(db: asyncpg.Connection, n: int, within: float = 30.0) -> None:
    """Wait until ``n`` memories have their vector."""
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM memory.memories WHERE embedding IS NOT NULL"),
        lambda c: c >= n,
        timeout=within,
    )


async def job_done(db: asyncpg.Connection, job_id: UUID, within: float = 30.0) -> dict[str, Any]:
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM memory.jobs WHERE job_id = $1 AND state = 'done'", job_id
        ),
        lambda r: r is not None,
        timeout=within,
    )
    return dict(row)


async def active(db: asyncpg.Connection, agent: str = AGENT) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            """SELECT * FROM memory.memories WHERE agent_id = $1 AND status = 'active'
            ORDER BY text""",
            agent,
        )
    )


# --- `engram trigger consolidate`, as a scheduler runs it ---------------------------------


def trigger_decay(*more: str) -> tuple[str, ...]:
    """The arguments of `engram trigger consolidate` that decays the agent's memories."""
    decay = ("trigger", "consolidate", "--tenant", TENANT, "--agent", AGENT, "--steps", "decay")
    return decay + more


async def a_fading_fact(nc: NatsClient, db: asyncpg.Connection) -> None:
    """One memory written three days before T0 that decays, once it is stored."""
    await publish(nc, write("a fact", importance=0.5, decay_rate=0.1, at=T0 - timedelta(days=3)))
    await eventually(lambda: db.fetchval("SELECT count(*) FROM memory.memories"))
