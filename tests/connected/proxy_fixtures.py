"""The ``cut`` fixture: the ingest worker's PostgreSQL login through a proxy the test can
cut and restore (tests/proxy.py). It comes in with
``from tests.connected.proxy_fixtures import *``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import Env
from tests.proxy import PostgresCut, through

__all__ = ["cut"]


@pytest.fixture
async def cut(env: Env) -> AsyncIterator[tuple[PostgresCut, str]]:
    """(the proxy, the ingest login's URL through it)."""
    url = urlsplit(env.login("ingest"))
    proxy = PostgresCut(url.hostname or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    yield proxy, through(env.login("ingest"), port)
    await proxy.stop()
