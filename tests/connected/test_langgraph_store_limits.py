"""EngramStore at and past its published limits, and the memory service's answer to
requests that break the query.store.batch contract: each gets a clear error, nothing is
half applied, and the service keeps answering."""

from __future__ import annotations

import json
from typing import Any

import nats
import pytest
from langgraph.store.base import GetOp, PutOp

from contracts.errors import ErrorCode, QueryError
from contracts.store import MAX_OPS, STORE_BATCH_SUBJECT, StoreBatchAnswer
from services.runtime.nats_auth import PRODUCER, inbox_prefix
from tests.conftest import Env
from tests.connected.store_fixtures import Store, sql, store_for_fixture  # noqa: F401

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]


async def ask_raw(env: Env, body: bytes) -> Any:
    """query.store.batch as a client written from the contract alone would ask it."""
    nc = await nats.connect(env.nats_login(PRODUCER), inbox_prefix=inbox_prefix(PRODUCER))
    try:
        msg = await nc.request(STORE_BATCH_SUBJECT, body, timeout=10)
    finally:
        await nc.drain()
    return StoreBatchAnswer.model_validate_json(msg.data).root


def put(key: str) -> dict[str, Any]:
    return {"op": "put", "namespace": ["limits"], "key": key, "value": {"n": key}}


async def test_a_batch_of_more_than_max_ops_is_sent_in_parts_and_all_lands(
    store_for: Store,
) -> None:
    n = 2 * MAX_OPS + 500
    async with store_for("limits-a") as store:
        await store.abatch([PutOp(("many",), f"k{i}", {"i": i}) for i in range(n)])
        got = await store.abatch([GetOp(("many",), f"k{i}") for i in range(n)])
    assert [item.value["i"] if item else None for item in got] == list(range(n))


async def test_one_op_over_the_limit_is_refused_whole_and_the_service_still_answers(
    env: Env, store_for: Store
) -> None:
    over = {"tenant_id": "limits-b", "ops": [put(f"k{i}") for i in range(MAX_OPS + 1)]}
    reply = await ask_raw(env, json.dumps(over).encode())
    assert isinstance(reply, QueryError) and reply.code is ErrorCode.invalid
    assert reply.detail and "ops" in json.dumps(reply.detail)
    rows = await sql(
        env, "SELECT count(*) FROM memory.store_items WHERE tenant_id = $1", "limits-b"
    )
    assert rows[0][0] == 0  # nothing of the refused batch was applied
    at_limit = {"tenant_id": "limits-b", "ops": [put(f"k{i}") for i in range(MAX_OPS)]}
    reply = await ask_raw(env, json.dumps(at_limit).encode())
    assert not isinstance(reply, QueryError) and len(reply.results) == MAX_OPS


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"tenant_id": "limits-c"}',
        b'{"tenant_id": "limits-c", "ops": []}',
        b'{"tenant_id": "*", "ops": [{"op": "get", "namespace": ["a"], "key": "k"}]}',
        b'{"tenant_id": "limits-c", "ops": [{"op": "drop", "namespace": ["a"], "key": "k"}]}',
        b'{"tenant_id": "limits-c", "ops": [{"op": "put", "namespace": [], "key": "k",'
        b' "value": {}}]}',
    ],
    ids=["not-json", "no-ops", "empty-ops", "wildcard-tenant", "unknown-op", "empty-namespace"],
)
async def test_a_request_that_breaks_the_contract_gets_invalid(
    env: Env, store_for: Store, body: bytes
) -> None:
    reply = await ask_raw(env, body)
    assert isinstance(reply, QueryError) and reply.code is ErrorCode.invalid
    async with store_for("limits-c") as store:  # and the service goes on answering
        await store.aput(("a",), "k", {"ok": True})
        assert (await store.aget(("a",), "k")).value == {"ok": True}  # type: ignore[union-attr]


async def test_a_value_near_the_message_limit_round_trips(store_for: Store) -> None:
    big = "x" * 600_000  # the test bus's max_payload is 1 MiB: request and reply fit
    async with store_for("limits-d") as store:
        await store.aput(("big",), "k", {"text": big}, index=False)
        item = await store.aget(("big",), "k")
    assert item is not None and item.value["text"] == big
