"""Two writer replicas on the same durable consumers never fork a chain."""

from __future__ import annotations

import json
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.audit_fixtures import RunAudit, recorded, verify
from tests.helpers import eventually

pytestmark = pytest.mark.connected
N = 3000


async def test_two_replicas_keep_every_chain_linear(
    run_audit: RunAudit, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    js = nc.jetstream(publish_async_max_pending=2000)
    tenants = ("acme", "globex", "initech")
    cid = uuid4()
    for i in range(N):
        tenant = tenants[i % 3]
        if i % 4 == 0:  # a second stream, so both replicas also interleave across streams
            body = {
                "event_id": str(uuid4()),
                "type": "memory.write",
                "tenant_id": tenant,
                "producer": "tests",
                "payload": {"i": i},
            }
            await js.publish_async("memory.write", json.dumps(body).encode())
        else:
            event = f.message(cid, tenant=tenant, content=f"m{i}")
            await js.publish_async(
                event.type, event.model_dump_json().encode(), headers=event.headers()
            )
    await js.publish_async_completed()

    # Small batches, so the two replicas' transactions interleave on every tenant.
    async with run_audit(batch_size=25) as one, run_audit(batch_size=25) as two:
        await eventually(lambda: recorded(db), N.__le__, timeout=90)
    assert one.stats.applied > N // 10 and two.stats.applied > N // 10, (
        one.stats.applied,
        two.stats.applied,
    )

    chains = await db.fetch(
        "SELECT tenant_id, count(*) AS n, count(DISTINCT position) AS distinct_positions, "
        "max(position) AS last FROM audit.events GROUP BY tenant_id"
    )
    assert sum(r["n"] for r in chains) == N
    for chain in chains:
        assert chain["n"] == chain["distinct_positions"] == chain["last"], dict(chain)
    result = await verify(env)
    assert result.ok, result.breaks
