"""A worker's connections: its NATS broker, logged in as its own user, and the app's
lifespan, which holds its database pool.

With ``<SERVICE>_HTTP_PORT`` set, the worker's metrics and health probes (``probes.py``)
are served from the moment the pool exists (before the broker connects, so a worker that
cannot reach NATS shows it) until after everything else stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from faststream import ContextRepo
from faststream.nats import NatsBroker, NatsUserPassword
from faststream.nats.security import NatsSecurity

from services.runtime.db import create_pool
from services.runtime.logs import ACCESS_LOGGER
from services.runtime.nats_auth import inbox_prefix
from services.runtime.nats_servers import parse_servers
from services.runtime.probes import ProbeServer, worker_routes
from services.runtime.settings import NatsTlsSettings, WorkerSettings
from services.runtime.spec import ServiceSpec
from services.runtime.supervise import Supervisor
from services.runtime.worker import Worker


def worker_broker(service: str, settings: WorkerSettings, supervisor: Supervisor) -> NatsBroker:
    """The worker's NATS connection: every server of NATS_URL, logged in as its own user."""
    nats = parse_servers(settings.nats_url)
    tls = NatsTlsSettings().context()
    login: NatsSecurity | None = (
        NatsUserPassword(nats.user, nats.password, ssl_context=tls)
        if nats.user and nats.password
        else (None if tls is None else NatsSecurity(ssl_context=tls))
    )
    return NatsBroker(
        nats.servers,
        # As options, not in the URLs: they apply to servers discovered from the cluster too.
        security=login,
        dont_randomize=not settings.nats_randomize,
        name=f"engram-{service}",
        max_reconnect_attempts=settings.nats_max_reconnect_attempts,
        # Closed for good (an -ERR from the server, reconnects given up): end the process.
        closed_cb=supervisor.connection_closed,
        # Its NATS user may read replies only under its own prefix (nats_auth.py).
        inbox_prefix=inbox_prefix(service),
        # Its access logger as configure_logging left it: FastStream's default one is set
        # back to INFO when the broker connects, so a worker run at WARNING built (and
        # wrote to stdout) two records per message it answered.
        logger=logging.getLogger(ACCESS_LOGGER),
    )


def worker_lifespan(
    spec: ServiceSpec, settings: WorkerSettings, worker: Worker
) -> Callable[[ContextRepo], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the pool (in FastStream's context as ``pool``) and the metrics
    and probes port, which opens before the broker connects and closes last."""

    @asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url,
            worker=True,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            vectors=settings.uses_vectors,
            # Each batch statement is planned for its own arrays and tenants. A cached
            # generic plan cannot see either (the tenant wall's setting, the batch's sizes),
            # and the one PostgreSQL settles on after five runs made ingest's insert 2.4x
            # slower (docs/benchmarks.md); planning once per batch costs well under 1 ms.
            # A startup setting, so the pool's RESET ALL keeps it.
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )
        context.set_global("pool", pool)
        context.set_global("worker", worker)
        try:
            if settings.http_port is not None:
                # Before the broker connects: a worker that cannot reach NATS shows it.
                worker.probes = ProbeServer(
                    worker_routes(worker, pool, spec.store),
                    host=settings.http_host,
                    port=settings.http_port,
                )
                worker.http_port = await worker.probes.start()
            yield
        finally:
            if worker.probes is not None:
                await worker.probes.stop()
            await pool.close()
            # Last: the spans of the drain above are exported too. The export blocks.
            await asyncio.to_thread(worker.tracing.shutdown)

    return lifespan
