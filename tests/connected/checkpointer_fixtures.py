"""Fixtures and builders for the checkpointer's connected tests (import the fixtures
``checkpointer`` and ``run_checkpointer`` into a test module by importing
``checkpointer_fixture`` and ``run_checkpointer_fixture``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from contracts.state import (
    StateCheckpoint,
    StateCheckpointPayload,
    StatePatch,
    StatePatchPayload,
    StateRestore,
    StateRestorePayload,
)
from contracts.state_queries import STATE_DIFF_REPLY, STATE_GET_REPLY, STATE_HISTORY_REPLY
from services.checkpointer.app import create_app
from services.checkpointer.settings import CheckpointerSettings
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings
from tests.helpers import eventually

FAST = {**FAST_TIMINGS, "max_deliver": 20, "outbox_poll_s": 0.5}
TENANT, USER, AGENT = "acme", "u-1", "bot"
R = TypeVar("R", bound=BaseModel)
REPLIES: dict[str, Any] = {
    "query.state.get": STATE_GET_REPLY,
    "query.state.history": STATE_HISTORY_REPLY,
    "query.state.diff": STATE_DIFF_REPLY,
}


def settings_for(env: Env, **overrides: Any) -> CheckpointerSettings:
    return worker_settings(CheckpointerSettings, env, FAST, **overrides)


@pytest.fixture(name="run_checkpointer")
def run_checkpointer_fixture(env: Env) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """``async with run_checkpointer(**settings) as worker``: the real worker, in-process."""
    return in_process(create_app, partial(settings_for, env))


@pytest.fixture(name="checkpointer")
async def checkpointer_fixture(
    run_checkpointer: Callable[..., AbstractAsyncContextManager[Worker]],
) -> AsyncIterator[Worker]:
    async with run_checkpointer() as worker:
        yield worker


def patch(
    ops: list[dict[str, Any]] | None = None,
    *,
    merge: dict[str, Any] | None = None,
    expected: int | None = None,
    user: str = USER,
    agent: str = AGENT,
    tenant: str = TENANT,
    **envelope: Any,
) -> StatePatch:
    envelope.setdefault("event_id", uuid4())
    envelope.setdefault("occurred_at", datetime.now(UTC))
    return StatePatch(
        tenant_id=tenant,
        producer="tests",
        **envelope,
        payload=StatePatchPayload(
            user_id=user, agent_id=agent, patch=ops, merge_patch=merge, expected_version=expected
        ),
    )


def checkpoint(
    checkpoint_id: UUID,
    *,
    user: str = USER,
    agent: str = AGENT,
    tenant: str = TENANT,
    **payload: Any,
) -> StateCheckpoint:
    return StateCheckpoint(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        producer="tests",
        payload=StateCheckpointPayload(
            user_id=user, agent_id=agent, checkpoint_id=checkpoint_id, **payload
        ),
    )


def restore(
    *, user: str = USER, agent: str = AGENT, tenant: str = TENANT, **payload: Any
) -> StateRestore:
    return StateRestore(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        producer="tests",
        payload=StateRestorePayload(user_id=user, agent_id=agent, **payload),
    )


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


async def request(nc: NatsClient, subject: str, reply: type[R], **body: Any) -> Any:
    """The reply to a query.state.* request: ``reply`` (status ok) or a ``QueryError``."""
    body.setdefault("tenant_id", TENANT)
    body.setdefault("user_id", USER)
    body.setdefault("agent_id", AGENT)
    for key, value in body.items():
        if isinstance(value, datetime):
            body[key] = value.isoformat()
    msg = await nc.request(subject, orjson.dumps(body), timeout=5)
    return REPLIES[subject].validate_json(msg.data)  # type: ignore[no-any-return]


async def version_of(
    db: asyncpg.Connection, user: str = USER, agent: str = AGENT, tenant: str = TENANT
) -> int:
    version = await db.fetchval(
        """SELECT version FROM checkpoint.agent_states
            WHERE tenant_id = $1 AND user_id = $2 AND agent_id = $3""",
        tenant,
        user,
        agent,
    )
    return int(version or 0)


async def wait_version(db: asyncpg.Connection, version: int, **key: Any) -> int:
    return await eventually(lambda: version_of(db, **key), lambda v: v >= version)
