from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings

pytestmark = pytest.mark.connected
# The failure tests' shared checks live in plain modules: pytest explains a failed assert
# there as it does in a test only when it rewrites them, which it must be told before
# they are imported.
pytest.register_assert_rewrite("tests.connected.chat_workload", "tests.connected.worker_process")

FAST_RETRIES = {**FAST_TIMINGS, "max_deliver": 4}


def ingest_settings(env: Env, **overrides: Any) -> IngestSettings:
    return worker_settings(IngestSettings, env, FAST_RETRIES, **overrides)


@pytest.fixture
def run_ingest(env: Env) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """``async with run_ingest(**settings) as worker``: the real worker, in this process."""
    return in_process(create_app, partial(ingest_settings, env))


@pytest.fixture
async def ingest(
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
) -> AsyncIterator[Worker]:
    async with run_ingest() as worker:
        yield worker
