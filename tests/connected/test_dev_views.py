"""What `engram dev` shows of each service's data comes from the service's spec: each
view's SQL must run against the migrated schema and show what was stored."""

from __future__ import annotations

import uuid

import pytest
from nats.aio.client import Client as NatsClient

from services.catalog import SERVICES
from services.runtime.devmode import dev_views
from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected


async def test_every_service_view_runs_and_shows_stored_messages(
    env: Env, ingest: Worker, nc: NatsClient
) -> None:
    cid = uuid.uuid4()
    await publish(nc, factories.conversation(cid), factories.message(cid, content="hi there"))

    async def shown() -> list[str]:
        tables = await dev_views(env.database_url, list(SERVICES))
        return [str(cell) for t in tables for column in t.columns for cell in column._cells]

    cells = await eventually(shown, lambda found: "hi there" in found)
    titles = [t.title for t in await dev_views(env.database_url, list(SERVICES))]
    assert len(titles) == sum(1 for spec in SERVICES if spec.dev_view is not None)
    assert "hi there" in cells
