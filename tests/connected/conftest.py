from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from faststream import TestApp

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.service import Worker
from tests.conftest import Env

pytestmark = pytest.mark.connected
# The failure tests' shared checks live in plain modules: pytest explains a failed assert
# there as it does in a test only when it rewrites them, which it must be told before
# they are imported.
pytest.register_assert_rewrite("tests.connected.chat_workload", "tests.connected.worker_process")

FAST_RETRIES = {
    "retry_base_s": 0.05,
    "retry_max_s": 0.2,
    "max_deliver": 4,
    "fetch_wait_s": 0.5,
    "drain_timeout_s": 5.0,
}


def ingest_settings(env: Env, **overrides: Any) -> IngestSettings:
    values = {
        "nats_url": env.nats_login("ingest"),
        "database_url": env.login("ingest"),
        **FAST_RETRIES,
        **overrides,
    }
    return IngestSettings(**values)


@pytest.fixture
def run_ingest(env: Env) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """``async with run_ingest(**settings) as worker``: the real worker, in this process."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[Worker]:
        app, worker = create_app(ingest_settings(env, **overrides))
        async with TestApp(app):
            yield worker

    return running


@pytest.fixture
async def ingest(
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
) -> AsyncIterator[Worker]:
    async with run_ingest() as worker:
        yield worker
