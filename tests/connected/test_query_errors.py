"""One error shape for every query, as published: each query subject, asked over real NATS
of the real worker, answers an invalid request, a missing thing (where there is one) and a
good request with a reply that validates against the JSON Schema `engram schema` writes
(`<subject>.reply`: the result, `status: "ok"`, or `QueryError`, `status: "error"`).

Also the states that should not exist: a stale patch or a checkpoint of a state that does
not exist leaves no state behind (query.state.get answers not_found)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import jsonschema
import pytest
from nats.aio.client import Client as NatsClient
from typer.testing import CliRunner

from contracts.registry import QUERIES
from services.runtime.cli import cli
from services.runtime.worker import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    AGENT,
    TENANT,
    USER,
    add,
    checkpoint,
    checkpointer_fixture,
    patch,
    restore,
    run_checkpointer_fixture,
    wait_version,
)
from tests.connected.embedder_fixtures import Running
from tests.helpers import dead_letters, eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

STATE_KEY = {"tenant_id": TENANT, "user_id": USER, "agent_id": AGENT}


@pytest.fixture(name="published", scope="module")
def published_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The reply schemas exactly as `engram schema --out DIR` writes them."""
    out = tmp_path_factory.mktemp("schema")
    result = CliRunner().invoke(cli, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in out.glob("*.json")}


async def ask(
    nc: NatsClient, published: dict[str, dict[str, Any]], subject: str, body: Any
) -> dict[str, Any]:
    """Send a request; the reply must be valid against the published reply schema."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=15)
    reply: dict[str, Any] = json.loads(msg.data)
    jsonschema.Draft202012Validator(published[f"{subject}.reply"]).validate(reply)
    return reply


def is_error(reply: dict[str, Any], code: str) -> None:
    assert reply["status"] == "error" and reply["code"] == code, reply
    assert reply["message"]


async def test_state_queries_answer_one_error_shape(
    checkpointer: Worker,
    nc: NatsClient,
    db: asyncpg.Connection,
    published: dict[str, dict[str, Any]],
) -> None:
    await publish(nc, patch([add("/local/a", 1)]), patch([add("/local/b", 2)]))
    await wait_version(db, 2)
    queries = {
        "query.state.get": {},
        "query.state.history": {"limit": 10},
        "query.state.diff": {"from_version": 0, "to_version": 2},
    }
    for subject, extra in queries.items():
        invalid = await ask(nc, published, subject, {**STATE_KEY, "tenant_id": "", **extra})
        is_error(invalid, "invalid")
        assert "tenant_id" in invalid["message"]
        assert invalid["detail"]["errors"], invalid
        is_error(await ask(nc, published, subject, b"\xffnot json"), "invalid")
        missing = await ask(nc, published, subject, {**STATE_KEY, "user_id": "nobody", **extra})
        is_error(missing, "not_found")
        ok = await ask(nc, published, subject, {**STATE_KEY, **extra})
        assert ok["status"] == "ok", ok
    both = await ask(
        nc,
        published,
        "query.state.get",
        {**STATE_KEY, "at_version": 1, "at_time": "2026-11-01T00:00:00Z"},
    )
    is_error(both, "invalid")
    is_error(
        await ask(nc, published, "query.state.get", {**STATE_KEY, "at_version": 9}), "not_found"
    )
    is_error(
        await ask(
            nc, published, "query.state.diff", {**STATE_KEY, "from_version": 0, "to_version": 9}
        ),
        "not_found",
    )
    part = await ask(nc, published, "query.state.get", {**STATE_KEY, "partitions": ["local"]})
    assert part["state"]["local"] == {"a": 1, "b": 2} and part["state"]["session"] is None


async def test_rejected_events_leave_no_state(
    checkpointer: Worker,
    nc: NatsClient,
    db: asyncpg.Connection,
    published: dict[str, dict[str, Any]],
) -> None:
    stale = patch([add("/local/a", 1)], expected=5, user="ghost")
    snapshot = checkpoint(uuid4(), user="ghost-2")
    back = restore(version=0, user="ghost-3")
    await publish(nc, stale, snapshot, back)
    # the stale patch: recorded as a conflict, and announced
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM checkpoint.conflicts WHERE event_id = $1", stale.event_id
        )
    )
    # a checkpoint or a restore of a state that does not exist: dead-lettered as poison
    dead = await dead_letters(nc, "dlq.checkpointer.>", expect=2)
    assert {json.loads(body)["event_id"] for _, _, body in dead} == {
        str(snapshot.event_id),
        str(back.event_id),
    }
    for _, headers, _ in dead:
        assert headers["Engram-Dlq-Kind"] == "poison", headers
        assert "no such state" in headers["Engram-Dlq-Reason"]
    for user in ("ghost", "ghost-2", "ghost-3"):
        key = {**STATE_KEY, "user_id": user}
        is_error(await ask(nc, published, "query.state.get", key), "not_found")
        is_error(await ask(nc, published, "query.state.history", key), "not_found")
        is_error(
            await ask(
                nc, published, "query.state.diff", {**key, "from_version": 0, "to_version": 0}
            ),
            "not_found",
        )
    assert not await db.fetchval(
        "SELECT count(*) FROM checkpoint.agent_states WHERE user_id <> 'ghost'"
    )
    assert not await db.fetchval("SELECT count(*) FROM checkpoint.checkpoints")
    # the state is born with its first accepted patch, at version 1
    await publish(nc, patch([add("/local/a", 1)], expected=0, user="ghost"))
    await wait_version(db, 1, user="ghost")
    born = await ask(nc, published, "query.state.get", {**STATE_KEY, "user_id": "ghost"})
    assert born["status"] == "ok" and born["state"]["version"] == 1, born


async def test_embedder_and_memory_queries_answer_one_error_shape(
    embedder: Running,
    memory: Any,
    nc: NatsClient,
    published: dict[str, dict[str, Any]],
) -> None:
    bad = {
        "query.embed": {"texts": []},
        "query.knowledge.search": {"text": "hotel"},  # no tenant
        "query.memory.search": {
            "tenant_id": TENANT,
            "agent_id": AGENT,
            "text": "hotel",
            "top_k": 0,
        },
    }
    good = {
        "query.embed": {"texts": ["a hotel by the river"]},
        "query.knowledge.search": {"tenant_id": TENANT, "text": "hotel"},
        "query.memory.search": {"tenant_id": TENANT, "agent_id": AGENT, "text": "hotel"},
    }
    for subject, body in bad.items():
        invalid = await ask(nc, published, subject, body)
        is_error(invalid, "invalid")
        assert invalid["detail"]["errors"], invalid
        is_error(await ask(nc, published, subject, b"\xffnot json"), "invalid")
        ok = await ask(nc, published, subject, good[subject])
        assert ok["status"] == "ok", ok


def test_every_published_reply_is_a_union_with_the_one_error(
    published: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    replies = {name: schema for name, schema in published.items() if name.endswith(".reply")}
    assert len(replies) == len(QUERIES), sorted(replies)
    for name, schema in replies.items():
        assert schema["discriminator"]["propertyName"] == "status", name
        assert set(schema["discriminator"]["mapping"]) == {"ok", "error"}, name
        error = schema["$defs"]["QueryError"]
        assert error["required"][:3] == ["status", "code", "message"], name
        codes = schema["$defs"]["ErrorCode"]["enum"]
        assert {"invalid", "not_found", "pruned", "too_large", "unavailable", "internal"} <= set(
            codes
        ), name
